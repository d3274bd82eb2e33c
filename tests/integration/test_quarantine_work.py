"""The quarantine workflow end to end: export the open rows, fix some, send them back, run.

A fixed row lands in silver and its quarantine row is RESOLVED by the run that received it; a
row sent back still broken is quarantined again with its new reasons (the older copy resolved by
it), and the run record counts each row once, where it was read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.orchestration.quarantine import export_open, open_counts, open_rows
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.storage import storage_for

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "fixer"
EMAIL = "contact_email.format"


def _codes(spark: SparkSession, lake: Settings, keys: list[str]) -> list[tuple[str, str, str]]:
    """(key, status, sorted rule codes) of every quarantine row of these supplier keys."""
    rows = (
        spark.table(TableNames.of(lake).quarantine("suppliers"))
        .where((F.col("tenant_id") == TENANT) & F.col("supplier_id").isin(keys))
        .select(
            "supplier_id",
            "_status",
            F.array_join(F.array_sort(F.col("_violations.rule")), ",").alias("codes"),
        )
        .collect()
    )
    return sorted((r[0], r[1], r[2]) for r in rows)


def test_export_fix_send_back_run_resolves(
    spark: SparkSession, lake: Settings, tmp_path: Path
) -> None:
    names = TableNames.of(lake)
    storage = storage_for(lake)
    generate([TENANT], 300, 200, seed=5, root_uri=lake.root)
    first = run_tenant(spark, lake, TENANT)
    assert first.status == S.SUCCEEDED, first.message

    by_rule = {c.group: c.rows for c in open_counts(spark, names, TENANT, "rule", ["suppliers"])}
    assert by_rule[EMAIL] > 0
    assert by_rule == {
        r["rule"]: r["count"]
        for r in open_rows(spark, names, TENANT, "suppliers")
        .select(F.explode("_violations.rule").alias("rule"))
        .groupBy("rule")
        .count()
        .collect()
    }

    # By file and by run, every open row once (one file and one run here).
    n_open = open_rows(spark, names, TENANT, "suppliers").count()
    for by, group in (("file", None), ("run", first.run_id)):
        counts = open_counts(spark, names, TENANT, by, ["suppliers"])
        assert [c.rows for c in counts] == [n_open]
        assert group is None or counts[0].group == group

    # Export: the columns as sent, in the order sent, plus the reasons.
    exported = tmp_path / "open.csv"
    n = export_open(spark, names, storage, TENANT, "suppliers", exported)
    with exported.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n == open_rows(spark, names, TENANT, "suppliers").count()
    sent_columns = pq.read_schema(
        next(Path(lake.raw_uri, f"tenant_id={TENANT}", "entity=suppliers").rglob("*.parquet"))
    ).names
    assert list(rows[0]) == [*sent_columns, "reasons"]
    export_pq = tmp_path / "open.parquet"
    assert export_open(spark, names, storage, TENANT, "suppliers", export_pq) == n
    assert pq.read_schema(export_pq).names == [*sent_columns, "reasons"]

    # Edit: three rows whose only fault is the e-mail; two fixed, one broken in a new way.
    only_email = [
        r for r in rows if r["reasons"].split(" (")[0] == EMAIL and ";" not in r["reasons"]
    ]
    assert len(only_email) >= 3
    fixed, broken = only_email[:2], only_email[2]
    for i, r in enumerate(fixed):
        r["contact_email"] = f"fixed{i}@example.com"
    broken["contact_email"] = "now-valid@example.com"
    broken["country"] = "Atlantis"
    back = Path(lake.raw_uri, f"tenant_id={TENANT}", "entity=suppliers", "ingest_date=2026-12-06")
    back.mkdir(parents=True)
    with (back / "fixed.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows([*fixed, broken])
    keys = [r["supplier_id"] for r in [*fixed, broken]]

    second = run_tenant(spark, lake, TENANT)
    assert second.status == S.SUCCEEDED, second.message
    counts = second.entities["suppliers"]
    assert (counts.read, counts.inserted, counts.updated, counts.quarantined) == (3, 2, 0, 1)
    assert (counts.promoted, second.total("promoted")) == (0, 0)

    # Fixed rows in silver, with the values sent back.
    silver = spark.table(names.silver("suppliers")).where(F.col("supplier_id").isin(keys))
    assert_df_equality(
        silver.select("supplier_id", "contact_email", "_run_id"),
        spark.createDataFrame(
            [(r["supplier_id"], r["contact_email"], second.run_id) for r in fixed],
            "supplier_id string, contact_email string, _run_id string",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    # Their quarantine rows RESOLVED by the run that received them; the broken one open again
    # with its new reason only.
    country = next(c for c in second.violations if c.startswith("country."))
    assert _codes(spark, lake, keys) == sorted(
        [(r["supplier_id"], "RESOLVED", EMAIL) for r in [*fixed, broken]]
        + [(broken["supplier_id"], "OPEN", country)]
    )
    resolved_by = (
        spark.table(names.quarantine("suppliers"))
        .where(F.col("supplier_id").isin(keys) & (F.col("_status") == "RESOLVED"))
        .select("_resolved_run_id")
        .distinct()
        .collect()
    )
    assert [r[0] for r in resolved_by] == [second.run_id]

    # Nothing counted twice: the run records add up to the tables.
    record = spark.table(names.runs).where(F.col("tenant_id") == TENANT)
    totals = record.agg(F.sum("quarantined"), F.sum("inserted"), F.sum("promoted")).first()
    assert totals is not None
    quarantine_rows = sum(
        spark.table(names.quarantine(e)).where(F.col("tenant_id") == TENANT).count()
        for e in ("suppliers", "parts")
    )
    silver_rows = sum(
        spark.table(names.silver(e)).where(F.col("tenant_id") == TENANT).count()
        for e in ("suppliers", "parts")
    )
    assert (totals[0], totals[1], totals[2]) == (quarantine_rows, silver_rows, 0)
    opened = open_rows(spark, names, TENANT, "suppliers").count()
    assert opened == n - 2  # three resolved, one open again

    # The export after the run shows the broken row once, with its new reasons.
    again = tmp_path / "again.csv"
    export_open(spark, names, storage, TENANT, "suppliers", again)
    with again.open(newline="", encoding="utf-8") as f:
        latest = {r["supplier_id"]: r for r in csv.DictReader(f)}
    assert latest[broken["supplier_id"]]["reasons"].startswith(country)
    assert latest[broken["supplier_id"]]["country"] == "Atlantis"
    assert not set(keys[:2]) & set(latest)


def test_export_needs_an_entity_one_line_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    from support.environment import cli_env

    proc = subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", "quarantine", "--tenant", "acme",
         "--root", str(tmp_path), "--export", str(tmp_path / "x.csv")],
        env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "cdf quarantine: error: --export needs --entity (parts or suppliers): a file holds one "
        "entity"
    ]
    assert not (tmp_path / "x.csv").exists()
