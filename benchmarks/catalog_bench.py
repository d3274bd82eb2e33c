"""Catalog benchmark: a first load on the embedded default (local files, hadoop catalog) against
the same first load on S3 with an Iceberg REST catalog, both as a user runs them. Prints the
figures recorded in docs/benchmarks.md.

    .venv/bin/python benchmarks/catalog_bench.py --rows 200000 --rounds 2

Data: ``--rows`` suppliers + ``--rows`` parts for one tenant, ``cdf generate`` with seed 42 (6%
dirty, Parquet contract shape), generated before each measured run into that run's own root.

Each measured run is a child process ``python -m cdf_pipeline.cli run --tenant bench --json``
(cold interpreter and JVM: what a user pays per run), a first load into an empty lakehouse:

- ``local``: ``--profile local --root <fresh temporary folder>`` (hadoop catalog on local files);
- ``s3+rest``: ``--profile docker --root s3://<fresh bucket>`` against a moto S3 server on
  loopback (in this process) and Apache Iceberg's REST catalog server (``tests/servers/
  rest_catalog.py``, a fresh catalog database per round, stopped after the round), configured as
  ``tests/integration/test_catalogs.py`` does (``AWS_ENDPOINT_URL``, ``CDF__CATALOG__URI``).

Rounds are interleaved (local, s3+rest, local, s3+rest, ...) so that drifting machine load hits
both sides. Every run writes its spans to a JSON-lines file (``OTEL_TRACES_EXPORTER=jsonl``); the
script reports, per profile, the median wall time of the child process and the median duration of
each stage under the run (the children of ``cdf.run``, ``cdf.silver_run``, ``stage_entity`` and
``publish``, and the time between them, which is work that has no span of its own: e.g. before the
first ``stage_entity``, creating the tables and listing the raw files), the median of the
per-round ratios s3+rest / local, and the stage-by-stage differences. The CPU
time moto (this process) and the REST server's JVM used during each S3 run is printed too: both
share the machine's cores with Spark.

Fails (exit 1) when a run does not end SUCCEEDED or when the two profiles' counts differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the REST catalog server the test suite uses

from servers.rest_catalog import (  # noqa: E402
    RestCatalogServer,
    start_rest_catalog,
    stop_rest_catalog,
)
from support.environment import cli_env  # noqa: E402

TENANT = "bench"
SEED = 42
LOCAL, S3 = "local", "s3+rest"
#: moto accepts any credentials; throwaway values.
AWS_KEY, AWS_SECRET = "AKIABENCHONLYKEY", "bench-secret"
REGION = "us-east-1"
TIMEOUT_S = 3600
#: Spans whose children are reported, with the time between and after them.
REPORTED_PARENTS = ("cdf.run", "cdf.silver_run", "stage_entity", "publish")


@dataclass
class Run:
    profile: str
    round: int
    wall_s: float
    generate_s: float
    summary: dict[str, Any]
    stages: dict[str, float]  # stage key -> seconds
    moto_cpu_s: float | None = None
    rest_cpu_s: float | None = None
    stderr_warnings: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    """The children's environment: the test suite's (no caller CDF_/AWS_/PG settings, loopback
    Spark), with the profiles' own 4 GB driver."""
    return cli_env(CDF__SPARK__MASTER="local[2]", CDF__SPARK__DRIVER_MEMORY="4g")


def s3_env(endpoint: str, rest_uri: str | None) -> dict[str, str]:
    env = {
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if rest_uri:
        env["CDF__CATALOG__URI"] = rest_uri
    return env


def cdf(
    args: list[str], env: dict[str, str], log: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python -m cdf_pipeline.cli ARGS --json``; keep its stderr in ``log``."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cdf_pipeline.cli", *args, "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    wall = time.perf_counter() - started
    log.write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(
            f"FAILED: cdf {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-4000:]}"
        )
    return proc, wall


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"FAILED: no JSON summary on stdout:\n{proc.stdout[-2000:]}")
    return dict(json.loads(lines[-1]))


def stage_durations(spans_file: Path) -> dict[str, float]:
    """Seconds per stage: the children of the spans in ``REPORTED_PARENTS`` (recursively), keyed
    ``name`` or ``name[entity]`` and indented by depth, plus the time each such parent spends
    outside its children, split by position: ``(gap before X)`` and ``(after X)``."""
    spans = [json.loads(ln) for ln in spans_file.read_text().splitlines() if ln.strip()]
    roots = [s for s in spans if s["name"] == "cdf.run"]
    if len(roots) != 1:
        raise SystemExit(f"FAILED: expected one cdf.run span in {spans_file}, got {len(roots)}")
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        by_parent.setdefault(s["parent_id"], []).append(s)
    out: dict[str, float] = {"cdf.run": roots[0]["duration_ms"] / 1000}

    def seconds(a: str, b: str) -> float:
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()

    def walk(span: dict[str, Any], depth: int) -> None:
        children = sorted(by_parent.get(span["span_id"], []), key=lambda c: c["start"])
        pad = "  " * depth
        cursor, last = span["start"], None
        for child in children:
            entity = child["attributes"].get("cdf.entity")
            name = child["name"] + (f"[{entity}]" if entity else "")
            gap = f"{pad}(gap before {name})"
            out[gap] = out.get(gap, 0.0) + seconds(cursor, child["start"])
            out[pad + name] = out.get(pad + name, 0.0) + child["duration_ms"] / 1000
            if child["name"] in REPORTED_PARENTS:
                walk(child, depth + 1)
            cursor, last = child["end"], name
        if last is not None:
            out[f"{pad}(after {last})"] = seconds(cursor, span["end"])

    walk(roots[0], 1)
    return out


def counts(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        entity: {k: v for k, v in c.items() if k != "violations"}
        for entity, c in summary["entities"].items()
    }


def warnings_of(stderr: str) -> list[str]:
    """WARN/ERROR lines of a child's stderr, with times, ids and numbers blurred for grouping."""
    out = []
    for line in stderr.splitlines():
        if re.search(r"\b(WARN|WARNING|ERROR)\b", line):
            line = re.sub(r"^\S+ \S+ ", "", line.strip())  # log4j date and time
            line = re.sub(r"\d+", "N", line)
            out.append(line[:200])
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"cdf-bench-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=AWS_KEY,
        aws_secret_access_key=AWS_SECRET, region_name=REGION,
    ).create_bucket(Bucket=name)  # fmt: skip
    return name


