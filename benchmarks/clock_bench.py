"""Generated code reused across runs: the same suppliers staged in one warm JVM under one clock
and under new clocks, with the clock as data (the job) and as a literal (the job before it).

    PYTHONPATH=src .venv/bin/python benchmarks/clock_bench.py --rows 1000000 --rounds 3

Spark compiles each plan's expressions to Java and caches the classes by their source text. A
value written into that text (a timestamp literal is inlined as a ``long`` constant) makes every
run's code new: Janino compiles it again and the JIT warms the new classes from the interpreter
up. A long-lived driver that runs many tenants pays that on every run; a clock that comes in as
data (``quality/clock.py``) leaves the text the same.

One session. Each measure is :func:`stage_entity` of the suppliers (read, normalise, validate,
hash, materialise, dedupe, classify against an empty silver) and then the rows it would write,
shaped with their lineage and quarantine columns, into Spark's ``noop`` sink (nothing is written
to the tables, so every round stages the same first load). Two modes, interleaved in every
round so that the machine's load hits both alike:

- ``data``: the job as it is (the clock cross-joined from a broadcast one-row frame);
- ``literal``: the same job with the clock put back as a literal (``with_clock`` replaced here by
  ``withColumn(_run_clock, lit(now))``, which constant folding inlines: the code before the
  change, measured in the same JVM).

Spark's code cache is enlarged (``spark.sql.codegen.cache.maxEntries`` 1000) so that the two
modes' classes do not evict each other's. Each mode is warmed up with clock A, then each round
runs, per mode, clock A again ("same") and a clock never seen before ("new"). Printed per
measure: wall seconds, the driver JVM's CPU seconds (less sensitive than wall time to other work
on the machine) and the classes Spark compiled (``CodegenMetrics``: its code cache's
misses; the validation projections are too wide for whole-stage code generation and are
compiled as projections, each with the clock in its source text when the clock is a literal).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_generator.api import generate
from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.contracts import SUPPLIERS
from cdf_pipeline.ingest.files import RawFile, inspect_file
from cdf_pipeline.lakehouse import merge, quarantine
from cdf_pipeline.lakehouse.lease import tenant_lease
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.pipeline.context import RunContext
from cdf_pipeline.pipeline.stage import stage_entity
from cdf_pipeline.quality import clock, rules
from cdf_pipeline.spark import build_session
from cdf_pipeline.storage import Storage, storage_for

TENANT = "bench"
#: The modules that look ``with_clock`` up by name.
USERS = (rules, merge, quarantine)
AS_DATA = clock.with_clock


def as_literal(now: datetime) -> clock.Transform:
    """The clock as it was before: a literal column, folded into the expressions that use it."""

    def _apply(df: DataFrame) -> DataFrame:
        return df.withColumn(clock.CLOCK, F.lit(now))

    return _apply


def use(mode: str) -> None:
    for module in USERS:
        module.with_clock = AS_DATA if mode == "data" else as_literal  # type: ignore[attr-defined]


def _compiled(spark: SparkSession) -> int:
    """Classes Spark's code generator has compiled in this JVM so far (cache misses)."""
    metrics = getattr(spark._jvm.org.apache.spark.metrics.source, "CodegenMetrics$")  # type: ignore[union-attr]
    return int(getattr(metrics, "MODULE$").METRIC_COMPILATION_TIME().getCount())


def _jvm_cpu(spark: SparkSession) -> float:
    """CPU seconds the driver JVM (driver and executor threads, JIT, GC) has used so far, from
    /proc: less sensitive than wall time to other work sharing the machine's cores."""
    pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    with tenant_lease(settings, TENANT, purpose="bench") as held:
        ctx = RunContext(
            spark, settings, names, storage_for(settings), TENANT, f"r{now:%H%M%S}", now, held
        )
        staged = stage_entity(ctx, SUPPLIERS, files, parents=None)
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
    # Room in Spark's code cache (100 classes by default) for both modes' classes: otherwise
    # interleaving them evicts each other's, which is not what is measured here.
    cache = {"spark.sql.codegen.cache.maxEntries": "1000"}
    settings = load_settings("local", overrides={"root": str(root), "spark": {"conf": cache}})
    generate([TENANT], args.rows, 1_000, root_uri=str(root), seed=42)
    folder = root / "raw" / f"tenant_id={TENANT}" / "entity=suppliers"
    storage = Storage()
    files = [inspect_file(storage, "suppliers", str(p)) for p in sorted(folder.rglob("*.parquet"))]
    spark = build_session(settings, app_name="cdf-clock-bench")
    names = TableNames.of(settings)
    ensure_tables(spark, names)

    clock_a = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    modes = ("literal", "data")
    measures: dict[tuple[str, str], list[tuple[float, int, float]]] = defaultdict(list)
    fresh = (clock_a + timedelta(days=i + 1) for i in range(2 * args.rounds))

    def measure(mode: str, kind: str, now: datetime) -> None:
        use(mode)
        before, cpu = _compiled(spark), _jvm_cpu(spark)
        seconds = stage_once(spark, settings, names, files, now)
        compiled, cpu = _compiled(spark) - before, _jvm_cpu(spark) - cpu
        measures[(mode, kind)].append((seconds, compiled, cpu))
        print(
            f"{mode:<8}{kind:<8} clock {now:%Y-%m-%d}  {seconds:6.1f} s  JVM CPU {cpu:6.1f} s  "
            f"{compiled:4d} classes compiled  (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )

    for mode in modes:
        measure(mode, "warm-up", clock_a)
    for _ in range(args.rounds):
        for mode in modes:
            measure(mode, "same", clock_a)
            measure(mode, "new", next(fresh))

    print(
        f"\ndata: {args.rows:,} suppliers (1 tenant, 6% dirty, 1 Parquet file); "
        f"{os.cpu_count()} cores; medians of {args.rounds} rounds"
    )
    print(f"{'clock as':<10}{'':>10}{'same clock':>12}{'new clock':>11}{'new - same':>12}")
    for mode in modes:
        for i, what in ((0, "wall s"), (2, "JVM CPU s")):
            same = median(m[i] for m in measures[(mode, "same")])
            new = median(m[i] for m in measures[(mode, "new")])
            print(f"{mode:<10}{what:>10}{same:>12.1f}{new:>11.1f}{new - same:>+12.1f}")
        classes = median(m[1] for m in measures[(mode, "new")])
        print(f"{mode:<10}{'classes':>10}{'':>12}{classes:>11.0f}")
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
