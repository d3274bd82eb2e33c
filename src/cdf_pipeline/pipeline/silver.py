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
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES, Entity
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
    tenant_rows,
)
from cdf_pipeline.pipeline.audits import parent_keys, run_audits
from cdf_pipeline.pipeline.context import RunContext
from cdf_pipeline.pipeline.inputs import Selection, manifest_rows, select_new_files
from cdf_pipeline.pipeline.outcome import STAGED, RunFacts, Steps, summarise
from cdf_pipeline.pipeline.stage import ParentKeys, StagedEntity, stage_entity
from cdf_pipeline.run_record import trace_run
from cdf_pipeline.storage import storage_for
from cdf_pipeline.telemetry import current_trace_id, record_exception, set_attributes, stage
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

#: Tries of a failed run's record (a commit conflict is tried again on a fresh view).
RECORD_ATTEMPTS = 3


def new_run_id(now: datetime) -> str:
    """Sortable, unique run id: UTC time plus random bits (``20261122T101500Z-3f9a1c2e``)."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _snapshots(ctx: RunContext) -> dict[str, int]:
    tables = [t(e) for e in ENTITIES.values() for t in (ctx.names.silver, ctx.names.quarantine)]
    return current_snapshot_ids(ctx.spark, tables)


def _is_known(ctx: RunContext, any_files: bool) -> bool:
    configured = ctx.settings.tenant == ctx.tenant and ctx.settings.tenant_file is not None
    return any_files or configured or ops.has_history(ctx.spark, ctx.names, ctx.tenant)


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
    run_id = new_run_id(now)
    root_attrs = {
        "pipeline.name": "cdf.silver",
        "pipeline.engine.name": "spark",
        "cdf.tenant": tenant,
        "pipeline.run.id": run_id,
    }
    with stage("cdf.silver_run", **root_attrs) as span:
        facts = RunFacts(
            tenant,
            run_id,
            now,
            current_trace_id(),
            tenant_raw_dir(settings.raw_uri, tenant),
            settings.quality.extra_columns,
            started,
        )
        try:
            held = lease.acquire(settings, tenant, purpose="run", wait=wait)
        except TenantBusy as exc:
            summary = summarise(facts, Steps(busy=exc))
            _record_busy(spark, settings, summary)
            trace_run(span, summary)
            return summary
        try:
            names, storage = TableNames.of(settings), storage_for(settings)
            ctx = RunContext(spark, settings, names, storage, tenant, run_id, now, held)
            summary = _run_leased(ctx, facts, span)
        finally:
            held.release()
        trace_run(span, summary)
    return summary


def _run_leased(ctx: RunContext, facts: RunFacts, span: Any) -> S.RunSummary:
    """The run itself, under the tenant's lease: select, stage, audit, publish, record."""
    ensure_tables(ctx.spark, ctx.names)
    unfinished = ops.unfinished_runs(ctx.spark, ctx.names, ctx.tenant)
    selection = select_new_files(ctx)
    resumed = _settle_unfinished(ctx, unfinished, selection)
    if resumed is not None:  # this run completes the publish of a run that was killed
        ctx, facts = replace(ctx, run_id=resumed.run_id), replace(facts, run_id=resumed.run_id)
    steps = Steps(selection=selection)
    if not any(selection.new.values()):
        return _finish_without_data(ctx, facts, steps)
    steps = _publish_with_retries(
        ctx,
        replace(steps, snapshots_before=_snapshots(ctx)),
        journal=_journal(ctx, facts) if resumed is None else None,
    )
    if steps.error is None:
        try:
            steps = replace(steps, snapshots_after=_snapshots(ctx))
            summary = summarise(facts, steps)
            for f in summary.files:
                if f.note and f.status in (ops.INGESTED, STAGED):
                    logger.warning("schema drift in %s: %s", f.file, f.note)
            _record(ctx, summary, selection, resumed, published=bool(steps.published))
            return summary
        except (Exception, KeyboardInterrupt) as exc:
            steps = replace(steps, error=exc)
    return _failed(ctx, facts, steps, span, resumed)


