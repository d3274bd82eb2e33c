"""Assemble data rows and their labels, chunk by chunk, in file order.

A plan slice becomes clean columns, then anomalies are injected, then each duplicate is emitted
right after its original. Positions are absolute (the caller passes the running offset), so the
output is identical whatever the chunk size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from cdf_pipeline.contracts import entity as contract
from cdf_pipeline.contracts.schemas import arrow_schema
from generator import anomalies, catalog, parts, suppliers
from generator.arrow_util import const_str
from generator.hashing import I64, randint, uniform
from generator.plan import EntityCtx, Plan, make_plan
from generator.rows import Rows, conflict_rows, make_rows

LABEL_SCHEMA = pa.schema(
    [
        ("tenant_id", pa.string()),
        ("entity", pa.string()),
        ("batch", pa.int32()),
        ("pk", pa.string()),
        ("position", pa.int64()),
        ("anomaly", pa.string()),
        ("codes", pa.list_(pa.string())),
        ("source_file", pa.string()),
    ]
)


@dataclass
class LabelPart:
    """Labels of one chunk: positions, primary keys and (anomaly, variant) kinds."""

    positions: I64
    pks: pa.Array
    anomaly: I64
    variant: I64


@lru_cache(maxsize=4)
def _kinds(entity: str) -> tuple[pa.Array, pa.Array, int]:
    """Names and codes of each (anomaly, variant), indexed ``anomaly * width + variant``."""
    width = catalog.max_variants(entity)
    names, codes = [], []
    for a in catalog.anomalies(entity):
        for v in range(width):
            names.append(a.name)
            codes.append(list(a.variants[min(v, len(a.variants) - 1)]))
    return pa.array(names, pa.string()), pa.array(codes, pa.list_(pa.string())), width


def _variants(ctx: EntityCtx, base: np.ndarray, anomaly: I64) -> I64:
    counts = np.array([len(a.variants) for a in catalog.anomalies(ctx.entity)], dtype=np.int64)
    n_var = counts[np.maximum(anomaly, 0)]
    return np.floor(uniform(base, "anomaly_variant") * n_var).astype(np.int64)


def _columns(rows: Rows, anomaly: I64) -> dict[str, pa.Array]:
    if rows.ctx.entity == "suppliers":
        return suppliers.build(rows)
    return parts.build(rows, anomalies.part_refs(rows, anomaly))


def _table(ctx: EntityCtx, cols: dict[str, pa.Array]) -> pa.Table:
    schema = arrow_schema(contract(ctx.entity))
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def build_chunk(
    ctx: EntityCtx, batch: int, plan: Plan, start: int, stop: int, offset: int
) -> tuple[pa.Table, LabelPart]:
    """Rows ``[start, stop)`` of the plan, as a table in file order, and their labels.

    Args:
        offset: file position of the chunk's first row (rows and duplicates before it).
    """
    keys, versions = plan.keys[start:stop], plan.versions[start:stop]
    anomaly = plan.anomalies[start:stop]
    rows = make_rows(ctx, batch, keys, versions, plan.roles[start:stop])
    variant = _variants(ctx, rows.base, anomaly)
    cols = _columns(rows, anomaly)
    anomalies.inject_columns(rows, cols, anomaly, variant)
    table = _table(ctx, cols)

    exact = anomaly == catalog.index(ctx.entity, "duplicate_exact")
    conflict = anomaly == catalog.index(ctx.entity, "duplicate_conflict")
    is_dup = exact | conflict
    n = len(keys)
    shift = np.cumsum(is_dup) - is_dup
    base_pos = np.arange(n, dtype=np.int64) + shift
    dup_pos = base_pos + 1
    newer = randint(rows.base, "conflict_newer", 0, 2) == 1

    if is_dup.any():
        c_idx = np.flatnonzero(conflict)
        sub = Rows(ctx, batch, keys[c_idx], versions[c_idx], rows.base[c_idx],
                   rows.source_ts[c_idx], rows.ingestion_ts[c_idx])  # fmt: skip
        sub.__dict__["ids"] = rows.ids.take(pa.array(c_idx))
        second = conflict_rows(sub, newer[c_idx])
        clean = np.full(len(c_idx), catalog.NONE, dtype=np.int64)
        conflicts = _table(ctx, _columns(second, clean))
        e_idx = np.flatnonzero(exact)
        copies = table.take(pa.array(e_idx))
        dup_src = np.concatenate([e_idx, c_idx])
        order = np.empty(n + len(dup_src), dtype=np.int64)
        order[base_pos] = np.arange(n)
        order[dup_pos[dup_src]] = n + np.arange(len(dup_src))
        table = pa.concat_tables([table, copies, conflicts]).take(pa.array(order))

    labeled = np.flatnonzero(anomaly != catalog.NONE)
    label_pos = base_pos[labeled].copy()
    moved = exact[labeled] | (conflict[labeled] & ~newer[labeled])
    label_pos[moved] = dup_pos[labeled][moved]
    pks = rows.ids.take(pa.array(labeled))
    labels = LabelPart(label_pos + offset, pks, anomaly[labeled], variant[labeled])
    return table, labels


def iter_chunks(
    ctx: EntityCtx, batch: int, chunk_rows: int
) -> Iterator[tuple[pa.Table, LabelPart]]:
    """The whole file of (tenant, entity, batch) as chunks of about ``chunk_rows`` plan rows."""
    plan = make_plan(ctx, batch)
    offset = 0
    for start in range(0, max(len(plan), 1), chunk_rows):
        stop = min(start + chunk_rows, len(plan))
        table, labels = build_chunk(ctx, batch, plan, start, stop, offset)
        offset += table.num_rows
        yield table, labels


def label_table(ctx: EntityCtx, batch: int, parts_: list[LabelPart], source_file: str) -> pa.Table:
    """The labels file of one data file."""
    names, codes, width = _kinds(ctx.entity)
    if parts_:
        positions = np.concatenate([p.positions for p in parts_])
        kind = np.concatenate([p.anomaly * width + p.variant for p in parts_])
        pks = pa.concat_arrays([p.pks for p in parts_])
    else:
        positions, kind, pks = (
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            pa.array([], pa.string()),
        )
    n = len(positions)
    k = pa.array(kind)
    return pa.Table.from_arrays(
        [
            const_str(ctx.tenant, n),
            const_str(ctx.entity, n),
            pa.array(np.full(n, batch, dtype=np.int32)),
            pks,
            pa.array(positions, pa.int64()),
            names.take(k),
            codes.take(k),
            const_str(source_file, n),
        ],
        schema=LABEL_SCHEMA,
    )
