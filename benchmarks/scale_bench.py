"""Scale: first loads of growing size on one machine, and a change batch into the largest.

    PYTHONPATH=src .venv/bin/python benchmarks/scale_bench.py --sizes 1000000,3000000,10000000

For each size N (suppliers and parts each, one tenant, ``cdf generate``'s defaults: seed 42, 6%
dirty, Parquet), a cold first load (``cdf run --json`` in a fresh process and lakehouse, the
profile's default driver memory) is timed, and the peak resident memory of its process tree
(Python and the Spark driver JVM, sampled from ``/proc`` every 0.5 s) is printed. Then, into the
largest lakehouse, a change batch of ``--change-rate`` of its size (``cdf generate --batch 2``) is
timed, and against it a first load of a tenant of the same size as the change batch into empty
silver: the cost of a change must follow the change, not the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cdf_generator.api import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_first_load_bench import child_env

TENANT = "bench"


def _tree(root: int) -> list[int]:
    """``root`` and every process below it (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cdf_run(root: Path, tenant: str = TENANT) -> tuple[float, dict[str, Any], float]:
    """Wall seconds of a cold ``cdf run``, its JSON summary, and the peak resident memory of
    its process tree (Python and the Spark driver JVM), sampled every 0.5 s."""
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "run", "--tenant", tenant, "--json"]
    started = time.perf_counter()
    with subprocess.Popen(
        [*cmd, "--root", str(root)], env=child_env(root, spans=False),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        peak = 0.0
        sampler = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not sampler.wait(0.5):
                peak = max(peak, _rss_mb(_tree(proc.pid)))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        out, err = proc.communicate()
        sampler.set()
        thread.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(err[-5000:])
        raise SystemExit(f"cdf run exited {proc.returncode}")
    return seconds, json.loads(out.strip().splitlines()[-1]), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--change-rate", type=float, default=0.01)
    parser.add_argument("--work", help="folder for the lakehouses (default: tmp)")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="cdf-scale-"))
    seconds: dict[int, float] = {}
    print(f"{'rows/entity':>12} {'first load s':>13} {'peak RSS MB':>12}  status", flush=True)
    for n in sizes:
        root = work / f"n{n}"
        if not (root / "raw").exists():
            generate([TENANT], n, n, root_uri=str(root), seed=42)
        seconds[n], result, peak = cdf_run(root)
        print(f"{n:>12,} {seconds[n]:>13.1f} {peak:>12.0f}  {result['status']}", flush=True)
    largest = sizes[-1]
    print(f"time ratio {largest:,} / {sizes[0]:,}: {seconds[largest] / seconds[sizes[0]]:.2f}")

    change_rows = int(largest * args.change_rate)
    root = work / f"n{largest}"
    generate([TENANT], largest, largest, root_uri=str(root), seed=42, batch=2,
             change_rate=args.change_rate)  # fmt: skip
    change_s, change, _ = cdf_run(root)
    small = work / "change-sized"
    generate(["small"], change_rows, change_rows, root_uri=str(small), seed=43)
    small_s, first, _ = cdf_run(small, "small")
    print(
        f"change batch ({args.change_rate:.0%} of {largest:,}: {change['read']:,} rows) into "
        f"{largest:,} silver: {change_s:.1f} s ({change['status']}); first load of "
        f"{first['read']:,} rows into empty silver: {small_s:.1f} s; ratio "
        f"{change_s / small_s:.2f}; {os.cpu_count()} cores"
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
