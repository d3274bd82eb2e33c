"""Generator throughput: each size in a fresh subprocess; wall time, rows/s and peak RSS.

Usage: .venv/bin/python benchmarks/generator_bench.py [--sizes 60000,600000,1000000] [--repeat 3]

One tenant, suppliers = parts = size, dirty rate 0.06 (anomalies injected and labelled), Parquet
contract shape, written to a temporary local root. The child's peak RSS comes from
``resource.getrusage(RUSAGE_CHILDREN)``, read after each child exits (children run one at a
time, so the running maximum is that child's peak as long as sizes grow).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys, time
from cdf_generator.api import generate
size, root = int(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
s = generate(["acme"], size, size, seed=42, dirty_rate=0.06, root_uri=root)
rows = sum(e.rows for e in s.tenants["acme"].values())
print(json.dumps({"seconds": time.perf_counter() - t, "rows": rows}))
"""


def run_one(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(size), root],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
    inner = json.loads(out.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "size": size,
        "wall": wall,
        "generate": inner["seconds"],
        "rows": inner["rows"],
        "rss_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="60000,600000,1000000")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (best is reported)")
    args = parser.parse_args()
    print(f"{'size':>9} {'rows':>9} {'wall s':>7} {'gen s':>7} {'rows/s':>10} {'peak RSS MB':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        best = min((run_one(size) for _ in range(args.repeat)), key=lambda r: r["wall"])
        rate = best["rows"] / best["generate"]
        print(
            f"{size:>9} {int(best['rows']):>9} {best['wall']:>7.2f} {best['generate']:>7.2f} "
            f"{rate:>10,.0f} {best['rss_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