def run_local(work: Path, rnd: int, rows: int) -> Run:
    root = work / f"local-r{rnd}"
    spans = work / f"spans-local-r{rnd}.jsonl"
    env = base_env()
    gen = ["generate", "--tenants", TENANT, "--suppliers", str(rows), "--parts", str(rows)]
    gen += ["--seed", str(SEED), "--root", str(root), "--profile", "local"]
    _, gen_s = cdf(gen, env, work / f"generate-local-r{rnd}.log")
    env.update(OTEL_TRACES_EXPORTER="jsonl", CDF__TELEMETRY__JSONL_PATH=str(spans))
    run = ["run", "--tenant", TENANT, "--profile", "local", "--root", str(root)]
    proc, wall = cdf(run, env, work / f"run-local-r{rnd}.log")
    result = Run(LOCAL, rnd, wall, gen_s, last_json(proc), stage_durations(spans))
    result.stderr_warnings = warnings_of(proc.stderr)
    shutil.rmtree(root, ignore_errors=True)
    return result


def run_s3(work: Path, rnd: int, rows: int, endpoint: str) -> Run:
    bucket = make_bucket(endpoint)
    root = f"s3://{bucket}"
    spans = work / f"spans-s3-r{rnd}.jsonl"
    server: RestCatalogServer = start_rest_catalog(
        work / f"rest-r{rnd}", warehouse=f"{root}/warehouse", s3_endpoint=endpoint
    )
    try:
        env = {**base_env(), **s3_env(endpoint, server.uri)}
        gen = ["generate", "--tenants", TENANT, "--suppliers", str(rows), "--parts", str(rows)]
        gen += ["--seed", str(SEED), "--root", root, "--profile", "docker"]
        _, gen_s = cdf(gen, env, work / f"generate-s3-r{rnd}.log")
        env.update(OTEL_TRACES_EXPORTER="jsonl", CDF__TELEMETRY__JSONL_PATH=str(spans))
        run = ["run", "--tenant", TENANT, "--profile", "docker", "--root", root]
        moto_before, rest_before = time.process_time(), proc_cpu_s(server.process.pid)
        proc, wall = cdf(run, env, work / f"run-s3-r{rnd}.log")
        moto_cpu = time.process_time() - moto_before
        rest_cpu = proc_cpu_s(server.process.pid) - rest_before
    except BaseException:
        print(f"REST catalog log: {server.log_path}", file=sys.stderr)
        raise
    finally:
        stop_rest_catalog(server)
    result = Run(S3, rnd, wall, gen_s, last_json(proc), stage_durations(spans), moto_cpu, rest_cpu)
    result.stderr_warnings = warnings_of(proc.stderr)
    return result


