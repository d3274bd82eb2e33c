"""Read raw files into the contract's shape (one normalised DataFrame per tenant and entity)."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from cdf_pipeline.contracts import Entity
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.quality.normalise import normalise
from cdf_pipeline.storage import spark_uri
from cdf_pipeline.telemetry import stage


def read_raw(spark: SparkSession, raw: RawFile) -> DataFrame:
    """One file as Spark reads it: Parquet with its own types, CSV as text (no inference).

    CSV is read with RFC-4180 quoting (a quote inside a field is doubled), as the generator and
    most exporters write it.
    """
    if raw.fmt == "csv":
        return (
            spark.read.option("header", True)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("inferSchema", False)
            .csv(spark_uri(raw.path))
        )
    return spark.read.parquet(spark_uri(raw.path))


def read_normalised(
    spark: SparkSession,
    entity: Entity,
    files: list[RawFile],
    *,
    extra_columns: str = "ignore",
    per_file: Callable[[DataFrame], DataFrame] | None = None,
) -> DataFrame | None:
    """Every file normalised to the contract, then ``per_file`` applied, then unioned.

    ``per_file`` must replace the ``_raw`` struct (e.g. by validating and keeping the original
    as text) when files may differ in columns: structs of different shapes cannot be unioned.
    Returns None when there are no files.
    """
    frames = []
    for f in files:
        raw = read_raw(spark, f)
        with stage("normalise", **{"cdf.entity": entity.name}):  # plans only: Spark is lazy
            df = raw.transform(normalise(entity, source_file=f.name, extra_columns=extra_columns))
        frames.append(df.transform(per_file) if per_file is not None else df)
    if not frames:
        return None
    return reduce(lambda a, b: a.unionByName(b), frames)
