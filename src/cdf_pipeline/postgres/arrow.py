"""Landing-table columns to the contract's Arrow types, batch by batch, without Python row loops.

The SQL side (:func:`select_list`) casts every column to the contract's PostgreSQL type (a no-op
when the table was made from :func:`~cdf_pipeline.contracts.schemas.postgres_ddl`) and splits each
GEO ``jsonb`` into ``lat``/``lon`` doubles plus two flags; the Arrow side (:func:`to_contract`)
turns ADBC's batches into record batches of the contract schema: NUMERIC text into
``decimal128(18, 6)``, the GEO parts into ``struct<lat, lon>``, everything else a cast that is a
no-op for a table made from the DDL. :func:`write_parquet` streams them into one file.

Values the contract type cannot hold (a NUMERIC ``NaN``/``Infinity``, a GEO that is not an object
of numeric ``lat``/``lon``) become null and are *counted* per column, so the caller can report
them: nothing changes silently.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdf_pipeline.contracts.model import Entity, Field, Format, Kind
from cdf_pipeline.contracts.schemas import arrow_schema, postgres_type
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.postgres.connection import quote_ident

#: Fixed-size row groups: the file's bytes depend on the rows only, not on how ADBC batched them.
ROW_GROUP_ROWS = 65_536
COMPRESSION = "snappy"

#: Suffixes of the helper columns a GEO field is selected as (``<name>__lat`` ...).
_GEO_PARTS = ("lat", "lon", "obj", "bad")
#: NUMERIC values with no decimal form (ADBC spells them in lower case, PostgreSQL in mixed case).
_NOT_A_NUMBER = pa.array(
    ["nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "infinity", "-infinity"]
)


def source_expr(f: Field) -> str:
    """The column cast to the contract's PostgreSQL type."""
    return f"{quote_ident(f.name)}::{postgres_type(f.kind)}"


def select_list(fields: Sequence[Field]) -> str:
    """The SELECT list of the pull: one expression per field, four for a GEO field."""
    out: list[str] = []
    for f in fields:
        if f.kind is not Kind.GEO:
            out.append(f"{source_expr(f)} AS {quote_ident(f.name)}")
            continue
        g = f"({source_expr(f)})"
        typ = {k: f"coalesce(jsonb_typeof({g}->'{k}'), 'null')" for k in ("lat", "lon")}
        for k in ("lat", "lon"):
            out.append(
                f"CASE WHEN {typ[k]} = 'number' THEN ({g}->>'{k}')::float8 END "
                f"AS {quote_ident(f'{f.name}__{k}')}"
            )
        out.append(
            f"coalesce(jsonb_typeof({g}) = 'object', false) AS {quote_ident(f'{f.name}__obj')}"
        )
        out.append(
            f"coalesce(jsonb_typeof({g}) NOT IN ('object', 'null') "
            f"OR {typ['lat']} NOT IN ('number', 'null') "
            f"OR {typ['lon']} NOT IN ('number', 'null'), false) AS {quote_ident(f'{f.name}__bad')}"
        )
    return ", ".join(out)


def contract_schema(entity: Entity, present: Sequence[str]) -> pa.Schema:
    """The contract's Arrow schema restricted to the columns the source has (contract order)."""
    full = arrow_schema(entity)
    return pa.schema([full.field(name) for name in entity.field_names if name in present])


def to_contract(
    batch: pa.RecordBatch, fields: Sequence[Field], schema: pa.Schema, unparsed: dict[str, int]
) -> pa.RecordBatch:
    """One ADBC batch as a batch of ``schema``; counts nulled values in ``unparsed``."""
    arrays: list[pa.Array] = []
    for f in fields:
        target = schema.field(f.name).type
        if f.kind is Kind.GEO:
            arrays.append(_geo(batch, f.name, target, unparsed))
        elif f.kind is Kind.DECIMAL:
            arrays.append(_decimal(batch.column(f.name), f.name, target, unparsed))
        else:
            arrays.append(_storage(batch.column(f.name)).cast(target))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _storage(arr: pa.Array) -> pa.Array:
    """ADBC hands unknown PostgreSQL types over as extension arrays; their storage is the data."""
    return arr.storage if isinstance(arr, pa.ExtensionArray) else arr


def _decimal(arr: pa.Array, name: str, target: pa.DataType, unparsed: dict[str, int]) -> pa.Array:
    # ADBC gives NUMERIC as its text form; exact, and Arrow parses it into decimal128 columnar.
    text = _storage(arr)
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        return text.cast(target)
    special = pc.fill_null(pc.is_in(text, value_set=_NOT_A_NUMBER), False)
    count = pc.sum(special).as_py() or 0
    if count:
        unparsed[name] = unparsed.get(name, 0) + count
        text = pc.if_else(special, pa.scalar(None, text.type), text)
    return text.cast(target)


