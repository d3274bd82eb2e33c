"""``cdf maintain``: compaction, expiry and orphan removal keep every row; --check; --repair.

One lakehouse for the module: tenant ``mnt`` with three batches (two merge-on-read change
batches, so silver has delete files to fold) and tenant ``dup`` (``mnt``'s first load, copied),
whose silver the repair test breaks the way older versions of the job could. Each test takes what
it compares from the tables at its own start, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from support.environment import cli_env
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES, PARTS, SUPPLIERS
from cdf_pipeline.lakehouse.lease import tenant_lease
from cdf_pipeline.lakehouse.maintenance import FileStats, file_stats, maintained_tables, snapshots
from cdf_pipeline.lakehouse.quarantine import KEY
from cdf_pipeline.lakehouse.repair import rule_code
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.orchestration.maintain import maintain
from cdf_pipeline.orchestration.maintain_report import (
    BUSY,
    CHECK,
    OK,
    REPAIR,
    Options,
    format_report,
)
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT, OTHER = "mnt", "dup"
ROWS, SEED = 120, 5

#: Sort keys of each table's rows (ops.runs holds maps, which Spark cannot sort by).
ORDER = {
    **{f"silver.{e}": ["tenant_id", ENTITIES[e].primary_key, "_run_id"] for e in ENTITIES},
    **{f"quarantine.{e}": ["tenant_id", KEY] for e in ENTITIES},
    "ops.runs": ["tenant_id", "run_id", "status"],
    "ops.ingested_files": ["tenant_id", "sha256", "file", "run_id"],
    "ops.landed_files": ["tenant_id", "source", "version", "land_id"],
}


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """``mnt``: a first load and two change batches; ``dup``: ``mnt``'s first load copied."""
    root = tmp_path_factory.mktemp("maintain")
    # No metadata cache: the CLI test's child process commits to these tables too.
    settings = make_lake(spark, root, properties={"cache-enabled": "false"})
    generate([TENANT], ROWS, ROWS, seed=SEED, batch=1, root_uri=str(root))
    assert run_tenant(spark, settings, TENANT).status == S.SUCCEEDED
    _copy_tenant(spark, settings, TENANT, OTHER)
    for batch in (2, 3):
        generate([TENANT], ROWS, ROWS, seed=SEED, batch=batch, root_uri=str(root))
        run = run_tenant(spark, settings, TENANT)
        assert run.status == S.SUCCEEDED, run.message
        assert run.total("updated") > 0  # a MERGE: delete files in silver
    return settings


def _copy_tenant(spark: SparkSession, lake: Settings, source: str, target: str) -> None:
    """Every row of ``source`` again under ``target``: a second tenant as its first run left it,
    for the price of a few appends instead of a run."""
    for table in maintained_tables(TableNames.of(lake)):
        rows = spark.table(table).where(F.col("tenant_id") == source)
        rows.withColumn("tenant_id", F.lit(target)).writeTo(table).append()


def _short(table: str) -> str:
    return table.split(".", 1)[1]


def table_rows(spark: SparkSession, table: str) -> DataFrame:
    """Every row of ``table``, sorted, pinned as it is now."""
    return spark.table(table).orderBy(*ORDER[_short(table)]).localCheckpoint()


def plant_orphans(lake: Settings) -> tuple[Path, Path]:
    """Two files no snapshot references in silver.suppliers' folder: one 10 days old (what a
    write that died long ago leaves), one just written (what a commit in flight looks like)."""
    folder = Path(lake.warehouse_uri) / "silver" / "suppliers" / "data" / f"tenant_id={TENANT}"
    old, fresh = folder / "orphan-old.parquet", folder / "orphan-fresh.parquet"
    for f in (old, fresh):
        f.write_bytes(b"not referenced by any snapshot")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    return old, fresh


