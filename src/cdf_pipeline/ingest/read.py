"""Read raw files into the contract's shape: one scan per entity and file shape, not per file.

Files of one format with the same columns and types (from their footers or headers, known
before anything is read) are read by one Spark scan of all their paths; each row's file comes
from the scan's own ``_metadata.file_path``. A tenant sending hourly files sends thousands: the
plan has a scan per distinct shape (usually one), whatever the count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import reduce
from urllib.parse import unquote, urlsplit

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.contracts import Entity
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.quality.normalise import normalise
from cdf_pipeline.storage import canonical, spark_uri
from cdf_pipeline.telemetry import stage

#: The scan's column holding each row's file, as Spark names it (a URI, %-encoded).
PATH = "_file_path"


def read_raw(
    spark: SparkSession, raw: RawFile | list[RawFile], encoding: str = "utf-8"
) -> DataFrame:
    """Files of one shape as Spark reads them in one scan: Parquet with its own types, CSV as
    text (no inference).

    CSV is read as RFC 4180 says, as the pre-check reads it (``ingest/files.py``): ``"`` quotes,
    doubled inside a field, line breaks inside quoted fields (``multiLine``, without which Spark
    splits such a record in two). Under ``multiLine`` Spark detects the line end (LF or CRLF)
    from the file, keeps no CR at the end of the last field, reads a line break inside a quoted
    field as LF, and drops a UTF-8 byte-order mark before the header (tested in
    ``tests/integration/test_hostile_input.py``). The price: a CSV file is read by one task, not
    split; Parquet, the raw zone's main format, is unaffected.
    """
    files = raw if isinstance(raw, list) else [raw]
    paths = [spark_uri(f.path) for f in files]
    if files[0].fmt == "csv":
        return (
            spark.read.option("header", True)
            .option("encoding", encoding)
            .option("multiLine", True)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("inferSchema", False)
            .csv(paths)
        )
    return spark.read.parquet(*paths)


def local_or_s3_path(spark_path: str) -> str:
    """A path as Spark's ``_metadata.file_path`` has it (``file:/a%20b``, ``s3a://b/k``) in
    the job's own spelling (``/a b``, ``s3://b/k``)."""
    parts = urlsplit(spark_path)
    if parts.scheme in ("s3", "s3a"):
        return canonical(f"s3://{parts.netloc}{unquote(parts.path)}")
    return canonical(unquote(parts.path))


def file_name(path: Column) -> Column:
    """The file name of Spark's %-encoded file URI, as the file is named. Only names Hadoop
    encoded (spaces, ``%``) are decoded: the rest are read as they are. ``+`` is kept (Hadoop
    never writes a space as ``+``, but ``URLDecoder`` reads one so)."""
    name = F.regexp_extract(path, r"[^/]*$", 0)
    decoded = F.reflect(
        F.lit("java.net.URLDecoder"),
        F.lit("decode"),
        F.regexp_replace(name, r"\+", "%2B"),
        F.lit("UTF-8"),
    )
    return F.when(name.contains("%"), decoded).otherwise(name)


def _nanos_to_timestamps(files: list[RawFile]) -> Callable[[DataFrame], DataFrame]:
    """Parquet timestamps of nanosecond precision (pandas' default) read as long nanoseconds
    (``spark.sql.legacy.parquet.nanosAsLong``: Spark cannot read them as timestamps) made
    timestamps again, to the microsecond, before anything else sees them."""
    first = files[0]
    typed = zip(first.columns, first.types, strict=False)  # CSV: columns, no types
    nanos = {c for c, t in typed if t.startswith("timestamp[ns")}

    def _apply(df: DataFrame) -> DataFrame:
        if not nanos:
            return df
        micros = {
            c: F.timestamp_micros((F.col(f"`{c}`").cast("decimal(20,0)") / 1000).cast("long"))
            for c in nanos
        }
        kept = (micros[c].alias(c) if c in micros else F.col(f"`{c}`") for c in df.columns)
        return df.select(*kept)

    return _apply


def by_shape(files: Iterable[RawFile]) -> list[list[RawFile]]:
    """Files grouped by what one scan can read together (format, columns, types), in order."""
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[RawFile]] = {}
    for f in files:
        groups.setdefault(f.shape, []).append(f)
    return list(groups.values())


