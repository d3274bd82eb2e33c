"""``cdf land`` from a PostgreSQL landing database: one cursor pull per entity into the raw zone.

For each contract (parents first), the rows of ``<landing.postgres_schema>.<entity>`` after the
cursor of the last landed pull (the manifest's ``cursor``) are pulled into one local Parquet file
(:func:`~cdf_pipeline.postgres.pull.pull_entity`) that becomes
``raw/tenant_id=<t>/entity=<e>/ingest_date=<d>/<sha256>.parquet``: written under a temporary name
in that folder and renamed to its content hash (local raw), or uploaded like a landed file and
hashed on the way (S3 raw, :mod:`.copy`). Only then is its
manifest row, with the new cursor, written (by :func:`~cdf_pipeline.landing.land.land_tenant`,
one commit at the end): a step that dies after the raw write pulls the same rows again next
time (from the old cursor), and the silver job skips content it already ingested or finds it
unchanged, so nothing is lost or doubled.

A pull with nothing new writes nothing and records nothing (it counts as already seen).
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.contracts.order import dependency_order
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.ingest.files import tenant_raw_dir
from cdf_pipeline.lakehouse.landed import DUPLICATE, FAILED, LANDED, LandedObject
from cdf_pipeline.landing import copy
from cdf_pipeline.landing.manifest import Known, Manifest
from cdf_pipeline.postgres.connection import check_uri
from cdf_pipeline.postgres.pull import PullResult, pull_entity
from cdf_pipeline.storage import Storage, first_line, is_s3, join


def table_source(uri: str, schema: str, table: str) -> str:
    """The manifest's name of a landing table: ``postgresql://host:port/db/schema.table``.

    Without the user: the same table read by another account is the same source (and cursor).
    """
    p = urlsplit(uri)
    port = f":{p.port}" if p.port else ""
    return f"postgresql://{p.hostname}{port}{p.path.rstrip('/')}/{schema}.{table}"


def land_postgres(
    ledger: Manifest,
    settings: Settings,
    storage: Storage,
    tenant: str,
    uri: str,
    land_id: str,
    now: datetime,
) -> tuple[list[LandedObject], int]:
    """Pull every entity's new rows into raw; (manifest rows to record, pulls with nothing new).

    Raises:
        ConfigError: bad URI, login, server, schema or cursor column (nothing of the step lands).
    """
    check_uri(uri)
    schema = settings.landing.postgres_schema.replace("{tenant}", tenant)
    raw_dir = tenant_raw_dir(settings.raw_uri, tenant)
    known = ledger.known(tenant)
    objects: list[LandedObject] = []
    nothing_new = 0
    with tempfile.TemporaryDirectory(prefix="cdf-pg-pull-") as work:
        for entity in dependency_order(ENTITIES):
            source = table_source(uri, schema, entity.name)
            cursor = ledger.last_cursor(tenant, source)
            obj = LandedObject(
                tenant,
                source,
                cursor or "start",
                0,
                FAILED,
                entity=entity.name,
                land_id=land_id,
                landed_at=now,
            )
            folder = join(raw_dir, f"entity={entity.name}", f"ingest_date={now:%Y-%m-%d}")
            target = _pull_target(folder, Path(work), entity.name)
            try:
                pulled = pull_entity(
                    uri,
                    entity,
                    target,
                    cursor=cursor,
                    schema=schema,
                    cursor_column=settings.landing.cursor_column,
                )
            except InputError as exc:  # this table only (missing, uncastable): the others go on
                target.unlink(missing_ok=True)
                obj.detail = first_line(exc)
                objects.append(obj)
                continue
            if pulled.path is None:
                target.unlink(missing_ok=True)
                nothing_new += 1
                continue
            _into_raw(storage, pulled, folder, obj, known)
            objects.append(obj)
    return objects, nothing_new


def _pull_target(folder: str, work: Path, entity: str) -> Path:
    """Where a pull writes its file: a temporary name in the raw folder itself when raw is local
    (then a rename gives it its content name: no second copy of the bytes), else a local file
    that is streamed to S3 afterwards."""
    if is_s3(folder):
        return work / f"{entity}.parquet"
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f".landing-{uuid.uuid4().hex}.part"


def _into_raw(
    storage: Storage, pulled: PullResult, folder: str, obj: LandedObject, known: Known
) -> None:
    """Put the pulled file into raw under its content name; fill in ``obj``."""
    assert pulled.path is not None
    obj.size, obj.rows = pulled.path.stat().st_size, pulled.rows
    _note(obj, pulled)
    try:
        if is_s3(folder):  # uploaded, hashed on the way
            copied = copy.stream_copy(storage, str(pulled.path), folder)
        else:  # already in the folder: hashed where it lies
            sha = storage.sha256(str(pulled.path))
            copied = copy.Copied(sha, obj.size, str(pulled.path))
        obj.sha256 = copied.sha256
        if copied.sha256 in known.hashes:  # the same rows were landed before (a retried step)
            copy.discard(storage, copied)
            obj.outcome, obj.raw_file = DUPLICATE, known.hashes[copied.sha256]
        else:
            obj.raw_file = copy.settle(storage, copied, folder, ".parquet")
            obj.outcome = LANDED
            known.hashes[copied.sha256] = obj.raw_file
    except (OSError, InputError) as exc:
        obj.outcome, obj.detail = FAILED, f"could not be written to raw: {first_line(exc)}"
        return
    # The raw file is durable now: the manifest row may carry the advanced cursor.
    obj.cursor = pulled.cursor


def _note(obj: LandedObject, pulled: PullResult) -> None:
    """What the pull could not take or represent, in the manifest row's ``detail``."""
    notes = []
    if pulled.null_cursor_rows or pulled.future_cursor_rows:
        notes.append(
            f"{pulled.null_cursor_rows} rows with a NULL cursor and {pulled.future_cursor_rows} "
            "stamped in the future not pulled"
        )
    if pulled.missing_columns:
        notes.append(f"missing columns: {', '.join(pulled.missing_columns)}")
    if pulled.extra_columns:
        notes.append(f"columns outside the contract not pulled: {', '.join(pulled.extra_columns)}")
    if pulled.unparsed:
        notes.append(f"values nulled (not representable): {pulled.unparsed}")
    obj.detail = "; ".join(notes) or None  # the pull logged them as warnings already
