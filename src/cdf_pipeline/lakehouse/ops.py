"""The ops tables: ``ops.runs`` (one row per tenant run) and ``ops.ingested_files`` (the manifest).

These hold a handful of rows per run, so reading them to the driver is fine; data tables never are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.run_record import FILE_IGNORED, PUBLISHING
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
    """Append a run's record: a run with no earlier record to replace (NOTHING_NEW, BUSY,
    FAILED on unreadable files only, or a run's first PUBLISHING record), one commit whatever
    the table holds."""
    _append(spark, names.runs, [row])


def upsert_run(
    spark: SparkSession,
    names: TableNames,
    row: dict[str, Any],
    view: str,
    *,
    over_publishing_only: bool = False,
) -> None:
    """Write the run's record in place of any earlier one of the same run (its PUBLISHING row):
    one commit, so ops.runs never holds two records of one run.

    ``over_publishing_only``: replace an earlier record only while it is still PUBLISHING. A run
    that failed after losing its lease records itself so: the run that took the tenant over may
    have completed its publish under its id (or marked it FAILED), and that record stands.

    The tenant is a literal in the join condition: Iceberg then checks for conflicting commits
    in the tenant's partition only, so tenants recording at the same time do not conflict.
    """
    tenant = validate_tenant_id(row["tenant_id"])
    df = spark.createDataFrame([row], schema=spark.table(names.runs).schema)
    df.createOrReplaceTempView(view)
    only = f"AND t.status = '{PUBLISHING}'" if over_publishing_only else ""
    try:
        spark.sql(
            f"""
            MERGE INTO {names.runs} t USING {view} s
            ON t.tenant_id = '{tenant}' AND s.tenant_id = t.tenant_id AND t.run_id = s.run_id
            WHEN MATCHED {only} THEN UPDATE SET *
            WHEN NOT MATCHED THEN INSERT *
            """
        )
    finally:
        spark.catalog.dropTempView(view)


@dataclass(frozen=True)
class Unfinished:
    """A run recorded as PUBLISHING: it stopped (was killed) between its first publish write and
    its final record. ``files``: the content hashes it was publishing; ``recorded``: whether
    its manifest rows were committed (only its final record is missing then)."""

    run_id: str
    files: frozenset[str]
    recorded: bool
    failed_files: bool


def unfinished_runs(spark: SparkSession, names: TableNames, tenant: str) -> list[Unfinished]:
    """The tenant's runs that stopped while publishing (normally none: one small query)."""
    tenant = validate_tenant_id(tenant)
    rows = (
        spark.table(names.runs)
        .where((F.col("tenant_id") == tenant) & (F.col("status") == PUBLISHING))
        .select("run_id", "inputs")
        .collect()
    )
    out = []
    for r in rows:
        manifest = spark.table(names.ingested_files).where(
            (F.col("tenant_id") == tenant) & (F.col("run_id") == r["run_id"])
        )
        files = frozenset(i["sha256"] for i in r["inputs"] if i["status"] == INGESTED)
        failed = any(i["status"] == FAILED for i in r["inputs"])
        out.append(Unfinished(r["run_id"], files, not manifest.isEmpty(), failed))
    return out


def finish_unfinished(
    spark: SparkSession, names: TableNames, tenant: str, run: Unfinished, status: str, message: str
) -> None:
    """Give a PUBLISHING record its final status (its counts, files and audits stand)."""
    tenant = validate_tenant_id(tenant)
    text = message.replace("'", "''")
    spark.sql(
        f"UPDATE {names.runs} SET status = '{status}', message = '{text}', "
        f"finished_at = current_timestamp() "
        f"WHERE tenant_id = '{tenant}' AND run_id = '{run.run_id}' AND status = '{PUBLISHING}'"
    )


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
