"""Telemetry overhead: the silver job with OTLP traces and metrics on vs off, interleaved in one
process on the demo data. Prints the figures recorded in docs/benchmarks.md.

    .venv/bin/python benchmarks/telemetry_bench.py --rows 30000 --pairs 5

Each measured run is a first load of the same raw files into a fresh Iceberg catalog, on one
Spark session. "On" is ``telemetry.setup.install`` (OTLP/HTTP traces and metrics to a receiver in
another process, as a collector would be) + the run + ``shutdown`` (the final flush); "off" is the
run alone. Runs go in ABBA order (off on on off ...) after one warm-up run of each, so drift in
machine load hits both sides alike; the headline is the median of the adjacent (off, on) ratios,
printed with the spread of the "off" runs, which is what the method can resolve. A micro-benchmark
of one ``stage()`` span on and off plus the measured flush gives the direct cost, a bound that does
not depend on Spark's run-to-run noise; so does the CPU time of the driver process per run (the
telemetry code and its export threads run there, and it adds no Spark work), which concurrent load
on the machine barely moves.

Target: overhead <= 3% of the job's wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cdf_generator.api import generate
from cdf_pipeline import telemetry
from cdf_pipeline.config import Settings, TelemetrySettings, load_settings
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.spark import build_session
from cdf_pipeline.telemetry import setup as telemetry_setup

TENANT = "acme"


def _serve(port_out: Any) -> None:
    """An OTLP/HTTP receiver in its own process: decodes and counts spans and metric points."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    stats = {"requests": 0, "spans": 0, "metric_points": 0, "bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            stats["requests"] += 1
            stats["bytes"] += len(body)
            if self.path == "/v1/traces":
                req = ExportTraceServiceRequest.FromString(body)
                stats["spans"] += sum(
                    len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans
                )
            elif self.path == "/v1/metrics":
                mreq = ExportMetricsServiceRequest.FromString(body)
                for rm in mreq.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            stats["metric_points"] += len(
                                getattr(m, m.WhichOneof("data")).data_points
                            )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            payload = json.dumps(stats).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def _stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        result: dict[str, int] = json.loads(response.read())
        return result


