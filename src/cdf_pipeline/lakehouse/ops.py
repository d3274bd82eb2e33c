"""The ops tables: ``ops.runs`` (one row per tenant run) and ``ops.ingested_files`` (the manifest).

These hold a handful of rows per run, so reading them to the driver is fine; data tables never are.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.tenants import validate_tenant_id

INGESTED, FAILED = "INGESTED", "FAILED"


def ingested_hashes(spark: SparkSession, names: TableNames, tenant: str) -> set[str]:
    """SHA-256 of every file already ingested for the tenant.

    A row per file, deduplicated here: ``distinct()`` would add a shuffle, a second Spark job
    on every run (the only one, with this, of a run that finds nothing new).
    """
    rows = (
        spark.table(names.ingested_files)
        .where((F.col("tenant_id") == validate_tenant_id(tenant)) & (F.col("status") == INGESTED))
        .select("sha256")
        .collect()
    )
    return {r[0] for r in rows}


def _append(spark: SparkSession, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    schema = spark.table(table).schema
    spark.createDataFrame(rows, schema=schema).writeTo(table).append()


def record_files(spark: SparkSession, names: TableNames, rows: list[dict[str, Any]]) -> None:
    """Append manifest rows (one per file, ingested or failed)."""
    _append(spark, names.ingested_files, rows)


def record_run(spark: SparkSession, names: TableNames, row: dict[str, Any]) -> None:
    """Append the run's record."""
    _append(spark, names.runs, [row])


def has_history(spark: SparkSession, names: TableNames, tenant: str) -> bool:
    """Whether the tenant has ever been run."""
    runs = spark.table(names.runs).where(F.col("tenant_id") == validate_tenant_id(tenant))
    return runs.limit(1).count() > 0


def list_runs(
    spark: SparkSession, names: TableNames, tenant: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The tenant's latest runs, newest first, as plain dicts."""
    rows = (
        spark.table(names.runs)
        .where(F.col("tenant_id") == validate_tenant_id(tenant))
        .orderBy(F.col("started_at").desc())
        .limit(limit)
        .collect()
    )
    return [r.asDict(recursive=True) for r in rows]