def test_maintenance_folds_delete_files_expires_and_keeps_every_row(
    spark: SparkSession, lake: Settings
) -> None:
    names = TableNames.of(lake)
    tables = maintained_tables(names)
    stats = file_stats(spark, tables)
    for entity in (SUPPLIERS, PARTS):
        assert stats[(names.silver(entity), TENANT)].delete_files > 0
    rows = {t: table_rows(spark, t) for t in tables}
    old, fresh = plant_orphans(lake)

    report = maintain(spark, lake, options=Options(retain_days=0, retain_last=1, orphan_days=3))

    assert report.exit_code == 0, report.to_json()
    assert report.tenants == {OTHER: OK, TENANT: OK}
    by_table = {t.table: t for t in report.tables}
    assert set(by_table) == {_short(t) for t in tables}
    for entity in (SUPPLIERS, PARTS):
        silver = by_table[f"silver.{entity.name}"]
        assert silver.before.delete_files > 0 and silver.after.delete_files == 0
        assert silver.after.data_files < silver.before.data_files
        assert silver.snapshots_expired and silver.snapshots_expired > 0
    # What the report says is what the metadata says: no delete file and one data file per
    # partition left anywhere; of the snapshots older than the maintenance, the current one at
    # most (retain_last=1; the compaction's own commits are younger than the cut-off).
    after = file_stats(spark, tables)
    assert {k: (s.delete_files, s.most_in_partition) for k, s in after.items()} == {
        k: (0, 1) for k in after
    }
    older = {t: [a for a in snapshots(spark, t).values() if a < report.started_at] for t in tables}
    assert all(len(ats) <= 1 for ats in older.values()), older
    assert older[names.silver(PARTS)] == []
    # Only the old orphan went; the young one may belong to a commit in flight.
    assert by_table["silver.suppliers"].orphans_removed == 1
    assert sum(t.orphans_removed or 0 for t in report.tables) == 1
    assert not old.exists() and fresh.exists()
    fresh.unlink()
    # Every row of every table reads the same as before.
    for table, before in rows.items():
        assert_df_equality(table_rows(spark, table), before, ignore_nullable=True)

    # Compacting the tenant again has nothing to do and commits nothing.
    ids = {t: set(snapshots(spark, t)) for t in tables}
    again = maintain(spark, lake, tenant=TENANT)
    assert again.exit_code == 0 and again.tenants == {TENANT: OK}
    assert [t.before for t in again.tables] == [t.after for t in again.tables]
    assert {t: set(snapshots(spark, t)) for t in tables} == ids


def _silver(spark: SparkSession, lake: Settings, entity: str) -> DataFrame:
    table = TableNames.of(lake).silver(entity)
    return spark.table(table).where(F.col("tenant_id") == OTHER)


def _break_guarantees(spark: SparkSession, lake: Settings) -> DataFrame:
    """Leave ``dup`` as older versions of the job (or a hand-made write) could, and return the
    silver suppliers that should win the repair.

    Suppliers: three keys published twice by two runs of the same new files (same version, the
    second run later, so the second copy wins), two keys twice by one run (byte-identical rows).
    Parts: two keys byte-identical; one part naming a supplier that does not exist. Quarantine:
    one row marked RESOLVED without a resolving run.
    """
    names = TableNames.of(lake)
    sup = SUPPLIERS.primary_key
    first = _silver(spark, lake, "suppliers").orderBy(sup).limit(5).localCheckpoint()
    later_run = first.limit(3).select(
        *(c for c in first.columns if c not in ("_run_id", "_ingested_at")),
        F.lit("29991231T000000Z-secondrun").alias("_run_id"),
        (F.col("_ingested_at") + F.expr("INTERVAL 1 MINUTE")).alias("_ingested_at"),
    )
    later_run.select(*first.columns).writeTo(names.silver("suppliers")).append()
    first.orderBy(F.col(sup).desc()).limit(2).writeTo(names.silver("suppliers")).append()
    parts = _silver(spark, lake, "parts").orderBy(PARTS.primary_key).limit(3).localCheckpoint()
    parts.limit(2).writeTo(names.silver("parts")).append()
    orphan = (
        parts.orderBy(F.col(PARTS.primary_key).desc())
        .limit(1)
        .select(
            *(
                F.lit("01ORPHANPART0000000000000000").alias(c)
                if c == PARTS.primary_key
                else F.lit("01NOSUCHSUPPLIER00000000000").alias(c)
                if c == "default_supplier_id"
                else F.col(c)
                for c in parts.columns
            )
        )
    )
    orphan.writeTo(names.silver("parts")).append()
    bad = spark.table(names.quarantine("suppliers")).limit(1).localCheckpoint()
    assert bad.count() == 1
    bad.withColumns(
        {
            "tenant_id": F.lit(OTHER),
            KEY: F.lit("bad-status-row"),
            "_status": F.lit("RESOLVED"),
            "_resolved_run_id": F.lit(None).cast("string"),
        }
    ).writeTo(names.quarantine("suppliers")).append()
    winners = (
        _silver(spark, lake, "suppliers")
        .join(later_run.select(sup), sup, "left_anti")
        .unionByName(later_run)
    )
    return winners.dropDuplicates().orderBy(sup).localCheckpoint()


