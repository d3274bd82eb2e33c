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

from cdf_generator import anomalies, catalog, parts, suppliers
from cdf_generator.arrow_util import const_str
from cdf_generator.hashing import I64, randint, uniform
from cdf_generator.plan import EntityCtx, Plan, make_plan
from cdf_generator.rows import Rows, make_conflicts, make_rows
from cdf_pipeline.contracts import entity as contract
from cdf_pipeline.contracts.schemas import arrow_schema

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
    """Plan rows ``[start, stop)`` as a table in file order (duplicates included) and labels.

    Duplicates are generated in place rather than copied: an exact copy is the same (key,
    version) hashed again, so it comes out identical; a conflicting copy gets another version.

    Args:
        offset: file position of the chunk's first row (rows and duplicates before it).
    """
    anomaly = plan.anomalies[start:stop]
    exact = anomaly == catalog.index(ctx.entity, "duplicate_exact")
    conflict = anomaly == catalog.index(ctx.entity, "duplicate_conflict")
    per_row = 1 + (exact | conflict)
    src = np.repeat(np.arange(stop - start), per_row)  # file row -> plan row
    orig_pos = np.cumsum(per_row) - per_row
    is_copy = np.ones(len(src), dtype=bool)
    is_copy[orig_pos] = False

    rows = make_rows(
        ctx,
        batch,
        plan.keys[start:stop][src],
        plan.versions[start:stop][src],
        plan.roles[start:stop][src],
    )
    newer = randint(rows.base, "conflict_newer", 0, 2) == 1
    make_conflicts(rows, is_copy & conflict[src], newer)
    out_anomaly = np.where(is_copy, catalog.NONE, anomaly[src])
    variant = _variants(ctx, rows.base, out_anomaly)
    cols = _columns(rows, out_anomaly)
    anomalies.inject_columns(rows, cols, out_anomaly, variant)
    table = _table(ctx, cols)

    labeled = np.flatnonzero(anomaly != catalog.NONE)
    pos = orig_pos[labeled]
    # The label sits on the exact copy, or on the older of two conflicting versions.
    on_copy = exact[labeled] | (conflict[labeled] & ~newer[pos])
    label_pos = np.where(on_copy, pos + 1, pos)
    pks = rows.ids.take(pa.array(pos))
    labels = LabelPart(label_pos + offset, pks, anomaly[labeled], variant[pos])
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
