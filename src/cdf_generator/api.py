"""The generator's Python API: write files (:func:`generate`) or build tables in memory.

Example::

    from cdf_generator.api import generate
    summary = generate(["acme", "globex"], 30_000, 30_000, seed=42, root_uri="./lakehouse")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cdf_generator import build, shapes, sink
from cdf_generator.plan import EntityCtx, Universe
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.contracts.schemas import arrow_schema
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.storage import S3Config, Storage, join
from cdf_pipeline.telemetry import stage
from cdf_pipeline.tenants import validate_tenant_id

DEFAULT_AS_OF = dt.date(2026, 1, 1)
DEFAULT_CHUNK_ROWS = 250_000
MAX_DIRTY_RATE = 0.5
ENTITY_ORDER = tuple(ENTITIES)  # parents first: suppliers, then parts


@dataclass
class EntitySummary:
    """Rows written and anomalies labelled for one tenant's entity."""

    rows: int = 0
    anomalies: int = 0
    by_anomaly: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "anomalies": self.anomalies, "by_anomaly": dict(self.by_anomaly)}


@dataclass
class GenerateSummary:
    """What :func:`generate` wrote."""

    batch: int
    tenants: dict[str, dict[str, EntitySummary]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    label_files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenants": {
                t: {e: s.to_dict() for e, s in ents.items()} for t, ents in self.tenants.items()
            },
            "files": list(self.files),
            "label_files": list(self.label_files),
            "seconds": round(self.seconds, 3),
            "batch": self.batch,
        }


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise InputError(message)


def make_universe(
    tenants: Sequence[str],
    suppliers: int,
    parts: int,
    *,
    seed: int,
    dirty_rate: float,
    batch: int,
    as_of: dt.date,
    change_rate: float,
    chunk_rows: int,
) -> Universe:
    """Validate the arguments (one clear :class:`InputError` each) and fix the universe."""
    _check(len(tenants) > 0, "no tenant given: pass one or more ids, e.g. --tenants acme,globex")
    ids = tuple(dict.fromkeys(validate_tenant_id(t) for t in tenants))
    _check(suppliers > 0, f"--suppliers must be a positive row count, got {suppliers}")
    _check(parts > 0, f"--parts must be a positive row count, got {parts}")
    _check(
        0.0 <= dirty_rate <= MAX_DIRTY_RATE and not math.isnan(dirty_rate),
        f"--dirty-rate must lie in [0, {MAX_DIRTY_RATE}], got {dirty_rate}",
    )
    _check(0.0 <= change_rate <= 1.0, f"--change-rate must lie in [0, 1], got {change_rate}")
    _check(batch >= 1, f"--batch must be 1 (first load) or more, got {batch}")
    _check(chunk_rows > 0, f"--chunk-rows must be positive, got {chunk_rows}")
    _check(0 <= seed < 2**63, f"--seed must be a non-negative integer below 2**63, got {seed}")
    return Universe(seed, ids, suppliers, parts, dirty_rate, change_rate, as_of)


def _chunks(
    ctx: EntityCtx, batch: int, chunk_rows: int, labels: list[build.LabelPart], fmt: str, shape: str
) -> Iterator[pa.Table]:
    for table, part in build.iter_chunks(ctx, batch, chunk_rows):
        labels.append(part)
        yield shapes.reshape(table, ctx.entity, fmt, shape)


def _shaped_schema(entity: str, fmt: str, shape: str) -> pa.Schema:
    empty = arrow_schema(ENTITIES[entity]).empty_table()
    return shapes.reshape(empty, entity, fmt, shape).schema


def build_tables(
    tenant: str,
    entity: str,
    *,
    suppliers: int,
    parts: int,
    tenants: Sequence[str] | None = None,
    seed: int = 42,
    dirty_rate: float = 0.06,
    batch: int = 1,
    as_of: dt.date = DEFAULT_AS_OF,
    change_rate: float = 0.10,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    fmt: str = "parquet",
    shape: str = "contract",
    source_file: str = "",
) -> tuple[pa.Table, pa.Table]:
    """One data file's rows and its labels, in memory (for tests and notebooks).

    The rows are exactly those :func:`generate` writes for (tenant, entity, batch), in file order.
    """
    universe = make_universe(
        list(tenants or [tenant]),
        suppliers,
        parts,
        seed=seed,
        dirty_rate=dirty_rate,
        batch=batch,
        as_of=as_of,
        change_rate=change_rate,
        chunk_rows=chunk_rows,
    )
    _check(entity in ENTITIES, f"unknown entity {entity!r}; expected one of {sorted(ENTITIES)}")
    ctx = EntityCtx(universe, validate_tenant_id(tenant), entity)
    parts_: list[build.LabelPart] = []
    tables = list(_chunks(ctx, batch, chunk_rows, parts_, fmt, shape))
    data = pa.concat_tables(tables) if tables else _shaped_schema(entity, fmt, shape).empty_table()
    return data.combine_chunks(), build.label_table(ctx, batch, parts_, source_file)


