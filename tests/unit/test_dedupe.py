"""deduplicate: one version per (tenant, key) survives; copies dropped, conflicts quarantined.

Every test's cases (label -> row, source file, violations before, expected outcome) live in one
batch with a key range of their own, deduplicated once by a module fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from support.builders import CASE, YESTERDAY, cases_frame, clean_supplier, in_order, reason, ulid

from cdf_pipeline.contracts import SUPPLIERS
from cdf_pipeline.quality.dedupe import DROPPED, deduplicate
from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE
from cdf_pipeline.quality.rowhash import ROW_HASH, row_hash

pytestmark = pytest.mark.spark

T0 = YESTERDAY - timedelta(hours=1)
T1 = YESTERDAY
T2 = YESTERDAY + timedelta(hours=1)
SOURCE_FILE = "_source_file"

Reason = tuple[str, str, str | None]


class Case(NamedTuple):
    row: dict[str, Any]
    violations: list[Reason]  # after dedupe (before, for rows that arrive invalid)
    dropped: bool = False
    source_file: str | None = None
    invalid: bool = False  # arrives with ``violations`` already set


def sup(key: int, ts: Any = T1, **changes: Any) -> dict[str, Any]:
    return clean_supplier(supplier_id=ulid(key), source_timestamp=ts, **changes)


def batch(spark: SparkSession, cases: dict[str, Case]) -> DataFrame:
    """A validated batch: contract columns, _source_file, _violations and _row_hash."""
    files = {label: c.source_file for label, c in cases.items()}
    before = {label: c.violations for label, c in cases.items() if c.invalid}
    df = cases_frame(
        spark,
        SUPPLIERS,
        {label: c.row for label, c in cases.items()},
        extra={SOURCE_FILE: (T.StringType(), files)},
        violations=before,
    )
    return df.withColumn(ROW_HASH, row_hash(SUPPLIERS))


def outcome(df: DataFrame) -> DataFrame:
    return in_order(df.transform(deduplicate(SUPPLIERS)).select(CASE, VIOLATIONS, DROPPED))


def expected(spark: SparkSession, cases: dict[str, Case]) -> DataFrame:
    schema = T.StructType(
        [
            T.StructField(CASE, T.StringType(), True),
            T.StructField(VIOLATIONS, VIOLATIONS_TYPE, True),
            T.StructField(DROPPED, T.BooleanType(), True),
        ]
    )
    rows = [(label, c.violations, c.dropped) for label, c in cases.items()]
    return in_order(spark.createDataFrame(rows, schema))


@pytest.fixture(scope="module")
def deduped(spark: SparkSession) -> Iterator[DataFrame]:
    out = outcome(batch(spark, ALL_CASES)).cache()
    yield out
    out.unpersist()


def check(spark: SparkSession, deduped: DataFrame, cases: dict[str, Case]) -> None:
    actual = deduped.where(F.col(CASE).isin(list(cases)))
    assert_df_equality(actual, expected(spark, cases), ignore_nullable=True)


COPY = sup(10)
EXACT_COPIES = {
    # The first source file wins among otherwise identical copies.
    "copy a": Case(COPY, [], dropped=True, source_file="f3.csv"),
    "copy b": Case(COPY, [], dropped=False, source_file="f1.csv"),
    "copy c": Case(COPY, [], dropped=True, source_file="f2.csv"),
    # Timestamps are not content: re-sending a row later is not a change.
    "resent earlier": Case(sup(11, T1), [], dropped=True),
    "resent later": Case(sup(11, T2), [], dropped=False),
}


def test_exact_copies_keep_one_and_drop_the_rest(spark: SparkSession, deduped: DataFrame) -> None:
    check(spark, deduped, EXACT_COPIES)


CONFLICTS = {
    "oldest": Case(
        sup(20, T0, legal_name="Acme Old"),
        [reason("supplier_id.duplicate", "2026-11-01 11:00:00")],
    ),
    "newest": Case(sup(20, T2, legal_name="Acme New"), []),
    "middle": Case(
        sup(20, T1, legal_name="Acme Mid"),
        [reason("supplier_id.duplicate", "2026-11-01 12:00:00")],
    ),
    "other key": Case(sup(21, T0), []),
}


def test_newest_conflicting_version_wins_older_ones_are_duplicates(
    spark: SparkSession, deduped: DataFrame
) -> None:
    check(spark, deduped, CONFLICTS)


# Pinned: the highest content hash wins a timestamp tie (version 2 with today's builders).
TIE_DUP = [reason("supplier_id.duplicate", "2026-11-01 12:00:00")]
TIES = {
    "version 0": Case(sup(30, legal_name="Acme 0"), TIE_DUP),
    "version 1": Case(sup(30, legal_name="Acme 1"), TIE_DUP),
    "version 2": Case(sup(30, legal_name="Acme 2"), []),
    "version 3": Case(sup(30, legal_name="Acme 3"), TIE_DUP),
    "tied copy 0": Case(sup(31), [], dropped=False, source_file="f0.csv"),
    "tied copy 1": Case(sup(31), [], dropped=True, source_file="f1.csv"),
    "tied copy 2": Case(sup(31), [], dropped=True, source_file="f2.csv"),
}


def test_ties_are_broken_the_same_way_whatever_the_order_or_partitioning(
    spark: SparkSession, deduped: DataFrame
) -> None:
    check(spark, deduped, TIES)
    backward = batch(spark, dict(reversed(ALL_CASES.items())))
    for layout in (backward.repartition(4, CASE), batch(spark, ALL_CASES).repartition(3)):
        assert_df_equality(outcome(layout), deduped, ignore_nullable=True)


BROKEN = [reason("country.enum", "XX")]
INVALID = {
    "valid, older": Case(sup(40, T1), []),
    "invalid, newer": Case(sup(40, T2, country="XX"), BROKEN, invalid=True),
    "invalid copy of valid": Case(sup(40, T1), BROKEN, invalid=True),
}


def test_invalid_rows_are_left_untouched(spark: SparkSession, deduped: DataFrame) -> None:
    check(spark, deduped, INVALID)


PER_TENANT = {
    "acme": Case(sup(50, T1, tenant_id="acme"), []),
    "globex": Case(sup(50, T2, tenant_id="globex"), []),
}


def test_keys_are_per_tenant(spark: SparkSession, deduped: DataFrame) -> None:
    check(spark, deduped, PER_TENANT)


ALL_CASES = {**EXACT_COPIES, **CONFLICTS, **TIES, **INVALID, **PER_TENANT}
