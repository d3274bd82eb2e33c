"""Scale: first loads of growing size on one machine, and a change batch into the largest.

    PYTHONPATH=src .venv/bin/python benchmarks/scale_bench.py --sizes 1000000,3000000,10000000

For each size N (suppliers and parts each, one tenant, ``cdf generate``'s defaults: seed 42, 6%
dirty, Parquet), a cold first load (``cdf run --json`` in a fresh process and lakehouse, the
profile's default driver memory) is timed, and the peak resident memory of the process tree
(the driver JVM and Python: ``getrusage(RUSAGE_CHILDREN)``, the largest process waited for; the
sizes run in ascending order, so each figure is that size's) is printed. Then, into the largest
lakehouse, a change batch of ``--change-rate`` of its size (``cdf generate --batch 2``) is timed,
and against it a first load of a tenant of the same size as the change batch into empty silver:
the cost of a change must follow the change, not the table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from cdf_generator.api import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_first_load_bench import run

TENANT = "bench"


def peak_rss_mb() -> float:
    """The largest resident set of any child process waited for so far, in MB (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def cdf_run(root: Path, tenant: str = TENANT) -> tuple[float, dict[str, object]]:
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "run", "--tenant", tenant, "--json"]
    return run([*cmd, "--root", str(root)], root, spans=False)


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
        seconds[n], result = cdf_run(root)
        print(
            f"{n:>12,} {seconds[n]:>13.1f} {peak_rss_mb():>12.0f}  {result['status']}", flush=True
        )
    largest = sizes[-1]
    print(f"time ratio {largest:,} / {sizes[0]:,}: {seconds[largest] / seconds[sizes[0]]:.2f}")

    change_rows = int(largest * args.change_rate)
    root = work / f"n{largest}"
    generate([TENANT], largest, largest, root_uri=str(root), seed=42, batch=2,
             change_rate=args.change_rate)  # fmt: skip
    change_s, change = cdf_run(root)
    small = work / "change-sized"
    generate(["small"], change_rows, change_rows, root_uri=str(small), seed=43)
    small_s, first = cdf_run(small, "small")
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
