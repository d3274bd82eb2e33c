"""``cdf land``: a tenant's landing zone (a folder, an S3 prefix) into the raw zone."""

from __future__ import annotations

import argparse

from cdf_pipeline.cli.common import add_common, report, settings_from_args
from cdf_pipeline.landing.land import ARCHIVE
from cdf_pipeline.orchestration.land import land


def register(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = subs.add_parser(
        "land",
        help="copy a tenant's new landing files into the raw zone",
        description="Copy every new file of the tenant's landing zone (landing.uri in "
        "conf/tenants/<tenant>.yaml, default <root>/landing/<tenant>, or --from) into "
        "raw/tenant_id=<t>/entity=<e>/ingest_date=<d>/ as an exact copy named by its SHA-256, and "
        "record each file in the landing manifest (ops.landed_files). The entity comes from the "
        "file's path (a folder or file name starting with the entity's name; see "
        "docs/landing.md). Files already landed are not read again; the same bytes under "
        "another name land nothing; files that match no entity are reported and left alone. "
        "From a postgresql:// zone, each entity's new rows (after the cursor in the manifest) are "
        "pulled into one Parquet file instead (docs/landing.md). "
        "Then run 'cdf run --tenant <t>'. Exit code: 0 when nothing failed, 1 when a file could "
        "not be landed, 2 on bad arguments or configuration.",
    )
    add_common(p)
    p.add_argument(
        "--from",
        dest="source",
        metavar="URI",
        help="landing zone to read: a folder, s3://bucket/prefix/ or "
        "postgresql://user@host:port/db "
        "(password from PGPASSWORD or ~/.pgpass; default: the tenant's landing.uri)",
    )
    after = p.add_mutually_exclusive_group()
    after.add_argument(
        "--delete-after-land",
        action="store_const",
        const="delete",
        dest="after_land",
        help="delete each source file once its raw copy is verified by hash",
    )
    after.add_argument(
        "--archive-to",
        metavar="URI",
        help="move each source file below URI (same relative path) once its raw copy is verified",
    )
    p.set_defaults(func=cmd_land, after_land=None)


def cmd_land(args: argparse.Namespace) -> int:
    summary = land(
        settings_from_args(args),
        args.tenant,
        source=args.source,
        after_land=ARCHIVE if args.archive_to else args.after_land,
        archive_uri=args.archive_to,
    )
    report(summary.format(), summary.to_json(), as_json=args.json)
    return summary.exit_code