def generate(
    tenants: Sequence[str],
    suppliers: int,
    parts: int,
    *,
    seed: int = 42,
    dirty_rate: float = 0.06,
    batch: int = 1,
    fmt: str = "parquet",
    shape: str = "contract",
    root_uri: str = "./lakehouse",
    as_of: dt.date = DEFAULT_AS_OF,
    change_rate: float = 0.10,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    s3_endpoint: str | None = None,
    storage: Storage | None = None,
    progress: Callable[[str], None] | None = None,
    landing_uri: str | None = None,
    pg_uri: str | None = None,
    pg_schema: str = "landing",
) -> GenerateSummary:
    """Write one data file and one labels file per (tenant, entity) of ``batch`` under ``root_uri``.

    Layout: ``raw/tenant_id=<t>/entity=<e>/ingest_date=<as-of of the batch>/<sha256>.<fmt>`` and
    ``labels/tenant_id=<t>/entity=<e>/batch=<b>/labels.parquet``. With ``landing_uri``, data
    files go where a customer would drop them instead
    (``<landing_uri>/<t>/<e>/<e>_<date>_batch<b>.<fmt>``, the default layout ``cdf land`` reads);
    labels stay under ``root_uri``.

    With ``pg_uri`` (``postgresql://user@host:port/db``, the password from PGPASSWORD or ~/.pgpass)
    the rows go to the landing tables ``<pg_schema>.<entity>`` instead of files (see
    :mod:`cdf_generator.pg_sink`); ``{tenant}`` in ``pg_schema`` gives each tenant its schema.
    The labels still go under ``root_uri``, their ``source_file`` naming the landing table.

    Raises:
        InputError: a bad argument or an unwritable destination.
        InvalidTenantError: a malformed tenant id.
        ConfigError: a refused PostgreSQL URI, login or schema name.
    """
    started = time.perf_counter()
    _check(fmt in shapes.FORMATS, f"--format must be one of {shapes.FORMATS}, got {fmt!r}")
    _check(shape in shapes.SHAPES, f"--shape must be one of {shapes.SHAPES}, got {shape!r}")
    universe = make_universe(
        tenants,
        suppliers,
        parts,
        seed=seed,
        dirty_rate=dirty_rate,
        batch=batch,
        as_of=as_of,
        change_rate=change_rate,
        chunk_rows=chunk_rows,
    )
    if storage is None:
        s3 = S3Config.resolve()
        if s3_endpoint:  # an explicit endpoint wins over the environment's
            s3 = S3Config(endpoint=s3_endpoint, region=s3.region, path_style=True)
        storage = Storage(s3)
    _check(not (landing_uri and pg_uri), "give a landing zone or a PostgreSQL database, not both")
    storage.check_writable(root_uri)
    if landing_uri:
        storage.check_writable(landing_uri)
    schemas = pg_schemas(pg_schema, universe.tenants) if pg_uri else {}
    conn = None
    if pg_uri:
        from cdf_pipeline.postgres.connection import connect

        conn = connect(pg_uri)
    summary = GenerateSummary(batch=batch)
    ingest_date = universe.as_of_date(batch).isoformat()
    root_attrs = {"pipeline.name": "cdf.generate", "cdf.batch": batch, "cdf.format": fmt}
    with (
        stage("cdf.generate", **root_attrs, **{"cdf.tenant_count": len(universe.tenants)}),
        _closing(conn),
    ):
        for tenant in universe.tenants:
            summary.tenants[tenant] = {}
            for entity in ENTITY_ORDER:
                with stage("generate_file", **{"cdf.tenant": tenant, "cdf.entity": entity}) as span:
                    ctx = EntityCtx(universe, tenant, entity)
                    if conn is not None:
                        uri, label_uri, written = _load_entity_pg(
                            conn, schemas[tenant], storage, root_uri, ctx, batch, chunk_rows
                        )
                    else:
                        uri, label_uri, written = _write_entity(
                            storage,
                            root_uri,
                            ctx,
                            batch,
                            ingest_date,
                            fmt,
                            shape,
                            chunk_rows,
                            landing_uri,
                        )
                    span.set_attributes(
                        {"cdf.rows.written": written.rows, "cdf.rows.anomalous": written.anomalies}
                    )
                summary.tenants[tenant][entity] = written
                summary.files.append(uri)
                summary.label_files.append(label_uri)
                if progress is not None:
                    progress(f"wrote {uri} ({written.rows} rows, {written.anomalies} labelled)")
    summary.seconds = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _closing(conn: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if conn is not None:
            conn.close()


def _write_entity(
    storage: Storage,
    root_uri: str,
    ctx: EntityCtx,
    batch: int,
    ingest_date: str,
    fmt: str,
    shape: str,
    chunk_rows: int,
    landing_uri: str | None = None,
) -> tuple[str, str, EntitySummary]:
    """Write one (tenant, entity) data file and its labels; (data URI, labels URI, summary)."""
    tenant, entity = ctx.tenant, ctx.entity
    data_dir = join(root_uri, f"raw/tenant_id={tenant}/entity={entity}/ingest_date={ingest_date}")
    if landing_uri:
        data_dir = join(landing_uri, tenant, entity)
    label_parts: list[build.LabelPart] = []
    with storage.staged_file(data_dir, f".{fmt}") as tmp:
        rows = sink.write_stream(
            tmp,
            _chunks(ctx, batch, chunk_rows, label_parts, fmt, shape),
            fmt,
            _shaped_schema(entity, fmt, shape),
        )
        # Raw files are named by content; cdf land gives a landed file that same name.
        name = f"{storage.sha256(str(tmp))}.{fmt}"
        drop = f"{entity}_{ingest_date}_batch{batch}.{fmt}" if landing_uri else name
        uri = storage.put(tmp, join(data_dir, drop))
    label_uri, summary = _write_labels(storage, root_uri, ctx, batch, label_parts, name, rows)
    return uri, label_uri, summary


def _load_entity_pg(
    conn: Any,
    schema: str,
    storage: Storage,
    root_uri: str,
    ctx: EntityCtx,
    batch: int,
    chunk_rows: int,
) -> tuple[str, str, EntitySummary]:
    """Load one (tenant, entity) into its landing table; write its labels as for a file."""
    from cdf_generator import pg_sink

    label_parts: list[build.LabelPart] = []
    chunks = _chunks(ctx, batch, chunk_rows, label_parts, "parquet", "contract")
    load = pg_sink.load_entity(conn, schema, ENTITIES[ctx.entity], batch, chunks)
    label_uri, summary = _write_labels(
        storage, root_uri, ctx, batch, label_parts, load.table, load.rows
    )
    return load.table, label_uri, summary


def _write_labels(
    storage: Storage,
    root_uri: str,
    ctx: EntityCtx,
    batch: int,
    label_parts: list[build.LabelPart],
    source: str,
    rows: int,
) -> tuple[str, EntitySummary]:
    """The labels file of one data file (or landing table ``source``) and its summary."""
    labels = build.label_table(ctx, batch, label_parts, source)
    label_dir = join(root_uri, f"labels/tenant_id={ctx.tenant}/entity={ctx.entity}/batch={batch}")
    with storage.staged_file(label_dir, ".parquet") as ltmp:
        sink.write_labels(ltmp, labels)
        label_uri = storage.put(ltmp, join(label_dir, "labels.parquet"))
    counts = Counter(labels.column("anomaly").to_pylist())
    return label_uri, EntitySummary(
        rows=rows, anomalies=labels.num_rows, by_anomaly=dict(sorted(counts.items()))
    )


def pg_schemas(template: str, tenants: Sequence[str]) -> dict[str, str]:
    """The landing schema of each tenant from ``template`` (``{tenant}`` is replaced).

    Raises:
        InputError: several tenants into one fixed schema (their rows would mix).
        ConfigError: a schema name PostgreSQL would need quoting for.
    """
    from cdf_pipeline.postgres.connection import quote_ident

    if len(tenants) > 1 and "{tenant}" not in template:
        raise InputError(
            f"{len(tenants)} tenants into the one PostgreSQL schema {template!r} would mix their "
            "rows: give a schema per tenant, e.g. --pg-schema 'landing_{tenant}'"
        )
    out = {t: template.replace("{tenant}", t) for t in tenants}
    for name in out.values():
        quote_ident(name)
    return out