def _fresh_catalog(spark: Any, base: Settings, root: Path) -> Settings:
    """Settings on the same raw files with a new, empty Iceberg catalog (a first load again)."""
    name = f"b{uuid.uuid4().hex[:10]}"
    prefix = f"spark.sql.catalog.{name}"
    spark.conf.set(prefix, "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set(f"{prefix}.type", "hadoop")
    spark.conf.set(f"{prefix}.warehouse", str(root / "warehouses" / name))
    return base.model_copy(update={"catalog": base.catalog.model_copy(update={"name": name})})


def _one_run(spark: Any, base: Settings, root: Path, on: bool, url: str) -> dict[str, Any]:
    settings = _fresh_catalog(spark, base, root)
    if on:
        settings = settings.model_copy(
            update={
                "telemetry": TelemetrySettings(
                    traces_exporter="otlp", metrics_exporter="otlp", otlp_endpoint=url
                )
            }
        )
    before = _stats(url)
    cpu_started = time.process_time()  # this Python process, every thread (export threads too)
    started = time.perf_counter()
    if on:
        assert telemetry_setup.install(settings, environ={}) is not None
    run = run_tenant(spark, settings, TENANT)
    flush = telemetry_setup.shutdown() if on else 0.0
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    after = _stats(url)
    assert run.status == "SUCCEEDED", run.message
    return {
        "on": on,
        "seconds": seconds,
        "cpu": cpu,
        "flush": flush,
        "rows": run.total("read"),
        "spans": after["spans"] - before["spans"],
        "points": after["metric_points"] - before["metric_points"],
    }


def _span_cost(url: str, base: Settings, n: int = 2000) -> tuple[float, float]:
    """Microseconds per ``stage()`` span (with its duration metric), telemetry off and on.

    ``n`` stays below the batch processor's queue (2048), which would drop spans beyond it.
    """

    def loop() -> float:
        started = time.perf_counter()
        for _ in range(n):
            with telemetry.stage("bench", **{telemetry.TENANT: TENANT, telemetry.ENTITY: "parts"}):
                pass
        return (time.perf_counter() - started) / n * 1e6

    off = loop()
    on_settings = base.model_copy(
        update={
            "telemetry": TelemetrySettings(
                traces_exporter="otlp", metrics_exporter="otlp", otlp_endpoint=url
            )
        }
    )
    telemetry_setup.install(on_settings, environ={})
    on = loop()
    telemetry_setup.shutdown()
    return off, on


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000, help="suppliers and parts (demo size)")
    parser.add_argument("--pairs", type=int, default=5, help="measured (off, on) pairs")
    args = parser.parse_args()

    load_before = os.getloadavg()
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    receiver = ctx.Process(target=_serve, args=(port_q,), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{port_q.get(timeout=30)}"

    root = Path(tempfile.mkdtemp(prefix="cdf-telemetry-bench-"))
    gen = generate([TENANT], args.rows, args.rows, seed=42, root_uri=str(root))
    base = load_settings("local", overrides={"root": str(root)}, environ={})
    spark = build_session(base, app_name="cdf-telemetry-bench")
    spark.range(1000).count()

    for on in (False, True):  # warm-up: JIT, Iceberg classes, the SDK import; not measured
        _one_run(spark, base, root, on, url)
    order = [i % 4 in (1, 2) for i in range(2 * args.pairs)]  # off on on off off on ...
    results = [_one_run(spark, base, root, on, url) for on in order]
    span_off_us, span_on_us = _span_cost(url, base)
    load_after = os.getloadavg()
    spark.stop()
    receiver.terminate()
    shutil.rmtree(root, ignore_errors=True)  # ~100 MB of raw files and warehouses per size

    rows = sum(e.rows for e in gen.tenants[TENANT].values())
    print(
        f"data: {args.rows:,} suppliers + {args.rows:,} parts of one tenant "
        f"({rows:,} rows read per run), {os.cpu_count()} cores; "
        f"load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print(
        f"{'#':>2} {'telemetry':<10}{'seconds':>9}{'py cpu s':>9}{'flush s':>9}{'spans':>7}"
        f"{'points':>8}"
    )
    for i, r in enumerate(results, 1):
        label = "otlp" if r["on"] else "off"
        figures = (
            f"{r['seconds']:>9.2f}{r['cpu']:>9.2f}{r['flush']:>9.3f}{r['spans']:>7}{r['points']:>8}"
        )
        print(f"{i:>2} {label:<10}{figures}")
    off = [r["seconds"] for r in results if not r["on"]]
    on = [r["seconds"] for r in results if r["on"]]
    # The i-th off run and the i-th on run are adjacent in the ABBA order: their ratio cancels
    # slow drift in machine load, so its median is the headline figure.
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    overhead = statistics.median(ratios) - 1
    spread = (max(off) - min(off)) / statistics.median(off)
    print(f"median off {statistics.median(off):.2f} s, median on {statistics.median(on):.2f} s")
    print(
        f"overhead (median of per-pair on/off ratios - 1): {overhead:+.2%}; ratios "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + f"; ratio of medians {statistics.median(on) / statistics.median(off):.3f}"
    )
    print(f"noise floor: off runs spread {spread:.1%} of their median (max - min)")
    cpu_off = statistics.median(r["cpu"] for r in results if not r["on"])
    cpu_on = statistics.median(r["cpu"] for r in results if r["on"])
    cpu_share = (cpu_on - cpu_off) / statistics.median(off)
    print(
        f"driver CPU (Python process, all threads): median {cpu_off:.2f} s off, {cpu_on:.2f} s on; "
        f"added {cpu_on - cpu_off:+.3f} s = {cpu_share:+.2%} "
        "of the median off wall time (telemetry adds no Spark work: its cost is all here)"
    )
    per_run_spans = max(r["spans"] for r in results)
    span_cost_ms = per_run_spans * (span_on_us - span_off_us) / 1000
    flush_ms = statistics.median([r["flush"] for r in results if r["on"]]) * 1000
    direct = (span_cost_ms + flush_ms) / 1000 / statistics.median(off)
    print(
        f"direct cost: one stage() span {span_off_us:.1f} us off, {span_on_us:.1f} us on; "
        f"{per_run_spans} spans per run = {span_cost_ms:.1f} ms, flush at exit {flush_ms:.0f} ms: "
        f"{direct:.3%} of a run"
    )
    verdicts = {
        "wall-time A/B": overhead <= 0.03
        if len(off) > 1 and spread < 0.03
        else f"not resolvable (noise floor {spread:.0%} of {len(off)} off runs)",
        "driver CPU": cpu_share <= 0.03,
        "direct cost": direct <= 0.03,
    }
    print(
        "target <= 3%: "
        + "; ".join(
            f"{k} {v if isinstance(v, str) else ('met' if v else 'NOT met')}"
            for k, v in verdicts.items()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
