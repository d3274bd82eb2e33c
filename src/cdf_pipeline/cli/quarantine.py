"""``cdf quarantine``: a tenant's open quarantine rows by rule, file or run; ``--export``."""

from __future__ import annotations

import argparse
import json

from cdf_pipeline.cli.common import add_common, add_tenant, settings_from_args
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.orchestration.quarantine import export_for_fixing, list_open
from cdf_pipeline.tenants import validate_tenant_id

DESCRIPTION = """\
List the tenant's open quarantined rows, counted by rule (default), by source file or by run;
or, with --export FILE.csv|FILE.parquet and --entity, write them in the columns the tenant sent
plus a 'reasons' column, for the customer to fix. Fixed rows sent back (as a new file in the raw
zone, e.g. with 'cdf land') land in silver on the next run and their quarantine rows are marked
RESOLVED; a row sent back still broken stays open with its new reasons.

exit codes: 0 done, 2 bad arguments, an unknown tenant or entity, nothing to export."""


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "quarantine",
        help="list a tenant's open quarantined rows; --export them for fixing",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_tenant(p)
    p.add_argument(
        "--entity", choices=sorted(ENTITIES), help="only this entity (required with --export)"
    )
    p.add_argument(
        "--by", choices=("rule", "file", "run"), default="rule", help="group open rows by"
    )
    p.add_argument(
        "--export",
        metavar="FILE.csv|FILE.parquet",
        help="write the open rows of --entity as sent, plus a reasons column",
    )
    add_common(p, tenant=False)
    p.set_defaults(func=cmd_quarantine)


def cmd_quarantine(args: argparse.Namespace) -> int:
    tenant = validate_tenant_id(args.tenant)
    if args.export and not args.entity:
        raise InputError(
            f"--export needs --entity ({' or '.join(sorted(ENTITIES))}): a file holds one entity"
        )
    settings = settings_from_args(args, tenant)
    if args.export:
        n = export_for_fixing(settings, tenant, args.entity, args.export)
        print(f"wrote {n:,} open {args.entity} row(s) of {tenant} to {args.export}")
        return 0
    entities = [args.entity] if args.entity else list(ENTITIES)
    counts = list_open(settings, tenant, args.by, entities)
    if args.json:
        print(json.dumps([c.__dict__ for c in counts]))
        return 0
    if not counts:
        print(f"no open quarantine rows for tenant {tenant}")
        return 0
    print(f"{'entity':<12}{'open rows':>10}  {args.by}")
    for c in counts:
        print(f"{c.entity:<12}{c.rows:>10,}  {c.group}")
    return 0
