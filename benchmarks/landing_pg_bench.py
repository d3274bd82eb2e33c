"""PostgreSQL landing benchmark: the incremental pull to Parquet against a plain CSV dump.

    PYTHONPATH=src .venv/bin/python benchmarks/landing_pg_bench.py --suppliers 1000000 --rounds 2

Data: ``--suppliers`` suppliers of one tenant (seed 42, 6% dirty, anomalies included), loaded by
``cdf generate --to`` (the generator's API) into ``bench.suppliers`` of a throwaway PostgreSQL
on loopback (``tests/servers/postgres.py``, the server the test suite starts, with
``shared_buffers`` raised to 1 GB so the table is served from the server's cache). Then, interleaved
for ``--rounds`` rounds, each in a fresh child process (so its peak RSS is its own, not the
generator's):

- ``pull xmin`` and ``pull ts``: :func:`cdf_pipeline.postgres.pull.pull_entity` with the
  ``xmin`` cursor (the default) and with ``source_timestamp``, a first pull (no cursor) of the
  whole table into one contract-typed Parquet file (ADBC, ``COPY (SELECT ... ORDER BY ...) TO
  STDOUT`` binary, Arrow conversion, ParquetWriter);
- ``land xmin``: :func:`cdf_pipeline.landing.pg_land.land_postgres`, what ``cdf land`` does for a
  PostgreSQL zone without the manifest's Iceberg commit: every entity's table (the 1,000 parts
  too) pulled into a local raw folder under its content name (written in place, hashed, renamed);
- ``csv``: ``COPY bench.suppliers TO STDOUT (FORMAT csv)`` into a file through psycopg2's
  ``copy_expert`` (no order, no types: the floor of getting the bytes out).

Per run: wall seconds, rows/s, the child's peak RSS (``VmHWM`` of ``/proc/self/status``) and its
RSS after imports, before the work (what the interpreter and libraries alone take), output size.
Exits 1 when the default cursor's pull or landing step misses the targets (>= 150k rows/s, peak
RSS <= 1.5 GB) or returns fewer rows than the table holds; the opt-in ``source_timestamp`` pull is
reported alongside.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the throwaway PostgreSQL server the test suite uses

from servers.postgres import start_postgres, stop_postgres  # noqa: E402

SCHEMA = "bench"
#: A server sized for a 1M-row table (the test servers' 16 MB would make every scan go through
#: the OS cache): ~1 GB of suppliers fits.
SHARED_BUFFERS = "1GB"
TARGET_ROWS_PER_S = 150_000
TARGET_PEAK_RSS_MB = 1536


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    """Current RSS (VmRSS) of this process."""
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """Peak RSS of this process: the kernel's high-water mark (VmHWM) of this program's memory.

    Not ``getrusage``'s ``ru_maxrss``: after fork + exec it keeps the parent's high-water mark
    (the generator's, here), so a small child would report its parent's peak.
    """
    return _status_mb("VmHWM")


def child(kind: str, uri: str, out: Path, cursor: str) -> None:
    """One measured run in this (fresh) process; prints one JSON line."""
    if kind == "land":
        from datetime import datetime, timezone

        from cdf_pipeline.config import load_settings
        from cdf_pipeline.landing.manifest import Known
        from cdf_pipeline.landing.pg_land import land_postgres
        from cdf_pipeline.storage import Storage

        class FirstLanding:
            """The manifest of a tenant never landed before, kept in memory: the benchmark times
            PostgreSQL -> raw, not the one Iceberg commit of the manifest rows afterwards."""

            def known(self, tenant: str) -> Known:
                return Known()

            def last_cursor(self, tenant: str, source: str) -> None:
                return None

            def record(self, objects: object) -> None:
                return None

        settings = load_settings(
            "local",
            overrides={"root": str(out), "landing": {"postgres_schema": SCHEMA,
                                                    "cursor_column": cursor}},
        )  # fmt: skip
        base = _rss_mb()
        started = time.perf_counter()
        landed, _ = land_postgres(
            FirstLanding(), settings, Storage(), "bench", uri, "bench", datetime.now(timezone.utc)
        )
        seconds = time.perf_counter() - started
        suppliers = next(o for o in landed if o.entity == "suppliers")
        rows, out = suppliers.rows or 0, Path(suppliers.raw_file or "")
    elif kind == "pull":
        from cdf_pipeline.contracts import ENTITIES
        from cdf_pipeline.postgres.pull import pull_entity

        base = _rss_mb()
        started = time.perf_counter()
        result = pull_entity(uri, ENTITIES["suppliers"], out, schema=SCHEMA, cursor_column=cursor)
        seconds = time.perf_counter() - started
        rows = result.rows
    else:
        import psycopg2

        base = _rss_mb()
        started = time.perf_counter()
        with psycopg2.connect(uri) as conn, conn.cursor() as cur, out.open("wb") as f:
            cur.copy_expert(f"COPY {SCHEMA}.suppliers TO STDOUT (FORMAT csv)", f)
            rows = cur.rowcount
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "kind": kind,
                "rows": rows,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "peak_rss_mb": _peak_mb(),
                "rss_after_imports_mb": base,
                "bytes": out.stat().st_size,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suppliers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=("pull", "land", "csv"), help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cursor", default="xmin", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.uri, args.out, args.cursor)
        return 0

    from cdf_generator.api import generate

    work = Path(tempfile.mkdtemp(prefix="landing-pg-bench-"))
    server = start_postgres(work / "pg", {"shared_buffers": SHARED_BUFFERS})
    os.environ.update(PGPASSWORD=server.password)  # libpq's convention; never in the URI
    try:
        started = time.perf_counter()
        summary = generate(
            ["bench"], args.suppliers, 1_000, seed=42, root_uri=str(work / "lake"),
            pg_uri=server.dsn(), pg_schema=SCHEMA,
        )  # fmt: skip
        rows = summary.tenants["bench"]["suppliers"].rows
        print(f"generate --to: {rows} suppliers loaded in {time.perf_counter() - started:.1f} s")
        # The pull with each cursor kind (a first pull: the whole table, in the cursor's order).
        measured = {"pull xmin": ("pull", "xmin"), "pull ts": ("pull", "source_timestamp"),
                    "land xmin": ("land", "xmin"), "csv": ("csv", "")}  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in measured}
        for r in range(args.rounds):
            for name, (kind, cursor) in measured.items():
                suffix = {"pull": "parquet", "csv": "csv", "land": "lake"}[kind]
                out = work / f"{kind}-{r}.{suffix}"
                cmd = [sys.executable, __file__, "--child", kind, "--uri", server.dsn()]
                proc = subprocess.run(
                    [*cmd, "--out", str(out), "--cursor", cursor or "xmin"],
                    check=True, capture_output=True, text=True, env=os.environ.copy(),
                )  # fmt: skip
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[name].append(run)
                if out.is_dir():
                    shutil.rmtree(out)
                else:
                    out.unlink()
                print(
                    f"round {r + 1} {name:<9}: {run['rows']:>9} rows in {run['seconds']:6.2f} s "
                    f"= {run['rows_per_s']:>9,.0f} rows/s, peak RSS {run['peak_rss_mb']:6.0f} MB "
                    f"(after imports {run['rss_after_imports_mb']:.0f} MB), "
                    f"{run['bytes'] / 2**20:.0f} MiB out"
                )
        ok = True
        dump = statistics.median(x["seconds"] for x in runs["csv"])
        for name, items in runs.items():
            rate = statistics.median(x["rows_per_s"] for x in items)
            peak = max(x["peak_rss_mb"] for x in items)
            ratio = statistics.median(x["seconds"] for x in items) / dump
            print(f"{name:<9} median {rate:,.0f} rows/s, max peak RSS {peak:.0f} MB, "
                  f"time / csv {ratio:.2f}")  # fmt: skip
            if name in ("pull xmin", "land xmin"):  # the default cursor; ts is opt-in
                ok = ok and rate >= TARGET_ROWS_PER_S and peak <= TARGET_PEAK_RSS_MB
                ok = ok and all(x["rows"] == rows for x in items)
        print("targets (>= 150k rows/s, <= 1.5 GB):", "met" if ok else "MISSED")
        print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}, {os.cpu_count()} cores")
        return 0 if ok else 1
    finally:
        stop_postgres(server)


if __name__ == "__main__":
    sys.exit(main())
