"""Silver job benchmark: first load, a 1% change batch and an identical rerun, against a bare
read-Parquet-and-append of the same files measured in the same run (same session, same table
layout, both warm). Prints the figures recorded in docs/benchmarks.md.

    .venv/bin/python benchmarks/silver_bench.py --rows 1000000

Targets (2-core machine): first load >= 20k rows/s and <= 2.5x the bare append; the change batch
<= 20% of the first load; the rerun <= 10 s writing 0 rows; driver JVM heap <= 4 GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cdf_generator.api import generate
from cdf_pipeline.config import load_settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.contracts.schemas import iceberg_columns_sql
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.spark import build_session

TENANT = "bench"
WARMUP = "warmup"


def _jvm_peak_rss_mb() -> float:
    """Peak resident memory of the Spark driver JVM started by this process (VmHWM)."""
    me = os.getpid()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(me) and "java" in fields.get("Name", ""):
            return int(fields["VmHWM"].split()[0]) / 1024
    return float("nan")


def bare_append(spark, raw: Path, catalog: str, namespace: str) -> float:  # type: ignore[no-untyped-def]
    """Read the raw Parquet files and append them to same-layout Iceberg tables, nothing else."""
    started = time.perf_counter()
    for entity in ENTITIES.values():
        table = f"{catalog}.{namespace}.{entity.name}"
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.{namespace}")
        spark.sql(
            f"CREATE TABLE {table} ({iceberg_columns_sql(entity, with_lineage=False)}) "
            "USING iceberg "
            f"PARTITIONED BY (tenant_id, bucket({entity.key_buckets}, {entity.primary_key}))"
        )
        files = [
            str(p)
            for p in (raw / f"tenant_id={TENANT}" / f"entity={entity.name}").rglob("*.parquet")
        ]
        spark.read.parquet(*files).writeTo(table).append()
    return time.perf_counter() - started


def parse_args(doc: str) -> argparse.Namespace:
    """``--rows`` and ``--change-rate``, shared with silver_floor.py."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="suppliers and parts each")
    parser.add_argument("--change-rate", type=float, default=0.01)
    return parser.parse_args()


def main() -> int:
    args = parse_args(__doc__)

    root = Path(tempfile.mkdtemp(prefix="cdf-silver-bench-"))
    settings = load_settings("local", overrides={"root": str(root)})
    generate([TENANT], args.rows, args.rows, root_uri=str(root), seed=42)
    spark = build_session(settings, app_name="cdf-silver-bench")
    names = TableNames.of(settings)
    spark.range(1000).count()

    # Both sides are measured warm (JIT-compiled readers, writers and planner), as a long-lived
    # driver or the second job of a session would run them: the baseline's first round is a
    # warm-up (23-26 s cold against 15-22 s warm here), and a small tenant's first load warms the
    # job's own code paths.
    cold = bare_append(spark, root / "raw", settings.catalog.name, "bench_warmup")
    bare = bare_append(spark, root / "raw", settings.catalog.name, "bench_baseline")
    generate([WARMUP], 20_000, 20_000, root_uri=str(root), seed=7)
    run_tenant(spark, settings, WARMUP)
    first = run_tenant(spark, settings, TENANT)
    generate(
        [TENANT], args.rows, args.rows, root_uri=str(root), seed=42, batch=2,
        change_rate=args.change_rate,
    )  # fmt: skip
    change = run_tenant(spark, settings, TENANT)
    snaps = spark.sql(f"SELECT count(*) FROM {names.silver('parts')}.snapshots").first()[0]
    rerun = run_tenant(spark, settings, TENANT)
    snaps_after = spark.sql(f"SELECT count(*) FROM {names.silver('parts')}.snapshots").first()[0]
    peak = _jvm_peak_rss_mb()

    read = first.total("read")
    print(
        f"data: {args.rows:,} suppliers + {args.rows:,} parts (1 tenant, 6% dirty); "
        f"{os.cpu_count()} cores"
    )
    print(f"{'measure':<34}{'seconds':>10}{'rows/s':>12}  notes")
    print(
        f"{'bare read+append (baseline)':<34}{bare:>10.1f}{read / bare:>12,.0f}"
        f"  warm; the warm-up round (cold JVM) took {cold:.1f} s"
    )
    print(
        f"{'first load (silver job)':<34}{first.seconds:>10.1f}{read / first.seconds:>12,.0f}"
        f"  {first.seconds / bare:.2f}x baseline; status {first.status}"
    )
    print(
        f"{'change batch ' + format(args.change_rate, '.0%'):<34}{change.seconds:>10.1f}"
        f"{change.total('read') / change.seconds:>12,.0f}"
        f"  {change.seconds / first.seconds:.0%} of first load;"
        f" +{change.total('inserted')} ins, {change.total('updated')} upd,"
        f" {change.total('stale')} stale"
    )
    print(
        f"{'rerun of identical input':<34}{rerun.seconds:>10.1f}{'':>12}  status {rerun.status};"
        f" silver snapshots {snaps} -> {snaps_after}"
    )
    print(f"driver JVM peak RSS: {peak:,.0f} MB (heap limit {settings.spark.driver_memory})")
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)  # about 1 GB of raw files and tables at 1M rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
