"""``cdf generate`` (placeholder until the generator lands)."""

from __future__ import annotations

import argparse


def register(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subs.add_parser("generate", help="generate synthetic dirty data")
    p.set_defaults(func=lambda args: 1)
