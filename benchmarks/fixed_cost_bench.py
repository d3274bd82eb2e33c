"""Per-run fixed cost: what a tenant run costs when it has nothing new, or little, in a warm
session shared with other tenants (one of them big).

    PYTHONPATH=src .venv/bin/python benchmarks/fixed_cost_bench.py --tenants 10 --rows 2000 \
        --big 200000

One session, as a driver that runs many tenants would hold it. ``--tenants`` small tenants of
``--rows`` suppliers + parts each and one tenant of ``--big`` (0: none) are generated and each
run once (first loads, not measured but for the warm-up). Then, measured per small tenant:

- **nothing new**: a second run over the same files (``NOTHING_NEW``), target < 1 s;
- **1% change**: a change batch (``--change-rate``) generated for every small tenant, then run.

Printed: each run's wall seconds and Spark jobs, and where the time went (median over the
tenants): the run's stage spans (OpenTelemetry, in memory), the bookkeeping calls that have no
span of their own (timed by wrapping them here; the job's code is not changed) and the classes
Spark compiled during the run (its code cache's misses: a run like the one before should
compile none).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pyspark.sql import SparkSession

from cdf_generator.api import generate
from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.lakehouse import ops, tables
from cdf_pipeline.pipeline import inputs, silver
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.run_record import RunSummary
from cdf_pipeline.spark import build_session
from cdf_pipeline.telemetry import setup as telemetry_setup

#: Calls without a span of their own: (module, attribute, label). Wrapped where run_tenant and
#: its helpers look them up, so every call is timed whatever module makes it.
TIMED = [
    (silver, "ensure_tables", "ensure_tables"),
    (silver, "select_new_files", "select_new_files"),
    (inputs, "discover", "  discover (listing)"),
    (inputs, "inspect_files", "  inspect_files (executors: hash, footers)"),
    (ops, "manifest", "  ops.manifest"),
    (ops, "has_history", "ops.has_history"),
    (silver, "_snapshots", "snapshot ids (before + after)"),
    (tables, "tenant_rows", "tenant_rows (table metadata)"),
]


class Timers:
    """Seconds spent in each wrapped call, per run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, module: Any, attr: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(module, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        # Modules that imported the function by name hold their own reference: wrap those too.
        for name, other in list(sys.modules.items()):
            if name.startswith("cdf_pipeline") and getattr(other, attr, None) is inner:
                setattr(other, attr, timed)

    def take(self) -> dict[str, float]:
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out


def _spans(exporter: InMemorySpanExporter) -> dict[str, float]:
    """Seconds per direct child stage of the run's span (summed by name), then cleared."""
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "cdf.silver_run")
    out: dict[str, float] = defaultdict(float)
    for s in spans:
        if s.parent is not None and s.parent.span_id == root.context.span_id:
            out[f"span {s.name}"] += ((s.end_time or 0) - (s.start_time or 0)) / 1e9
    exporter.clear()
    return dict(out)


def _compiled(spark: SparkSession) -> int:
    """Classes Spark's code generator has compiled in this JVM so far (its cache misses)."""
    metrics = getattr(spark._jvm.org.apache.spark.metrics.source, "CodegenMetrics$")  # type: ignore[union-attr]
    return int(getattr(metrics, "MODULE$").METRIC_COMPILATION_TIME().getCount())


def _jvm_cpu(spark: SparkSession) -> float:
    """CPU seconds the driver JVM (driver and executor threads, JIT, GC) has used so far, from
    /proc: less sensitive than wall time to other work sharing the machine's cores."""
    pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(
    spark: SparkSession, settings: Settings, tenant: str, timers: Timers, spans: Any
) -> tuple[RunSummary, float, int, dict[str, float]]:
    group = f"bench-{tenant}-{time.monotonic_ns()}"
    spark.sparkContext.setJobGroup(group, group)
    compiled, cpu = _compiled(spark), _jvm_cpu(spark)
    started = time.perf_counter()
    summary = run_tenant(spark, settings, tenant)
    seconds = time.perf_counter() - started
    jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
    parts = {
        **timers.take(),
        **_spans(spans),
        "(classes compiled)": _compiled(spark) - compiled,
        "(driver JVM CPU s)": _jvm_cpu(spark) - cpu,
    }
    return summary, seconds, jobs, parts


Result = tuple[str, RunSummary, float, int, dict[str, float]]


def _report(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    print(f"{'tenant':<8}{'status':<24}{'seconds':>9}{'jobs':>6}")
    for tenant, summary, seconds, jobs, _ in results:
        print(f"{tenant:<8}{summary.status:<24}{seconds:>9.2f}{jobs:>6}")
    secs = [r[2] for r in results]
    print(
        f"median {median(secs):.2f} s, max {max(secs):.2f} s, median jobs "
        f"{median(r[3] for r in results):.0f}  (load {os.getloadavg()[0]:.2f})"
    )
    labels = sorted({k for r in results for k in r[4]})
    print(f"  {'where (median over tenants)':<40}{'seconds':>9}")
    for label in labels:
        print(f"  {label:<40}{median(r[4].get(label, 0.0) for r in results):>9.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10, help="small tenants")
    parser.add_argument("--rows", type=int, default=2_000, help="suppliers and parts per small one")
    parser.add_argument("--big", type=int, default=200_000, help="rows of the big tenant (0: none)")
    parser.add_argument("--change-rate", type=float, default=0.01)
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE",
        help="a Spark setting over the profile's (repeatable), to compare settings",
    )  # fmt: skip
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cdf-fixed-cost-"))
    conf = dict(item.split("=", 1) for item in args.conf)
    settings = load_settings("local", overrides={"root": str(root), "spark": {"conf": conf}})
    small = [f"small{i:02d}" for i in range(args.tenants)]
    generate(small, args.rows, args.rows, root_uri=str(root), seed=42)
    if args.big:
        generate(["big"], args.big, args.big, root_uri=str(root), seed=7)
    spark = build_session(settings, app_name="cdf-fixed-cost-bench")
    spans = InMemorySpanExporter()
    telemetry_setup.install(
        settings,
        span_processors=[SimpleSpanProcessor(spans)],
        metric_readers=[InMemoryMetricReader()],
        environ={},
    )
    timers = Timers()
    for module, attr, label in TIMED:
        timers.wrap(module, attr, label)

    first = [(t, *_run(spark, settings, t, timers, spans)) for t in (["big"] if args.big else [])]
    first += [(t, *_run(spark, settings, t, timers, spans)) for t in small]
    _report("first loads (warm-up, not a target)", first)

    nothing = [(t, *_run(spark, settings, t, timers, spans)) for t in small]
    _report("nothing new (target < 1 s)", nothing)

    generate(
        small, args.rows, args.rows, root_uri=str(root), seed=42, batch=2,
        change_rate=args.change_rate,
    )  # fmt: skip
    change = [(t, *_run(spark, settings, t, timers, spans)) for t in small]
    _report(f"{args.change_rate:.0%} change batch", change)

    print(
        f"\ndata: {args.tenants} tenants of {args.rows:,} suppliers + {args.rows:,} parts, "
        f"one of {args.big:,} + {args.big:,}; {os.cpu_count()} cores; conf {conf}"
    )
    telemetry_setup.shutdown()
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
