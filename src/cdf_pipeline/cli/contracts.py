"""``cdf contracts``: print or write the contracts document and DDL derived from the contracts."""

from __future__ import annotations

import argparse
from pathlib import Path

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.contracts.docs import render_contracts_markdown
from cdf_pipeline.contracts.schemas import postgres_ddl
from cdf_pipeline.exceptions import InputError


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "contracts",
        help="print the data contracts (Markdown) or their PostgreSQL DDL",
        description="Print the data contracts as Markdown, or write them to a file. "
        "The contracts in src/cdf_pipeline/contracts/ are the single source of truth.",
    )
    p.add_argument("--write", metavar="FILE", help="write the Markdown to FILE instead of stdout")
    p.add_argument("--postgres", action="store_true", help="print PostgreSQL landing-zone DDL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = (
        "\n\n".join(postgres_ddl(e) for e in ENTITIES.values()) + "\n"
        if args.postgres
        else render_contracts_markdown()
    )
    if args.write:
        try:
            Path(args.write).write_text(text)
        except OSError as exc:
            raise InputError(f"cannot write {args.write}: {exc.strerror}") from exc
    else:
        print(text, end="")
    return 0
