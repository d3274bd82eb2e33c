"""A hadoop-catalog lakehouse (cdf-pipeline 0.1) moves to the SQLite catalog, in place."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import load_settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.migrate import migrate, require_migrated, unmigrated
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.preflight import check_run
from cdf_pipeline.storage import storage_for

pytestmark = [pytest.mark.spark]
TENANT = "old"


def test_a_hadoop_lakehouse_is_refused_then_migrated_in_place_and_keeps_working(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    generate([TENANT], 200, 200, seed=9, root_uri=str(root))
    # The lakehouse as 0.1 made it: the hadoop catalog in the warehouse folder.
    name = f"h{uuid.uuid4().hex[:10]}"
    spark.conf.set(f"spark.sql.catalog.{name}", "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set(f"spark.sql.catalog.{name}.type", "hadoop")
    spark.conf.set(f"spark.sql.catalog.{name}.warehouse", str(root / "warehouse"))
    old = load_settings(
        "local", overrides={"root": str(root), "catalog": {"type": "hadoop", "name": name}}
    )
    first = run_tenant(spark, old, TENANT)
    assert first.status == S.SUCCEEDED

    lake = make_lake(spark, root)  # the same root with today's default catalog
    left = unmigrated(lake)
    assert {t.identifier for t in left} >= {"silver.suppliers", "ops.runs"}
    with pytest.raises(ConfigError, match=r"made with the hadoop catalog.*cdf migrate-catalog"):
        check_run(lake, storage_for(lake))  # what cdf run says before anything starts

    done = migrate(spark, lake)
    assert {t.identifier for t in done} == {t.identifier for t in left}
    assert unmigrated(lake) == [] and migrate(spark, lake) == []  # a second time: nothing
    require_migrated(lake)
    runs = ("run_id", "status", "inserted", "quarantined")  # ops.runs' maps do not sort
    for table, columns in (
        ("silver.suppliers", ("*",)),
        ("silver.parts", ("*",)),
        ("quarantine.parts", ("*",)),
        ("ops.runs", runs),
    ):
        assert_df_equality(
            spark.table(f"{lake.catalog.name}.{table}").select(*columns),
            spark.table(f"{name}.{table}").select(*columns),
            ignore_row_order=True,
        )
    # The migrated lakehouse goes on: a change batch runs on the new catalog.
    generate([TENANT], 200, 200, seed=9, batch=2, root_uri=str(root))
    change = run_tenant(spark, lake, TENANT)
    assert change.status == S.SUCCEEDED and change.total("updated") > 0
