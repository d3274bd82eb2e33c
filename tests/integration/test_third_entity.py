"""Adding an entity is declaring a contract: a test-only third entity goes through the job.

``price_lists`` (declared here, not in the package) references two parents, parts and suppliers.
With it registered, the unchanged silver job creates its tables, validates, deduplicates and
FK-checks its rows against each parent's own keys, quarantines what fails and publishes the rest.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from support.entities import PRICE_LISTS

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES, contract_set
from cdf_pipeline.contracts.order import dependency_order
from cdf_pipeline.contracts.schemas import arrow_schema
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "acme"


def test_dependency_order_puts_every_parent_first() -> None:
    order = [e.name for e in dependency_order({**ENTITIES, PRICE_LISTS.name: PRICE_LISTS})]
    assert order == ["suppliers", "parts", "price_lists"]
    reversed_decl = {PRICE_LISTS.name: PRICE_LISTS, **ENTITIES}
    assert [e.name for e in dependency_order(reversed_decl)][-1] == "price_lists"


def test_a_third_entity_is_validated_deduplicated_fk_checked_and_published(
    spark: SparkSession, lake: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Declared as the package declares its own: validated with the others, then registered.
    for name, entity in contract_set(*ENTITIES.values(), PRICE_LISTS).items():
        monkeypatch.setitem(ENTITIES, name, entity)
    names = TableNames.of(lake)
    generate([TENANT], 200, 200, seed=7, root_uri=lake.root)
    first = run_tenant(spark, lake, TENANT)
    assert first.status == S.SUCCEEDED, first.message
    part_ids = [
        r[0] for r in spark.table(names.silver("parts")).select("part_id").limit(3).collect()
    ]
    supplier = spark.table(names.silver("suppliers")).select("supplier_id").first()[0]

    when = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    rows = [
        ("pl-1", part_ids[0], supplier, Decimal("1.50"), "EUR"),
        ("pl-2", part_ids[1], supplier, Decimal("2.00"), "USD"),
        ("pl-3", part_ids[2], supplier, Decimal("3.25"), "EUR"),
        ("pl-1", part_ids[0], supplier, Decimal("1.50"), "EUR"),  # exact copy: dropped
        ("pl-neg", part_ids[0], supplier, Decimal("-1"), "EUR"),  # unit_price.range
        ("pl-swap", supplier, part_ids[0], Decimal("9"), "EUR"),  # ids of the other parent
        ("pl-cur", part_ids[1], supplier, Decimal("4"), "GBP"),  # currency.enum
    ]
    columns = ("price_id", "part_id", "supplier_id", "unit_price", "currency")
    records = [
        {**dict(zip(columns, row, strict=True)), "tenant_id": TENANT, "source_timestamp": when}
        for row in rows
    ]
    table = pa.Table.from_pylist(records, schema=arrow_schema(PRICE_LISTS))
    folder = f"{lake.raw_uri}/tenant_id={TENANT}/entity=price_lists/ingest_date=2026-01-02"
    os.makedirs(folder, exist_ok=True)
    pq.write_table(table, f"{folder}/prices.parquet")

    run = run_tenant(spark, lake, TENANT)
    assert run.status == S.SUCCEEDED, run.message
    counts = run.entities["price_lists"].as_map()
    assert counts == {"read": 7, "inserted": 3, "updated": 0, "unchanged": 0, "stale": 0,
                      "quarantined": 3, "duplicates_dropped": 1, "promoted": 0}  # fmt: skip

    silver = spark.table(names.silver(PRICE_LISTS)).select("price_id", "part_id", "unit_price")
    expected = spark.createDataFrame(
        [(p, part, price) for p, part, _, price, _ in rows[:3]],
        "price_id string, part_id string, unit_price decimal(18,6)",
    )
    assert_df_equality(silver, expected, ignore_row_order=True, ignore_nullable=True)

    quarantined = spark.table(names.quarantine(PRICE_LISTS)).select(
        "price_id", F.array_sort(F.transform("_violations", lambda v: v["rule"])).alias("codes")
    )
    expected_codes = spark.createDataFrame(
        [
            ("pl-neg", ["unit_price.range"]),
            ("pl-swap", ["part_id.fk", "supplier_id.fk"]),
            ("pl-cur", ["currency.enum"]),
        ],
        "price_id string, codes array<string>",
    )
    assert_df_equality(quarantined, expected_codes, ignore_row_order=True, ignore_nullable=True)
    audits = {a.name: a.passed for a in run.audits}
    assert audits["price_lists.foreign_keys_closed"] and audits["price_lists.count_invariant"]
