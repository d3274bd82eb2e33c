"""One landing step for one tenant: every new object of its landing zone into the raw zone.

For a folder or an S3 prefix, each object not seen before (by URI and ``size:mtime``) is matched
to an entity by the naming rules (:mod:`.routing`), copied byte for byte into
``raw/tenant_id=<t>/entity=<e>/ingest_date=<d>/<sha256>.<csv|parquet>`` and recorded in the
landing manifest. Bytes already landed (a re-upload under another name) are recorded DUPLICATE and
written nowhere; a changed object at the same URI is a new version and lands again. The source is
never modified unless asked (``after_land``), and then only once the raw copy's hash is verified.
Each object succeeds or fails alone; the manifest rows are written in one commit at the end, so a
step killed half-way copies the same bytes to the same names when run again.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cdf_pipeline.config import Settings, carries_credential
from cdf_pipeline.exceptions import ConfigError, InputError
from cdf_pipeline.exit_codes import EXIT_FAILED, EXIT_OK
from cdf_pipeline.ingest.files import tenant_raw_dir
from cdf_pipeline.lakehouse.landed import (
    DUPLICATE,
    FAILED,
    LANDED,
    OUTCOMES,
    UNMATCHED,
    LandedObject,
)
from cdf_pipeline.landing import copy
from cdf_pipeline.landing.manifest import Known, Manifest
from cdf_pipeline.landing.pg_land import land_postgres
from cdf_pipeline.landing.routing import entity_of, entity_patterns, relative_to
from cdf_pipeline.storage import (
    FileEntry,
    Storage,
    canonical,
    first_line,
    is_s3,
    join,
    storage_for,
)
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

KEEP, DELETE, ARCHIVE = "keep", "delete", "archive"


@dataclass
class LandSummary:
    """What one landing step did for one tenant."""

    tenant: str
    land_id: str
    source: str
    objects: list[LandedObject] = field(default_factory=list)
    #: Objects skipped without reading: already landed, duplicate or unmatched at this version.
    already_seen: int = 0
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(o.outcome for o in self.objects)
        return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    @property
    def bytes_landed(self) -> int:
        return sum(o.size for o in self.objects if o.outcome == LANDED)

    @property
    def landed_entities(self) -> set[str]:
        return {o.entity for o in self.objects if o.outcome == LANDED and o.entity}

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.counts[FAILED] else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "land_id": self.land_id,
            "source": self.source,
            "counts": self.counts,
            "already_seen": self.already_seen,
            "bytes_landed": self.bytes_landed,
            "seconds": round(self.seconds, 3),
            "objects": [o.to_dict() for o in self.objects],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def format(self) -> str:
        """A short report for a person: totals, then every object that needs attention."""
        c = self.counts
        lines = [
            f"land {self.land_id} tenant={self.tenant} from {self.source}: "
            f"{c[LANDED]} landed ({self.bytes_landed:,} bytes), {c[DUPLICATE]} duplicate, "
            f"{c[UNMATCHED]} unmatched, {c[FAILED]} failed, {self.already_seen} already seen "
            f"({self.seconds:.1f} s)"
        ]
        for o in self.objects:
            if o.outcome in (UNMATCHED, FAILED):
                lines.append(f"  {o.outcome:<9} {o.source}: {o.detail}")
        return "\n".join(lines)


def land_tenant(
    ledger: Manifest,
    settings: Settings,
    tenant: str,
    *,
    source: str | None = None,
    only: Sequence[str] | None = None,
    after_land: str | None = None,
    archive_uri: str | None = None,
    now: datetime | None = None,
) -> LandSummary:
    """Land the tenant's new landing objects into raw and record them in the manifest.

    Args:
        ledger: the landing manifest (:class:`~.manifest.SparkManifest` in a Spark job).
        source: the landing URI (default: the tenant's ``landing.uri``).
        only: land just these object URIs (an event's objects), if they are below ``source``.
        after_land: ``keep`` (default: the profile's ``landing.after_land``), ``delete`` or
            ``archive`` (to ``archive_uri``); applied only after the raw copy is verified.

    Raises:
        ConfigError: the landing zone or the archive cannot be used as configured.
    """
    tenant = validate_tenant_id(tenant)
    now = now or datetime.now(timezone.utc)
    started = time.monotonic()
    plan = plan_landing(
        settings, tenant, source=source, after_land=after_land, archive_uri=archive_uri
    )
    source, after, archive = plan.source, plan.after, plan.archive
    summary = LandSummary(tenant, f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}", source)
    storage = storage_for(settings)
    if source.startswith(("postgresql://", "postgres://")):
        # Cursor pulls; their manifest rows (with the new cursors) are recorded below, after
        # every raw file is durable.
        summary.objects, summary.already_seen = land_postgres(
            ledger, settings, storage, tenant, source, summary.land_id, now
        )
        ledger.record(summary.objects)
        summary.seconds = time.monotonic() - started
        return summary
    lander = _FileLander(storage, settings, tenant, source, summary, now)
    lander.known = ledger.known(tenant)
    lander.run(only, after, archive)
    ledger.record(summary.objects)
    summary.seconds = time.monotonic() - started
    return summary


@dataclass(frozen=True)
class LandingPlan:
    """Where one landing step reads and what it does with a landed file afterwards."""

    source: str
    after: str
    archive: str | None


def plan_landing(
    settings: Settings,
    tenant: str,
    *,
    source: str | None = None,
    after_land: str | None = None,
    archive_uri: str | None = None,
) -> LandingPlan:
    """The step's source and release policy, checked before anything starts (Spark included):
    no credential in a URI, an archive where one is needed, a source that exists.

    Raises:
        ConfigError: what is wrong and how to fix it (the CLI's exit 2).
    """
    source = source or settings.landing_uri(tenant)
    for where, uri in (("landing zone", source), ("archive", archive_uri or "")):
        if carries_credential(uri):
            raise ConfigError(
                f"the {where} URI carries a credential (user:password@ or a password= "
                "parameter); remove it and use the AWS default chain or PGPASSWORD/~/.pgpass"
            )
    after = after_land or settings.landing.after_land
    configured = settings.path(settings.landing.archive_uri or "").replace("{tenant}", tenant)
    archive = archive_uri or configured or None
    if after == ARCHIVE and not archive:
        raise ConfigError("archiving after landing needs an archive location: --archive-to URI")
    if after == ARCHIVE and archive and is_s3(archive) != is_s3(source):
        raise ConfigError(
            f"the archive {archive} must be on the same storage as the landing zone {source} "
            "(both S3 or both local)"
        )
    if not source.startswith(("postgresql://", "postgres://")):
        _check_source(storage_for(settings), source)
    return LandingPlan(source, after, archive)


def _check_source(storage: Storage, source: str) -> None:
    if is_s3(source):
        try:
            storage.check_bucket(source)
        except InputError as exc:
            raise ConfigError(f"landing zone: {exc}") from None
    elif not storage.exists(source):
        raise ConfigError(
            f"landing zone {source} does not exist: create it, or set landing.uri in "
            "conf/tenants/<tenant>.yaml or pass --from"
        )


class _FileLander:
    """The per-object work of :func:`land_tenant` for a folder or an S3 prefix."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        tenant: str,
        source: str,
        summary: LandSummary,
        now: datetime,
    ) -> None:
        self.storage, self.tenant, self.source, self.summary = storage, tenant, source, summary
        self.now = now
        self.raw_dir = tenant_raw_dir(settings.raw_uri, tenant)
        self.patterns = entity_patterns(settings.landing.entity_patterns)
        self.known = Known()

    def run(self, only: Sequence[str] | None, after: str, archive: str | None) -> None:
        entries, refused = self.storage.list_entries(self.source)
        if only is not None:
            wanted = {canonical(u) for u in only}
            entries = [e for e in entries if canonical(e.uri) in wanted]
            refused = [(path, why) for path, why in refused if canonical(path) in wanted]
        for path, why in refused:  # links out of the zone: reported, never read
            link = LandedObject(
                self.tenant,
                path,
                "link",
                0,
                FAILED,
                detail=why,
                land_id=self.summary.land_id,
                landed_at=self.now,
            )
            logger.warning("%s %s: %s", FAILED, link.source, why)
            self.summary.objects.append(link)
        for entry in entries:
            obj = self.land_one(entry)
            if obj is None:
                self.summary.already_seen += 1
                continue
            if obj.outcome in (LANDED, DUPLICATE) and after != KEEP:
                self.release(entry, obj, after, archive)
            log = logger.warning if obj.outcome in (UNMATCHED, FAILED) else logger.info
            log("%s %s%s", obj.outcome, obj.source, f": {obj.detail}" if obj.detail else "")
            self.summary.objects.append(obj)

    def land_one(self, entry: FileEntry) -> LandedObject | None:
        src = canonical(entry.uri)
        version = f"{entry.size}:{entry.mtime_ns}"
        if (src, version) in self.known.seen:
            return None
        obj = LandedObject(
            self.tenant,
            src,
            version,
            entry.size,
            FAILED,
            land_id=self.summary.land_id,
            landed_at=self.now,
        )
        entity, why = entity_of(relative_to(src, self.source), self.patterns)
        if entity is None:
            obj.outcome, obj.detail = UNMATCHED, why
            return obj
        obj.entity = entity
        if entry.size == 0:
            obj.detail = "empty file (0 bytes): not landed; replace it with the real export"
            return obj
        try:
            self.copy_into_raw(entry, obj)
        except (OSError, InputError) as exc:
            obj.outcome, obj.detail = FAILED, f"could not be copied: {first_line(exc)}"
        return obj

    def copy_into_raw(self, entry: FileEntry, obj: LandedObject) -> None:
        assert obj.entity is not None
        folder = join(self.raw_dir, f"entity={obj.entity}", f"ingest_date={self.now:%Y-%m-%d}")
        copied = copy.stream_copy(self.storage, entry.uri, folder)
        obj.sha256 = copied.sha256
        if copied.size != entry.size:
            copy.discard(self.storage, copied)
            obj.detail = (
                f"changed while being landed ({entry.size} bytes listed, {copied.size} read); "
                "it is tried again next time"
            )
            return
        if copied.sha256 in self.known.hashes:
            copy.discard(self.storage, copied)
            obj.outcome, obj.raw_file = DUPLICATE, self.known.hashes[copied.sha256]
            obj.detail = "the same bytes were landed before"
            return
        suffix = "." + entry.uri.rsplit(".", 1)[-1].lower()
        obj.raw_file = copy.settle(self.storage, copied, folder, suffix)
        obj.outcome = LANDED
        self.known.hashes[copied.sha256] = obj.raw_file

    def release(self, entry: FileEntry, obj: LandedObject, after: str, archive: str | None) -> None:
        """Delete or archive the source, once the raw copy's hash is verified."""
        assert obj.raw_file is not None
        try:
            if self.storage.sha256(obj.raw_file) != obj.sha256:
                obj.detail = f"raw copy {obj.raw_file} does not verify: source left in place"
                return
            if after == DELETE:
                self.storage.delete(entry.uri)
                obj.detail = _join_detail(obj.detail, "source deleted after verification")
            else:
                assert archive is not None
                target = join(archive, relative_to(entry.uri, self.source))
                self.storage.move(entry.uri, target)
                obj.detail = _join_detail(obj.detail, f"source archived to {target}")
        except OSError as exc:
            obj.detail = _join_detail(obj.detail, f"source not released: {first_line(exc)}")


def _join_detail(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