class FileRowCounts:
    """Each scan's rows as Spark reads them, counted on the way (no pass of their own).

    Every scan carries an observation (Spark's ``observe``: a count collected by the first
    action that runs the frame), so the action that materialises the validated batch counts
    each scan too. Only when a scan read another number of rows than its files' pre-checks
    counted are its files counted one by one (a query grouped by file), to find the files
    that cannot be accounted for: they must fail alone rather than fail the tenant's
    count-invariant audit.
    """

    def __init__(self, spark: SparkSession, encoding: str = "utf-8") -> None:
        self._spark = spark
        self._encoding = encoding
        self._observed: list[tuple[list[RawFile], Observation]] = []

    def observe(self, files: list[RawFile], df: DataFrame) -> DataFrame:
        """``df`` (one scan of ``files``) counting its rows when it is first computed."""
        observation = Observation()
        self._observed.append((files, observation))
        return df.observe(observation, F.count(F.lit(1)).alias("rows"))

    def unaccounted(self) -> list[RawFile]:
        """The files Spark read a different number of rows of than the pre-check counted,
        each with the reason as its ``error``.

        Call only once an action over every observed frame has finished: reading an
        observation waits for that action.
        """
        out = []
        for files, observation in self._observed:
            if int(observation.get["rows"]) == sum(f.rows or 0 for f in files):
                continue
            counted = (
                read_raw(self._spark, files, self._encoding)
                .select(F.col("_metadata.file_path").alias(PATH))
                .groupBy(PATH)
                .count()
                .collect()
            )
            read = {local_or_s3_path(r[PATH]): int(r["count"]) for r in counted}
            for f in files:
                n = read.get(canonical(f.path), 0)
                if n != f.rows:
                    error = f"Spark read {n} rows, the pre-check counted {f.rows}"
                    out.append(replace(f, error=error))
        return out


def files_in_error(error: str, files: list[RawFile]) -> list[RawFile]:
    """The files a failed scan's error names (Spark names the file it could not read), each with
    a reason for its customer as ``error``: a file whose footer read well but whose data does not
    fails alone, and the scan runs again without it."""
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    named = [f for f in files if spark_uri(f.path) in error or f.path in error]
    return [
        replace(f, error=f"unreadable {f.fmt} file (Spark could not read it: {first})")
        for f in named
    ]


@dataclass(frozen=True)
class ReadOptions:
    """How a tenant's files are read: what to do with columns the contract does not name
    (``ignore`` or ``quarantine``), and the text encoding of its CSV files."""

    extra_columns: str = "ignore"
    encoding: str = "utf-8"


def read_normalised(
    spark: SparkSession,
    entity: Entity,
    files: list[RawFile],
    options: ReadOptions | None = None,
    *,
    per_file: Callable[[DataFrame], DataFrame] | None = None,
    row_counts: FileRowCounts | None = None,
) -> DataFrame | None:
    """Every file normalised to the contract, then ``per_file`` applied, one scan per shape
    (:func:`by_shape`), the scans unioned.

    ``per_file`` must replace the ``_raw`` struct (e.g. by validating and keeping the original
    as text) when shapes differ in columns: structs of different shapes cannot be unioned.
    ``row_counts``, when given, counts each scan's rows as Spark reads them.
    Returns None when there are no files.
    """
    options = options or ReadOptions()
    frames = []
    for group in by_shape(files):
        raw = read_raw(spark, group, options.encoding).select(
            "*", F.col("_metadata.file_path").alias(PATH)
        )
        if row_counts is not None:
            raw = row_counts.observe(group, raw)
        to_contract = normalise(
            entity,
            source_file=file_name(F.col(PATH)),
            extra_columns=options.extra_columns,
            exclude=PATH,
        )
        with stage("normalise", **{"cdf.entity": entity.name}):  # plans only: Spark is lazy
            df = raw.transform(_nanos_to_timestamps(group)).transform(to_contract)
        frames.append(df.transform(per_file) if per_file is not None else df)
    if not frames:
        return None
    return reduce(lambda a, b: a.unionByName(b), frames)
