"""Build the data-quality report: check the input, read the facts, render, write one file.

The report only reads: it creates no table and takes no tenant lease, so it can run while
tenants run (it sees the tables as of their latest commits). Bad input is an ``InputError`` or a
``ConfigError`` with one line that says what to do; the CLI turns either into exit code 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession

from cdf_pipeline.config import Settings
from cdf_pipeline.dq_report import page
from cdf_pipeline.dq_report.facts import (
    RUN_COLUMNS,
    TenantFacts,
    read_manifest,
    read_quarantine,
    read_runs,
)
from cdf_pipeline.exceptions import ConfigError, InputError
from cdf_pipeline.lakehouse.migrate import require_migrated
from cdf_pipeline.lakehouse.sqlite_catalog import catalog_tables
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.storage import is_s3
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """What was written: where, for which tenants, from how many runs, how big."""

    path: Path
    tenants: list[str]
    runs: int
    size_bytes: int


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: a date (``2026-12-01``) or an ISO-8601 time (``2026-12-01T08:00:00Z``);
    without an offset it is UTC. Returns a naive UTC datetime (the session's time zone).

    Raises:
        InputError: not a date or time, or in the future (the report would be empty).
    """
    if text is None:
        return None
    now = now or datetime.now(timezone.utc)
    try:
        if len(text) == 10:
            when = datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        else:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--since {text!r} is not a date or time: use YYYY-MM-DD or an ISO-8601 time such as "
            "2026-12-01T08:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when > now:
        raise InputError(
            f"--since {text} is in the future (now is {now:%Y-%m-%dT%H:%M:%SZ}): no run can be "
            "that recent; give an earlier date, or leave --since out for every run"
        )
    return when.astimezone(timezone.utc).replace(tzinfo=None)


def check_lakehouse(settings: Settings) -> None:
    """What can be told before Spark starts: a missing root, a lakehouse of the 0.1 layout, an
    embedded catalog with no tables (empty) or under another name. Reads only.

    Raises:
        InputError: the lakehouse is missing or empty.
        ConfigError: it must be migrated first, or catalog.name does not match it.
    """
    root = settings.root
    if not is_s3(root) and not Path(root).is_dir():
        raise InputError(
            f"no lakehouse at {root}: check --root / CDF_ROOT (a report reads the tables "
            "'cdf run' writes)"
        )
    require_migrated(settings)
    path = settings.sqlite_catalog_path
    if path is None:
        return
    held = catalog_tables(path)
    if not held:
        raise InputError(
            f"the lakehouse at {root} is empty: no table in its catalog yet; run "
            "'cdf run --tenant <t>' first"
        )
    if settings.catalog.name not in held:
        names = ", ".join(sorted(held))
        raise ConfigError(
            f"{path} holds the tables of catalog {names}, not '{settings.catalog.name}': set "
            "catalog.name (CDF__CATALOG__NAME) to match"
        )


def _check_tables(spark: SparkSession, names: TableNames, root: str) -> list[str]:
    """The tenants with runs; raises on an empty lakehouse or an ``ops.runs`` of an older layout."""
    if not spark.catalog.tableExists(names.runs):
        raise InputError(
            f"the lakehouse at {root} is empty: it has no {names.runs} table; run "
            "'cdf run --tenant <t>' first"
        )
    columns = set(spark.table(names.runs).columns)
    missing = [c for c in RUN_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"{names.runs} at {root} is of an older layout (no column {', '.join(missing)}): "
            "run 'cdf run' with this version once for any tenant to bring it up to date, or "
            "report with the cdf-pipeline version that made it"
        )
    rows = spark.table(names.runs).select("tenant_id").distinct().collect()
    tenants = sorted(r[0] for r in rows if r[0])
    if not tenants:
        raise InputError(
            f"the lakehouse at {root} is empty: {names.runs} records no run yet; run "
            "'cdf run --tenant <t>' first"
        )
    return tenants


def known_tenant(
    spark: SparkSession,
    names: TableNames,
    root: str,
    tenant: str,
    known: list[str] | None = None,
) -> str:
    """``tenant``, when ``ops.runs`` records a run of it.

    Raises:
        InputError: it has none (usually a typo), naming the tenants that have.
    """
    tenant = validate_tenant_id(tenant)
    known = known if known is not None else _check_tables(spark, names, root)
    if tenant not in known:
        raise InputError(
            f"unknown tenant {tenant!r}: no run recorded for it in {names.runs} at {root} "
            f"(tenants with runs: {', '.join(known)})"
        )
    return tenant


def build_report(
    spark: SparkSession,
    settings: Settings,
    out: str | os.PathLike[str],
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    threshold_for: Callable[[str], float] | None = None,
    now: datetime | None = None,
) -> Report:
    """Write the report of ``tenant`` (default: every tenant with runs) to ``out``.

    Args:
        since: only runs (and manifest files) from this naive UTC time on; quarantine counts and
            samples are the tables' current state whatever ``since`` is.
        threshold_for: the publish gate of a tenant (its ``quality.min_pass_rate``, which a
            tenant file may set); default: ``settings``'.

    Raises:
        InputError: an empty lakehouse, an unknown tenant, an output path that cannot be written.
        ConfigError: an ``ops.runs`` of an older layout.
    """
    now = now or datetime.now(timezone.utc)
    target = Path(out)
    if "://" in str(out):
        raise InputError(f"--out {out}: the report is written to a local file, not a URI")
    names = TableNames.of(settings)
    known = _check_tables(spark, names, settings.root)
    if tenant is not None:
        tenant = known_tenant(spark, names, settings.root, tenant, known)
    tenants = [tenant] if tenant else known
    gate = threshold_for or (lambda _t: settings.quality.min_pass_rate)
    facts = {t: TenantFacts(t, gate(t)) for t in tenants}
    runs = read_runs(spark, names, tenants, since)
    for run in runs:
        facts[run.tenant].runs.append(run)
    read_quarantine(spark, names, facts, spark.catalog.tableExists)
    if spark.catalog.tableExists(names.ingested_files):
        read_manifest(spark, names, facts, since)
    html = page.render(
        [facts[t] for t in tenants],
        title=f"tenant {tenant}" if tenant else f"{len(tenants)} tenant(s)",
        catalog=names.catalog + (f" (prefix {names.prefix})" if names.prefix else ""),
        generated_at=f"{now:%Y-%m-%d %H:%M:%S}",
        since=f"{since:%Y-%m-%d %H:%M:%S}" if since else None,
    )
    _write(target, html)
    logger.info("report of %d tenant(s), %d run(s): %s", len(tenants), len(runs), target)
    return Report(target, tenants, len(runs), target.stat().st_size)


def _write(target: Path, html: str) -> None:
    """Write the file whole or not at all (a half-written report must not replace a good one)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part")
        part.write_text(html, encoding="utf-8")
        part.replace(target)
    except OSError as exc:
        raise InputError(f"cannot write the report to {target}: {exc.strerror or exc}") from None
