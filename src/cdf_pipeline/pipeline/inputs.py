"""A run's inputs: every object under the tenant's raw tree with its outcome, drift notes,
manifest rows.

Choosing files reads no data bytes on the driver. A file settled before (ingested, or the same
bytes as an ingested one) is recognised from the listing alone: its path, size and modification
time are in the manifest. Only the rest is read, by executors in one Spark job
(:mod:`cdf_pipeline.ingest.inspect_job`): its content hash (the same bytes under a new name are
still skipped, and recorded so the next listing knows them) and its pre-check (footer or CSV
count), so a file that cannot be read fails alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cdf_pipeline import run_record as S
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.ingest.files import (
    EMPTY_SHA256,
    RawFile,
    classify,
    discover,
    entity_dir,
)
from cdf_pipeline.ingest.inspect_job import inspect_files
from cdf_pipeline.lakehouse import ops
from cdf_pipeline.pipeline.context import RunContext
from cdf_pipeline.quality.normalise import detect_drift
from cdf_pipeline.storage import canonical, s3_config

#: Why a new name is not read: its bytes were ingested before.
SAME_CONTENT = "the same content as a file already ingested"


@dataclass(frozen=True)
class Selection:
    """What a run found under the tenant's raw tree, each object with its outcome.

    Attributes:
        new: the files to read, per entity (hashed and pre-checked).
        failed: files that cannot be read, each with ``error``.
        ignored: objects that are not data, each with the reason as ``error``.
        duplicates: new names whose bytes were ingested before (recorded as SKIPPED).
        skipped: files not read again: settled before, or duplicates.
        any_files: whether the tenant has any object there at all.
    """

    new: dict[str, list[RawFile]]
    failed: list[RawFile] = field(default_factory=list)
    ignored: list[RawFile] = field(default_factory=list)
    duplicates: list[RawFile] = field(default_factory=list)
    skipped: int = 0
    any_files: bool = False


def select_new_files(ctx: RunContext) -> Selection:
    """Every object of the tenant's raw tree with its outcome (see the module docstring)."""
    spark, names, settings, tenant = ctx.spark, ctx.names, ctx.settings, ctx.tenant
    found = discover(ctx.storage, settings.raw_uri, tenant)
    any_files = any(f.files or f.refused for f in found.values())
    known = ops.manifest(spark, names, tenant) if any_files else None
    # Refused links are reported, never read (not even hashed): their sha256 is empty.
    failed = [RawFile(n, path, "", error=why) for n, f in found.items() for path, why in f.refused]
    ignored: list[RawFile] = []
    unknown: list[RawFile] = []
    skipped = 0
    for name, listing in found.items():
        folder = entity_dir(settings.raw_uri, tenant, name)
        for entry in listing.files:
            raw = RawFile(name, entry.uri, "", size=entry.size, mtime_ns=entry.mtime_ns)
            key = (canonical(entry.uri), entry.size, entry.mtime_ns)
            unread = classify(folder, entry.uri)
            if unread is None and known is not None and key in known.settled:
                skipped += 1
            elif unread is None:
                unknown.append(raw)
            elif unread.failed:
                failed.append(RawFile(name, entry.uri, "", error=unread.reason))
            elif known is None or key not in known.ignored:
                ignored.append(replace(raw, error=unread.reason))
    new: dict[str, list[RawFile]] = {name: [] for name in ENTITIES}
    duplicates: list[RawFile] = []
    seen: set[str] = set()
    done = known.ingested if known is not None else frozenset()
    encoding = settings.storage.csv_encoding
    for raw in inspect_files(spark, s3_config(settings), unknown, encoding):
        # Known content is not read any further; every empty file is reported (they all
        # share one hash, and none is ever ingested).
        if raw.sha256 != EMPTY_SHA256 and (raw.sha256 in done or raw.sha256 in seen):
            duplicates.append(raw)
            continue
        seen.add(raw.sha256)
        (failed if raw.error else new[raw.entity]).append(raw)
    return Selection(
        new, failed, ignored, duplicates, skipped + len(duplicates), any_files=any_files
    )


#: Column names a drift note lists at most (a file may send thousands): the rest are counted.
NOTE_NAMES = 10
#: Characters of one name a drift note shows (a CSV header can hold a name of any length).
NAME_CHARS = 60


def some_names(names: tuple[str, ...], limit: int = NOTE_NAMES) -> str:
    """The first ``limit`` names (each cut to ``NAME_CHARS``), comma-separated, and how many
    more there are."""
    shown = ", ".join(n if len(n) <= NAME_CHARS else n[:NAME_CHARS] + "…" for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def drift_note(raw: RawFile, extra_policy: str) -> str | None:
    """A one-line description of how the file's columns differ from the contract (or None)."""
    drift = detect_drift(ENTITIES[raw.entity], list(raw.columns))
    notes = []
    if drift.missing_required:
        missing = some_names(drift.missing_required)
        notes.append(f"missing required columns {missing} (rows quarantined)")
    if drift.extra:
        action = "ignored" if extra_policy == "ignore" else "rows quarantined"
        notes.append(f"extra columns {some_names(drift.extra)} ({action})")
    return "; ".join(notes) or None


def file_row(
    tenant: str, run_id: str, now: datetime, f: S.FileResult, listed: RawFile | None
) -> dict[str, Any]:
    """The manifest row of one file's outcome (``listed``: the file as listed, for its size and
    modification time; None for an object that was never listed, such as a refused link)."""
    return {
        "tenant_id": tenant,
        "entity": f.entity,
        "file": canonical(f.file),
        "sha256": f.sha256,
        "rows": f.rows,
        "run_id": run_id,
        "ingested_at": now,
        "status": f.status,
        "error": f.error,
        "note": f.note,
        "size": listed.size if listed is not None and listed.mtime_ns else None,
        "mtime_ns": listed.mtime_ns if listed is not None and listed.mtime_ns else None,
    }


def manifest_rows(run: S.RunSummary, selection: Selection, now: datetime) -> list[dict[str, Any]]:
    """The manifest rows of a run: every file outcome it decided (not the STAGED ones of a run
    that did not publish), and a SKIPPED row for each new name of known content."""
    listed = {
        f.path: f
        for f in [*selection.ignored, *selection.duplicates, *selection.failed]
        + [f for files in selection.new.values() for f in files]
    }
    decided = [f for f in run.files if f.status != "STAGED"]
    skipped = [
        S.FileResult(f.entity, f.path, f.sha256, f.rows, ops.SKIPPED, note=SAME_CONTENT)
        for f in selection.duplicates
    ]
    return [
        file_row(run.tenant, run.run_id, now, f, listed.get(f.file)) for f in [*decided, *skipped]
    ]
