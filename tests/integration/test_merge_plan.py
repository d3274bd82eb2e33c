"""A change batch's updates are broadcast into the silver MERGE, and the session is left as found.

Spark drops a broadcast hint on a MERGE's source (the rewritten join carries a hint of its own),
so the MERGE obeys only the session's size threshold: ``merge.broadcast_up_to`` raises it while
the MERGE is planned. Without it, a 1% change into 10M rows shuffles and sorts all of silver.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import SUPPLIERS
from cdf_pipeline.lakehouse import merge
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.quality.rowhash import ROW_HASH

pytestmark = pytest.mark.spark

TENANT = "mplan"
KEY = merge.BROADCAST_THRESHOLD
LIMIT = 128 * 1024 * 1024


@pytest.fixture
def threshold(spark: SparkSession) -> Iterator[Any]:
    """Sets the session's threshold for one test and puts the one it found back."""
    found = str(spark.conf.get(KEY))

    def _set(value: str) -> None:
        spark.conf.set(KEY, value)

    yield _set
    spark.conf.set(KEY, found)


def silver_with_rows(spark: SparkSession, lake: Settings, n: int) -> DataFrame:
    """A fresh silver table holding ``n`` rows of the tenant, keys ``S0`` … ``S<n-1>``."""
    names = TableNames.of(lake)
    ensure_tables(spark, names)
    table = spark.table(names.silver(SUPPLIERS))
    values = {
        "supplier_id": F.concat(F.lit("S"), F.col("id").cast("string")),
        "tenant_id": F.lit(TENANT),
        "source_timestamp": F.lit(datetime(2026, 1, 1, tzinfo=timezone.utc)),
        "legal_name": F.lit("first"),
        ROW_HASH: F.col("id").cast("string"),
    }
    cols = [values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in table.schema]
    spark.range(n).select(*cols).writeTo(names.silver(SUPPLIERS)).append()
    return spark.table(names.silver(SUPPLIERS))


def newer(silver: DataFrame, keys: list[str]) -> DataFrame:
    """Newer, different versions of silver's rows for ``keys``, as a change batch brings them.

    Spark estimates them as big as the whole table (a filter keeps its input's estimate), as it
    estimates a change batch's updates far above their size."""
    changed = {
        "source_timestamp": F.col("source_timestamp") + F.expr("INTERVAL 1 DAY"),
        "legal_name": F.lit("changed"),
        ROW_HASH: F.lit("changed"),
    }
    return silver.where(F.col("supplier_id").isin(keys)).select(
        *[changed.get(c, F.col(c)).alias(c) for c in silver.columns]
    )


def join_of_merge(spark: SparkSession, lake: Settings, changes: DataFrame) -> str:
    """The join the MERGE of ``changes`` into silver is planned with."""
    changes.createOrReplaceTempView("mplan_changes")
    statement = merge.merge_statement(TableNames.of(lake), SUPPLIERS, TENANT, "mplan_changes")
    plan = str(spark.sql(f"EXPLAIN {statement}").collect()[0][0])
    joins = {j for j in ("BroadcastHashJoin", "SortMergeJoin", "ShuffledHashJoin") if j in plan}
    assert len(joins) == 1, plan
    return joins.pop()


def test_merge_of_few_updates_is_planned_as_a_broadcast_join_within_the_limit(
    spark: SparkSession, lake: Settings, threshold: Any
) -> None:
    changes = newer(silver_with_rows(spark, lake, 2000), ["S1", "S2"])
    threshold("1k")  # below the changes' size, as 10 MB is below a 1% change into 10M rows
    assert join_of_merge(spark, lake, changes) == "SortMergeJoin"
    with merge.broadcast_up_to(spark, 64 * 1024):
        # Spark estimates the two rows as big as the 2,000 they were found in (over 64 KB)...
        assert join_of_merge(spark, lake, changes) == "SortMergeJoin"
    sized = merge.measured(changes)  # ...measured (cached), they are a few hundred bytes
    try:
        with merge.broadcast_up_to(spark, 64 * 1024):
            assert join_of_merge(spark, lake, sized) == "BroadcastHashJoin"
        assert spark.conf.get(KEY) == "1k"
    finally:
        sized.unpersist()


def test_merge_of_updates_changes_silver_and_leaves_the_threshold(
    spark: SparkSession, lake: Settings, threshold: Any
) -> None:
    names = TableNames.of(lake)
    silver = silver_with_rows(spark, lake, 20)
    threshold("1k")
    merge.merge_updates(names, SUPPLIERS, TENANT, newer(silver, ["S1", "S2"]), "mplan_m", LIMIT)
    names_now = {r.supplier_id: r.legal_name for r in silver.collect()}
    assert names_now == {f"S{i}": "changed" if i in (1, 2) else "first" for i in range(20)}
    assert spark.conf.get(KEY) == "1k"


def test_threshold_is_raised_until_the_last_merge_of_the_session_leaves(
    spark: SparkSession, threshold: Any
) -> None:
    threshold("1k")
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def first() -> None:
        with merge.broadcast_up_to(spark, LIMIT):
            first_in.set()
            second_in.wait(30)
        first_out.set()

    def second() -> None:
        first_in.wait(30)
        with merge.broadcast_up_to(spark, LIMIT):
            second_in.set()
            first_out.wait(30)
            seen["after the first left"] = str(spark.conf.get(KEY))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {"after the first left": str(LIMIT)}
    assert spark.conf.get(KEY) == "1k"


@pytest.mark.parametrize("set_by_user", ["-1", "1g"], ids=["broadcasts off", "set higher"])
def test_threshold_a_user_set_off_or_higher_is_left_as_it_is(
    spark: SparkSession, threshold: Any, set_by_user: str
) -> None:
    threshold(set_by_user)
    with merge.broadcast_up_to(spark, LIMIT):
        assert spark.conf.get(KEY) == set_by_user
    assert spark.conf.get(KEY) == set_by_user
