"""One tenant run of the silver job: discover -> stage -> audit -> publish -> record.

Publishing writes, in order: quarantine rows (insert-if-absent), silver MERGEs (inserts and
newer-and-different updates only), resolution of promoted quarantine rows, the run record, and
last the ingested-files manifest. Every step is idempotent, so a run killed at any point and run
again ends in the same silver and quarantine state as one clean run.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES, RULE_SET_VERSION, Entity
from cdf_pipeline.contracts.order import dependency_order
from cdf_pipeline.exceptions import RunFailed, TenantBusy
from cdf_pipeline.ingest.files import RawFile, tenant_raw_dir
from cdf_pipeline.lakehouse import lease, merge, ops, quarantine
from cdf_pipeline.lakehouse.commits import PUBLISH_ATTEMPTS, backoff_seconds, is_commit_conflict
from cdf_pipeline.lakehouse.tables import (
    TableNames,
    current_snapshot_ids,
    ensure_tables,
    java_root_cause,
)
from cdf_pipeline.pipeline.audits import parent_keys, run_audits
from cdf_pipeline.pipeline.inputs import drift_note, file_row, select_new_files
from cdf_pipeline.pipeline.stage import StagedEntity, stage_entity
from cdf_pipeline.run_record import trace_run
from cdf_pipeline.telemetry import current_trace_id, record_exception, set_attributes, stage
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)


def new_run_id(now: datetime) -> str:
    """Sortable, unique run id: UTC time plus random bits (``20261122T101500Z-3f9a1c2e``)."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _snapshots(spark: SparkSession, names: TableNames) -> dict[str, int]:
    tables = [t(e) for e in ENTITIES.values() for t in (names.silver, names.quarantine)]
    return current_snapshot_ids(spark, tables)


def _is_known(
    spark: SparkSession, settings: Settings, names: TableNames, tenant: str, any_files: bool
) -> bool:
    configured = settings.tenant == tenant and settings.tenant_file is not None
    return any_files or configured or ops.has_history(spark, names, tenant)


def run_tenant(
    spark: SparkSession,
    settings: Settings,
    tenant: str,
    *,
    now: datetime | None = None,
    wait: float | None = None,
) -> S.RunSummary:
    """Run the silver job for one tenant and return what it did.

    The run holds the tenant's lease (:mod:`cdf_pipeline.lakehouse.lease`) from choosing its
    files to recording itself; when another run holds it, this one does nothing and returns
    ``BUSY`` (after waiting up to ``wait`` seconds for it, when given).

    Raises:
        RunFailed: when anything fails once the run has started, its lease lost included (the
            run is recorded as FAILED first; ``exc.summary`` is its summary).
        ConfigError: the catalog refused its first contact (nothing was read or written).
    """
    tenant = validate_tenant_id(tenant)
    now = now or datetime.now(timezone.utc)
    started = time.monotonic()
    run = S.RunSummary(
        tenant=tenant, run_id=new_run_id(now), status=S.FAILED, started_at=now,
        rule_set_version=RULE_SET_VERSION,
    )  # fmt: skip
    root_attrs = {
        "pipeline.name": "cdf.silver",
        "pipeline.engine.name": "spark",
        "cdf.tenant": tenant,
        "pipeline.run.id": run.run_id,
    }
    with stage("cdf.silver_run", **root_attrs) as span:
        run.trace_id = current_trace_id()
        try:
            held = lease.acquire(settings, tenant, purpose="run", wait=wait)
        except TenantBusy as exc:
            run.status, run.message = S.BUSY, str(exc)
            run.seconds = time.monotonic() - started
            trace_run(span, run)
            return run
        try:
            _run_leased(spark, settings, run, held, now, started, span)
        finally:
            held.release()
        trace_run(span, run)
    return run


