"""``cdf maintain``: table maintenance, guarantee checks and duplicate-key repair over tenants.

Every tenant-scoped step (compacting a tenant's partitions, checking a tenant, repairing it)
runs holding that tenant's lease, the one a silver run holds while it publishes, so maintenance
never rewrites files a run is writing deletes against and never reads a tenant half-published.
A tenant whose lease is held is skipped and reported ``BUSY``. The table-wide steps (snapshot
expiry, orphan-file removal) need no lease (see ``lakehouse.maintenance``) and run only when
every tenant is in scope (no ``--tenant``).

The sequence, in the default mode: file statistics from table metadata; per tenant, under its
lease, each table compacted; per table, snapshots expired and orphan files removed; statistics
again. ``--check`` and ``--repair`` replace the middle with ``lakehouse.checks`` and
``lakehouse.repair``. ``--repair`` first brings back lost tables (``lakehouse.recovery``: a table
whose current metadata file is missing cannot even be loaded, so nothing else could run).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime, timezone
from typing import Any, Protocol

from pyspark.sql import SparkSession

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import CdfError, TenantBusy
from cdf_pipeline.lakehouse import checks, maintenance, recovery, repair
from cdf_pipeline.lakehouse.lease import tenant_lease
from cdf_pipeline.lakehouse.maintenance import FileStats
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables, java_root_cause
from cdf_pipeline.orchestration.maintain_report import (
    BUSY,
    CHECK,
    FAILED,
    MAINTAIN,
    MODES,
    OK,
    REPAIR,
    Busy,
    MaintainReport,
    Options,
    TableReport,
)
from cdf_pipeline.orchestration.session import spark_session
from cdf_pipeline.storage import storage_for
from cdf_pipeline.telemetry import TABLE, TENANT, stage
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

#: The lease purpose maintenance takes tenants' leases with (shown to a run that finds it held).
PURPOSE = "maintain"


class Held(Protocol):
    """A held lease: ``check`` raises ``LeaseLost`` unless it is still ours (before a write)."""

    def check(self) -> None: ...


#: Takes a tenant's lease for the length of a ``with`` block; raises ``TenantBusy`` when held.
LeaseFactory = Callable[[str], AbstractContextManager[Held]]


def default_options() -> Options:
    return Options(
        retain_days=maintenance.DEFAULT_RETAIN_DAYS,
        retain_last=maintenance.DEFAULT_RETAIN_LAST,
        orphan_days=maintenance.DEFAULT_ORPHAN_DAYS,
    )


def maintain_lakehouse(
    settings: Settings,
    *,
    mode: str = MAINTAIN,
    tenant: str | None = None,
    options: Options | None = None,
    wait: float | None = None,
    drop_broken: bool = False,
) -> MaintainReport:
    """``cdf maintain`` from settings: preflight, then :func:`maintain` in a session of its own,
    watched so that a store that stops answering ends it in bounded time."""
    from cdf_pipeline.preflight import check_run
    from cdf_pipeline.store_watch import watch_store

    check_run(settings, storage_for(settings))
    with (
        watch_store(settings, "maintain"),
        spark_session(settings, f"cdf-maintain-{mode}") as spark,
    ):
        return maintain(
            spark,
            settings,
            mode=mode,
            tenant=tenant,
            options=options,
            wait=wait,
            drop_broken=drop_broken,
        )


def maintain(
    spark: SparkSession,
    settings: Settings,
    *,
    mode: str = MAINTAIN,
    tenant: str | None = None,
    options: Options | None = None,
    now: datetime | None = None,
    wait: float | None = None,
    lease: LeaseFactory | None = None,
    drop_broken: bool = False,
) -> MaintainReport:
    """Run one ``cdf maintain`` (``mode``: maintain, check or repair) and report what it did.

    ``wait``: how long to wait for a held tenant lease before reporting the tenant BUSY (default:
    not at all). ``lease``: takes a tenant's lease (default: the tenant lease of ``settings``).
    ``drop_broken`` (repair only): drop the lost tables of which no metadata file survives, so
    the next run creates them again; without it they are reported and nothing else is done.

    Raises:
        ConfigError: a retention or orphan window out of range (before anything runs).
        CdfError: a step failed (it names the step, table and tenant).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if drop_broken and mode != REPAIR:
        raise ValueError("drop_broken goes with mode=repair only")
    options = options or default_options()
    maintenance.check_retention(options.retain_days, options.retain_last)
    maintenance.check_orphan_window(options.orphan_days)
    tenant = validate_tenant_id(tenant) if tenant else None
    now = now or datetime.now(timezone.utc)
    started = time.monotonic()
    if lease is None:

        def lease(t: str) -> AbstractContextManager[Held]:
            return tenant_lease(settings, t, wait=wait, purpose=PURPOSE)

    names = TableNames.of(settings)
    report = MaintainReport(mode, tenant, now, options)
    with stage("cdf.maintain", **{"cdf.maintain.mode": mode, TENANT: tenant or ""}):
        if mode == REPAIR:
            with _step("recover_lost_tables", "every table"):
                report.lost = recovery.recover_lost_tables(
                    spark, names, storage_for(settings), drop=drop_broken
                )
            if not all(r.recovered for r in report.lost):
                report.seconds = time.monotonic() - started
                return report  # the tables left lost cannot be loaded: nothing else can run
        ensure_tables(spark, names)
        tables = maintenance.maintained_tables(names)
        if mode == MAINTAIN:
            _maintain(spark, tables, tenant, options, now, lease, report)
        else:
            data_tables = [
                t(e) for e in ENTITIES.values() for t in (names.silver, names.quarantine)
            ]
            with _step("list_tenants", names.namespace("silver")):
                tenants = [tenant] if tenant else maintenance.tenants_of(spark, data_tables)
            repair_id = f"repair-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
            for t in tenants:
                with _tenant(report, t, lease) as held:
                    if held is not None:
                        _check_or_repair(
                            spark, settings, names, t, held, mode, repair_id, now, report
                        )
    report.seconds = time.monotonic() - started
    return report


