"""Runs of one session with different clocks: every row a run writes carries that run's clock.

The clock reaches the plans as data (quality/clock.py), not as a literal, so nothing but the
data tells one run's plans from the next: a plan kept or reused from an earlier run would show
here as a row stamped with the wrong run's time.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "clk"
ROWS = 500
#: The generator's timestamps are in 2026; each run's clock is a day after the last.
CLOCKS = [datetime(2027, 1, d, 8, 30, 15, 123456, tzinfo=timezone.utc) for d in (1, 2, 3)]
STAMPS = T.StructType(
    [T.StructField("run", T.StringType()), T.StructField("at", T.TimestampType())]
)


def _stamps(spark: SparkSession, table: str, run_col: str, at_col: str) -> DataFrame:
    return (
        spark.table(table)
        .where((F.col("tenant_id") == TENANT) & F.col(at_col).isNotNull())
        .select(F.col(run_col).alias("run"), F.col(at_col).alias("at"))
        .distinct()
    )


def _expected(spark: SparkSession, pairs: set[tuple[str, datetime]]) -> DataFrame:
    return spark.createDataFrame(sorted(pairs), STAMPS)


def test_each_run_stamps_its_rows_with_its_own_clock(spark: SparkSession, lake: Settings) -> None:
    names = TableNames.of(lake)
    runs = []
    for batch, now in enumerate(CLOCKS, start=1):
        generate([TENANT], ROWS, ROWS, seed=11, batch=batch, root_uri=lake.root)
        run = run_tenant(spark, lake, TENANT, now=now)
        assert run.status == S.SUCCEEDED, run.message
        runs.append(run)
    by_run = {r.run_id: now for r, now in zip(runs, CLOCKS, strict=True)}
    assert runs[1].entities["parts"].quarantined > 0  # late parents wait in quarantine ...
    assert runs[2].entities["parts"].promoted > 0  # ... and are promoted by the third run

    for e in ENTITIES:
        # Silver: each row carries the clock of the run that last wrote it (inserted or updated).
        silver = _stamps(spark, names.silver(e), "_run_id", "_ingested_at")
        writers = {r[0] for r in silver.select("run").distinct().collect()}
        assert runs[0].run_id in writers
        expected = {(run, by_run[run]) for run in writers}
        assert_df_equality(silver, _expected(spark, expected), ignore_row_order=True,
                           ignore_nullable=True)  # fmt: skip
        # Quarantine: each row carries the clock of the run that quarantined it.
        quarantined = _stamps(spark, names.quarantine(e), "_run_id", "_quarantined_at")
        expected = {(r.run_id, by_run[r.run_id]) for r in runs if r.entities[e].quarantined}
        assert_df_equality(quarantined, _expected(spark, expected), ignore_row_order=True,
                           ignore_nullable=True)  # fmt: skip

    # Promoted rows are resolved at the third run's clock, by the third run.
    resolved = _stamps(spark, names.quarantine("parts"), "_resolved_run_id", "_resolved_at")
    assert_df_equality(
        resolved,
        _expected(spark, {(runs[2].run_id, CLOCKS[2])}),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    # The manifest and the run record are the driver's rows: the same clocks, for the record.
    started = {
        r["run_id"]: r["started_at"].replace(tzinfo=timezone.utc)
        for r in spark.table(names.runs).where(F.col("tenant_id") == TENANT).collect()
    }
    assert started == by_run
