"""Many tenants: one application running them ``--parallel`` against one ``spark-submit`` each.

    PYTHONPATH=src .venv/bin/python benchmarks/many_tenants_bench.py --tenants 10 --rows 50000

Data: ``--tenants`` tenants of ``--rows`` suppliers + ``--rows`` parts each (``cdf generate``,
seed 42, 6 % dirty), generated once; each side runs on its own copy of the same raw files, into an
empty lakehouse (the embedded default: SQLite catalog, local files).

1. **First load**, in one benchmark run, one side after the other (order alternates per round):
   - ``sequential``: one ``spark-submit jobs/silver_job.py --tenant t`` per tenant, one after the
     other, as a scheduler running a job per tenant does (a cold JVM each);
   - ``parallel``: one ``spark-submit jobs/silver_job.py --all-tenants --parallel N``.
   The figure is the wall time of each side and their ratio (target: parallel >= 3x faster).
2. **Change batch**: a 1 % change batch per tenant (``--batch 2 --change-rate 0.01``), then one
   ``--all-tenants --parallel N`` application on the parallel side's lakehouse: its wall time and
   the per-tenant run times it reports, and a third application with nothing new for any tenant
   (the per-tenant fixed cost inside a running application: each tenant's ``seconds``).

Every run must end SUCCEEDED (NOTHING_NEW for the last); the script exits 1 otherwise. Prints the
machine's load average with each figure: other work on a 2-core machine moves these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDF_", "OTEL_"))}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        PYTHONPATH=str(REPO / "src"),
    )
    return env


def _submit(*args: str) -> list[dict[str, Any]]:
    """spark-submit the silver job; its JSON lines (one per tenant, then a total when many)."""
    cmd = [str(BIN / "spark-submit"), "--driver-memory", "4g", str(REPO / "jobs" / "silver_job.py"),
           *args, "--json"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=False)
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(
            f"spark-submit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return lines


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _generate(root: Path, tenants: list[str], rows: int, batch: int) -> None:
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "generate", "--tenants", ",".join(tenants),
           "--suppliers", str(rows), "--parts", str(rows), "--seed", "42", "--batch", str(batch),
           "--root", str(root)]  # fmt: skip
    if batch > 1:
        cmd += ["--change-rate", "0.01"]
    subprocess.run(cmd, cwd=REPO, env=_env(), check=True, capture_output=True)


def _check(summaries: list[dict[str, Any]], status: str) -> None:
    bad = {s["tenant"]: s["status"] for s in summaries if s["status"] != status}
    if bad:
        sys.exit(f"expected every tenant {status}, got {bad}")


def sequential(root: Path, tenants: list[str]) -> float:
    started = time.monotonic()
    for tenant in tenants:
        _check(_submit("--tenant", tenant, "--root", str(root)), "SUCCEEDED")
    return time.monotonic() - started


def parallel(root: Path, n: int, status: str = "SUCCEEDED") -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    *per_tenant, _total = _submit("--all-tenants", "--parallel", str(n), "--root", str(root))
    _check(per_tenant, status)
    return time.monotonic() - started, per_tenant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--rows", type=int, default=50_000, help="suppliers and parts per tenant")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    tenants = [f"b{i:02d}" for i in range(args.tenants)]
    with tempfile.TemporaryDirectory(prefix="cdf-many-") as tmp:
        source = Path(tmp) / "source"
        _generate(source, tenants, args.rows, batch=1)
        print(f"{args.tenants} tenants x {args.rows:,} + {args.rows:,} rows, --parallel "
              f"{args.parallel}, {os.cpu_count()} cores")  # fmt: skip
        ratios = []
        for r in range(args.rounds):
            roots = {side: Path(tmp) / f"{side}-{r}" for side in ("sequential", "parallel")}
            for root in roots.values():
                shutil.copytree(source / "raw", root / "raw")
            order = ["sequential", "parallel"] if r % 2 == 0 else ["parallel", "sequential"]
            took = {}
            for side in order:
                before = _load()
                if side == "sequential":
                    took[side] = sequential(roots[side], tenants)
                else:
                    took[side] = parallel(roots[side], args.parallel)[0]
                print(f"round {r + 1} first load {side:>10}: {took[side]:7.1f} s "
                      f"({before} -> {_load()})")  # fmt: skip
            ratios.append(took["sequential"] / took["parallel"])
            print(f"round {r + 1} sequential / parallel = {ratios[-1]:.2f}x")
        print(f"median ratio sequential / parallel: {statistics.median(ratios):.2f}x")

        root = roots["parallel"]
        _generate(root, tenants, args.rows, batch=2)
        took, runs = parallel(root, args.parallel)
        per = sorted(s["seconds"] for s in runs)
        print(f"1% change batch, {args.tenants} tenants in one application: {took:.1f} s "
              f"(tenant runs {per[0]:.1f}-{per[-1]:.1f} s, median {statistics.median(per):.1f}; "
              f"{_load()})")  # fmt: skip
        took, runs = parallel(root, args.parallel, status="NOTHING_NEW")
        per = sorted(s["seconds"] for s in runs)
        print(f"nothing new, {args.tenants} tenants in one application: {took:.1f} s "
              f"(per tenant {per[0]:.2f}-{per[-1]:.2f} s, median {statistics.median(per):.2f}; "
              f"{_load()})")  # fmt: skip


if __name__ == "__main__":
    main()
