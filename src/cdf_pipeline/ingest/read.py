"""Read raw files into the contract's shape (one normalised DataFrame per tenant and entity)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import reduce

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.contracts import Entity
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.quality.normalise import normalise
from cdf_pipeline.storage import spark_uri
from cdf_pipeline.telemetry import stage


def read_raw(spark: SparkSession, raw: RawFile) -> DataFrame:
    """One file as Spark reads it: Parquet with its own types, CSV as text (no inference).

    CSV is read as RFC 4180 says, as the pre-check reads it (``ingest/files.py``): ``"`` quotes,
    doubled inside a field, line breaks inside quoted fields (``multiLine``, without which Spark
    splits such a record in two). Under ``multiLine`` Spark detects the line end (LF or CRLF)
    from the file, keeps no CR at the end of the last field, reads a line break inside a quoted
    field as LF, and drops a UTF-8 byte-order mark before the header (tested in
    ``tests/integration/test_hostile_input.py``). The price: a CSV file is read by one task, not
    split; Parquet, the raw zone's main format, is unaffected.
    """
    if raw.fmt == "csv":
        return (
            spark.read.option("header", True)
            .option("encoding", "UTF-8")
            .option("multiLine", True)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("inferSchema", False)
            .csv(spark_uri(raw.path))
        )
    return spark.read.parquet(spark_uri(raw.path))


class FileRowCounts:
    """Each file's rows as Spark reads them, counted on the way (no pass of their own).

    Every file's frame carries an observation (Spark's ``observe``: a count collected by the
    first action that runs the frame), so the action that materialises the validated batch
    counts each file too. A file whose count differs from its pre-check's cannot be accounted
    for and must fail alone rather than fail the tenant's count-invariant audit.
    """

    def __init__(self) -> None:
        self._observed: dict[str, Observation] = {}

    def observe(self, raw: RawFile, df: DataFrame) -> DataFrame:
        """``df`` (``raw`` as Spark reads it) counting its rows when it is first computed."""
        observation = Observation()
        self._observed[raw.path] = observation
        return df.observe(observation, F.count(F.lit(1)).alias("rows"))

    def unaccounted(self, files: list[RawFile]) -> list[RawFile]:
        """The files Spark read a different number of rows of than the pre-check counted,
        each with the reason as its ``error``.

        Call only once an action over every observed frame has finished: reading an
        observation waits for that action.
        """
        out = []
        for f in files:
            read = int(self._observed[f.path].get["rows"])
            if read != f.rows:
                error = f"Spark read {read} rows, the pre-check counted {f.rows}"
                out.append(replace(f, error=error))
        return out


def read_normalised(
    spark: SparkSession,
    entity: Entity,
    files: list[RawFile],
    *,
    extra_columns: str = "ignore",
    per_file: Callable[[DataFrame], DataFrame] | None = None,
    row_counts: FileRowCounts | None = None,
) -> DataFrame | None:
    """Every file normalised to the contract, then ``per_file`` applied, then unioned.

    ``per_file`` must replace the ``_raw`` struct (e.g. by validating and keeping the original
    as text) when files may differ in columns: structs of different shapes cannot be unioned.
    ``row_counts``, when given, counts each file's rows as Spark reads them.
    Returns None when there are no files.
    """
    frames = []
    for f in files:
        raw = read_raw(spark, f)
        if row_counts is not None:
            raw = row_counts.observe(f, raw)
        with stage("normalise", **{"cdf.entity": entity.name}):  # plans only: Spark is lazy
            df = raw.transform(normalise(entity, source_file=f.name, extra_columns=extra_columns))
        frames.append(df.transform(per_file) if per_file is not None else df)
    if not frames:
        return None
    return reduce(lambda a, b: a.unionByName(b), frames)
