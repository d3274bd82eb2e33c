"""``cdf migrate-catalog``: move a lakehouse made with the hadoop catalog to the SQLite catalog."""

from __future__ import annotations

import argparse
import json

from cdf_pipeline.cli_run import report
from cdf_pipeline.config import PROFILES, load_settings
from cdf_pipeline.exceptions import ConfigError


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "migrate-catalog",
        help="register a hadoop-catalog lakehouse (cdf-pipeline 0.1) in the SQLite catalog",
        description="Lakehouses made by cdf-pipeline 0.1 catalogued their tables with Iceberg's "
        "hadoop catalog, which is unsafe for several writers at once. This registers each of "
        "their tables, in place and copying nothing, in the embedded default's catalog "
        "({root}/catalog.db, Iceberg's JDBC catalog on SQLite). Run it once, while no job writes "
        "to the lakehouse; running it again registers nothing. Exit code: 0 when done, 2 on bad "
        "arguments or configuration.",
    )
    p.add_argument(
        "--profile", default="local", help=f"configuration profile ({', '.join(PROFILES)})"
    )
    p.add_argument("--root", help="lakehouse root (default: $CDF_ROOT or ./lakehouse)")
    p.add_argument("--json", action="store_true", help="print the tables registered as JSON last")
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from cdf_pipeline.lakehouse.migrate import migrate, unmigrated
    from cdf_pipeline.spark import build_session

    settings = load_settings(args.profile, overrides={"root": args.root} if args.root else {})
    if settings.sqlite_catalog_path is None:
        raise ConfigError(
            f"the {settings.profile} profile's catalog is {settings.catalog.type} "
            f"({settings.catalog_uri or 'no uri'}), not the embedded SQLite catalog: "
            "migrate-catalog moves a local lakehouse made by cdf-pipeline 0.1 only"
        )
    if not unmigrated(settings):
        text = f"nothing to migrate under {settings.root}: every table is in {settings.catalog_uri}"
        report(text, json.dumps({"registered": []}), as_json=args.json)
        return 0
    spark = build_session(settings, app_name="cdf-migrate-catalog")
    try:
        done = migrate(spark, settings)
    finally:
        spark.stop()
    lines = [f"registered {t.identifier} ({t.metadata_file.name})" for t in done]
    lines.append(f"{len(done)} table(s) now in {settings.catalog_uri}")
    report(
        "\n".join(lines),
        json.dumps({"registered": [t.identifier for t in done]}),
        as_json=args.json,
    )
    return 0