def test_check_names_what_breaks_and_repair_moves_duplicates_to_quarantine(
    spark: SparkSession, lake: Settings
) -> None:
    names = TableNames.of(lake)
    expected_suppliers = _break_guarantees(spark, lake)
    expected_parts = _silver(spark, lake, "parts").dropDuplicates().orderBy("part_id")
    expected_parts = expected_parts.localCheckpoint()

    broken = maintain(spark, lake, mode=CHECK, tenant=OTHER)
    assert broken.exit_code == 1
    assert broken.tenants == {OTHER: "FAILED"}
    failed = {(c.table, c.name): c for c in broken.checks if not c.passed}
    assert {k: c.failures for k, c in failed.items()} == {
        ("silver.suppliers", "suppliers.primary_key_unique"): 5,
        ("silver.parts", "parts.primary_key_unique"): 2,
        ("silver.parts", "parts.foreign_keys_closed"): 1,
        ("quarantine.suppliers", "suppliers.quarantine_status"): 1,
    }
    fk = failed[("silver.parts", "parts.foreign_keys_closed")]
    assert fk.examples == (
        "01ORPHANPART0000000000000000 (default_supplier_id: 01NOSUCHSUPPLIER00000000000)",
    )
    assert all(c.tenant == OTHER and 0 < len(c.examples) <= 3 for c in failed.values())
    text = format_report(broken)
    assert (
        "FAILED dup          silver.suppliers       suppliers.primary_key_unique: "
        "5 key(s) held by more than one row (5 surplus row(s)); e.g. "
    ) in text

    repaired = maintain(spark, lake, mode=REPAIR, tenant=OTHER)
    assert repaired.exit_code == 0
    assert {r.table: (r.keys, r.rows_moved) for r in repaired.repairs} == {
        "silver.suppliers": (5, 5),
        "silver.parts": (2, 2),
    }
    # Silver keeps the newest version of each key, one row each; nothing else changed.
    assert_df_equality(
        _silver(spark, lake, "suppliers").orderBy(SUPPLIERS.primary_key),
        expected_suppliers,
        ignore_nullable=True,
    )
    assert_df_equality(
        _silver(spark, lake, "parts").orderBy("part_id"), expected_parts, ignore_nullable=True
    )
    # The losers are in quarantine, OPEN, with the reason and their contract values as sent.
    for entity, count in ((SUPPLIERS, 5), (PARTS, 2)):
        moved = (
            spark.table(names.quarantine(entity))
            .where((F.col("tenant_id") == OTHER) & F.col("_run_id").startswith("repair-"))
            .localCheckpoint()
        )
        assert moved.count() == count
        assert (
            moved.where(
                (F.col("_status") == "OPEN")
                & (F.col("_violations")[0]["rule"] == rule_code(entity))
                & (F.size("_violations") == 1)
                & (F.col("_original") == F.to_json(F.struct(*entity.field_names)))
            ).count()
            == count
        )
    losing_runs = (
        spark.table(names.quarantine(SUPPLIERS))
        .where(F.col("_run_id").startswith("repair-"))
        .select(F.get_json_object(F.col("_violations")[0]["value"], "$.kept_run_id").alias("k"))
        .groupBy("k")
        .count()
        .collect()
    )
    assert sorted((r["k"] == "29991231T000000Z-secondrun", r["count"]) for r in losing_runs) == [
        (False, 2),
        (True, 3),
    ]

    # A second repair finds nothing to do. What repair does not mend (the orphan part, the bad
    # status) is for a person to look at; once that is done the check passes.
    assert [r.keys for r in maintain(spark, lake, mode=REPAIR, tenant=OTHER).repairs] == [0, 0]
    spark.sql(f"DELETE FROM {names.silver('parts')} WHERE part_id = '01ORPHANPART0000000000000000'")
    spark.sql(f"DELETE FROM {names.quarantine('suppliers')} WHERE {KEY} = 'bad-status-row'")
    passed = maintain(spark, lake, mode=CHECK, tenant=OTHER)
    assert passed.exit_code == 0 and len(passed.checks) == 5
    assert all(c.passed for c in passed.checks)


