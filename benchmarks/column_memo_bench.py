"""Expressions built once per JVM (quality/column_memo.py) against built again for every run.

    PYTHONPATH=src .venv/bin/python benchmarks/column_memo_bench.py --tenants 12 --rows 120

One warm session, as a driver that runs many tenants holds it. ``--tenants`` small tenants of
``--rows`` suppliers + parts (one file each) are generated; one more is run first to warm the
session up. Then the tenants' first loads run one after another, alternating:

- **kept**: the memo as the job uses it (the rules and normalisation expressions built once);
- **rebuilt**: the memo emptied before the run, so the run builds every expression again, as
  every run did before (then once per file: a tenant with k files per entity paid k times).

Printed: each run's wall seconds and the Py4J round trips it made, then the medians and their
ratio. Same session, same data shape, interleaved: drifting load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from statistics import median

from py4j import clientserver

from cdf_generator.api import generate
from cdf_pipeline.config import load_settings
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.quality import normalise, rules
from cdf_pipeline.spark import build_session

MEMOS = (rules._rule_reasons, normalise._normalised)


class RoundTrips:
    """Counts Py4J commands sent from this process (each is one round trip to the JVM)."""

    def __init__(self) -> None:
        self.count = 0
        send = clientserver.ClientServerConnection.send_command

        def counted(conn: object, *args: object, **kwargs: object) -> object:
            self.count += 1
            return send(conn, *args, **kwargs)

        clientserver.ClientServerConnection.send_command = counted  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=12, help="measured tenants (even)")
    parser.add_argument("--rows", type=int, default=120, help="suppliers and parts each")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="cdf-memo-bench-")
    tenants = [f"m{i:02d}" for i in range(args.tenants + 1)]
    generate(tenants, args.rows, args.rows, seed=7, root_uri=root)
    settings = load_settings("local", overrides={"root": root, "spark": {"shuffle_partitions": 2}})
    spark = build_session(settings, app_name="column-memo-bench")
    run_tenant(spark, settings, tenants[0])  # warm-up, not measured
    trips = RoundTrips()
    seconds: dict[str, list[float]] = {"kept": [], "rebuilt": []}
    for i, tenant in enumerate(tenants[1:]):
        side = "kept" if i % 2 == 0 else "rebuilt"
        if side == "rebuilt":
            for memo in MEMOS:
                memo.cache_clear()  # type: ignore[attr-defined]
        before, started = trips.count, time.perf_counter()
        run = run_tenant(spark, settings, tenant)
        took = time.perf_counter() - started
        assert run.status == "SUCCEEDED", run.message
        seconds[side].append(took)
        print(
            f"{tenant} {side:<8} {took:6.2f} s  {trips.count - before:6d} Py4J round trips"
            f"  (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    kept, rebuilt = median(seconds["kept"]), median(seconds["rebuilt"])
    print(
        f"\n{args.rows:,} suppliers + {args.rows:,} parts per tenant, {os.cpu_count()} cores: "
        f"median run kept {kept:.2f} s, rebuilt {rebuilt:.2f} s, ratio {rebuilt / kept:.2f}"
    )
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
