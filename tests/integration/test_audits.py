"""The key and reference audits fail when the staged rows would break silver's invariants.

The pipeline never stages such rows (dedupe and the FK check see to that), so these tests stage
them by hand: the audits are the independent check that would stop a publish if it ever did.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdf_generator.api import generate
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import PARTS, SUPPLIERS, Entity
from cdf_pipeline.lakehouse import merge
from cdf_pipeline.lakehouse.lease import tenant_lease
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.audits import run_audits
from cdf_pipeline.pipeline.context import RunContext
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.pipeline.stage import StagedEntity
from cdf_pipeline.run_record import EntityCounts
from cdf_pipeline.storage import storage_for

pytestmark = pytest.mark.spark

TENANT = "aud"


def staged(spark: SparkSession, entity: Entity, rows: list[dict[str, Any]]) -> StagedEntity:
    """A staged entity holding only what the key and reference audits read."""
    fields = [T.StructField(entity.primary_key, T.StringType())]
    fields.append(T.StructField(merge.OUTCOME, T.StringType()))
    if entity is PARTS:
        fields.append(T.StructField("default_supplier_id", T.StringType()))
        fields.append(T.StructField("qualified_supplier_ids", T.ArrayType(T.StringType())))
    classified = spark.createDataFrame(rows, T.StructType(fields))
    counts = EntityCounts(
        read=len(rows),
        inserted=sum(r[merge.OUTCOME] == merge.INSERT for r in rows),
        updated=sum(r[merge.OUTCOME] == merge.UPDATE for r in rows),
    )
    return StagedEntity(entity, classified, None, None, counts)


def failed(spark: SparkSession, lake: Settings, stage: dict[str, StagedEntity]) -> set[str]:
    with tenant_lease(lake, TENANT, purpose="audit test") as held:
        ctx = RunContext(
            spark, lake, TableNames(lake.catalog.name), storage_for(lake), TENANT, "audit-test",
            datetime.now(timezone.utc), held,
        )  # fmt: skip
        audits = run_audits(ctx, stage)
    return {a.name for a in audits if not a.passed and not a.name.endswith("count_invariant")}


@pytest.mark.parametrize("small", [True, False], ids=["broadcast plans", "shuffle plans"])
def test_key_and_reference_audits_catch_what_they_guard(
    spark: SparkSession, lake: Settings, small: bool
) -> None:
    lake = lake.model_copy(
        update={"spark": lake.spark.model_copy(update={"broadcast_max_rows": 10**6 * small})}
    )
    generate([TENANT], 60, 60, seed=5, root_uri=lake.root)
    assert run_tenant(spark, lake, TENANT).exit_code == 0
    silver = spark.table(TableNames(lake.catalog.name).silver(SUPPLIERS))
    row = silver.first()
    assert row is not None
    known = row["supplier_id"]
    new = "01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    ins, upd = merge.INSERT, merge.UPDATE

    def sup(key: str, outcome: str) -> dict[str, Any]:
        return {"supplier_id": key, merge.OUTCOME: outcome}

    def part(key: str, default: str, qualified: list[str]) -> dict[str, Any]:
        return {
            "part_id": key,
            merge.OUTCOME: ins,
            "default_supplier_id": default,
            "qualified_supplier_ids": qualified,
        }

    fine = {
        "suppliers": staged(spark, SUPPLIERS, [sup(new, ins), sup(known, upd)]),
        "parts": staged(spark, PARTS, [part("01P0", known, [known, new])]),
    }
    assert failed(spark, lake, fine) == set()

    twice = {"suppliers": staged(spark, SUPPLIERS, [sup(new, ins), sup(new, ins)])}
    assert failed(spark, lake, twice) == {"suppliers.primary_key_unique"}

    clash = {"suppliers": staged(spark, SUPPLIERS, [sup(known, ins)])}
    assert failed(spark, lake, clash) == {"suppliers.primary_key_unique"}

    # A small change batch's classification keeps silver's rows for its keys, and the key audit
    # checks the inserts against those instead of scanning silver again.
    state = silver.where(F.col("supplier_id") == known).select("supplier_id")
    looked_up = replace(clash["suppliers"], silver_state=state)
    assert failed(spark, lake, {"suppliers": looked_up}) == {"suppliers.primary_key_unique"}
    new_only = replace(staged(spark, SUPPLIERS, [sup(new, ins)]), silver_state=state)
    assert failed(spark, lake, {"suppliers": new_only}) == set()

    orphan = {
        "suppliers": staged(spark, SUPPLIERS, [sup(new, ins)]),
        "parts": staged(spark, PARTS, [part("01P1", known, [known, "01NOWHERE"])]),
    }
    assert failed(spark, lake, orphan) == {"parts.foreign_keys_closed"}
