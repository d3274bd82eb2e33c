"""``cdf runs``: a tenant's past runs from ``ops.runs``, newest first."""

from __future__ import annotations

import argparse
import json

from cdf_pipeline.cli.common import add_common, settings_from_args
from cdf_pipeline.orchestration.runs import run_history
from cdf_pipeline.run_record import COUNT_KEYS


def register(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    runs = subs.add_parser(
        "runs",
        help="list a tenant's past runs from ops.runs",
        description="List the tenant's latest runs (newest first) with their counts and status.",
    )
    add_common(runs)
    runs.add_argument("--limit", type=int, default=20, help="how many runs to show (default 20)")
    runs.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    rows = run_history(settings_from_args(args), args.tenant, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print(f"no runs recorded for tenant {args.tenant}")
        return 0
    cols = ("started_at", "run_id", "status", *COUNT_KEYS, "pass_rate", "duration_s")
    print("  ".join(cols))
    for r in rows:
        print("  ".join(str(r[c]) for c in cols))
    return 0
