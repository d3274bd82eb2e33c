"""Scale: first loads of growing size on one machine, and a change batch into the largest.

    PYTHONPATH=src .venv/bin/python benchmarks/scale_bench.py --sizes 1000000,3000000,10000000

For each size N (suppliers and parts each, one tenant, ``cdf generate``'s defaults: seed 42, 6%
dirty, Parquet), a cold first load (``cdf run --json`` in a fresh process and lakehouse, the
profile's default driver memory) is timed, and the peak resident memory of its process tree
(Python and the Spark driver JVM, sampled from ``/proc`` every 0.5 s) is printed. Then, into the
largest lakehouse, a change batch of ``--change-rate`` of its size (``cdf generate --batch 2``) is
timed, and against it a first load of a tenant of the same size as the change batch into empty
silver: the cost of a change must follow the change, not the table. ``--rounds R`` repeats that
pair R times, interleaved, each from the same restored lakehouse, and prints the median ratio;
``--change-only`` does only that, on the largest lakehouse an earlier run left in ``--work``.
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
import threading
import time
from pathlib import Path
from typing import Any

from cdf_generator.api import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_first_load_bench import child_env, process_tree

TENANT = "bench"


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
                peak = max(peak, _rss_mb(process_tree(proc.pid)))

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


def change_rounds(work: Path, largest: int, rate: float, rounds: int) -> None:
    """The change batch into the largest silver against a first load of its size, interleaved.

    Each round restores the largest lakehouse as it was after its first load (with the change
    batch landed) and gives the small first load a fresh lakehouse, so every run is the same
    cold run; odd rounds run the change first, even rounds the small load first.
    """
    snapshot = work / f"n{largest}-first-load"
    if not snapshot.exists():
        generate([TENANT], largest, largest, root_uri=str(work / f"n{largest}"), seed=42,
                 batch=2, change_rate=rate)  # fmt: skip
        shutil.copytree(work / f"n{largest}", snapshot, symlinks=True)
    small_raw = work / "change-sized-raw"
    if not small_raw.exists():
        rows = int(largest * rate)
        generate(["small"], rows, rows, root_uri=str(small_raw), seed=43)

    def change() -> tuple[float, dict[str, Any]]:
        root = work / f"n{largest}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(snapshot, root, symlinks=True)
        seconds, summary, _ = cdf_run(root)
        return seconds, summary

    def small() -> tuple[float, dict[str, Any]]:
        root = work / "change-sized"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(small_raw, root, symlinks=True)
        seconds, summary, _ = cdf_run(root, "small")
        return seconds, summary

    ratios = []
    for i in range(1, rounds + 1):
        if i % 2:
            (change_s, changed), (small_s, first) = change(), small()
        else:
            (small_s, first), (change_s, changed) = small(), change()
        ratios.append(change_s / small_s)
        print(
            f"round {i} ({'change' if i % 2 else 'small load'} first): change batch of "
            f"{changed['read']:,} rows into {largest:,} silver {change_s:.1f} s "
            f"({changed['status']}); first load of {first['read']:,} rows into empty silver "
            f"{small_s:.1f} s; ratio {ratios[-1]:.2f}",
            flush=True,
        )
    print(f"median ratio {statistics.median(ratios):.2f} over {rounds}; {os.cpu_count()} cores")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--change-rate", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=1, help="change rounds (interleaved)")
    parser.add_argument(
        "--change-only",
        action="store_true",
        help="skip the first loads: --work holds the largest one from an earlier run",
    )
    parser.add_argument("--work", help="folder for the lakehouses (default: tmp)")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))
    if args.change_only and not args.work:
        parser.error("--change-only needs the --work folder of an earlier run")
    work = Path(args.work or tempfile.mkdtemp(prefix="cdf-scale-"))
    seconds: dict[int, float] = {}
    if not args.change_only:
        print(f"{'rows/entity':>12} {'first load s':>13} {'peak RSS MB':>12}  status", flush=True)
        for n in sizes:
            root = work / f"n{n}"
            if not (root / "raw").exists():
                generate([TENANT], n, n, root_uri=str(root), seed=42)
            seconds[n], result, peak = cdf_run(root)
            print(f"{n:>12,} {seconds[n]:>13.1f} {peak:>12.0f}  {result['status']}", flush=True)
        largest = sizes[-1]
        print(f"time ratio {largest:,} / {sizes[0]:,}: {seconds[largest] / seconds[sizes[0]]:.2f}")
        shutil.rmtree(work / f"n{largest}-first-load", ignore_errors=True)  # a new first load
    change_rounds(work, sizes[-1], args.change_rate, args.rounds)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
