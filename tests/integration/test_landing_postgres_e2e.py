"""A PostgreSQL landing database end to end: ``generate --to postgresql://`` → ``cdf land`` (cursor
pulls into raw, cursors in the manifest) → the silver job; then changes, reruns and a crash.

Expected values come from the generator's labels, from the rows the test changed through another
client (psycopg2), and from the run records' own accounting; never from the pull's code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import psycopg2
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.postgres import PostgresServer
from test_silver_job import expected_codes, labels, quarantined_codes

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.lakehouse.landed import LANDED, LandedObject
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.landing.land import LandSummary, land_tenant
from cdf_pipeline.landing.spark_manifest import SparkManifest
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.postgres]

TENANT = "pgco"
ROWS = 800
AS_OF = dt.date.today() - dt.timedelta(days=30)  # every clean timestamp is in the past


@pytest.fixture
def settings(
    postgres: PostgresServer, lake: Settings, monkeypatch: pytest.MonkeyPatch, request: Any
) -> Settings:
    """``lake`` with the tenant's landing zone in PostgreSQL (password from PGPASSWORD); the
    cursor column from the test's ``cursor`` mark (default: the configuration's, xmin)."""
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    schema = f"e2e_{lake.catalog.name}_{{tenant}}"
    mark = request.node.get_closest_marker("cursor")
    cursor = {"cursor_column": mark.args[0]} if mark else {}
    return load_settings(
        "local",
        overrides={
            "root": lake.root,
            "catalog": {"name": lake.catalog.name},
            "landing": {"uri": postgres.dsn(), "postgres_schema": schema, **cursor},
        },
    )


def schema_of(settings: Settings) -> str:
    return settings.landing.postgres_schema.replace("{tenant}", TENANT)


def load(settings: Settings, batch: int) -> None:
    generate(
        [TENANT], ROWS, ROWS, seed=5, batch=batch, as_of=AS_OF, root_uri=settings.root,
        pg_uri=settings.landing.uri, pg_schema=settings.landing.postgres_schema,
    )  # fmt: skip


def sql(postgres: PostgresServer, *statements: str) -> list[Any]:
    """Run statements through a second client (psycopg2); the last one's rows, if any."""
    with psycopg2.connect(postgres.dsn(with_password=True)) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
        return cur.fetchall() if cur.description else []


class CrashAfterRaw(SparkManifest):
    """A manifest whose write fails: the step dies after the raw files, before any cursor."""

    def record(self, objects: Iterable[LandedObject]) -> None:
        raise RuntimeError("killed before the manifest commit")


def land(spark: SparkSession, settings: Settings, manifest: type = SparkManifest) -> LandSummary:
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    return land_tenant(manifest(spark, names), settings, TENANT)


def silver_rows(spark: SparkSession, settings: Settings, entity: str) -> Any:
    table = TableNames.of(settings).silver(entity)
    return spark.table(table).where(F.col("tenant_id") == TENANT)


def balanced(counts: S.EntityCounts) -> bool:
    outcomes = (
        counts.inserted + counts.updated + counts.unchanged + counts.stale + counts.quarantined
    )
    return counts.read == outcomes + counts.duplicates_dropped


def test_postgres_landing_to_silver_incremental_and_idempotent(
    spark: SparkSession, settings: Settings, postgres: PostgresServer
) -> None:
    load(settings, 1)

    first = land(spark, settings)
    run = run_tenant(spark, settings, TENANT)

    assert first.counts[LANDED] == len(ENTITIES) and first.exit_code == 0, first.format()
    assert all(o.cursor and o.rows == pq.read_metadata(o.raw_file).num_rows for o in first.objects)
    assert run.status == S.SUCCEEDED
    for entity in ENTITIES:
        counts = run.entities[entity]
        assert counts.read == next(o.rows for o in first.objects if o.entity == entity)
        assert balanced(counts)
        # Every labelled anomaly reached silver's quarantine, and nothing else did.
        assert_df_equality(
            quarantined_codes(spark, settings, entity, TENANT),
            expected_codes(labels(spark, settings, TENANT, entity, 1)),
            ignore_row_order=True,
            ignore_nullable=True,
        )

    # Nothing new: the land step records nothing and the run writes nothing.
    again = land(spark, settings)
    assert again.objects == [] and again.already_seen == len(ENTITIES)
    assert run_tenant(spark, settings, TENANT).status == S.NOTHING_NEW

    # A change batch (updates in place, new keys) lands as one more pull per entity.
    load(settings, 2)
    second = land(spark, settings)
    run2 = run_tenant(spark, settings, TENANT)
    assert second.counts[LANDED] == len(ENTITIES) and run2.status == S.SUCCEEDED
    sup = run2.entities["suppliers"]
    assert sup.read == next(o.rows for o in second.objects if o.entity == "suppliers")
    assert sup.updated > 0 and sup.inserted > 0 and balanced(sup)
    changed = pq.read_table(next(o.raw_file for o in second.objects if o.entity == "suppliers"))
    latest = changed.group_by("supplier_id").aggregate([("source_timestamp", "max")])
    quarantined = spark.table(TableNames.of(settings).quarantine("suppliers")).select("supplier_id")
    pulled = spark.createDataFrame(latest.to_pylist()).join(quarantined, "supplier_id", "left_anti")
    merged = silver_rows(spark, settings, "suppliers").join(pulled, "supplier_id")
    assert merged.count() == pulled.count() > 0
    # Silver holds each pulled key (not quarantined) at its newest pulled version.
    assert merged.where(F.col("source_timestamp") != F.col("source_timestamp_max")).count() == 0

    assert land(spark, settings).objects == []
    assert run_tenant(spark, settings, TENANT).status == S.NOTHING_NEW


@pytest.mark.cursor("source_timestamp")  # the other cursor kind, end to end
def test_a_crash_between_raw_and_manifest_loses_and_doubles_nothing(
    spark: SparkSession, settings: Settings, postgres: PostgresServer
) -> None:
    load(settings, 1)
    land(spark, settings)
    assert run_tenant(spark, settings, TENANT).status == S.SUCCEEDED
    before = silver_rows(spark, settings, "suppliers").count()
    schema = schema_of(settings)
    keys = [r[0] for r in silver_rows(spark, settings, "suppliers").orderBy("supplier_id")
            .select("supplier_id").limit(5).collect()]  # fmt: skip
    touch = (
        f"UPDATE {schema}.suppliers SET legal_name = 'Renamed ' || supplier_id, "
        "source_timestamp = now() - interval '1 minute' WHERE supplier_id IN ({})"
    )
    sql(postgres, touch.format(", ".join(f"'{k}'" for k in keys[:3])))
    with pytest.raises(RuntimeError, match="killed"):
        land(spark, settings, CrashAfterRaw)
    # More changes before the rerun: it pulls the old ones again with the new ones.
    sql(postgres, touch.format(", ".join(f"'{k}'" for k in keys[3:])))
    rerun = land(spark, settings)
    run = run_tenant(spark, settings, TENANT)

    assert run.status == S.SUCCEEDED
    held = sql(
        postgres, f"SELECT count(*) FROM {schema}.suppliers WHERE legal_name LIKE 'Renamed %'"
    )
    assert next(o.rows for o in rerun.objects if o.entity == "suppliers") == held[0][0] >= 5
    rows = silver_rows(spark, settings, "suppliers")
    assert rows.count() == before  # no key lost or doubled
    assert rows.select("supplier_id").distinct().count() == before
    assert rows.where(F.col("legal_name").startswith("Renamed ")).count() == 5
    assert balanced(run.entities["suppliers"])
