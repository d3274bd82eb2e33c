"""What the commands share, declared once: the parser class, the options several commands take
(each with one help text), the positive-integer validator, settings from arguments, and the
summary printer.

A command module adds its parser with ``register(subs)`` and uses these for every option that
another command has too, so ``--profile``, ``--root`` and ``--json`` mean the same everywhere.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cdf_pipeline import telemetry
from cdf_pipeline.config import PROFILES, Settings, load_settings
from cdf_pipeline.exceptions import CdfError
from cdf_pipeline.exit_codes import EXIT_USAGE
from cdf_pipeline.tenants import parse_tenant_list

#: Where an option goes: a parser, or a group of one (mutually exclusive or not).
Options = argparse._ActionsContainer


class Parser(argparse.ArgumentParser):
    """argparse that prints one line (not the whole usage) on a bad argument, and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_tenant(p: Options, *, required: bool = True) -> None:
    """``--tenant``: the one tenant a command works on."""
    p.add_argument(
        "--tenant", required=required, help="tenant id (lowercase identifier, e.g. acme)"
    )


def add_profile(p: Options) -> None:
    """``--profile``: which configuration profile (default ``local``)."""
    p.add_argument(
        "--profile",
        default="local",
        help=f"configuration profile: {', '.join(PROFILES)} "
        "(default: local, the embedded lakehouse)",
    )


def add_root(p: Options) -> None:
    """``--root``: the lakehouse root, overriding ``$CDF_ROOT`` and the profile's."""
    p.add_argument(
        "--root",
        help="lakehouse root: a local folder or s3://bucket/prefix (default: $CDF_ROOT or the "
        "profile's root)",
    )


def add_json(p: Options) -> None:
    """``--json``: JSON on stdout for a machine, the summary as its last line."""
    p.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: JSON on stdout, the summary as its last line",
    )


def add_common(p: Options, *, tenant: bool = True) -> None:
    """``--tenant`` (unless the command declares its own), ``--profile``, ``--root``, ``--json``."""
    if tenant:
        add_tenant(p)
    add_profile(p)
    add_root(p)
    add_json(p)


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def tenant_list(text: str) -> list[str]:
    """argparse type of ``A,B,C``: tenant ids, each checked."""
    try:
        return parse_tenant_list(text)
    except CdfError as exc:  # argparse turns this into one line and exit code 2
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from_args(args: argparse.Namespace, tenant: str | None = None) -> Settings:
    """The settings of ``--profile`` for ``tenant`` (default: ``--tenant``, if the command has
    one), with ``--root`` over ``$CDF_ROOT`` and the profile's root."""
    overrides: dict[str, Any] = {"root": args.root} if args.root else {}
    tenant = tenant or getattr(args, "tenant", None)
    return load_settings(args.profile, tenant=tenant, overrides=overrides)


def report(text: str, json_line: str, *, as_json: bool) -> None:
    """A command's summary: for a person on stdout, or on stderr with ``json_line`` last on stdout
    (``--json``: spark-submit merges the driver's stderr into stdout, so the JSON must be last).
    Telemetry is flushed first: an export error must not follow the last line."""
    telemetry.finish()
    print(text, file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json_line, flush=True)
