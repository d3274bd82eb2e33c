"""Read raw files into the contract's shape (one normalised DataFrame per tenant and entity)."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from cdf_pipeline.contracts import Entity
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.quality.normalise import Drift, detect_drift, normalise


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
            .csv(raw.path)
        )
    return spark.read.parquet(raw.path)


def file_drift(spark: SparkSession, entity: Entity, raw: RawFile) -> Drift:
    """How the file's columns differ from the contract (reads only the schema)."""
    return detect_drift(entity, read_raw(spark, raw).columns)


def read_normalised(
    spark: SparkSession, entity: Entity, files: list[RawFile], *, extra_columns: str = "ignore"
) -> DataFrame | None:
    """Every file normalised to the contract and unioned (None when there are no files)."""
    frames = [
        read_raw(spark, f).transform(
            normalise(entity, source_file=f.name, extra_columns=extra_columns)
        )
        for f in files
    ]
    if not frames:
        return None
    return reduce(lambda a, b: a.unionByName(b), frames)
