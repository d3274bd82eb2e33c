"""The plain PySpark job a competent engineer would write for the same raw files: the reference
the silver job's cold first load is compared with (``benchmarks/cold_first_load_bench.py``).

    PYTHONPATH=src .venv/bin/python benchmarks/reference_job.py --root LAKEHOUSE --tenant bench

Same input (the tenant's raw Parquet files under ``<root>/raw``), same jars and Spark settings
(the session is built from :func:`cdf_pipeline.spark.session_options`, as ``cdf run``'s is), the
same contract checks (the project's own Column expressions: ``normalise`` for types and the
``row_reasons`` of every row rule, with the clock as a literal) and the same table layout
(partitioned by tenant and 16 key buckets, merge-on-read, zstd), so that what differs is only
what the silver job does on top. Per entity, parents first:

1. read the tenant's files (one ``spark.read.parquet``), normalise them, check every row rule;
2. cache the checked rows (they are read twice); rows with violations go to quarantine;
3. keep the newest version of each key (a window over the valid rows);
4. for each foreign key: explode the references, left-anti join them with the parent's keys
   in silver (parents are merged first); rows with a missing parent go to quarantine;
5. one MERGE into silver (insert new keys, update with newer versions), one quarantine append.

Left out, all of which the silver job does: pre-checks and per-file accounting (a corrupt file
fails the whole job here), the ingested-files manifest (not rerun-safe: a second run re-reads and
re-merges every file and quarantines its rows again), write-audit-publish (counts, key and
reference audits before anything is visible), a re-check of rows waiting for a late parent,
duplicate versions quarantined with a reason (here the older ones are dropped silently), lineage
columns and the row hash (an update here is any newer timestamp, changed or not), the run record,
telemetry. Prints one JSON line of counts and seconds on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdf_pipeline.config import load_settings
from cdf_pipeline.contracts import ENTITIES, Entity, RuleKind
from cdf_pipeline.contracts.order import dependency_order
from cdf_pipeline.contracts.schemas import iceberg_columns_sql
from cdf_pipeline.lakehouse.sqlite_catalog import ensure_catalog_file
from cdf_pipeline.quality.normalise import RAW, normalise
from cdf_pipeline.quality.reasons import VIOLATIONS, VIOLATIONS_TYPE, append_violations, reason
from cdf_pipeline.quality.rules import row_reasons
from cdf_pipeline.spark import session_options

SILVER, QUARANTINE = "ref_silver", "ref_quarantine"
PROPERTIES = (
    "'format-version'='2', 'write.merge.mode'='merge-on-read', "
    "'write.update.mode'='merge-on-read', 'write.parquet.compression-codec'='zstd'"
)
QUARANTINE_EXTRA = (
    f"`_original` string, `{VIOLATIONS}` array<struct<rule:string,column:string,value:string>>, "
    "`_source_file` string, `_quarantined_at` timestamp"
)


def create_tables(spark: SparkSession, catalog: str, entity: Entity) -> None:
    for ns in (SILVER, QUARANTINE):
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.{ns}")
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {catalog}.{SILVER}.{entity.name} "
        f"({iceberg_columns_sql(entity, with_lineage=False)}) USING iceberg "
        f"PARTITIONED BY (tenant_id, bucket({entity.key_buckets}, {entity.primary_key})) "
        f"TBLPROPERTIES ({PROPERTIES})"
    )
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {catalog}.{QUARANTINE}.{entity.name} "
        f"({iceberg_columns_sql(entity, with_lineage=False)}, {QUARANTINE_EXTRA}) USING iceberg "
        f"PARTITIONED BY (tenant_id) TBLPROPERTIES ({PROPERTIES})"
    )


def checked_rows(
    spark: SparkSession, entity: Entity, files: list[str], tenant: str, now: datetime
) -> DataFrame:
    """Every row normalised, with its violations, and the row as sent (JSON) when rejected."""
    limit = F.lit(now) + F.expr("INTERVAL 300 SECONDS")
    rows = (
        spark.read.parquet(*files)
        .transform(normalise(entity))
        .withColumn("_source_file", F.element_at(F.split(F.input_file_name(), "/"), -1))
    )
    violations = append_violations(F.col(VIOLATIONS), row_reasons(entity, tenant, limit))
    rows = rows.withColumn(VIOLATIONS, violations)
    original = F.when(F.size(VIOLATIONS) > 0, F.to_json(F.col(RAW)))
    return rows.withColumn("_original", original).drop(RAW)


def newest_per_key(entity: Entity, valid: DataFrame) -> DataFrame:
    w = Window.partitionBy(entity.primary_key).orderBy(
        F.col("source_timestamp").desc(), F.col("_source_file").desc()
    )
    return valid.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def orphans(
    spark: SparkSession, catalog: str, entity: Entity, rows: DataFrame, tenant: str
) -> DataFrame:
    """``(key, _violations)`` of the rows referencing a parent that is not in silver."""
    pk = entity.primary_key
    found = []
    for fk in entity.foreign_keys:
        parent = ENTITIES[fk.entity]
        keys = (
            spark.table(f"{catalog}.{SILVER}.{parent.name}")
            .where(F.col("tenant_id") == tenant)
            .select(F.col(parent.primary_key).alias("_ref"))
        )
        ids = F.col(fk.column) if fk.is_array else F.array(F.col(fk.column))
        refs = rows.select(pk, F.explode(ids).alias("_ref")).where(F.col("_ref").isNotNull())
        missing = refs.join(keys, "_ref", "left_anti").select(pk).distinct()
        fk_reason = reason(entity.rule(fk.column, RuleKind.FOREIGN_KEY))
        found.append(missing.withColumn(VIOLATIONS, F.array(fk_reason).cast(VIOLATIONS_TYPE)))
    union = reduce(lambda a, b: a.unionByName(b), found)
    return union.groupBy(pk).agg(F.flatten(F.collect_list(VIOLATIONS)).alias(VIOLATIONS))


def load_entity(
    spark: SparkSession, catalog: str, entity: Entity, files: list[str], tenant: str
) -> dict[str, int]:
    now = datetime.now(timezone.utc)
    pk = entity.primary_key
    checked = checked_rows(spark, entity, files, tenant, now).cache()
    rejected = checked.where(F.size(VIOLATIONS) > 0)
    valid = newest_per_key(entity, checked.where(F.size(VIOLATIONS) == 0))
    if entity.foreign_keys:
        missing = orphans(spark, catalog, entity, valid, tenant)
        bad_refs = valid.drop(VIOLATIONS).join(missing, pk)
        rejected = rejected.unionByName(bad_refs)
        valid = valid.join(missing, pk, "left_anti")
    valid.select(*entity.field_names).createOrReplaceTempView("changes")
    spark.sql(
        f"""
        MERGE INTO {catalog}.{SILVER}.{entity.name} t USING changes s
        ON t.tenant_id = s.tenant_id AND t.{pk} = s.{pk}
        WHEN MATCHED AND s.source_timestamp > t.source_timestamp THEN UPDATE SET *
        WHEN NOT MATCHED THEN INSERT *
        """
    )
    quarantine = rejected.select(
        *entity.field_names, "_original", VIOLATIONS, "_source_file",
        F.lit(now).alias("_quarantined_at"),
    )  # fmt: skip
    quarantine.writeTo(f"{catalog}.{QUARANTINE}.{entity.name}").append()
    checked.unpersist()
    # For the benchmark's check only: counts from table metadata (Iceberg answers count(*)).
    return {
        ns: int(spark.sql(f"SELECT count(*) FROM {catalog}.{ns}.{entity.name}").collect()[0][0])
        for ns in (SILVER, QUARANTINE)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="lakehouse root holding raw/")
    parser.add_argument("--tenant", required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    settings = load_settings("local", overrides={"root": args.root})
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if settings.sqlite_catalog_path is not None:  # the embedded catalog's file, as cdf run makes it
        ensure_catalog_file(settings.sqlite_catalog_path)
    builder = SparkSession.builder
    for key, value in session_options(settings, "cdf-reference-job").items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    catalog = settings.catalog.name
    raw = Path(settings.raw_uri) / f"tenant_id={args.tenant}"
    counts = {}
    for entity in dependency_order(ENTITIES):
        files = sorted(str(p) for p in (raw / f"entity={entity.name}").rglob("*.parquet"))
        create_tables(spark, catalog, entity)
        counts[entity.name] = load_entity(spark, catalog, entity, files, args.tenant)
    spark.stop()
    print(json.dumps({"counts": counts, "seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