def _run_leased(
    spark: SparkSession,
    settings: Settings,
    run: S.RunSummary,
    held: lease.Lease,
    now: datetime,
    started: float,
    span: Any,
) -> None:
    """The run itself, under the tenant's lease: select, stage, audit, publish, record."""
    tenant = run.tenant
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    new, bad, run.skipped_files, any_files = select_new_files(spark, names, settings, tenant)
    unreadable = [S.FileResult(f.entity, f.path, f.sha256, None, ops.FAILED, f.error) for f in bad]
    run.files = list(unreadable)
    if not any(new.values()):
        _finish_without_data(spark, names, settings, run, any_files, now, started)
        return
    run.snapshots_before = _snapshots(spark, names)
    try:
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                published = _stage_and_publish(spark, settings, names, run, held, new, bad, now)
                break
            except Exception as exc:
                if attempt == PUBLISH_ATTEMPTS or not is_commit_conflict(exc):
                    raise
                pause = backoff_seconds(attempt)
                logger.warning(
                    "tenant %s: commit conflict (%s); staging again in %.1f s (attempt %d of %d)",
                    tenant, java_root_cause(exc), pause, attempt + 1, PUBLISH_ATTEMPTS,
                )  # fmt: skip
                time.sleep(pause)
                run.files = list(unreadable)
        run.snapshots_after = _snapshots(spark, names)
        good = [f for files in new.values() for f in files]
        run.files += [
            S.FileResult(
                f.entity,
                f.path,
                f.sha256,
                f.rows,
                ops.INGESTED if published else "STAGED",
                note=drift_note(f, settings.quality.extra_columns),
            )
            for f in good
        ]
        run.seconds = time.monotonic() - started
        with stage("record_run", **{"cdf.tenant": tenant}):
            ops.record_run(spark, names, _finished(run).row())
            manifest = [
                file_row(tenant, run.run_id, now, f) for f in run.files if f.status != "STAGED"
            ]
            ops.record_files(spark, names, manifest)
    except Exception as exc:  # LeaseLost included: a run that started ends FAILED, on record
        run.status = S.FAILED
        run.message = f"{type(exc).__name__} during the run ({java_root_cause(exc)[:300]})"
        run.seconds = time.monotonic() - started
        record_exception(span, exc)
        _record_failure(spark, names, run, now)
        trace_run(span, run)
        raise RunFailed(
            f"silver run {run.run_id} for tenant {tenant} failed: {run.message}", run
        ) from exc


def _stage_and_publish(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    run: S.RunSummary,
    held: lease.Lease,
    new: dict[str, list[RawFile]],
    bad: list[RawFile],
    now: datetime,
) -> bool:
    """Stage every entity against silver as it is now, audit, and publish if the audits pass
    (each write only while the lease is still this run's). Whether it published."""
    tenant = run.tenant
    staged: dict[str, StagedEntity] = {}
    try:
        # Parents first: each child is checked against its parents' keys as they will be
        # once this run is published (silver's plus this run's).
        for entity in dependency_order(ENTITIES):
            keys, small = None, False
            if entity.foreign_keys:
                keys, small = parent_keys(
                    spark, names, entity, staged, tenant,
                    settings.spark.broadcast_max_parent_keys,
                )  # fmt: skip
            staged[entity.name] = _stage_traced(
                spark, settings, names, entity, new, run, now, parent_keys=keys,
                broadcast_parents=small,
            )  # fmt: skip
            _fail_unaccounted(staged[entity.name], new, bad, run)
        run.entities = {name: s.counts for name, s in staged.items()}
        with stage("audits", **{"cdf.tenant": tenant}):
            run.audits = run_audits(spark, settings, names, staged, tenant)
        if not all(a.passed for a in run.audits):
            run.status = S.AUDIT_FAILED
            failed = [f"{a.name} ({a.detail})" for a in run.audits if not a.passed]
            run.message = "audit failed, silver left unchanged: " + "; ".join(failed)
            return False
        with stage("publish", **{"cdf.tenant": tenant}):
            _publish(spark, names, staged, tenant, run.run_id, now, guard=held.check)
        run.status = S.PARTIAL if bad else S.SUCCEEDED
        run.message = f"{len(bad)} file(s) failed, see their errors" if bad else ""
        return True
    finally:
        for s in staged.values():
            s.release()


def _stage_traced(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    entity: Entity,
    new: dict[str, list[RawFile]],
    run: S.RunSummary,
    now: datetime,
    *,
    parent_keys: DataFrame | None,
    broadcast_parents: bool = False,
) -> StagedEntity:
    """:func:`stage_entity` in a span of its own that carries the entity's counts."""
    attrs = {"cdf.tenant": run.tenant, "cdf.entity": entity.name}
    with stage("stage_entity", **attrs) as span:
        staged = stage_entity(
            spark, settings, names, entity, run.tenant, new[entity.name],
            run_id=run.run_id, now=now, parent_keys=parent_keys,
            broadcast_parents=broadcast_parents,
        )  # fmt: skip
        set_attributes(span, staged.counts.span_attributes())
    return staged