def test_a_busy_tenant_is_skipped_and_reported(spark: SparkSession, lake: Settings) -> None:
    with tenant_lease(lake, OTHER, purpose="run"):
        report = maintain(spark, lake, mode=REPAIR)
    assert report.tenants == {OTHER: BUSY, TENANT: OK}
    assert report.exit_code == 3 and report.status == BUSY
    assert [(b.tenant, b.purpose) for b in report.busy] == [(OTHER, "run")]
    assert f":{os.getpid()}:run:" in report.busy[0].owner
    assert {r.tenant for r in report.repairs} == {TENANT}  # nothing was done for the busy one
    assert "BUSY dup: run by " in format_report(report)
    # Released, the tenant is maintained again.
    assert maintain(spark, lake, mode=REPAIR, tenant=OTHER).tenants == {OTHER: OK}


def test_cli_busy_tenant_exit_code_figures_and_json_line(
    spark: SparkSession, lake: Settings
) -> None:
    """``cdf maintain --tenant dup --json`` while a run holds dup's lease: exit 3, the figures
    (which are those of the table metadata), the BUSY line and the JSON line last."""
    names = TableNames.of(lake)
    command = [sys.executable, "-m", "cdf_pipeline.cli", "maintain", "--tenant", OTHER,
               "--root", lake.root, "--json"]  # fmt: skip
    with tenant_lease(lake, OTHER):
        proc = subprocess.run(
            command,
            env=cli_env(CDF__CATALOG__NAME=lake.catalog.name),
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 3, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["mode"], summary["tenant"], summary["status"]) == ("maintain", OTHER, BUSY)
    assert summary["tenants"] == {OTHER: BUSY} and summary["exit_code"] == 3
    assert [b["tenant"] for b in summary["busy"]] == [OTHER]
    assert f":{os.getpid()}:run:" in summary["busy"][0]["owner"]
    stats = file_stats(spark, maintained_tables(names), OTHER)
    tables = {t["table"]: t for t in summary["tables"]}
    assert set(tables) == {_short(t) for t in maintained_tables(names)}
    for name, table in tables.items():
        now = stats.get((f"{names.catalog}.{name}", OTHER), FileStats())
        figures = [now.data_files, now.data_files, now.delete_files, now.delete_files]
        assert [
            table["data_files_before"],
            table["data_files_after"],
            table["delete_files_before"],
            table["delete_files_after"],
        ] == figures  # busy: nothing done
        assert (table["bytes_before"], table["bytes_after"]) == (now.bytes, now.bytes)
        assert table["snapshots_expired"] is None  # table-wide: not with --tenant
        # The person's summary (on stderr under --json) has a line per table, same figures.
        line = next(x.split() for x in proc.stderr.splitlines() if x.strip().startswith(name))
        assert line[1:5] == [f"{n:,}" for n in figures]
    assert f"BUSY {OTHER}: run by " in proc.stderr
