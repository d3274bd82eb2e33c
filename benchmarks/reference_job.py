"""The plain PySpark job a competent engineer writes for the same raw files without this library:
the reference the silver job's cold first load is compared with (``cold_first_load_bench.py``).

    PYTHONPATH=src .venv/bin/python benchmarks/reference_job.py --root LAKEHOUSE --tenant bench

Written by hand from the contracts as ``docs/contracts.md`` states them: every rule is this file's
own Column expression, nothing comes from the project's normalisation or rule compiler. Shared
with the silver job are only the ISO code lists (data) and how the Spark session is built
(:func:`cdf_pipeline.spark.session_options`: the same jars, settings and embedded catalog), so
that what differs is the job. Per entity, parents first:

1. read the tenant's files (one ``spark.read.parquet``); trim text (blank is null), upper-case
   codes, trim list elements; each rule is a ``when(breach, code)``;
2. cache the checked rows (they are read twice); rows breaking a rule go to quarantine, with the
   row as sent (JSON) and the codes of the rules it breaks;
3. keep the newest version of each key (a window over the valid rows);
4. for each foreign key: explode the references, left-anti join them with the parent's keys in
   silver (parents are merged first); rows with a missing parent go to quarantine;
5. one MERGE into silver (insert new keys, update with newer versions), one quarantine append.

Tables are laid out as the silver job's (by tenant and 16 key buckets, merge-on-read, zstd), with
Parquet's other defaults, which a job written without the library keeps (silver caps dictionaries).
Left out, all of which the silver job does: pre-checks and per-file accounting (a corrupt file
fails the whole job here), other file shapes (CSV, JSON, text columns, schema drift), the
ingested-files manifest (not rerun-safe: a second run re-reads and re-merges every file and
quarantines its rows again), write-audit-publish (counts, key and reference audits before
anything is visible), a re-check of rows waiting for a late parent, duplicate versions quarantined
with a reason (here the older ones are dropped silently), the observed value in each reason
and the row as sent for rows rejected only for a missing parent,
lineage columns and the row hash (an update here is any newer timestamp, changed or not), the run
record, telemetry. Prints one JSON line of counts and seconds on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdf_pipeline.config import load_settings
from cdf_pipeline.contracts.reference import (
    INCOTERMS_2020,
    ISO_COUNTRIES,
    ISO_CURRENCIES,
    UNITS_OF_MEASURE,
)
from cdf_pipeline.lakehouse.sqlite_catalog import ensure_catalog_file
from cdf_pipeline.spark import session_options

SILVER, QUARANTINE = "ref_silver", "ref_quarantine"
PROPS = (
    "'format-version'='2', 'write.merge.mode'='merge-on-read', "
    "'write.update.mode'='merge-on-read', 'write.parquet.compression-codec'='zstd'"
)
ULID, TENANT = r"^[0-9A-HJKMNP-TV-Z]{26}$", r"^[a-z][a-z0-9_]{1,31}$"
EMAIL = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
CONTROL, CONTROL_FREE_TEXT = r"[\x00-\x1F\x7F-\x9F]", r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
FREE_TEXT, LONG_TEXT = {"address_line1", "address_line2", "description"}, {"description": 4000}

# Per entity: key, code lists, required columns, [min, max] ranges (None: open; "gt0": > 0),
# foreign keys (column, is a list).
SUPPLIERS = {
    "name": "suppliers", "key": "supplier_id",
    "codes": {
        "country": ISO_COUNTRIES, "preferred_currency": ISO_CURRENCIES,
        "incoterms": INCOTERMS_2020, "financial_risk_tier": ("LOW", "MEDIUM", "HIGH"),
        "approved_status": ("PENDING", "APPROVED", "SUSPENDED", "BLACKLISTED"),
    },
    "required": ("supplier_id", "tenant_id", "legal_name", "country", "contact_email"),
    "ranges": {
        "lead_time_days_avg": (0, 365), "lead_time_days_p95": (0, 730),
        "on_time_delivery_rate": (0, 100), "defect_rate_ppm": (0, 1_000_000),
        "capacity_units_per_week": "gt0", "risk_score": (0, 100),
    },
    "fks": (),
}  # fmt: skip
PARTS = {
    "name": "parts", "key": "part_id",
    "codes": {
        "category": ("ELECTRICAL", "MECHANICAL", "RAW_MATERIAL", "OTHER"),
        "lifecycle_status": ("NEW", "ACTIVE", "NRND", "EOL"), "uom": UNITS_OF_MEASURE,
        "quality_grade": ("A", "B", "C"),
    },
    "required": ("part_id", "tenant_id", "part_number", "category", "uom", "default_supplier_id"),
    "ranges": {
        "unit_cost": (0, None), "moq": "gt0",
        "lead_time_days_avg": (0, 365), "lead_time_days_p95": (0, 730),
    },
    "fks": (("default_supplier_id", False), ("qualified_supplier_ids", True)),
}  # fmt: skip


def cleaned(raw: DataFrame, spec: dict) -> DataFrame:
    """Trimmed text (blank is null), upper-cased codes, trimmed list elements; the raw row kept."""
    cols = []
    for name, dtype in raw.dtypes:
        c = F.col(name)
        if dtype == "string":
            c = F.nullif(F.trim(c), F.lit(""))
            c = F.upper(c) if name in spec["codes"] else c
        elif dtype == "array<string>":
            c = F.filter(F.transform(c, F.trim), lambda s: s != "")
            if name != "qualified_supplier_ids":  # the one required list: absent stays null
                c = F.coalesce(c, F.array().cast("array<string>"))
        cols.append(c.alias(name))
    source = F.element_at(F.split(F.input_file_name(), "/"), -1).alias("_source_file")
    return raw.select(*cols, source, F.struct(*raw.columns).alias("_raw"))


def checks(df: DataFrame, spec: dict, tenant: str, now: datetime) -> list[tuple[Column, str]]:
    """``(breach, rule code)`` for every row rule of the entity."""
    c = F.col
    found = [(c(n).isNull(), f"{n}.required") for n in (*spec["required"], "source_timestamp")]
    key = spec["key"]
    found += [
        (~c(key).rlike(ULID), f"{key}.format"),
        (~c("tenant_id").rlike(TENANT), "tenant_id.format"),
        (c("tenant_id") != tenant, "tenant_id.tenant_match"),
        (c("source_timestamp") > F.lit(now + timedelta(seconds=300)), "source_timestamp.future"),
        (c("lead_time_days_p95") < c("lead_time_days_avg"), "lead_time_days_p95.below_avg"),
    ]
    found += [(~c(n).isin(*codes), f"{n}.enum") for n, codes in spec["codes"].items()]
    for n, bounds in spec["ranges"].items():
        lo, hi = (0, None) if bounds == "gt0" else bounds
        low = c(n) <= lo if bounds == "gt0" else c(n) < lo
        found.append((low if hi is None else low | (c(n) > hi), f"{n}.range"))
    for n, dtype in df.dtypes:
        if n in spec["codes"] or n.startswith("_") or dtype not in ("string", "array<string>"):
            continue
        limit, ctrl = LONG_TEXT.get(n, 500), CONTROL_FREE_TEXT if n in FREE_TEXT else CONTROL
        if dtype == "string":
            too_long, has_control = F.length(c(n)) > limit, c(n).rlike(ctrl)
        else:  # F.exists calls the lambda here, within the iteration
            too_long = F.exists(c(n), lambda s: F.length(s) > limit)  # noqa: B023
            has_control = F.exists(c(n), lambda s: s.rlike(ctrl))  # noqa: B023
        found += [(too_long, f"{n}.too_long"), (has_control, f"{n}.control_chars")]
    if spec["name"] == "suppliers":
        lat, lon = c("geo_coords.lat"), c("geo_coords.lon")
        bad_geo = lat.isNull() | lon.isNull() | (F.abs(lat) > 90) | (F.abs(lon) > 180)
        found += [
            (~c("contact_email").rlike(EMAIL), "contact_email.format"),
            (c("geo_coords").isNotNull() & bad_geo, "geo_coords.range"),
        ]
    else:
        ids = c("qualified_supplier_ids")
        lacks_default = ~F.array_contains(ids, c("default_supplier_id"))
        found += [
            (ids.isNull() | (F.size(ids) == 0), "qualified_supplier_ids.required"),
            (lacks_default, "qualified_supplier_ids.missing_default"),
        ]
    return found


def checked_rows(spark: SparkSession, spec: dict, files: list[str], tenant: str) -> DataFrame:
    rows = cleaned(spark.read.parquet(*files), spec)
    found = checks(rows, spec, tenant, datetime.now(timezone.utc))
    reasons = F.array_compact(F.array(*(F.when(breach, F.lit(code)) for breach, code in found)))
    rows = rows.withColumn("_reasons", reasons)
    original = F.when(F.size("_reasons") > 0, F.to_json("_raw"))
    return rows.withColumn("_original", original).drop("_raw")


def create_tables(spark: SparkSession, catalog: str, spec: dict, checked: DataFrame) -> None:
    """Silver with the contract's columns, quarantine with the checked rows' columns too."""
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.{SILVER}")
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.{QUARANTINE}")
    columns = [f"`{n}` {t}" for n, t in checked.dtypes]
    silver = ", ".join(c for c in columns if not c.startswith("`_"))
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {catalog}.{SILVER}.{spec['name']} ({silver}) USING iceberg "
        f"PARTITIONED BY (tenant_id, bucket(16, {spec['key']})) TBLPROPERTIES ({PROPS})"
    )
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {catalog}.{QUARANTINE}.{spec['name']} ({', '.join(columns)}, "
        f"`_quarantined_at` timestamp) USING iceberg PARTITIONED BY (tenant_id) "
        f"TBLPROPERTIES ({PROPS})"
    )


def load_entity(
    spark: SparkSession, catalog: str, spec: dict, files: list[str], tenant: str
) -> dict[str, int]:
    key, name = spec["key"], spec["name"]
    checked = checked_rows(spark, spec, files, tenant).cache()
    create_tables(spark, catalog, spec, checked)
    rejected = checked.where(F.size("_reasons") > 0)
    by_version = Window.partitionBy(key).orderBy(F.desc("source_timestamp"), F.desc("_source_file"))
    valid = (
        checked.where(F.size("_reasons") == 0)
        .withColumn("_rn", F.row_number().over(by_version))
        .where("_rn = 1")
        .drop("_rn")
    )
    for column, is_list in spec["fks"]:
        parents = spark.table(f"{catalog}.{SILVER}.suppliers").where(F.col("tenant_id") == tenant)
        refs = valid.select(key, F.explode(column if is_list else F.array(column)).alias("_ref"))
        refs = refs.where(F.col("_ref").isNotNull())
        missing = (
            refs.join(parents.select(F.col("supplier_id").alias("_ref")), "_ref", "left_anti")
            .select(key)
            .distinct()
        )
        orphan = valid.join(missing, key, "left_semi")
        reason = F.array(F.lit(f"{column}.foreign_key"))
        rejected = rejected.unionByName(orphan.withColumn("_reasons", reason))
        valid = valid.join(missing, key, "left_anti")
    silver = [c for c in checked.columns if not c.startswith("_")]  # the contract's columns
    valid.select(*silver).createOrReplaceTempView("changes")
    spark.sql(
        f"""
        MERGE INTO {catalog}.{SILVER}.{name} t USING changes s
        ON t.tenant_id = s.tenant_id AND t.{key} = s.{key}
        WHEN MATCHED AND s.source_timestamp > t.source_timestamp THEN UPDATE SET *
        WHEN NOT MATCHED THEN INSERT *
        """
    )
    quarantine = rejected.withColumn("_quarantined_at", F.current_timestamp())
    quarantine.writeTo(f"{catalog}.{QUARANTINE}.{name}").append()
    checked.unpersist()
    # For the benchmark's check only: counts from table metadata (Iceberg answers count(*)).
    return {
        ns: int(spark.sql(f"SELECT count(*) FROM {catalog}.{ns}.{name}").collect()[0][0])
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
    for spec in (SUPPLIERS, PARTS):  # parents first
        files = sorted(str(p) for p in (raw / f"entity={spec['name']}").rglob("*.parquet"))
        counts[spec["name"]] = load_entity(spark, catalog, spec, files, args.tenant)
    spark.stop()
    print(json.dumps({"counts": counts, "seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
