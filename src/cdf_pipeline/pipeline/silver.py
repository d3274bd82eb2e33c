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
from cdf_pipeline.contracts import ENTITIES, RULE_SET_VERSION, Entity
from cdf_pipeline.contracts.order import dependency_order
from cdf_pipeline.exceptions import LeaseLost, RunFailed, TenantBusy
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
from cdf_pipeline.pipeline.inputs import Selection, drift_note, manifest_rows, select_new_files
from cdf_pipeline.pipeline.stage import StagedEntity, stage_entity
from cdf_pipeline.run_record import trace_run
from cdf_pipeline.telemetry import current_trace_id, record_exception, set_attributes, stage
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

#: Tries of a failed run's record (a commit conflict is tried again on a fresh view).
RECORD_ATTEMPTS = 3


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
            _record_busy(spark, settings, run)
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
    unfinished = ops.unfinished_runs(spark, names, tenant)
    selection = select_new_files(spark, names, settings, tenant)
    new, bad, run.skipped_files = selection.new, selection.failed, selection.skipped
    resumed = _settle_unfinished(spark, names, tenant, unfinished, new)
    if resumed is not None:  # this run completes the publish of a run that was killed
        run.run_id = resumed.run_id
    unreadable = [
        *(S.FileResult(f.entity, f.path, f.sha256, None, ops.FAILED, f.error) for f in bad),
        *(S.FileResult(f.entity, f.path, "", None, ops.IGNORED, note=f.error)
          for f in selection.ignored),
    ]  # fmt: skip
    run.files = list(unreadable)
    if not any(new.values()):
        _finish_without_data(spark, names, settings, run, selection, now, started)
        return
    run.snapshots_before = _snapshots(spark, names)
    try:
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                journal = None
                if resumed is None:
                    journal = _journal(spark, settings, names, run, new, retry=attempt > 1)
                published = _stage_and_publish(
                    spark, settings, names, run, held, new, bad, now, journal
                )
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
        status = ops.INGESTED if published else "STAGED"
        run.files += _published(new, settings.quality.extra_columns, status)
        for f in run.files:
            if f.note and f.status in (ops.INGESTED, "STAGED"):
                logger.warning("schema drift in %s: %s", f.file, f.note)
        run.seconds = time.monotonic() - started
        _record(spark, names, run, selection, now, published, resumed)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (the CLI's handler): on record too
        run.status = S.FAILED
        how = exc.args[0] if exc.args else "SIGINT"
        run.message = f"interrupted by {how} before it finished; run it again"
        if not _fail(spark, names, run, started, span, exc, resumed):
            logger.warning("could not record interrupted run %s in ops.runs", run.run_id)
        raise
    except Exception as exc:  # LeaseLost included: a run that started ends FAILED, on record
        run.status = S.FAILED
        run.message = f"{type(exc).__name__} during the run ({java_root_cause(exc)[:300]})"
        if isinstance(exc, LeaseLost):  # it stopped before publishing: nothing to count
            run.entities, run.audits = {}, []
        recorded = _fail(spark, names, run, started, span, exc, resumed)
        # One line says it all (a store that vanished fails the record too): no warning beside.
        unrecorded = "" if recorded else "; the failure could not be recorded in ops.runs"
        raise RunFailed(
            f"silver run {run.run_id} for tenant {tenant} failed: {run.message}{unrecorded}", run
        ) from exc


def _settle_unfinished(
    spark: SparkSession,
    names: TableNames,
    tenant: str,
    unfinished: list[ops.Unfinished],
    new: dict[str, list[RawFile]],
) -> ops.Unfinished | None:
    """Finish the records of runs that were killed while publishing; the one this run resumes.

    A run killed after its manifest commit only lacks its final status: it gets it. A run
    killed earlier left its files unrecorded, so this run stages the same files again: when they
    are exactly that run's, this run completes its publish under its id, and its record (counts
    as staged before any of its writes) stands. Otherwise it is marked FAILED: this run
    publishes those files and records them as its own. Either way no batch is counted twice.
    """
    files = frozenset(f.sha256 for fs in new.values() for f in fs)
    resumed = None
    for u in unfinished:
        if u.recorded:
            status = S.PARTIAL if u.failed_files else S.SUCCEEDED
            ops.finish_unfinished(spark, names, tenant, u, status, "recorded by a later run")
        elif resumed is None and u.files == files:
            resumed = u
        else:
            why = "stopped while publishing; a later run published its files"
            ops.finish_unfinished(spark, names, tenant, u, S.FAILED, why)
    return resumed


def _journal(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    run: S.RunSummary,
    new: dict[str, list[RawFile]],
    *,
    retry: bool,
) -> Callable[[], None]:
    """The write of the run's PUBLISHING record, made right before its first publish write:
    its counts, audits and the files it publishes, so that a run killed while publishing leaves
    a true record for the next run to finish (:func:`_settle_unfinished`).

    An append: a new run id has no record yet. Only a ``retry`` of the publish (after a commit
    conflict) may find its own PUBLISHING record from the attempt before, and replaces it.
    """

    def _write() -> None:
        files = [*run.files, *_published(new, settings.quality.extra_columns)]
        publishing = replace(run, status=S.PUBLISHING, files=files)
        if retry:
            ops.upsert_run(spark, names, publishing.row(), _view("j", run))
        else:
            ops.record_run(spark, names, publishing.row())

    return _write


def _published(
    new: dict[str, list[RawFile]], extra_columns: str, status: str = ops.INGESTED
) -> list[S.FileResult]:
    """The outcome of each file the run publishes (or staged, when it did not), with its drift."""
    return [
        S.FileResult(f.entity, f.path, f.sha256, f.rows, status, note=drift_note(f, extra_columns))
        for files in new.values()
        for f in files
    ]


def _view(kind: str, run: S.RunSummary) -> str:
    return f"{kind}_{run.run_id.replace('-', '_')}"


def _record(
    spark: SparkSession,
    names: TableNames,
    run: S.RunSummary,
    selection: Selection,
    now: datetime,
    published: bool,
    resumed: ops.Unfinished | None,
) -> None:
    """The manifest, then the run's final record in place of its PUBLISHING one (a run killed
    between the two leaves a record the next run finishes); a resumed run's record stands,
    with its final status."""
    with stage("record_files", **{"cdf.tenant": run.tenant}):
        ops.record_files(spark, names, manifest_rows(run, selection, now))
    with stage("record_run", **{"cdf.tenant": run.tenant}):
        if resumed is not None:
            message = "completed by a later attempt after a stop while publishing"
            ops.finish_unfinished(spark, names, run.tenant, resumed, run.status, message)
        elif published:
            ops.upsert_run(spark, names, _finished(run).row(), _view("r", run))
        else:
            ops.record_run(spark, names, _finished(run).row())


def _fail(
    spark: SparkSession,
    names: TableNames,
    run: S.RunSummary,
    started: float,
    span: Any,
    exc: BaseException,
    resumed: ops.Unfinished | None,
) -> bool:
    """Record a run that started and failed (FAILED, with its message) and trace it; whether
    the record was written. A run that was completing a stopped run's publish leaves that run's
    PUBLISHING record as it is: the next run completes it again."""
    run.seconds = time.monotonic() - started
    record_exception(span, exc)
    recorded = True
    if resumed is None:
        recorded = _record_failure(spark, names, run)
    else:
        logger.warning("run %s stays PUBLISHING: the next run completes it", run.run_id)
    trace_run(span, run)
    return recorded


def _stage_and_publish(
    spark: SparkSession,
    settings: Settings,
    names: TableNames,
    run: S.RunSummary,
    held: lease.Lease,
    new: dict[str, list[RawFile]],
    bad: list[RawFile],
    now: datetime,
    journal: Callable[[], None] | None,
) -> bool:
    """Stage every entity against silver as it is now, audit, and publish if the audits pass
    (each write only while the lease is still this run's; ``journal`` first, when given: the
    run's PUBLISHING record). Whether it published."""
    tenant = run.tenant
    staged: dict[str, StagedEntity] = {}
    try:
        # Parents first: each child is checked against its parents' keys as they will be
        # once this run is published (silver's plus this run's).
        for entity in dependency_order(ENTITIES):
            held.check()  # a run overtaken while it stalled stops at its next step
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
        held.check()
        with stage("audits", **{"cdf.tenant": tenant}):
            run.audits = run_audits(spark, settings, names, staged, tenant)
        if not all(a.passed for a in run.audits):
            run.status = S.AUDIT_FAILED
            failed = [f"{a.name} ({a.detail})" for a in run.audits if not a.passed]
            run.message = "audit failed, silver left unchanged: " + "; ".join(failed)
            return False
        with stage("publish", **{"cdf.tenant": tenant}):
            if journal is not None:
                held.check()
                with stage("journal", **{"cdf.tenant": tenant}):
                    journal()
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


def _record_failure(spark: SparkSession, names: TableNames, run: S.RunSummary) -> bool:
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
                spark, names, _finished(run).row(), _view("f", run), over_publishing_only=True
            )
            return True
        except Exception as exc:  # the original failure is what the caller must see
            if attempt < RECORD_ATTEMPTS and is_commit_conflict(exc):
                spark.sql(f"REFRESH TABLE {names.runs}")
                continue
            logger.debug("could not record failed run %s: %s", run.run_id, java_root_cause(exc))
    return False


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

    ``guard`` runs before each write and raises to stop it (the tenant lease's check). Whether
    the tenant had quarantine rows before this run wrote any is read once, from table metadata:
    without them there is nothing to de-duplicate against and no older row to resolve (a first
    load skips both).
    """
    suffix = run_id.replace("-", "_")
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
        received = _received_keys(s) if older[name] else None
        if received is not None:  # rows sent again resolve the older open copies of their keys
            guard()
            with stage("quarantine_resolve_sent_again", **{"cdf.entity": name}):
                quarantine.resolve_sent_again(
                    spark, names, s.entity, tenant, received, run_id, now, f"a_{name}_{suffix}"
                )


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


def _record_busy(spark: SparkSession, settings: Settings, run: S.RunSummary) -> None:
    """Best effort: a BUSY run's record, appended without the lease (the holder's own record is
    a MERGE of its row only, under snapshot isolation: the append does not conflict with it). A
    run that cannot record it is still BUSY: that is what its caller must see."""
    try:
        names = TableNames.of(settings)
        ensure_tables(spark, names)
        ops.record_run(spark, names, _finished(run).row())
    except Exception as exc:
        logger.debug("could not record busy run %s: %s", run.run_id, java_root_cause(exc))


def _finish_without_data(
    spark: SparkSession,
    names: TableNames,
    settings: Settings,
    run: S.RunSummary,
    selection: Selection,
    now: datetime,
    started: float,
) -> None:
    raw_dir = tenant_raw_dir(settings.raw_uri, run.tenant)
    failed = [f for f in run.files if f.status == ops.FAILED]
    if not _is_known(spark, settings, names, run.tenant, selection.any_files):
        run.status = S.UNKNOWN_TENANT
        run.message = (
            f"unknown tenant {run.tenant!r}: no raw files under {raw_dir}, no run history and no "
            f"conf/tenants/{run.tenant}.yaml; check the id, or create data with "
            f"'cdf generate --tenants {run.tenant}'"
        )
        run.seconds = time.monotonic() - started
        return  # not recorded: there is no tenant to file it under
    if failed:
        run.status = S.FAILED
        run.message = f"nothing ingested: {len(failed)} new file(s) could not be read"
    else:
        run.status = S.NOTHING_NEW
        run.message = (
            f"nothing new to ingest for {run.tenant} ({run.skipped_files} file(s) already ingested)"
        )
    # Files that failed, objects seen for the first time that are not data, and new names of
    # known content: recorded once, so the next listing knows them. Then the run's own record.
    ops.record_files(spark, names, manifest_rows(run, selection, now))
    run.seconds = time.monotonic() - started
    ops.record_run(spark, names, _finished(run).row())
