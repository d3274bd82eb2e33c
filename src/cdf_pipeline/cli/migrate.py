"""``cdf migrate-catalog``: move a lakehouse made with the hadoop catalog to the SQLite catalog."""

from __future__ import annotations

import argparse
import json

from cdf_pipeline.cli.common import add_common, report, settings_from_args
from cdf_pipeline.orchestration.migrate import migrate_catalog


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
    add_common(p, tenant=False)
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    done = migrate_catalog(settings)
    if done is None:
        text = f"nothing to migrate under {settings.root}: every table is in {settings.catalog_uri}"
        report(text, json.dumps({"registered": []}), as_json=args.json)
        return 0
    lines = [f"registered {t.identifier} ({t.metadata_file.name})" for t in done]
    lines.append(f"{len(done)} table(s) now in {settings.catalog_uri}")
    report(
        "\n".join(lines),
        json.dumps({"registered": [t.identifier for t in done]}),
        as_json=args.json,
    )
    return 0