def check(runs: list[Run]) -> None:
    """Every run SUCCEEDED and every run's per-entity counts identical: else exit loudly."""
    bad = [r for r in runs if r.summary["status"] != "SUCCEEDED"]
    if bad:
        raise SystemExit(
            "FAILED: runs not SUCCEEDED: "
            + "; ".join(
                f"{r.profile} round {r.round}: {r.summary['status']} {r.summary['message']}"
                for r in bad
            )
        )
    reference = counts(runs[0].summary)
    for r in runs[1:]:
        if counts(r.summary) != reference:
            raise SystemExit(
                f"FAILED: counts differ: {runs[0].profile} round {runs[0].round} "
                f"{json.dumps(reference)} vs {r.profile} round {r.round} "
                f"{json.dumps(counts(r.summary))}"
            )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(runs: list[Run], args: argparse.Namespace, load: tuple[float, float]) -> None:
    local = [r for r in runs if r.profile == LOCAL]
    s3 = [r for r in runs if r.profile == S3]
    ratios = [b.wall_s / a.wall_s for a, b in zip(local, s3, strict=True)]
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.stages if k not in keys]
    # "cdf.run" first, then the stages in the order they first appeared.
    keys.remove("cdf.run")
    med = {
        p: {k: median([r.stages[k] for r in rs if k in r.stages]) for k in ["cdf.run", *keys]}
        for p, rs in ((LOCAL, local), (S3, s3))
    }
    for p, rs in ((LOCAL, local), (S3, s3)):
        med[p]["wall (child process)"] = median([r.wall_s for r in rs])
        med[p]["outside cdf.run (interpreter, imports, exit)"] = median(
            [r.wall_s - r.stages["cdf.run"] for r in rs]
        )

    c = counts(runs[0].summary)
    print(
        f"data: {args.rows:,} suppliers + {args.rows:,} parts (1 tenant, seed {SEED}); "
        f"{runs[0].summary['read']:,} rows read per run; {os.cpu_count()} cores; "
        f"{args.rounds} rounds; load average {load[0]:.2f} at start, {load[1]:.2f} at end"
    )
    print(
        "counts (identical in every run): "
        + "; ".join(
            f"{e} inserted {v['inserted']:,} quarantined {v['quarantined']:,}" for e, v in c.items()
        )
    )
    print()
    print(f"{'round':<7}{'local s':>10}{'s3+rest s':>11}{'ratio':>8}{'moto CPU s':>12}"
          f"{'REST CPU s':>12}{'gen local s':>13}{'gen s3 s':>10}")  # fmt: skip
    for a, b, ratio in zip(local, s3, ratios, strict=True):
        print(f"{a.round:<7}{a.wall_s:>10.1f}{b.wall_s:>11.1f}{ratio:>8.2f}"
              f"{b.moto_cpu_s or 0:>12.1f}{b.rest_cpu_s or 0:>12.1f}"
              f"{a.generate_s:>13.1f}{b.generate_s:>10.1f}")  # fmt: skip
    print(f"ratio s3+rest / local, median of the per-round ratios: {median(ratios):.2f}")
    print()
    rows = ["wall (child process)", "outside cdf.run (interpreter, imports, exit)", "cdf.run",
            *keys]  # fmt: skip
    print(f"{'stage (median s)':<48}{'local':>8}{'s3+rest':>9}{'diff':>8}{'ratio':>7}")
    for k in rows:
        x, y = med[LOCAL].get(k, float("nan")), med[S3].get(k, float("nan"))
        if k.strip().startswith("(") and max(x, y) < 0.05:
            continue  # an empty gap between two spans (still in the JSON line)
        ratio = y / x if x > 0.05 else float("nan")
        print(f"{k:<48}{x:>8.2f}{y:>9.2f}{y - x:>+8.2f}{ratio:>7.2f}")

    for p, rs in ((LOCAL, local), (S3, s3)):
        seen: dict[str, int] = {}
        for r in rs:
            for w in r.stderr_warnings:
                seen[w] = seen.get(w, 0) + 1
        if seen:
            print(f"\nstderr warnings, {p} runs (count, line; digits shown as N):", file=sys.stderr)
            for w, n in list(seen.items())[:20]:
                print(f"  {n:>3}  {w}", file=sys.stderr)

    print(
        json.dumps(
            {
                "benchmark": "catalog_bench",
                "rows": args.rows,
                "rounds": args.rounds,
                "cores": os.cpu_count(),
                "load_average": list(load),
                "counts": c,
                "wall_s": {LOCAL: [r.wall_s for r in local], S3: [r.wall_s for r in s3]},
                "generate_s": {
                    LOCAL: [r.generate_s for r in local],
                    S3: [r.generate_s for r in s3],
                },
                "ratio_per_round": ratios,
                "ratio_median": median(ratios),
                "moto_cpu_s": [r.moto_cpu_s for r in s3],
                "rest_server_cpu_s": [r.rest_cpu_s for r in s3],
                "stages_median_s": {
                    p: {k.strip(): v for k, v in m.items()} for p, m in med.items()
                },
                "stages_s": [{"profile": r.profile, "round": r.round, **r.stages} for r in runs],
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="suppliers and parts each")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved local/s3+rest pairs")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access-log line per S3 request

    work = Path(tempfile.mkdtemp(prefix="cdf-catalog-bench-"))
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    # start_rest_catalog hands the server this process's credentials (moto takes any).
    os.environ.update(AWS_ACCESS_KEY_ID=AWS_KEY, AWS_SECRET_ACCESS_KEY=AWS_SECRET)
    load_start = os.getloadavg()[0]
    runs: list[Run] = []
    try:
        for rnd in range(1, args.rounds + 1):
            for profile in (LOCAL, S3):
                print(f"round {rnd}: {profile} ...", file=sys.stderr, flush=True)
                r = (
                    run_local(work, rnd, args.rows)
                    if profile == LOCAL
                    else run_s3(work, rnd, args.rows, endpoint)
                )
                print(f"  {r.wall_s:.1f} s, {r.summary['status']}", file=sys.stderr, flush=True)
                runs.append(r)
        check(runs)
        report(runs, args, (load_start, os.getloadavg()[0]))
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
