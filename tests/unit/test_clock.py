"""The run's clock enters the plans as data (quality/clock.py): each run's own clock decides the
future-timestamp rule, and a new clock compiles no new code. The rules' expressions are built
once and shared by every run and tenant (quality/column_memo.py): each run still checks its own
tenant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from support.builders import NOW, TENANT, assert_violations, cases_frame, clean_supplier, reason

from cdf_pipeline.contracts import SUPPLIERS
from cdf_pipeline.quality.clock import CLOCK, with_clock
from cdf_pipeline.quality.rules import validate

pytestmark = pytest.mark.spark

#: Two runs an hour apart; the row's timestamp is in the future for the first only.
LATER = NOW + timedelta(hours=1)
AHEAD = NOW + timedelta(minutes=30)


def _frame(spark: SparkSession) -> DataFrame:
    return cases_frame(
        spark, SUPPLIERS, {"ahead": clean_supplier(source_timestamp=AHEAD), "ok": clean_supplier()}
    )


def _compiled(spark: SparkSession) -> int:
    """Classes Spark's code generator has compiled in this JVM so far (its cache misses)."""
    metrics = getattr(spark._jvm.org.apache.spark.metrics.source, "CodegenMetrics$")  # type: ignore[union-attr]
    return int(getattr(metrics, "MODULE$").METRIC_COMPILATION_TIME().getCount())


def test_each_run_is_validated_against_its_own_clock(spark: SparkSession) -> None:
    df = _frame(spark)
    first = df.transform(validate(SUPPLIERS, TENANT, now=NOW))
    second = df.transform(validate(SUPPLIERS, TENANT, now=LATER))
    assert_violations(
        first, {"ahead": [reason("source_timestamp.future", "2026-11-02 12:30:00")], "ok": []}
    )
    assert_violations(second, {"ahead": [], "ok": []})
    assert CLOCK not in first.columns
    assert first.columns == [*df.columns, "_violations"]


def test_a_new_clock_compiles_no_new_code(spark: SparkSession) -> None:
    df = _frame(spark)
    df.transform(validate(SUPPLIERS, TENANT, now=NOW - timedelta(days=3))).collect()
    before = _compiled(spark)
    df.transform(validate(SUPPLIERS, TENANT, now=NOW - timedelta(days=2))).collect()
    assert _compiled(spark) == before


def test_with_clock_adds_the_instant_to_every_row(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a",), ("b",)], "k string")
    schema = T.StructType(
        [T.StructField("k", T.StringType()), T.StructField(CLOCK, T.TimestampType())]
    )
    expected = spark.createDataFrame([("a", NOW), ("b", NOW)], schema)
    assert_df_equality(
        df.transform(with_clock(NOW)), expected, ignore_nullable=True, ignore_row_order=True
    )


def test_each_tenant_is_checked_against_itself_though_the_rules_are_built_once(
    spark: SparkSession,
) -> None:
    df = cases_frame(
        spark,
        SUPPLIERS,
        {
            "acme's": clean_supplier(tenant_id=TENANT),
            "globex's": clean_supplier(tenant_id="globex"),
        },
    )
    as_acme = df.transform(validate(SUPPLIERS, TENANT, now=NOW))
    as_globex = df.transform(validate(SUPPLIERS, "globex", now=NOW))
    assert_violations(
        as_acme, {"acme's": [], "globex's": [reason("tenant_id.tenant_mismatch", "globex")]}
    )
    assert_violations(
        as_globex, {"acme's": [reason("tenant_id.tenant_mismatch", TENANT)], "globex's": []}
    )


def test_a_new_tenant_compiles_no_new_code(spark: SparkSession) -> None:
    df = _frame(spark)
    df.transform(validate(SUPPLIERS, "initech", now=NOW)).collect()
    before = _compiled(spark)
    df.transform(validate(SUPPLIERS, "umbrella", now=NOW)).collect()
    assert _compiled(spark) == before