def _fail_unaccounted(
    staged: StagedEntity, new: dict[str, list[RawFile]], bad: list[RawFile], run: S.RunSummary
) -> None:
    """Move the files staging left out (rows not accounted for) from ``new`` to the failed."""
    if not staged.unaccounted:
        return
    left_out = {f.path for f in staged.unaccounted}
    name = staged.entity.name
    new[name] = [f for f in new[name] if f.path not in left_out]
    bad += staged.unaccounted
    run.files += [
        S.FileResult(f.entity, f.path, f.sha256, None, ops.FAILED, f.error)
        for f in staged.unaccounted
    ]


def _finished(run: S.RunSummary) -> S.RunSummary:
    run.finished_at = datetime.now(timezone.utc)
    return run


def _record_failure(
    spark: SparkSession, names: TableNames, run: S.RunSummary, now: datetime
) -> None:
    """Best effort: a run that failed mid-way still leaves a FAILED row in ops.runs."""
    try:
        ops.record_run(spark, names, _finished(run).row())
    except Exception as exc:  # the original failure is what the caller must see
        logger.warning("could not record failed run %s: %s", run.run_id, type(exc).__name__)


def _publish(
    spark: SparkSession,
    names: TableNames,
    staged: dict[str, StagedEntity],
    tenant: str,
    run_id: str,
    now: datetime,
    *,
    guard: Callable[[], None] = lambda: None,
) -> None:
    """Write quarantine rows, MERGE silver (parents first), resolve promoted quarantine rows and
    those whose key this run received again.

    ``guard`` runs before each write and raises to stop it (the tenant lease's check).
    """
    suffix = run_id.replace("-", "_")
    for name, s in staged.items():
        if s.rejected is not None and s.counts.quarantined:
            attrs = {
                "cdf.entity": name,
                "cdf.table": names.quarantine(s.entity),
                "cdf.rows.quarantined": s.counts.quarantined,
            }
            guard()
            with stage("quarantine_write", **attrs):
                quarantine.write_quarantine(spark, names, s.entity, tenant, s.rejected)
    for name, s in staged.items():
        lineage = merge.with_lineage(s.entity, run_id, now)
        attrs = {"cdf.entity": name, "cdf.table": names.silver(s.entity)}
        if s.counts.inserted:
            guard()
            with stage("append", **attrs, **{"cdf.rows.inserted": s.counts.inserted}):
                merge.append_inserts(names, s.entity, s.outcome(merge.INSERT).transform(lineage))
        if s.counts.updated:
            guard()
            with stage("merge", **attrs, **{"cdf.rows.updated": s.counts.updated}):
                rows = s.outcome(merge.UPDATE).transform(lineage)
                merge.merge_updates(spark, names, s.entity, tenant, rows, f"m_{name}_{suffix}")
    for name, s in staged.items():
        if s.promoted_keys is not None and s.counts.promoted > 0:
            attrs = {
                "cdf.entity": name,
                "cdf.table": names.quarantine(s.entity),
                "cdf.rows.promoted": s.counts.promoted,
            }
            guard()
            with stage("quarantine_resolve", **attrs):
                quarantine.resolve(
                    spark,
                    names,
                    s.entity,
                    tenant,
                    s.promoted_keys,
                    run_id,
                    now,
                    f"r_{name}_{suffix}",
                )
    for name, s in staged.items():
        if s.counts.read:  # rows sent again resolve the older open copies of their keys
            guard()
            with stage("quarantine_resolve_sent_again", **{"cdf.entity": name}):
                quarantine.resolve_sent_again(
                    spark, names, s.entity, tenant, run_id, now, f"a_{name}_{suffix}"
                )


def _finish_without_data(
    spark: SparkSession,
    names: TableNames,
    settings: Settings,
    run: S.RunSummary,
    any_files: bool,
    now: datetime,
    started: float,
) -> None:
    raw_dir = tenant_raw_dir(settings.raw_uri, run.tenant)
    if not _is_known(spark, settings, names, run.tenant, any_files):
        run.status = S.UNKNOWN_TENANT
        run.message = (
            f"unknown tenant {run.tenant!r}: no raw files under {raw_dir}, no run history and no "
            f"conf/tenants/{run.tenant}.yaml; check the id, or create data with "
            f"'cdf generate --tenants {run.tenant}'"
        )
    elif run.files:
        run.status = S.FAILED
        run.message = f"nothing ingested: {len(run.files)} new file(s) could not be read"
        ops.record_files(
            spark, names, [file_row(run.tenant, run.run_id, now, f) for f in run.files]
        )
    else:
        run.status = S.NOTHING_NEW
        run.message = (
            f"nothing new to ingest for {run.tenant} ({run.skipped_files} file(s) already ingested)"
        )
    run.seconds = time.monotonic() - started
