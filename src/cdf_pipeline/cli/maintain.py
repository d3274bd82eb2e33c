"""``cdf maintain``: compaction, snapshot expiry and orphan removal; ``--check``; ``--repair``."""

from __future__ import annotations

import argparse

from cdf_pipeline.cli.common import add_common, positive_int, report, settings_from_args
from cdf_pipeline.lakehouse.maintenance import (
    DEFAULT_ORPHAN_DAYS,
    DEFAULT_RETAIN_DAYS,
    DEFAULT_RETAIN_LAST,
    MIN_ORPHAN_DAYS,
)
from cdf_pipeline.orchestration.maintain import maintain_lakehouse
from cdf_pipeline.orchestration.maintain_report import (
    CHECK,
    MAINTAIN,
    REPAIR,
    Options,
    format_report,
)
from cdf_pipeline.tenants import validate_tenant_id

DESCRIPTION = f"""\
Look after the Iceberg tables (every contract's silver and quarantine table, ops.runs,
ops.ingested_files, ops.landed_files). By default: compact each tenant's partitions (fold
merge-on-read delete files and small files into new data files), expire snapshots older than
--retain-days beyond the last --retain-last, and remove unreferenced files older than
--orphan-days (at least {MIN_ORPHAN_DAYS:g}: younger ones may belong to a commit in flight).
With --tenant only that tenant's partitions are compacted (expiry and orphan removal are
table-wide and skipped). --check verifies the guarantees on what the tables hold (no primary
key twice in a tenant's silver, every foreign key naming a silver parent, quarantine rows OPEN
or RESOLVED with their run); --repair first brings back lost tables (a table whose current
metadata file is missing, as after a bucket was emptied: every run fails on it, naming it) by
re-registering each from its newest surviving metadata file, or, with --drop-broken, dropping
the catalog entry of those of which none survives (no file is deleted) so that the next run
creates them empty and rebuilds them from the raw files sent again; then it moves the older
versions of keys held twice in silver to quarantine. Each tenant is maintained, checked or
repaired holding its lease; a tenant whose lease a run holds is skipped and reported BUSY (or
waited for, with --wait).

exit codes: 0 done (checks passed), 1 a check failed, a step failed or a lost table was left
lost (no surviving metadata file and no --drop-broken), 2 bad arguments or configuration,
3 a tenant was busy (nothing done for it; run again later; 3 wins over 1)."""


def _orphan_days(text: str) -> float:
    """argparse type of ``--orphan-days``: a number of days, at least a day."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not days >= MIN_ORPHAN_DAYS:
        raise argparse.ArgumentTypeError(
            f"{text} is under {MIN_ORPHAN_DAYS:g} day: files that young may belong to a commit "
            "still in flight, and removing them corrupts the table (Iceberg issue 4194)"
        )
    return days


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "maintain",
        help="compact, expire snapshots, remove orphan files; --check; --repair",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--tenant", metavar="TENANT", help="only this tenant (default: every tenant with data)"
    )
    add_common(p, tenant=False)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        dest="mode",
        action="store_const",
        const=CHECK,
        help="verify the guarantees on the tables; exit 1 naming what fails",
    )
    mode.add_argument(
        "--repair",
        dest="mode",
        action="store_const",
        const=REPAIR,
        help="re-register lost tables (current metadata file missing) from their newest "
        "surviving metadata file, then move the older versions of keys held twice in silver to "
        "quarantine",
    )
    p.set_defaults(mode=MAINTAIN)
    p.add_argument(
        "--drop-broken",
        action="store_true",
        help="with --repair: drop the lost tables of which no metadata file survives (their "
        "rows are gone; the next run creates them empty and rebuilds them from the raw files)",
    )
    p.add_argument(
        "--wait",
        type=_non_negative,
        metavar="SECONDS",
        help="when a run holds a tenant's lease, wait up to this long for it instead of skipping "
        "the tenant as BUSY at once",
    )
    p.add_argument(
        "--retain-days",
        type=_non_negative,
        metavar="DAYS",
        help="keep snapshots younger than this many days (default: maintenance.retain_days, "
        f"{DEFAULT_RETAIN_DAYS:g})",
    )
    p.add_argument(
        "--retain-last",
        type=positive_int,
        metavar="N",
        help="... and at least this many of the latest (default: maintenance.retain_last, "
        f"{DEFAULT_RETAIN_LAST})",
    )
    p.add_argument(
        "--orphan-days",
        type=_orphan_days,
        metavar="DAYS",
        help="remove unreferenced files only when older than this many days (default: "
        f"maintenance.orphan_days, {DEFAULT_ORPHAN_DAYS:g}; at least {MIN_ORPHAN_DAYS:g})",
    )
    p.set_defaults(func=cmd_maintain, parser=p)


def cmd_maintain(args: argparse.Namespace) -> int:
    if args.drop_broken and args.mode != REPAIR:
        args.parser.error("--drop-broken goes with --repair only")
    tenant = validate_tenant_id(args.tenant) if args.tenant else None
    settings = settings_from_args(args, tenant)
    kept = settings.maintenance
    options = Options(
        kept.retain_days if args.retain_days is None else args.retain_days,
        kept.retain_last if args.retain_last is None else args.retain_last,
        kept.orphan_days if args.orphan_days is None else args.orphan_days,
    )
    done = maintain_lakehouse(
        settings,
        mode=args.mode,
        tenant=tenant,
        options=options,
        wait=args.wait,
        drop_broken=args.drop_broken,
    )
    report(format_report(done), done.to_json(), as_json=args.json)
    return done.exit_code