def _publish_with_retries(
    ctx: RunContext, steps: Steps, journal: Callable[[Steps, bool], None] | None
) -> Steps:
    """Stage, audit and publish; again, on a fresh view of silver, after a commit conflict
    (another writer committed to the same tables). Files left out by one attempt stay out."""
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        done = _stage_and_publish(ctx, steps, journal, retry=attempt > 1)
        exc = done.error
        if exc is None or attempt == PUBLISH_ATTEMPTS or not is_commit_conflict(exc):
            return done
        pause = backoff_seconds(attempt)
        logger.warning(
            "tenant %s: commit conflict (%s); staging again in %.1f s (attempt %d of %d)",
            ctx.tenant,
            java_root_cause(exc),
            pause,
            attempt + 1,
            PUBLISH_ATTEMPTS,
        )
        time.sleep(pause)
        steps = replace(steps, left_out=done.left_out)
    raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover


def _failed(
    ctx: RunContext, facts: RunFacts, steps: Steps, span: Any, resumed: ops.Unfinished | None
) -> S.RunSummary:
    """Record a run that started and failed (FAILED, with its message), trace it, and raise:
    the interrupt itself for an interrupt (SIGINT, or SIGTERM through the CLI's handler),
    :class:`RunFailed` otherwise. A run that was completing a stopped run's publish leaves that
    run's PUBLISHING record as it is: the next run completes it again."""
    exc = steps.error
    assert exc is not None
    summary = summarise(facts, steps)
    record_exception(span, exc)
    recorded = True
    if resumed is None:
        recorded = _record_failure(ctx, summary)
    else:
        logger.warning("run %s stays PUBLISHING: the next run completes it", summary.run_id)
    trace_run(span, summary)
    if isinstance(exc, KeyboardInterrupt):
        if not recorded:
            logger.warning("could not record interrupted run %s in ops.runs", summary.run_id)
        raise exc
    # One line says it all (a store that vanished fails the record too): no warning beside.
    unrecorded = "" if recorded else "; the failure could not be recorded in ops.runs"
    raise RunFailed(
        f"silver run {summary.run_id} for tenant {ctx.tenant} failed: {summary.message}"
        f"{unrecorded}",
        summary,
    ) from exc


def _settle_unfinished(
    ctx: RunContext, unfinished: list[ops.Unfinished], selection: Selection
) -> ops.Unfinished | None:
    """Finish the records of runs that were killed while publishing; the one this run resumes.

    A run killed after its manifest commit only lacks its final status: it gets it. A run
    killed earlier left its files unrecorded, so this run stages the same files again: when they
    are exactly that run's, this run completes its publish under its id, and its record (counts
    as staged before any of its writes) stands. Otherwise it is marked FAILED: this run
    publishes those files and records them as its own. Either way no batch is counted twice.
    """
    files = frozenset(f.sha256 for fs in selection.new.values() for f in fs)
    resumed = None
    for u in unfinished:
        if u.recorded:
            status = S.PARTIAL if u.failed_files else S.SUCCEEDED
            ops.finish_unfinished(
                ctx.spark, ctx.names, ctx.tenant, u, status, "recorded by a later run"
            )
        elif resumed is None and u.files == files:
            resumed = u
        else:
            why = "stopped while publishing; a later run published its files"
            ops.finish_unfinished(ctx.spark, ctx.names, ctx.tenant, u, S.FAILED, why)
    return resumed


def _journal(ctx: RunContext, facts: RunFacts) -> Callable[[Steps, bool], None]:
    """The write of the run's PUBLISHING record, made right before its first publish write:
    its counts, audits and the files it publishes, so that a run killed while publishing leaves
    a true record for the next run to finish (:func:`_settle_unfinished`).

    An append: a new run id has no record yet. Only a ``retry`` of the publish (after a commit
    conflict) may find its own PUBLISHING record from the attempt before, and replaces it.
    """

    def _write(steps: Steps, retry: bool) -> None:
        row = summarise(facts, steps, publishing=True).row()
        if retry:
            ops.upsert_run(ctx.spark, ctx.names, row, ctx.view("j"))
        else:
            ops.record_run(ctx.spark, ctx.names, row)

    return _write


