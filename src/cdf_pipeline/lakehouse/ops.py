"""The ops tables: ``ops.runs`` (one row per tenant run) and ``ops.ingested_files`` (the manifest).

These hold a handful of rows per run, so reading them to the driver is fine; data tables never are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.run_record import FILE_IGNORED
from cdf_pipeline.tenants import validate_tenant_id

INGESTED, FAILED = "INGESTED", "FAILED"
#: Not read: not a data file (with why in ``note``).
IGNORED = FILE_IGNORED
#: Not read again: the same bytes as a file already ingested (under another name).
SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Manifest:
    """What the manifest knows of a tenant's files: the listing keys (path, size, mtime) of the
    data files settled before (ingested, or skipped as the same bytes as an ingested file) and
    of the objects ignored as not data, and the content hashes already ingested. FAILED files
    are not settled: they are checked again on every run."""

    settled: frozenset[tuple[str, int, int]]
    ignored: frozenset[tuple[str, int, int]]
    ingested: frozenset[str]


def manifest(spark: SparkSession, names: TableNames, tenant: str) -> Manifest:
    """The tenant's manifest keys: one small query (a row per file the tenant ever sent).

    Deduplicated here: ``distinct()`` would add a shuffle, a second Spark job on every run (the
    only one, with this, of a run that finds nothing new). Rows written before the listing keys
    were recorded have none: their files are hashed once more, found ingested, and recorded as
    SKIPPED with their keys, so later runs know them from the listing.
    """
    rows = (
        spark.table(names.ingested_files)
        .where(
            (F.col("tenant_id") == validate_tenant_id(tenant))
            & F.col("status").isin(INGESTED, SKIPPED, IGNORED)
        )
        .select("file", "size", "mtime_ns", "sha256", "status")
        .collect()
    )
    keyed = [r for r in rows if r["size"] is not None and r["mtime_ns"] is not None]
    return Manifest(
        settled=frozenset(_key(r) for r in keyed if r["status"] != IGNORED),
        ignored=frozenset(_key(r) for r in keyed if r["status"] == IGNORED),
        ingested=frozenset(r["sha256"] for r in rows if r["status"] == INGESTED),
    )


def _key(row: Any) -> tuple[str, int, int]:
    return (row["file"], int(row["size"]), int(row["mtime_ns"]))


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
