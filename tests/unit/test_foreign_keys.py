"""check_foreign_keys: every supplier a part names must exist in the same tenant.

Every test's parts (each with part ids of its own) go through one check run, made once by a
module fixture against the tenant-scoped keys of a two-tenant supplier batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from support.builders import (
    SUPPLIER_ID,
    TENANT,
    assert_violations,
    cases_frame,
    clean_part,
    clean_supplier,
    reason,
    ulid,
)

from cdf_pipeline.contracts import PARTS, SUPPLIERS
from cdf_pipeline.quality.dedupe import DROPPED
from cdf_pipeline.quality.foreign_keys import (
    PARENT_ENTITY,
    PARENT_KEY,
    check_foreign_keys,
    referenced_parents,
    tagged_keys,
)

pytestmark = pytest.mark.spark

S1, S2 = SUPPLIER_ID, ulid(2)  # acme's suppliers
S3, S8 = ulid(3), ulid(8)  # nobody's
GLOBEX_SUPPLIER = ulid(50)

Reason = tuple[str, str, str | None]
#: label -> (part, violations before, violations after)
Cases = dict[str, tuple[dict[str, Any], list[Reason], list[Reason]]]
EARLIER = [reason("moq.range", "0")]


def acme_parent_keys(spark: SparkSession) -> DataFrame:
    """The supplier keys of the tenant being run, cut from a batch holding two tenants."""
    suppliers = cases_frame(
        spark,
        SUPPLIERS,
        {
            "acme 1": clean_supplier(supplier_id=S1),
            "acme 2": clean_supplier(supplier_id=S2),
            "globex": clean_supplier(supplier_id=GLOBEX_SUPPLIER, tenant_id="globex"),
        },
    )
    acme = suppliers.where(F.col("tenant_id") == TENANT)
    return tagged_keys(acme.select(F.col("supplier_id").alias(PARENT_KEY)), SUPPLIERS.name)


@pytest.fixture(scope="module")
def checked(spark: SparkSession) -> Iterator[DataFrame]:
    parts = {label: part for label, (part, _, _) in ALL_CASES.items()}
    before = {label: v for label, (_, v, _) in ALL_CASES.items()}
    df = cases_frame(spark, PARTS, parts, violations=before)
    out = df.transform(check_foreign_keys(PARTS, acme_parent_keys(spark))).cache()
    yield out
    out.unpersist()


def check(checked: DataFrame, cases: Cases) -> None:
    actual = checked.where(F.col("case").isin(list(cases)))
    assert_violations(actual, {label: after for label, (_, _, after) in cases.items()})


def part(n: int, default: str, qualified: list[str | None]) -> dict[str, Any]:
    return clean_part(
        part_id=ulid(1000 + n), default_supplier_id=default, qualified_supplier_ids=qualified
    )


REFERENCES: Cases = {
    "all known": (part(1, S1, [S1, S2]), [], []),
    "null element ignored": (part(2, S1, [S1, None]), [], []),
    "default unknown": (
        part(3, S8, [S1, S8]),
        [],
        [reason("default_supplier_id.fk", S8), reason("qualified_supplier_ids.fk", S8)],
    ),
    "default only unknown": (part(4, S3, [S1]), [], [reason("default_supplier_id.fk", S3)]),
    # Each missing id once, sorted, comma-separated.
    "several unknown": (
        part(5, S1, [S8, S1, S3, S8]),
        [],
        [reason("qualified_supplier_ids.fk", f"{S3},{S8}")],
    ),
}


def test_scalar_and_array_references_name_each_missing_id(checked: DataFrame) -> None:
    check(checked, REFERENCES)


OTHER_TENANT: Cases = {
    "globex default": (
        part(11, GLOBEX_SUPPLIER, [GLOBEX_SUPPLIER]),
        [],
        [
            reason("default_supplier_id.fk", GLOBEX_SUPPLIER),
            reason("qualified_supplier_ids.fk", GLOBEX_SUPPLIER),
        ],
    ),
    "globex among acme": (
        part(12, S1, [S1, GLOBEX_SUPPLIER]),
        [],
        [reason("qualified_supplier_ids.fk", GLOBEX_SUPPLIER)],
    ),
}


def test_another_tenants_supplier_is_an_orphan(checked: DataFrame) -> None:
    check(checked, OTHER_TENANT)


ALREADY_INVALID: Cases = {
    "invalid orphan": (part(21, S8, [S8]), EARLIER, EARLIER),
    "valid orphan": (part(22, S8, [S1]), [], [reason("default_supplier_id.fk", S8)]),
}


def test_rows_already_invalid_are_not_checked(checked: DataFrame) -> None:
    check(checked, ALREADY_INVALID)


SHARED_KEYS: Cases = {
    # Key 31: the valid version is an orphan, the invalid one is not.
    "valid orphan, key 31": (part(31, S8, [S1]), [], [reason("default_supplier_id.fk", S8)]),
    "invalid sibling, key 31": (part(31, S1, [S1]), EARLIER, EARLIER),
    # Key 32: the invalid version is an orphan, the valid one is not.
    "valid, key 32": (part(32, S1, [S1]), [], []),
    "invalid orphan sibling, key 32": (part(32, S8, [S3]), EARLIER, EARLIER),
}


def test_invalid_rows_sharing_a_key_do_not_take_the_valid_rows_result(checked: DataFrame) -> None:
    check(checked, SHARED_KEYS)


ALL_CASES: Cases = {**REFERENCES, **OTHER_TENANT, **ALREADY_INVALID, **SHARED_KEYS}


def test_an_exact_copy_being_dropped_is_not_checked(spark: SparkSession) -> None:
    """The copy is counted once as dropped; flagging it too would count the row twice."""
    orphan = part(41, S8, [S1])
    df = cases_frame(
        spark, PARTS, {"kept": orphan, "copy": orphan}, violations={"kept": [], "copy": []}
    ).withColumn(DROPPED, F.col("case") == "copy")
    out = df.transform(check_foreign_keys(PARTS, acme_parent_keys(spark)))
    assert_violations(out, {"kept": [reason("default_supplier_id.fk", S8)], "copy": []})


def _all_cases(spark: SparkSession) -> DataFrame:
    parts = {label: part for label, (part, _, _) in ALL_CASES.items()}
    before = {label: v for label, (_, v, _) in ALL_CASES.items()}
    return cases_frame(spark, PARTS, parts, violations=before)


def test_the_small_batch_plan_finds_the_same_orphans(
    spark: SparkSession, checked: DataFrame
) -> None:
    """Cutting the parents down to the referenced ids first (small batches) changes nothing."""
    df = _all_cases(spark)
    few = df.transform(check_foreign_keys(PARTS, acme_parent_keys(spark), few_children=True))
    assert_df_equality(few, checked, ignore_row_order=True)


def test_broadcast_parents_find_the_same_orphans(spark: SparkSession, checked: DataFrame) -> None:
    """Broadcasting the parent keys (the first-load plan) changes nothing."""
    check = check_foreign_keys(PARTS, acme_parent_keys(spark), broadcast_parents=True)
    assert_df_equality(_all_cases(spark).transform(check), checked, ignore_row_order=True)


def test_the_referenced_parents_stand_in_for_all_parents(
    spark: SparkSession, checked: DataFrame
) -> None:
    """The parents cut down to what the checked rows reference give the same verdicts, and hold
    only referenced keys of the tenant (the change-batch plan, shared with the FK audit)."""
    df = _all_cases(spark)
    extra = tagged_keys(  # a supplier nobody references
        spark.createDataFrame([(ulid(60),)], [PARENT_KEY]), SUPPLIERS.name
    )
    parents = acme_parent_keys(spark).unionByName(extra)
    cut = referenced_parents(PARTS, parents, [df])
    assert sorted(r[PARENT_KEY] for r in cut.collect()) == sorted([S1, S2])
    out = df.transform(check_foreign_keys(PARTS, cut, broadcast_parents=True))
    assert_df_equality(out, checked, ignore_row_order=True)


def test_each_foreign_key_is_checked_against_its_own_parent(spark: SparkSession) -> None:
    """An entity with keys into two parents: an id that exists, but in the other parent, is an
    orphan of the key that names it."""
    from support.entities import PRICE_LISTS

    from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE

    keys = spark.createDataFrame(
        [("parts", "P1"), ("suppliers", "S1")], [PARENT_ENTITY, PARENT_KEY]
    )
    rows = spark.createDataFrame(
        [("ok", "P1", "S1"), ("wrong-parent", "S1", "P1"), ("none", "P9", "S9")],
        ["price_id", "part_id", "supplier_id"],
    ).withColumn(VIOLATIONS, F.array().cast(VIOLATIONS_TYPE))
    out = rows.transform(check_foreign_keys(PRICE_LISTS, keys)).select(
        "price_id",
        F.array_sort(
            F.transform(VIOLATIONS, lambda v: F.concat_ws("=", v["rule"], v["value"]))
        ).alias("violations"),
    )
    expected = spark.createDataFrame(
        [
            ("ok", []),
            ("wrong-parent", ["part_id.fk=S1", "supplier_id.fk=P1"]),
            ("none", ["part_id.fk=P9", "supplier_id.fk=S9"]),
        ],
        "price_id string, violations array<string>",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
