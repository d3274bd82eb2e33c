"""Generated code reused across runs: the same suppliers staged in one warm JVM under one clock
and under new clocks, with the classes Spark compiled for each.

    PYTHONPATH=src .venv/bin/python benchmarks/clock_bench.py --rows 1000000 --rounds 3

Spark compiles each whole-stage plan to Java and caches the classes by their source text. A value
written into that text (a timestamp literal is inlined as a ``long`` constant) makes every run's
code new: Janino compiles it again and the JIT warms the new classes from the interpreter up. A
long-lived driver that runs many tenants pays that on every run; a clock that comes in as data
(``quality/clock.py``) leaves the text the same.

One session. A warm-up with clock A, then ``--rounds`` pairs of: clock A again ("same"), and a
clock never seen before ("new"). Each measure is :func:`stage_entity` of the suppliers (read,
normalise, validate, hash, materialise, dedupe, classify against an empty silver) and then the
rows it would write, shaped with their lineage and quarantine columns, into Spark's ``noop`` sink
(nothing is written to the tables, so every round stages the same first load). Printed per
round: wall seconds and the classes Spark compiled (``CodegenMetrics``: its code cache's misses;
the validation projections are too wide for whole-stage code generation and are compiled as
projections, each with the clock in its source text when the clock is a literal).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

from pyspark.sql import DataFrame, SparkSession

from cdf_generator.api import generate
from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.contracts import SUPPLIERS
from cdf_pipeline.ingest.files import RawFile, inspect_file
from cdf_pipeline.lakehouse import merge
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.pipeline.stage import stage_entity
from cdf_pipeline.spark import build_session
from cdf_pipeline.storage import Storage

TENANT = "bench"


def _compiled(spark: SparkSession) -> int:
    """Classes Spark's code generator has compiled in this JVM so far (cache misses)."""
    metrics = getattr(spark._jvm.org.apache.spark.metrics.source, "CodegenMetrics$")  # type: ignore[union-attr]
    return int(getattr(metrics, "MODULE$").METRIC_COMPILATION_TIME().getCount())


def _noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def stage_once(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    files: list[RawFile],
    now: datetime,
) -> float:
    """Stage the suppliers under clock ``now`` and shape what a publish would write; seconds."""
    started = time.perf_counter()
    staged = stage_entity(
        spark, settings, names, SUPPLIERS, TENANT, files, run_id=f"r{now:%H%M%S}", now=now,
        parent_keys=None,
    )  # fmt: skip
    try:
        lineage = merge.with_lineage(SUPPLIERS, f"r{now:%H%M%S}", now)
        _noop(staged.outcome(merge.INSERT).transform(lineage))
        if staged.rejected is not None:
            _noop(staged.rejected)
    finally:
        staged.release()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="suppliers")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of same / new clock")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cdf-clock-bench-"))
    settings = load_settings("local", overrides={"root": str(root)})
    generate([TENANT], args.rows, 1_000, root_uri=str(root), seed=42)
    folder = root / "raw" / f"tenant_id={TENANT}" / "entity=suppliers"
    storage = Storage()
    files = [inspect_file(storage, "suppliers", str(p)) for p in sorted(folder.rglob("*.parquet"))]
    spark = build_session(settings, app_name="cdf-clock-bench")
    names = TableNames.of(settings)
    ensure_tables(spark, names)

    clock_a = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    measures: dict[str, list[tuple[float, int]]] = {"warm-up": [], "same": [], "new": []}

    def measure(kind: str, now: datetime) -> None:
        before = _compiled(spark)
        seconds = stage_once(spark, settings, names, files, now)
        compiled = _compiled(spark) - before
        measures[kind].append((seconds, compiled))
        load = os.getloadavg()[0]
        print(
            f"{kind:<8} clock {now:%Y-%m-%d %H:%M}  {seconds:6.1f} s  {compiled:4d} classes "
            f"compiled  (load {load:.2f})",
            flush=True,
        )

    measure("warm-up", clock_a)
    for i in range(args.rounds):
        measure("same", clock_a)
        measure("new", clock_a + timedelta(days=i + 1))

    same = median(s for s, _ in measures["same"])
    new = median(s for s, _ in measures["new"])
    print(
        f"data: {args.rows:,} suppliers (1 tenant, 6% dirty, 1 Parquet file); {os.cpu_count()} "
        f"cores; median same clock {same:.1f} s, new clock {new:.1f} s: "
        f"{new - same:+.1f} s ({new / same:.2f}x)"
    )
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