def _record(
    ctx: RunContext,
    summary: S.RunSummary,
    selection: Selection,
    resumed: ops.Unfinished | None,
    *,
    published: bool,
) -> None:
    """The manifest, then the run's final record in place of its PUBLISHING one (a run killed
    between the two leaves a record the next run finishes); a resumed run's record stands,
    with its final status."""
    with stage("record_files", **ctx.attrs()):
        ops.record_files(ctx.spark, ctx.names, manifest_rows(summary, selection, ctx.now))
    with stage("record_run", **ctx.attrs()):
        if resumed is not None:
            message = "completed by a later attempt after a stop while publishing"
            ops.finish_unfinished(
                ctx.spark, ctx.names, ctx.tenant, resumed, summary.status, message
            )
        elif published:
            ops.upsert_run(ctx.spark, ctx.names, summary.row(), ctx.view("r"))
        else:
            ops.record_run(ctx.spark, ctx.names, summary.row())


def _stage_and_publish(
    ctx: RunContext, steps: Steps, journal: Callable[[Steps, bool], None] | None, *, retry: bool
) -> Steps:
    """Stage every entity against silver as it is now, audit, and publish if the audits pass
    (each write only while the lease is still this run's; ``journal`` first, when given: the
    run's PUBLISHING record). What it did, the error that stopped it included."""
    staged: dict[str, StagedEntity] = {}
    try:
        # Parents first: each child is checked against its parents' keys as they will be
        # once this run is published (silver's plus this run's).
        for entity in dependency_order(ENTITIES):
            ctx.lease.check()  # a run overtaken while it stalled stops at its next step
            parents = parent_keys(ctx, entity, staged) if entity.foreign_keys else None
            files = [f for f in steps.to_publish if f.entity == entity.name]
            staged[entity.name] = _stage_traced(ctx, entity, files, parents)
            steps = replace(steps, left_out=(*steps.left_out, *staged[entity.name].unaccounted))
        steps = replace(steps, entities={name: s.counts for name, s in staged.items()})
        ctx.lease.check()
        with stage("audits", **ctx.attrs()):
            steps = replace(steps, audits=tuple(run_audits(ctx, staged)))
        if not all(a.passed for a in steps.audits):
            return replace(steps, published=False)
        with stage("publish", **ctx.attrs()):
            if journal is not None:
                ctx.lease.check()
                with stage("journal", **ctx.attrs()):
                    journal(steps, retry)
            _publish(ctx, staged)
        return replace(steps, published=True)
    except (Exception, KeyboardInterrupt) as exc:  # LeaseLost included: on record, FAILED
        return replace(steps, error=exc)
    finally:
        for s in staged.values():
            s.release()


def _stage_traced(
    ctx: RunContext, entity: Entity, files: list[RawFile], parents: ParentKeys | None
) -> StagedEntity:
    """:func:`stage_entity` in a span of its own that carries the entity's counts."""
    with stage("stage_entity", **ctx.attrs(**{"cdf.entity": entity.name})) as span:
        staged = stage_entity(ctx, entity, files, parents=parents)
        set_attributes(span, staged.counts.span_attributes())
    return staged


def _record_failure(ctx: RunContext, summary: S.RunSummary) -> bool:
    """Best effort: a run that failed mid-way still leaves a FAILED row in ops.runs (in place of
    its PUBLISHING one, when it had begun to publish). Never over a final record: a run that
    lost its lease may have been completed (or failed) by the run that took the tenant over.
    Whether it wrote the record.

    A commit conflict is tried again on a fresh view of the table: a run that stalled and lost its
    lease plans its record on the table as it last saw it, and the run that took over has
    committed to the same tenant's partition since.
    """
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            ops.upsert_run(
                ctx.spark, ctx.names, summary.row(), ctx.view("f"), over_publishing_only=True
            )
            return True
        except Exception as exc:  # the original failure is what the caller must see
            if attempt < RECORD_ATTEMPTS and is_commit_conflict(exc):
                ctx.spark.sql(f"REFRESH TABLE {ctx.names.runs}")
                continue
            logger.debug("could not record failed run %s: %s", summary.run_id, java_root_cause(exc))
    return False


