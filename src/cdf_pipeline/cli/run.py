"""``cdf run``: the silver job for one tenant, or for several in one Spark application.

``jobs/silver_job.py`` is ``cdf run`` under spark-submit. The work is
:mod:`cdf_pipeline.orchestration.runs` (``run_silver``, ``run_many``); this module reads the
arguments, shows progress and prints the summaries.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from cdf_pipeline import telemetry
from cdf_pipeline.cli.common import (
    add_common,
    add_tenant,
    positive_int,
    report,
    settings_from_args,
    tenant_list,
)
from cdf_pipeline.orchestration import runs
from cdf_pipeline.run_record import RunSummary, format_summary


def register(subs: argparse._SubParsersAction) -> None:
    run = subs.add_parser(
        "run",
        help="run the silver job for one tenant, several, or all of them",
        description="Read the tenant's new raw files, validate them against the contracts, "
        "enforce primary and foreign keys, quarantine what fails with reasons, audit, and MERGE "
        "the rest into the Iceberg silver tables. Files already ingested are skipped, so running "
        "twice changes nothing. A run holds its tenant's lease: a second run of the same tenant "
        "started meanwhile does nothing and says BUSY (or waits, with --wait). With --tenants or "
        "--all-tenants one Spark application runs --parallel tenants at a time, each with its "
        "own summary (--json: one line per tenant, then a total). Exit code: 0 on success or "
        "nothing to do, 1 when a file failed, an audit stopped the publish or a run failed, 2 "
        "on bad arguments or configuration (an unreachable endpoint, bad credentials, a missing "
        "root) or an unknown tenant, 3 when the tenant was busy (another run held its lease). "
        "Several tenants: the worst of theirs, in that order (1, 2, 3).",
    )
    which = run.add_mutually_exclusive_group(required=True)
    add_tenant(which, required=False)
    which.add_argument(
        "--tenants", type=tenant_list, metavar="A,B,C", help="these tenants, in one app"
    )
    which.add_argument(
        "--all-tenants",
        action="store_true",
        help="every tenant with a tenant_id=<t> folder under the raw root, in one app",
    )
    add_common(run, tenant=False)
    run.add_argument(
        "--parallel",
        type=positive_int,
        default=2,
        metavar="N",
        help="with --tenants/--all-tenants: tenant runs at a time (default 2); each has its own "
        "scheduler pool, so a big tenant does not hold the small ones back",
    )
    run.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="when another run holds a tenant's lease, wait up to this long for it instead of "
        "exiting BUSY (3) at once",
    )
    run.add_argument(
        "--create-root",
        action="store_true",
        help="start an empty lakehouse when the local root folder does not exist (otherwise a "
        "missing root is an error: usually a typo)",
    )
    run.set_defaults(func=cmd_run)


def _progress(stream: TextIO) -> Callable[[str, Mapping[str, Any]], None]:
    """One status line, rewritten as each stage starts (for a person watching a terminal)."""
    started = time.monotonic()

    def show(name: str, attributes: Mapping[str, Any]) -> None:
        where = " ".join(
            str(attributes[k]) for k in (telemetry.TENANT, telemetry.ENTITY) if k in attributes
        )
        elapsed = time.monotonic() - started
        stream.write(f"\r\033[K[{elapsed:6.1f} s] {where} {name}".rstrip())
        stream.flush()

    return show


def cmd_run(args: argparse.Namespace) -> int:
    if args.tenant is None:
        return run_many(args)
    settings = settings_from_args(args)
    watched = sys.stderr.isatty() and not args.json
    if watched:  # quiet under --json and when not a terminal (logs, schedulers, CI)
        telemetry.on_stage(_progress(sys.stderr))
    try:
        summary = runs.run_silver(
            settings, args.tenant, create_root=args.create_root, wait=args.wait
        )
    finally:
        if watched:
            telemetry.on_stage(None)
            sys.stderr.write("\r\033[K")
    report(format_summary(summary), summary.to_json(), as_json=args.json)
    return summary.exit_code


def run_many(args: argparse.Namespace) -> int:
    """``--tenants``/``--all-tenants``: each tenant's summary as it finishes (``--json``: one JSON
    line per tenant on stdout, the person's text on stderr), then a total; the exit code is the
    worst of the tenants' codes."""
    from cdf_pipeline.pipeline.many import exit_code

    started = time.monotonic()
    base = settings_from_args(args)
    tenants = runs.prepare_many(base, args.tenants, create_root=args.create_root)
    settings_of = runs.shared_settings(base, lambda tenant: settings_from_args(args, tenant))
    out = sys.stderr if args.json else sys.stdout
    print(f"running {len(tenants)} tenant(s), {args.parallel} at a time", file=out, flush=True)
    done = 0

    def show(summary: RunSummary) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{len(tenants)}]", format_summary(summary), file=out)
        out.flush()
        if args.json:
            print(summary.to_json(), flush=True)

    summaries = runs.run_many(
        base, settings_of, tenants, parallel=args.parallel, wait=args.wait, on_summary=show
    )
    total = runs.totals(summaries, time.monotonic() - started)
    code = exit_code(summaries)
    text = f"{len(summaries)} tenant(s) in {total['seconds']:.1f} s: " + ", ".join(
        f"{k} {v}" for k, v in total["statuses"].items()
    )
    report(text, json.dumps({**total, "exit_code": code}), as_json=args.json)
    return code
