"""File count is nearly free: the same rows as many files against the same rows as few.

    PYTHONPATH=src .venv/bin/python benchmarks/file_count_bench.py --rows 1000000 --files 200

The data (``--rows`` suppliers + ``--rows`` parts for one tenant, ``cdf generate``'s defaults:
seed 42, 6% dirty, Parquet) is generated once, one file per entity; a second copy splits each
entity's file into ``--files`` Parquet files of equal rows (row order kept), as a tenant sending
hourly files would. Each round runs a cold first load (``cdf run --json`` in a fresh process and
lakehouse, hard links to the raw files) of each layout, the order alternating between rounds.
Printed per round: wall seconds of each, the ratio and the load average; both must put the same
rows in silver.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import median

import pyarrow.parquet as pq

from cdf_generator.api import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_first_load_bench import fresh_root, run

TENANT = "bench"


def split(source: Path, target: Path, files: int) -> None:
    """``target``'s raw tree: each of ``source``'s files cut into ``files`` files."""
    for path in sorted((source / "raw").rglob("*.parquet")):
        table = pq.read_table(path)
        out = target / path.parent.relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        step = -(-table.num_rows // files)
        for i in range(files):
            pq.write_table(table.slice(i * step, step), out / f"part-{i:05d}.parquet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="suppliers and parts each")
    parser.add_argument("--files", type=int, default=200, help="files per entity, split layout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", help="folder for the data and the rounds' roots (default: tmp)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="cdf-file-count-"))
    few, many = work / "few", work / "many"
    if not (few / "raw").exists():
        generate([TENANT], args.rows, args.rows, root_uri=str(few), seed=42)
    if not (many / "raw").exists():
        split(few, many, args.files)
    n_few = len(list((few / "raw").rglob("*.parquet")))
    n_many = len(list((many / "raw").rglob("*.parquet")))
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "run", "--tenant", TENANT, "--json"]
    ratios = []
    for i in range(args.rounds):
        order = ("few", "many") if i % 2 == 0 else ("many", "few")
        seconds, inserted = {}, {}
        for side in order:
            root = fresh_root(work, few if side == "few" else many, f"round{i}-{side}")
            seconds[side], result = run([*cmd, "--root", str(root)], root, spans=False)
            assert result["status"] == "SUCCEEDED", result
            inserted[side] = {e: c["inserted"] for e, c in result["entities"].items()}
            shutil.rmtree(root, ignore_errors=True)
        assert inserted["few"] == inserted["many"], inserted
        ratios.append(seconds["many"] / seconds["few"])
        print(
            f"round {i + 1} ({order[0]} first): {n_few} files {seconds['few']:6.1f} s, "
            f"{n_many} files {seconds['many']:6.1f} s, ratio {ratios[-1]:.2f} "
            f"(load {os.getloadavg()[0]:.2f}); silver rows {inserted['few']}",
            flush=True,
        )
    print(
        f"\ndata: {args.rows:,} suppliers + {args.rows:,} parts, 1 tenant; {os.cpu_count()} "
        f"cores; median ratio {n_many} files / {n_few} files: {median(ratios):.2f}"
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
