"""One SparkSession for the length of a ``with`` block, stopped however the block ends.

Stopping before the process exits keeps the JVM from shutting its thread pools down under running
tasks (which printed RejectedExecutionException traces after a clean command).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

from cdf_pipeline.config import Settings
from cdf_pipeline.spark import build_session


@contextmanager
def spark_session(settings: Settings, app_name: str) -> Iterator[SparkSession]:
    """A session built by the one factory (``spark.build_session``), stopped on the way out."""
    spark = build_session(settings, app_name=app_name)
    try:
        yield spark
    finally:
        spark.stop()
