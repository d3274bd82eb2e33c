"""The silver job end to end on the embedded lakehouse, driven by labelled generator output.

Each test gets its own root and Iceberg catalog (the ``lake`` fixture) on the shared session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES, PARTS, SUPPLIERS
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROWS = 1500
LINEAGE = ["_run_id", "_ingested_at", "_source_file"]


def gen(lake: Settings, tenants: list[str], batch: int = 1, **kw: Any) -> None:
    generate(tenants, ROWS, ROWS, seed=11, batch=batch, root_uri=lake.root, **kw)


def labels(spark: SparkSession, lake: Settings, tenant: str, entity: str, batch: int) -> DataFrame:
    path = Path(lake.labels_uri) / f"tenant_id={tenant}" / f"entity={entity}" / f"batch={batch}"
    table = pq.read_table(path / "labels.parquet")
    return spark.createDataFrame(table.to_pylist())


def names(lake: Settings) -> TableNames:
    return TableNames(lake.catalog.name)


def quarantined_codes(spark: SparkSession, lake: Settings, entity: str, tenant: str) -> DataFrame:
    """(pk, sorted rule codes) of every quarantine row of the tenant."""
    pk = ENTITIES[entity].primary_key
    return (
        spark.table(names(lake).quarantine(entity))
        .where(F.col("tenant_id") == tenant)
        .select(
            F.col(pk).alias("pk"),
            F.array_sort(F.transform("_violations", lambda r: r["rule"])).alias("codes"),
        )
    )


def expected_codes(label_df: DataFrame) -> DataFrame:
    return label_df.where(F.size("codes") > 0).select(
        "pk", F.array_sort("codes").cast(T.ArrayType(T.StringType(), True)).alias("codes")
    )


def silver(spark: SparkSession, lake: Settings, entity: str, tenant: str) -> DataFrame:
    return spark.table(names(lake).silver(entity)).where(F.col("tenant_id") == tenant)


def snapshot_ids(spark: SparkSession, lake: Settings) -> dict[str, list[int]]:
    return {
        t: [r[0] for r in spark.sql(f"SELECT snapshot_id FROM {t}.snapshots").collect()]
        for e in ENTITIES
        for t in (names(lake).silver(e), names(lake).quarantine(e))
    }


def tenant_state(spark: SparkSession, lake: Settings, tenant: str) -> dict[str, DataFrame]:
    """Every row the tenant owns in silver, quarantine and the file manifest, as a snapshot."""
    n = names(lake)
    tables = [t(e) for e in ENTITIES for t in (n.silver, n.quarantine)] + [n.ingested_files]
    return {t: spark.table(t).where(F.col("tenant_id") == tenant).localCheckpoint() for t in tables}


def test_quarantine_holds_exactly_the_labelled_rows_and_reruns_change_nothing(
    spark: SparkSession, lake: Settings
) -> None:
    gen(lake, ["qa", "qb"])
    # qb runs second: its cross-tenant parts point at qa's suppliers, which are in silver by then
    # and must still be orphans for qb.
    qa_state: dict[str, DataFrame] = {}
    for tenant in ("qa", "qb"):
        run = run_tenant(spark, lake, tenant)
        assert run.status == S.SUCCEEDED, run.message
        assert run.files and all(f"tenant_id={tenant}" in f.file for f in run.files)
        if tenant == "qa":
            qa_state = tenant_state(spark, lake, "qa")
        for entity in ENTITIES:
            lab = labels(spark, lake, tenant, entity, 1)
            assert_df_equality(
                quarantined_codes(spark, lake, entity, tenant),
                expected_codes(lab),
                ignore_row_order=True,
                ignore_nullable=True,
            )
            counts = run.entities[entity]
            exact = lab.where(F.col("anomaly") == "duplicate_exact").count()
            assert counts.duplicates_dropped == exact
            assert silver(spark, lake, entity, tenant).count() == counts.inserted
        cross = labels(spark, lake, tenant, "parts", 1).where(
            F.col("anomaly") == "cross_tenant_supplier"
        )
        assert cross.count() > 0
    # Tenant isolation: qb's run left every row of qa (silver, quarantine, manifest) as it was.
    for table, rows in tenant_state(spark, lake, "qa").items():
        assert_df_equality(rows, qa_state[table], ignore_row_order=True, ignore_nullable=True)
    # The same input again changes nothing: no new snapshot, no new rows, nothing re-counted.
    before = snapshot_ids(spark, lake)
    rows_before = {e: silver(spark, lake, e, "qa").count() for e in ENTITIES}
    for _ in range(2):
        again = run_tenant(spark, lake, "qa")
        assert again.status == S.NOTHING_NEW
        assert again.exit_code == 0
        assert again.skipped_files == 2
    assert snapshot_ids(spark, lake) == before
    assert {e: silver(spark, lake, e, "qa").count() for e in ENTITIES} == rows_before
    assert spark.table(names(lake).ingested_files).where("tenant_id = 'qa'").count() == 2
    record = spark.table(names(lake).runs).where("tenant_id = 'qb'").first()
    assert record is not None
    assert (record["read"], record["inserted"], record["quarantined"]) == (
        run.total("read"),
        run.total("inserted"),
        run.total("quarantined"),
    )
    assert all(a["passed"] for a in record["audits"])


def test_change_batches_update_keep_newer_versions_and_promote_late_parents(
    spark: SparkSession, lake: Settings
) -> None:
    # Nothing counts as small here, so this test takes the shuffle-join plans that big batches
    # take (classification, FK check, re-check, audits); the others take the broadcast plans.
    lake = lake.model_copy(
        update={"spark": lake.spark.model_copy(update={"broadcast_max_rows": 0})}
    )
    gen(lake, ["chg"])
    assert run_tenant(spark, lake, "chg").status == S.SUCCEEDED
    v1 = {
        e: silver(spark, lake, e, "chg").select(ENTITIES[e].primary_key, "source_timestamp")
        for e in ENTITIES
    }
    v1 = {e: df.localCheckpoint() for e, df in v1.items()}

    gen(lake, ["chg"], batch=2)
    second = run_tenant(spark, lake, "chg")
    assert second.status == S.SUCCEEDED, second.message
    late_versions = sum(
        labels(spark, lake, "chg", e, 2).where(F.col("anomaly") == "late_version").count()
        for e in ENTITIES
    )
    assert late_versions > 0
    assert second.total("stale") == late_versions
    assert second.total("updated") > 0
    # Order safety: no key in silver carries an older timestamp than after batch 1.
    for e in ENTITIES:
        pk = ENTITIES[e].primary_key
        now = silver(spark, lake, e, "chg").select(pk, F.col("source_timestamp").alias("ts2"))
        older = v1[e].join(now, pk).where(F.col("ts2") < F.col("source_timestamp"))
        assert older.count() == 0

    late = labels(spark, lake, "chg", "parts", 2).where(F.col("anomaly") == "late_parent")
    n_late = late.count()
    assert n_late > 0
    waiting = (
        spark.table(names(lake).quarantine(PARTS))
        .where("_status = 'OPEN'")
        .join(late.select(F.col("pk").alias("part_id")), "part_id", "left_semi")
    )
    assert waiting.count() == n_late

    gen(lake, ["chg"], batch=3)
    third = run_tenant(spark, lake, "chg")
    assert third.status == S.SUCCEEDED, third.message
    assert third.entities["parts"].promoted >= n_late
    resolved = (
        spark.table(names(lake).quarantine(PARTS))
        .join(late.select(F.col("pk").alias("part_id")), "part_id", "left_semi")
        .select("part_id", "_status", "_resolved_run_id")
    )
    assert_df_equality(
        resolved.select("part_id", "_status"),
        late.select(F.col("pk").alias("part_id"), F.lit("RESOLVED").alias("_status")),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert {r[0] for r in resolved.select("_resolved_run_id").distinct().collect()} == {
        third.run_id
    }
    promoted_in_silver = silver(spark, lake, "parts", "chg").join(
        late.select(F.col("pk").alias("part_id")), "part_id", "left_semi"
    )
    assert promoted_in_silver.count() == n_late


def test_customer_shaped_csv_lands_like_typed_parquet(
    spark: SparkSession, lake: Settings, another_lake: Settings
) -> None:
    """The same rows sent as flat CSV (all text, JSON/comma arrays, flat geo) and as typed Parquet
    end in the same silver and quarantine rows."""
    gen(lake, ["shape"], fmt="csv", shape="flat")
    typed = another_lake
    gen(typed, ["shape"])
    for settings in (lake, typed):
        run = run_tenant(spark, settings, "shape")
        assert run.status == S.SUCCEEDED, run.message
    for entity in (SUPPLIERS, PARTS):
        assert_df_equality(
            silver(spark, lake, entity.name, "shape").select(*entity.field_names),
            silver(spark, typed, entity.name, "shape").select(*entity.field_names),
            ignore_row_order=True,
        )
        assert_df_equality(
            quarantined_codes(spark, lake, entity.name, "shape"),
            quarantined_codes(spark, typed, entity.name, "shape"),
            ignore_row_order=True,
        )


def test_corrupt_file_fails_alone_and_drift_is_reported(
    spark: SparkSession, lake: Settings
) -> None:
    gen(lake, ["drift"])
    folder = Path(lake.raw_uri) / "tenant_id=drift" / "entity=suppliers" / "ingest_date=2026-02-01"
    folder.mkdir(parents=True)
    (folder / "broken.parquet").write_bytes(b"PAR1 this is not a parquet file")
    (folder / "drifted.csv").write_text(
        "supplier_id,tenant_id,country,contact_email,source_timestamp,notes\n"
        "01J0000000000000000000DRF1,drift,DE,a@b.de,2025-05-01T00:00:00Z,hello\n"
    )
    run = run_tenant(spark, lake, "drift")
    assert run.status == S.PARTIAL
    assert run.exit_code == 1
    by_name = {Path(f.file).name: f for f in run.files}
    assert by_name["broken.parquet"].status == "FAILED"
    assert "unreadable parquet" in (by_name["broken.parquet"].error or "")
    assert "legal_name" in (by_name["drifted.csv"].note or "")
    assert "notes" in (by_name["drifted.csv"].note or "")
    q = quarantined_codes(spark, lake, "suppliers", "drift").where(
        "pk = '01J0000000000000000000DRF1'"
    )
    codes = q.first()
    assert codes is not None and "legal_name.missing_column" in codes["codes"]
    manifest = spark.table(names(lake).ingested_files).where("tenant_id = 'drift'")
    assert manifest.where("status = 'FAILED'").count() == 1
    assert manifest.where("status = 'INGESTED'").count() == 3


def test_pass_rate_gate_leaves_silver_untouched_and_files_pending(
    spark: SparkSession, lake: Settings
) -> None:
    strict = lake.model_copy(
        update={"quality": lake.quality.model_copy(update={"min_pass_rate": 0.99})}
    )
    gen(lake, ["gate"])
    blocked = run_tenant(spark, strict, "gate")
    assert blocked.status == S.AUDIT_FAILED
    assert blocked.exit_code == 1
    assert "pass_rate" in blocked.message
    for entity in ENTITIES:
        assert silver(spark, lake, entity, "gate").count() == 0
        assert spark.table(names(lake).quarantine(entity)).where("tenant_id = 'gate'").count() == 0
    assert spark.table(names(lake).ingested_files).where("tenant_id = 'gate'").count() == 0
    record = spark.table(names(lake).runs).where("tenant_id = 'gate'").first()
    assert record is not None and record["status"] == S.AUDIT_FAILED
    # No file was marked ingested, so the next run (after the data or the bar is fixed) reads them.
