"""``cdf report`` on a lakehouse of many tenants and runs: build time and file size.

    PYTHONPATH=src .venv/bin/python benchmarks/report_bench.py --tenants 20 --runs 50 \
        --quarantine-rows 2000

The lakehouse is made fast, not by running the silver job ``tenants x runs`` times: its tables
are created as a run creates them, then synthetic rows are appended directly, in one append per
table: ``ops.runs`` (a record per run, built by ``RunSummary.row()`` like a real run's, with
counts, per-rule violations, two input files and audits; mostly SUCCEEDED, some AUDIT_FAILED,
SUCCEEDED_WITH_ERRORS and FAILED), ``ops.ingested_files`` (the runs' files, a few FAILED or with
a drift note) and each quarantine table (``--quarantine-rows`` per tenant and entity, a row as
sent in ``_original`` as long as a real one, one or two reasons of 15 rules, 70% OPEN).

Measured: ``cdf report`` as a person runs it (a child process: Python start, Spark start,
queries, rendering, writing), three times, and the report's size. Printed as the lines
docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.contracts import ENTITIES, Entity
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.spark import build_session

START = datetime(2026, 10, 1, tzinfo=timezone.utc)
STATUSES = [S.SUCCEEDED] * 16 + [S.AUDIT_FAILED, S.PARTIAL, S.FAILED]


def _rules(entity: Entity) -> list[str]:
    return [r.code for r in entity.row_rules]


def run_records(tenants: list[str], runs: int, rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for t in tenants:
        for i in range(runs):
            started = START + timedelta(hours=6 * i, minutes=rng.randrange(60))
            status = rng.choice(STATUSES)
            run = S.RunSummary(
                tenant=t,
                run_id=f"{started:%Y%m%dT%H%M%SZ}-{rng.getrandbits(32):08x}",
                status=status,
                trace_id=f"{rng.getrandbits(128):032x}",
                seconds=rng.uniform(8, 90),
                started_at=started,
                finished_at=started + timedelta(seconds=60),
                rule_set_version="bench",
            )
            for name, entity in ENTITIES.items():
                read = rng.randrange(500, 5000)
                codes = rng.sample(_rules(entity)[:15], 6)
                violations = {c: rng.randrange(0, 80) for c in codes}
                bad = sum(violations.values()) // 2
                run.entities[name] = S.EntityCounts(
                    read=read, inserted=read - bad, quarantined=bad, violations=violations
                )
                failed = status in (S.PARTIAL, S.FAILED) and name == "parts"
                run.files.append(
                    S.FileResult(
                        name,
                        f"raw/tenant_id={t}/entity={name}/ingest_date=2026-10-01/f{i}.parquet",
                        f"{rng.getrandbits(256):064x}",
                        None if failed else read,
                        "FAILED" if failed else "INGESTED",
                        error="unreadable parquet file (ArrowInvalid: ...)" if failed else None,
                        note="extra column(s) ignored: notes" if i % 17 == 0 else None,
                    )
                )
            run.audits = [S.Audit("pass_rate", status != S.AUDIT_FAILED, "bench")]
            rows.append(run.row())
    return rows


def manifest_rows(records: list[dict[str, object]]) -> list[dict[str, object]]:
    out = []
    for r in records:
        for f in r["inputs"]:  # type: ignore[attr-defined]
            out.append(
                {
                    "tenant_id": r["tenant_id"],
                    "entity": f["entity"],
                    "file": f["file"],
                    "sha256": f["sha256"],
                    "rows": f["rows"],
                    "run_id": r["run_id"],
                    "ingested_at": r["started_at"],
                    "status": f["status"],
                    "error": f["error"],
                    "note": f["note"],
                }
            )
    return out


def quarantine_rows(
    spark: SparkSession, table: str, entity: Entity, tenants: list[str], per_tenant: int
) -> DataFrame:
    """Synthetic quarantine rows with the table's schema (nulls where the report reads nothing)."""
    codes = _rules(entity)[:15]  # about what a demo tenant has open (12-15 rules)
    schema = spark.table(table).schema
    ids = spark.range(len(tenants) * per_tenant)

    def pick(values: list[str], offset: int = 0) -> Column:
        index = ((F.col("id") + offset) % len(values) + 1).cast("int")  # element_at takes an int
        return F.element_at(F.array(*(F.lit(v) for v in values)), index)

    tenant, code, other = pick(tenants), pick(codes), pick(codes, 5)
    reason = F.struct(code.alias("rule"), F.lit("x").alias("column"), F.lit("bad").alias("value"))
    second = F.struct(other.alias("rule"), F.lit("y").alias("column"), F.lit("bad").alias("value"))
    # A row as sent about as long as a real one (~1.6 KB of JSON: 24 columns of 64 characters).
    filler = [F.sha2(F.concat(F.col("id").cast("string"), F.lit(str(i))), 256).alias(f"c{i}")
              for i in range(24)]  # fmt: skip
    pk = F.format_string("01BENCH%019d", F.col("id"))
    values = {
        entity.primary_key: pk,
        "tenant_id": tenant,
        "_original": F.to_json(
            F.struct(pk.alias(entity.primary_key), tenant.alias("tenant_id"), *filler)
        ),
        "_violations": F.when(F.col("id") % 3 == 0, F.array(reason, second)).otherwise(
            F.array(reason)
        ),
        "_source_file": F.format_string("raw/f%d.parquet", F.col("id") % 97),
        "_run_id": F.format_string("run-%d", F.col("id") % 50),
        "_rule_set_version": F.lit("bench"),
        "_quarantined_at": F.timestamp_seconds(F.lit(int(START.timestamp())) + F.col("id") % 99991),
        "_quarantine_key": F.sha2(F.col("id").cast("string"), 256),
        "_status": F.when(F.col("id") % 10 < 7, F.lit("OPEN")).otherwise(F.lit("RESOLVED")),
    }
    return ids.select(
        *(values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name) for f in schema.fields)
    )


