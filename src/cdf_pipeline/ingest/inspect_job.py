"""Hash and pre-check new raw files where the data is: one Spark job over their paths.

Choosing files reads no data bytes on the driver: known files are recognised from the listing
(:mod:`cdf_pipeline.pipeline.inputs`), and only new files are read, by executors, each task
streaming its files through the job's storage layer (SHA-256, then the Parquet footer or the CSV
record count: :func:`~cdf_pipeline.ingest.files.inspect_file`). The driver gets back one small
record per file. Hashing a byte stream and reading a footer are not column expressions, so this
is a plain map over the list of paths (a task per few files), not a UDF over data rows.

Executors need the package installed (its module is what they run) and reach storage with the
same :class:`~cdf_pipeline.storage.S3Config` the driver has, their credentials coming from their
own environment or instance role (the AWS default chain), never through the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial

from pyspark.sql import SparkSession

from cdf_pipeline.ingest.files import RawFile, inspect_file
from cdf_pipeline.storage import S3Config, Storage

#: Files per task at most: enough tasks to keep every core busy on a large batch, few enough
#: that a batch of many small files is not one task each.
_TASKS_PER_CORE = 4


def _inspect_partition(s3: S3Config, encoding: str, files: Iterator[RawFile]) -> Iterator[RawFile]:
    """Runs on an executor: each file hashed and pre-checked (one storage client per task)."""
    storage = Storage(s3)
    for f in files:
        inspected = inspect_file(storage, f.entity, f.path, encoding=encoding)
        yield replace(inspected, size=f.size, mtime_ns=f.mtime_ns)


def inspect_files(
    spark: SparkSession, s3: S3Config, files: list[RawFile], encoding: str = "utf-8"
) -> list[RawFile]:
    """``files`` (entity, path, size, mtime) hashed and pre-checked by executors, in order
    (CSV files read as text in ``encoding``).

    One Spark job whatever the file count; nothing runs when there are no files.
    """
    if not files:
        return []
    sc = spark.sparkContext
    slices = max(1, min(len(files), sc.defaultParallelism * _TASKS_PER_CORE))
    inspected = sc.parallelize(files, slices).mapPartitions(
        partial(_inspect_partition, s3, encoding)
    )
    sc.setJobDescription(f"cdf: hash and pre-check {len(files)} new raw file(s)")
    try:
        return list(inspected.collect())
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]