def _maintain(
    spark: SparkSession,
    tables: list[str],
    tenant: str | None,
    options: Options,
    now: datetime,
    lease: LeaseFactory,
    report: MaintainReport,
) -> None:
    """Compaction per tenant under its lease, then expiry and orphans per table, with the file
    statistics of the tables (over the tenants in scope) before and after."""
    with _step("file_stats", "every table", tenant):
        before = maintenance.file_stats(spark, tables, tenant)
    tenants = [tenant] if tenant else sorted({t for _, t in before})
    by_table = {t: TableReport(maintenance.short_name(t)) for t in tables}
    for (table, _), stats in before.items():
        by_table[table].before = by_table[table].before + stats
    for t in tenants:
        with _tenant(report, t, lease) as held:
            if held is None:
                continue
            for table in tables:
                stats = before.get((table, t), FileStats())
                if not stats.needs_compaction:
                    continue
                held.check()  # still ours: a lease lost to a run must not rewrite its files
                with _step("compact", table, t):
                    done = maintenance.compact(spark, table, t, stats)
                if done.note:
                    by_table[table].notes.append(f"{t}: {done.note}")
    if tenant is None:
        for table in tables:
            with _step("expire_snapshots", table):
                by_table[table].snapshots_expired = maintenance.expire_snapshots(
                    spark,
                    table,
                    now=now,
                    retain_days=options.retain_days,
                    retain_last=options.retain_last,
                )
            with _step("remove_orphan_files", table):
                by_table[table].orphans_removed = maintenance.remove_orphan_files(
                    spark, table, now=now, older_than_days=options.orphan_days
                )
    with _step("file_stats", "every table", tenant):
        after = maintenance.file_stats(spark, tables, tenant)
    for (table, _), stats in after.items():
        by_table[table].after = by_table[table].after + stats
    report.tables = list(by_table.values())


def _check_or_repair(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    tenant: str,
    held: Held,
    mode: str,
    repair_id: str,
    now: datetime,
    report: MaintainReport,
) -> None:
    if mode == CHECK:
        with _step("check", names.namespace("silver"), tenant):
            found = checks.check_tenant(
                spark, names, tenant, settings.spark.broadcast_max_parent_keys
            )
        report.checks += found
        if any(not c.passed for c in found):
            report.tenants[tenant] = FAILED
        return
    assert mode == REPAIR
    for entity in ENTITIES.values():
        held.check()
        with _step("repair", names.silver(entity), tenant):
            report.repairs.append(
                repair.repair_duplicates(spark, names, entity, tenant, repair_id=repair_id, now=now)
            )


@contextmanager
def _tenant(report: MaintainReport, tenant: str, lease: LeaseFactory) -> Iterator[Held | None]:
    """Hold ``tenant``'s lease for the block (yields it), or record the tenant BUSY and yield
    None: a busy tenant is skipped, not an error."""
    with ExitStack() as stack:
        try:
            held: Held | None = stack.enter_context(lease(tenant))
        except TenantBusy as busy:
            logger.warning("%s", busy)
            report.tenants[tenant] = BUSY
            report.busy.append(Busy(tenant, busy.owner, busy.purpose, busy.expires_in))
            held = None
        else:
            report.tenants[tenant] = OK
        yield held


@contextmanager
def _step(name: str, table: str, tenant: str | None = None) -> Iterator[None]:
    """A telemetry stage; a failure becomes one ``CdfError`` naming the step, table and tenant."""
    attrs: dict[str, Any] = {TABLE: table}
    if tenant:
        attrs[TENANT] = tenant
    with stage(name, **attrs):
        try:
            yield
        except CdfError:
            raise
        except Exception as exc:
            who = f" for tenant {tenant}" if tenant else ""
            raise CdfError(
                f"maintain: {name} of {table}{who} failed: {java_root_cause(exc)}"
            ) from exc


__all__ = ["BUSY", "CHECK", "MAINTAIN", "PURPOSE", "REPAIR", "Held", "LeaseFactory", "maintain"]