def build_lakehouse(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    tenants = [f"tenant{i:02d}" for i in range(args.tenants)]
    records = run_records(tenants, args.runs, rng)
    runs_schema = spark.table(names.runs).schema
    spark.createDataFrame(records, runs_schema).writeTo(names.runs).append()
    files_schema = spark.table(names.ingested_files).schema
    spark.createDataFrame(manifest_rows(records), files_schema).writeTo(
        names.ingested_files
    ).append()
    for entity in ENTITIES.values():
        table = names.quarantine(entity)
        quarantine_rows(spark, table, entity, tenants, args.quarantine_rows).writeTo(table).append()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--quarantine-rows", type=int, default=2000, help="per tenant and entity")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="build the lakehouse here and keep it")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="report-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings("local", overrides={"root": str(root)})
    t0 = time.monotonic()
    spark = build_session(settings, app_name="report-bench-build")
    build_lakehouse(spark, settings, args)
    spark.stop()
    print(f"lakehouse: {args.tenants} tenants x {args.runs} runs, "
          f"{args.quarantine_rows} quarantine rows per tenant and entity, "
          f"built in {time.monotonic() - t0:.1f} s (synthetic rows appended)")  # fmt: skip
    out = root / "report.html"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "report", "--root", str(root)]
    times = []
    for i in range(args.repeat):
        t = time.monotonic()
        proc = subprocess.run(
            [*cmd, "--out", str(out), "--json"], env=env, capture_output=True, text=True
        )
        times.append(time.monotonic() - t)
        if proc.returncode != 0:
            sys.exit(f"cdf report failed: {proc.stderr[-2000:]}")
        done = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"cdf report #{i + 1}: {times[-1]:.1f} s wall, {done['runs']} runs, "
              f"{done['bytes'] / 1e6:.2f} MB")  # fmt: skip
    print(f"cdf report, {args.tenants} tenants x {args.runs} runs: median {median(times):.1f} s "
          f"(min {min(times):.1f}, max {max(times):.1f}) on {os.cpu_count()} cores; "
          f"file {out.stat().st_size / 1e6:.2f} MB")  # fmt: skip
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
