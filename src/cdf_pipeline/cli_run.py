"""``cdf run`` (the silver job for one tenant) and ``cdf runs`` (its history from ``ops.runs``).

``jobs/silver_job.py`` calls :func:`run_silver` too, so spark-submit and the CLI share one path.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from cdf_pipeline import telemetry
from cdf_pipeline.config import PROFILES, Settings, load_settings
from cdf_pipeline.exceptions import CdfError
from cdf_pipeline.run_record import COUNT_KEYS, RunSummary, format_summary
from cdf_pipeline.tenants import parse_tenant_list

logger = logging.getLogger(__name__)


def add_common(p: argparse.ArgumentParser, *, tenant: bool = True) -> None:
    """Options every Spark sub-command takes (``tenant=False``: the command adds its own)."""
    if tenant:
        p.add_argument(
            "--tenant", required=True, help="tenant id (lowercase identifier, e.g. acme)"
        )
    p.add_argument(
        "--profile",
        default="local",
        help=f"configuration profile: {', '.join(PROFILES)} "
        "(default: local, the embedded lakehouse)",
    )
    p.add_argument(
        "--root",
        help="lakehouse root: a local folder or s3://bucket/prefix (default: $CDF_ROOT or the "
        "profile's root)",
    )
    p.add_argument(
        "--json", action="store_true", help="print a machine-readable summary as the last line"
    )


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
    which.add_argument("--tenant", help="tenant id (lowercase identifier, e.g. acme)")
    which.add_argument(
        "--tenants", type=_tenant_list, metavar="A,B,C", help="these tenants, in one app"
    )
    which.add_argument(
        "--all-tenants",
        action="store_true",
        help="every tenant with a tenant_id=<t> folder under the raw root, in one app",
    )
    add_common(run, tenant=False)
    run.add_argument(
        "--parallel",
        type=_positive,
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
    runs = subs.add_parser(
        "runs",
        help="list a tenant's past runs from ops.runs",
        description="List the tenant's latest runs (newest first) with their counts and status.",
    )
    add_common(runs)
    runs.add_argument("--limit", type=int, default=20, help="how many runs to show (default 20)")
    runs.set_defaults(func=cmd_runs)


def _tenant_list(text: str) -> list[str]:
    try:
        return parse_tenant_list(text)
    except CdfError as exc:  # argparse turns this into one line and exit code 2
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def report(text: str, json_line: str, *, as_json: bool) -> None:
    """A command's summary: for a person on stdout, or on stderr with ``json_line`` last on stdout
    (``--json``: spark-submit merges the driver's stderr into stdout, so the JSON must be last).
    Telemetry is flushed first: an export error must not follow the last line."""
    telemetry.finish()
    print(text, file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json_line, flush=True)


def settings_from_args(args: argparse.Namespace, tenant: str | None = None) -> Settings:
    overrides: dict[str, Any] = {"root": args.root} if args.root else {}
    tenant = tenant or getattr(args, "tenant", None)
    return load_settings(args.profile, tenant=tenant, overrides=overrides)


def run_silver(
    settings: Settings, tenant: str, *, create_root: bool = False, wait: float | None = None
) -> RunSummary:
    """Build the session, run one tenant, stop the session, return the summary (the one path
    for every caller).

    One span covers both, so the trace of a tenant run includes the Spark start-up. The session
    is stopped here, before the process exits, so the JVM does not shut its thread pools down
    under running tasks (which printed RejectedExecutionException traces after a clean run).
    """
    from cdf_pipeline.pipeline.silver import run_tenant
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.spark import build_session
    from cdf_pipeline.storage import storage_for
    from cdf_pipeline.store_watch import watch_store

    with telemetry.stage("cdf.run", **{telemetry.TENANT: tenant}) as span:
        with telemetry.stage("preflight"):
            check_run(settings, storage_for(settings), create_root=create_root)
        with watch_store(settings, "run"):  # a store that vanishes ends the run in bounded time
            with telemetry.stage("spark_session"):
                spark = build_session(settings, app_name=f"cdf-silver-{tenant}")
            try:
                summary = run_tenant(spark, settings, tenant, wait=wait)
            finally:
                spark.stop()
        telemetry.set_attributes(
            span, {telemetry.RUN_ID: summary.run_id, telemetry.STATE: summary.status}
        )
    return summary


def _progress(stream: TextIO) -> Callable[[str, Mapping[str, Any]], None]:
    """One status line, rewritten as each stage starts (for a person watching a terminal)."""
    started = time.monotonic()

    def show(name: str, attributes: Mapping[str, Any]) -> None:
        where = " ".join(str(attributes[k]) for k in (telemetry.TENANT, telemetry.ENTITY)
                         if k in attributes)  # fmt: skip
        elapsed = time.monotonic() - started
        stream.write(f"\r\033[K[{elapsed:6.1f} s] {where} {name}".rstrip())
        stream.flush()

    return show


def cmd_run(args: argparse.Namespace) -> int:
    if args.tenant is None:
        from cdf_pipeline.cli_run_many import run_many

        return run_many(args)
    settings = settings_from_args(args)
    watched = sys.stderr.isatty() and not args.json
    if watched:  # quiet under --json and when not a terminal (logs, schedulers, CI)
        telemetry.on_stage(_progress(sys.stderr))
    try:
        summary = run_silver(settings, args.tenant, create_root=args.create_root, wait=args.wait)
    finally:
        if watched:
            telemetry.on_stage(None)
            sys.stderr.write("\r\033[K")
    report(format_summary(summary), summary.to_json(), as_json=args.json)
    return summary.exit_code


def cmd_runs(args: argparse.Namespace) -> int:
    from cdf_pipeline.lakehouse import ops
    from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
    from cdf_pipeline.spark import build_session

    settings = settings_from_args(args)
    spark = build_session(settings, app_name="cdf-runs")
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    rows = ops.list_runs(spark, names, args.tenant, limit=args.limit)
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
