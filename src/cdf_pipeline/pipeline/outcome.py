"""A run's summary and status, decided in one place from what its steps returned.

The steps of a run (:mod:`cdf_pipeline.pipeline.silver`) each return a value: the files they
found, the counts they staged, the audits, whether they published, the error that stopped them.
:class:`Steps` holds those values; :func:`decide` turns them into the run's status and message
and :func:`summarise` into its :class:`~cdf_pipeline.run_record.RunSummary`. Nothing else sets a
status or adds to a summary, so a record always says what the steps did.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cdf_pipeline import run_record as S
from cdf_pipeline.contracts import RULE_SET_VERSION
from cdf_pipeline.exceptions import LeaseLost, TenantBusy
from cdf_pipeline.ingest.files import RawFile
from cdf_pipeline.lakehouse import ops
from cdf_pipeline.lakehouse.tables import java_root_cause
from cdf_pipeline.pipeline.inputs import Selection, drift_note

#: The outcome of a file the run staged but did not publish (its audits failed).
STAGED = "STAGED"


@dataclass(frozen=True)
class Steps:
    """What a run's steps returned so far.

    Attributes:
        busy: the lease was held by another run (nothing else happened).
        selection: the objects found under the tenant's raw tree, with their outcomes.
        known: whether the tenant exists (files, history or a tenant file): a run with nothing
            to read is ``UNKNOWN_TENANT`` otherwise.
        left_out: files staging could not account for (Spark read another number of rows
            than their pre-check): they fail alone.
        entities, audits: what staging counted and the audits found.
        published: True once the publish is done, False when the audits held it back, None
            when the run did not get that far.
        error: what stopped the run (an interrupt included).
    """

    busy: TenantBusy | None = None
    selection: Selection | None = None
    known: bool = True
    left_out: tuple[RawFile, ...] = ()
    entities: Mapping[str, S.EntityCounts] = field(default_factory=dict)
    audits: tuple[S.Audit, ...] = ()
    published: bool | None = None
    error: BaseException | None = None
    snapshots_before: Mapping[str, int] = field(default_factory=dict)
    snapshots_after: Mapping[str, int] = field(default_factory=dict)

    @property
    def to_publish(self) -> list[RawFile]:
        """The new files the run stages and publishes (those staging left out excepted)."""
        if self.selection is None:
            return []
        out = {f.path for f in self.left_out}
        return [f for fs in self.selection.new.values() for f in fs if f.path not in out]

    @property
    def failed_files(self) -> int:
        """Files that failed: unreadable when chosen, or left out by staging."""
        chosen = len(self.selection.failed) if self.selection is not None else 0
        return chosen + len(self.left_out)


def interrupt_signal(exc: BaseException) -> str:
    """The signal a ``KeyboardInterrupt`` stands for (the CLI's SIGTERM handler names it)."""
    return str(exc.args[0]) if exc.args else "SIGINT"


def decide(steps: Steps, tenant: str, raw_dir: str) -> tuple[str, str]:
    """The run's status and message, from what its steps returned."""
    if steps.busy is not None:
        return S.BUSY, str(steps.busy)
    if steps.error is not None:
        exc = steps.error
        if isinstance(exc, KeyboardInterrupt):
            how = interrupt_signal(exc)
            return S.FAILED, f"interrupted by {how} before it finished; run it again"
        return S.FAILED, f"{type(exc).__name__} during the run ({java_root_cause(exc)[:300]})"
    selection = steps.selection
    assert selection is not None, "a run that was not busy chose its files"
    if not any(selection.new.values()):
        if not steps.known:
            return S.UNKNOWN_TENANT, (
                f"unknown tenant {tenant!r}: no raw files under {raw_dir}, no run history and "
                f"no conf/tenants/{tenant}.yaml; check the id, or create data with "
                f"'cdf generate --tenants {tenant}'"
            )
        if selection.failed:
            return (
                S.FAILED,
                f"nothing ingested: {len(selection.failed)} new file(s) could not be read",
            )
        return S.NOTHING_NEW, (
            f"nothing new to ingest for {tenant} ({selection.skipped} file(s) already ingested)"
        )
    failed = [f"{a.name} ({a.detail})" for a in steps.audits if not a.passed]
    if failed:
        return S.AUDIT_FAILED, "audit failed, silver left unchanged: " + "; ".join(failed)
    bad = steps.failed_files
    return (S.PARTIAL, f"{bad} file(s) failed, see their errors") if bad else (S.SUCCEEDED, "")


def file_results(steps: Steps, extra_columns: str, new_status: str | None) -> list[S.FileResult]:
    """Each file's outcome: the unreadable and the ignored, those staging left out, then the
    files staged (with ``new_status``, none when the run did not get to publish them)."""
    selection = steps.selection
    if selection is None:
        return []
    files = [
        *(
            S.FileResult(f.entity, f.path, f.sha256, None, ops.FAILED, f.error)
            for f in selection.failed
        ),
        *(
            S.FileResult(f.entity, f.path, "", None, ops.IGNORED, note=f.error)
            for f in selection.ignored
        ),
        *(
            S.FileResult(f.entity, f.path, f.sha256, None, ops.FAILED, f.error)
            for f in steps.left_out
        ),
    ]
    if new_status is not None:
        files += [
            S.FileResult(
                f.entity, f.path, f.sha256, f.rows, new_status, note=drift_note(f, extra_columns)
            )
            for f in steps.to_publish
        ]
    return files


@dataclass(frozen=True)
class RunFacts:
    """What a summary states that no step returns: who and when."""

    tenant: str
    run_id: str
    started_at: datetime
    trace_id: str | None
    raw_dir: str
    extra_columns: str
    started: float  # time.monotonic() when the run started: its duration's origin


def summarise(facts: RunFacts, steps: Steps, *, publishing: bool = False) -> S.RunSummary:
    """The run's summary. ``publishing``: its record while it publishes (``PUBLISHING``, its
    files as they will be once published, no end time or duration yet)."""
    new_status: str | None = ops.INGESTED
    if publishing:
        status, message = S.PUBLISHING, ""
    else:
        status, message = decide(steps, facts.tenant, facts.raw_dir)
        new_status = (
            None if steps.published is None else ops.INGESTED if steps.published else STAGED
        )
    stopped = isinstance(steps.error, LeaseLost)  # before publishing: nothing to count
    unrecorded = status == S.UNKNOWN_TENANT  # there is no tenant to file it under
    return S.RunSummary(
        tenant=facts.tenant,
        run_id=facts.run_id,
        status=status,
        message=message,
        seconds=0.0 if publishing else time.monotonic() - facts.started,
        trace_id=facts.trace_id,
        entities={} if stopped else dict(steps.entities),
        files=file_results(steps, facts.extra_columns, new_status),
        skipped_files=steps.selection.skipped if steps.selection is not None else 0,
        audits=[] if stopped else list(steps.audits),
        snapshots_before=dict(steps.snapshots_before),
        snapshots_after=dict(steps.snapshots_after),
        started_at=facts.started_at,
        finished_at=None if publishing or unrecorded else datetime.now(timezone.utc),
        rule_set_version=RULE_SET_VERSION,
    )
