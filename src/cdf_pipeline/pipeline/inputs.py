"""A run's inputs: which raw files are new (by content hash), their drift notes, manifest rows.

Content already ingested for the tenant is skipped on its hash alone, before anything else of the
file is read; a new file is pre-checked (footer or CSV count) so a corrupt one fails alone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession

from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.ingest.files import EMPTY_SHA256, RawFile, discover, inspect_file
from cdf_pipeline.lakehouse import ops
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.quality.normalise import detect_drift
from cdf_pipeline.storage import canonical, storage_for

logger = logging.getLogger(__name__)


def select_new_files(
    spark: SparkSession, names: TableNames, settings: Settings, tenant: str
) -> tuple[dict[str, list[RawFile]], list[RawFile], int, bool]:
    """(good new files per entity, unreadable files, skipped count, tenant has any raw files)."""
    storage = storage_for(settings)
    found = discover(storage, settings.raw_uri, tenant)
    any_files = any(listing.files or listing.refused for listing in found.values())
    done = ops.ingested_hashes(spark, names, tenant) if any_files else set()
    new: dict[str, list[RawFile]] = {name: [] for name in ENTITIES}
    # Refused links are reported, never read (not even hashed): their sha256 is empty.
    bad = [RawFile(n, path, "", error=why) for n, ls in found.items() for path, why in ls.refused]
    skipped = 0
    seen: set[str] = set()
    for name, listing in found.items():
        for path in listing.files:
            sha = storage.sha256(path)
            # Known content is not read any further; every empty file is reported (they all
            # share one hash, and none is ever ingested).
            if sha != EMPTY_SHA256 and (sha in done or sha in seen):
                skipped += 1
                continue
            seen.add(sha)
            raw = inspect_file(storage, name, path, sha256=sha)
            (bad if raw.error else new[name]).append(raw)
    return new, bad, skipped, any_files


def drift_note(raw: RawFile, extra_policy: str) -> str | None:
    """A one-line description of how the file's columns differ from the contract (or None)."""
    drift = detect_drift(ENTITIES[raw.entity], list(raw.columns))
    notes = []
    if drift.missing_required:
        notes.append(
            f"missing required columns {', '.join(drift.missing_required)} (rows quarantined)"
        )
    if drift.extra:
        action = "ignored" if extra_policy == "ignore" else "rows quarantined"
        notes.append(f"extra columns {', '.join(drift.extra)} ({action})")
    if notes:
        logger.warning("schema drift in %s: %s", raw.name, "; ".join(notes))
    return "; ".join(notes) or None


def file_row(tenant: str, run_id: str, now: datetime, f: S.FileResult) -> dict[str, Any]:
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
    }