def _publish(ctx: RunContext, staged: dict[str, StagedEntity]) -> None:
    """Write quarantine rows, MERGE silver (parents first), resolve promoted quarantine rows and
    those whose key this run received again.

    The lease is checked before each write (a run that lost it stops there). Whether the tenant
    had quarantine rows before this run wrote any is read once, from table metadata: without
    them there is nothing to de-duplicate against and no older row to resolve (a first load
    skips both).
    """
    spark, names, tenant, guard = ctx.spark, ctx.names, ctx.tenant, ctx.lease.check
    older = {
        name: tenant_rows(spark, names.quarantine(s.entity), tenant) > 0
        for name, s in staged.items()
    }
    for name, s in staged.items():
        if s.rejected is not None and s.counts.quarantined:
            attrs = {
                "cdf.entity": name,
                "cdf.table": names.quarantine(s.entity),
                "cdf.rows.quarantined": s.counts.quarantined,
            }
            guard()
            with stage("quarantine_write", **attrs):
                quarantine.write_quarantine(
                    spark, names, s.entity, tenant, s.rejected, tenant_has_rows=older[name]
                )
    for name, s in staged.items():
        lineage = merge.with_lineage(s.entity, ctx.run_id, ctx.now)
        attrs = {"cdf.entity": name, "cdf.table": names.silver(s.entity)}
        if s.counts.inserted:
            guard()
            with stage("append", **attrs, **{"cdf.rows.inserted": s.counts.inserted}):
                merge.append_inserts(names, s.entity, s.outcome(merge.INSERT).transform(lineage))
        if s.counts.updated:
            guard()
            with stage("merge", **attrs, **{"cdf.rows.updated": s.counts.updated}):
                rows = s.outcome(merge.UPDATE).transform(lineage)
                # Only a change batch's updates (few rows) are measured for a broadcast: caching
                # a first load's worth of updates would cost a pass and memory for nothing.
                small = s.counts.updated <= ctx.settings.spark.broadcast_max_rows
                limit = ctx.settings.spark.merge_broadcast_max_bytes if small else 0
                merge.merge_updates(names, s.entity, tenant, rows, ctx.view(f"m_{name}"), limit)
    for name, s in staged.items():
        if s.promoted_keys is not None and s.counts.promoted > 0:
            attrs = {
                "cdf.entity": name,
                "cdf.table": names.quarantine(s.entity),
                "cdf.rows.promoted": s.counts.promoted,
            }
            guard()
            with stage("quarantine_resolve", **attrs):
                by = quarantine.Resolver(ctx.run_id, ctx.now, ctx.view(f"r_{name}"))
                quarantine.resolve(spark, names, s.entity, tenant, s.promoted_keys, by)
    for name, s in staged.items():
        received = _received_keys(s) if older[name] else None
        if received is not None:  # rows sent again resolve the older open copies of their keys
            guard()
            with stage("quarantine_resolve_sent_again", **{"cdf.entity": name}):
                by = quarantine.Resolver(ctx.run_id, ctx.now, ctx.view(f"a_{name}"))
                quarantine.resolve_sent_again(spark, names, s.entity, tenant, received, by)


def _received_keys(s: StagedEntity) -> DataFrame | None:
    """The keys of this run's rows that landed in silver (inserted, updated) or were quarantined
    again, from the staged rows; None when there are none."""
    pk = s.entity.primary_key
    frames = []
    if s.changes is not None and (s.counts.inserted or s.counts.updated):
        frames.append(s.changes.select(pk))
    if s.rejected is not None and s.counts.quarantined:
        frames.append(s.rejected.select(pk))
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])


def _record_busy(spark: SparkSession, settings: Settings, summary: S.RunSummary) -> None:
    """Best effort: a BUSY run's record, appended without the lease (the holder's own record is
    a MERGE of its row only, under snapshot isolation: the append does not conflict with it). A
    run that cannot record it is still BUSY: that is what its caller must see."""
    try:
        names = TableNames.of(settings)
        ensure_tables(spark, names)
        ops.record_run(spark, names, summary.row())
    except Exception as exc:
        logger.debug("could not record busy run %s: %s", summary.run_id, java_root_cause(exc))


def _finish_without_data(ctx: RunContext, facts: RunFacts, steps: Steps) -> S.RunSummary:
    """A run with no new file to read: an unknown tenant (not recorded: there is no tenant to
    file it under), nothing new, or nothing readable. Files that failed, objects seen for the
    first time that are not data, and new names of known content are recorded once, so the
    next listing knows them; then the run's own record."""
    selection = steps.selection
    assert selection is not None
    steps = replace(steps, known=_is_known(ctx, selection.any_files))
    summary = summarise(facts, steps)
    if summary.status == S.UNKNOWN_TENANT:
        return summary
    ops.record_files(ctx.spark, ctx.names, manifest_rows(summary, selection, ctx.now))
    summary = summarise(facts, steps)  # its time now includes the manifest's write
    ops.record_run(ctx.spark, ctx.names, summary.row())
    return summary