def _geo(
    batch: pa.RecordBatch, name: str, target: pa.DataType, unparsed: dict[str, int]
) -> pa.Array:
    lat, lon, obj, bad = (batch.column(f"{name}__{part}") for part in _GEO_PARTS)
    count = pc.sum(bad).as_py() or 0
    if count:
        unparsed[name] = unparsed.get(name, 0) + count
    # A JSON null or a non-object is a null location; an object gives a struct (null parts kept).
    return pa.StructArray.from_arrays(
        [lat.cast(pa.float64()), lon.cast(pa.float64())],
        fields=list(target),
        mask=pc.invert(obj),
    )


class CursorTracker:
    """The last pulled row that may become the cursor: its cursor value is set and not after
    ``horizon`` (the pull's clock), so a row stamped in the future cannot push the cursor past
    rows still to come."""

    def __init__(self, cursor_column: str, key_column: str, horizon: pa.Scalar | None) -> None:
        self.cursor_column, self.key_column, self.horizon = cursor_column, key_column, horizon
        self.value: pa.Scalar | None = None
        self.key: pa.Scalar | None = None

    def see(self, batch: pa.RecordBatch) -> None:
        col = batch.column(self.cursor_column)
        eligible = pc.is_valid(col)
        if self.horizon is not None:
            eligible = pc.and_(eligible, pc.fill_null(pc.less_equal(col, self.horizon), False))
        hits = pc.indices_nonzero(eligible)
        if len(hits):
            i = hits[len(hits) - 1].as_py()
            self.value, self.key = col[i], batch.column(self.key_column)[i]


def dictionary_columns(fields: Sequence[Field]) -> list[str]:
    """Columns worth dictionary encoding: enums and the tenant id (few distinct values); for the
    others a dictionary overflows and is thrown away, which costs ~35 % of the write time."""
    return [f.name for f in fields if f.enum is not None or f.fmt is Format.TENANT]


def statistics_columns(fields: Sequence[Field]) -> list[str]:
    """Columns with min/max statistics: timestamps and the tenant id, where readers prune; on
    the others they cost ~20 % of the write time for nothing."""
    return [f.name for f in fields if f.kind is Kind.TIMESTAMP or f.fmt is Format.TENANT]


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    dest: Path,
    schema: pa.Schema,
    tracker: CursorTracker | None,
    dictionary: Sequence[str] = (),
    statistics: Sequence[str] | None = None,
) -> int:
    """Stream ``batches`` into ``dest`` in fixed-size row groups; the row count (0: no file).

    Encoding runs on a writer thread while this one reads and converts the next batches (ADBC's
    reader and Parquet's encoder both release the GIL). Written to ``<dest>.part`` and renamed,
    so ``dest`` is whole or absent.

    Raises:
        InputError: the destination cannot be written.
    """
    part = dest.with_name(dest.name + ".part")
    rows = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        writer = pq.ParquetWriter(
            part,
            schema,
            compression=COMPRESSION,
            use_dictionary=list(dictionary) or False,
            write_statistics=True if statistics is None else list(statistics) or False,
        )
        with _WriterThread(writer) as out:
            groups = _RowGroups(schema)
            for batch in batches:
                if tracker is not None:
                    tracker.see(batch)
                rows += batch.num_rows
                for group in groups.push(batch):
                    out.put(group)
            for group in groups.flush():
                out.put(group)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise InputError(f"cannot write the pulled rows to {dest}: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if rows == 0:
        part.unlink(missing_ok=True)
    else:
        os.replace(part, dest)
    return rows


class _RowGroups:
    """Re-cut a stream of batches into contiguous row groups of exactly ``ROW_GROUP_ROWS``."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.pending: list[pa.RecordBatch] = []
        self.count = 0

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.Table]:
        self.pending.append(batch)
        self.count += batch.num_rows
        while self.count >= ROW_GROUP_ROWS:
            whole = pa.Table.from_batches(self.pending, self.schema)
            yield whole.slice(0, ROW_GROUP_ROWS)
            rest = whole.slice(ROW_GROUP_ROWS)
            self.pending, self.count = rest.to_batches(), rest.num_rows

    def flush(self) -> Iterator[pa.Table]:
        if self.count:
            yield pa.Table.from_batches(self.pending, self.schema)
        self.pending, self.count = [], 0


class _WriterThread:
    """Row groups handed to a ParquetWriter on its own thread, at most two waiting (memory)."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer = writer
        self.queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._drain, name="cdf-pg-writer", daemon=True)

    def _drain(self) -> None:
        while (group := self.queue.get()) is not None:
            if not self.failure:
                try:
                    self.writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
                except BaseException as exc:  # re-raised on the caller's thread
                    self.failure.append(exc)

    def put(self, group: pa.Table) -> None:
        if self.failure:
            raise self.failure[0]
        self.queue.put(group)

    def __enter__(self) -> _WriterThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        self.writer.close()
        if self.failure:
            raise self.failure[0]
