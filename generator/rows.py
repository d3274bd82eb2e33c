"""A slice of a plan with the per-row hashes and timestamps every column builder starts from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from generator.hashing import I64, U64, uniform
from generator.plan import (
    CONFLICT_VERSION_OFFSET,
    DAY_US,
    ROLE_LATE,
    ROLE_UPDATE,
    EntityCtx,
)


@dataclass
class Rows:
    """Rows to build: keys, value versions, base hashes and clean timestamps (epoch us)."""

    ctx: EntityCtx
    batch: int
    keys: I64
    versions: I64
    base: U64
    source_ts: I64
    ingestion_ts: I64

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def as_of_us(self) -> int:
        return self.ctx.universe.as_of_us(self.batch)

    @cached_property
    def ids(self) -> pa.StringArray:
        return self.ctx.ids(self.keys)


def ingestion_after(base: U64, source_ts: I64, as_of_us: int) -> I64:
    """An export time between the source change and the batch's as-of (never after as-of)."""
    gap = np.maximum(as_of_us - source_ts, 0)
    return (source_ts + np.floor(uniform(base, "ingestion_timestamp") * gap)).astype(np.int64)


def make_rows(ctx: EntityCtx, batch: int, keys: I64, versions: I64, roles: I64) -> Rows:
    """Rows of a plan slice, with source timestamps chosen by role.

    First versions fall in [as_of - 365 d, as_of - 1 d]; updates in [as_of - 1 d, as_of); late
    versions 1 to 30 days before the key's batch-1 version.
    """
    as_of = ctx.universe.as_of_us(batch)
    base = ctx.base(keys, versions)
    ts = ctx.fresh_ts(base, batch)
    upd = roles == ROLE_UPDATE
    if upd.any():
        ts[upd] = (
            as_of - DAY_US + np.floor(uniform(base[upd], "update_ts") * DAY_US).astype(np.int64)
        )
    late = roles == ROLE_LATE
    if late.any():
        v1 = ctx.fresh_ts(ctx.base(keys[late], 1), 1)
        back = DAY_US + np.floor(uniform(base[late], "late_ts") * 29 * DAY_US).astype(np.int64)
        ts[late] = v1 - back
    return Rows(ctx, batch, keys, versions, base, ts, ingestion_after(base, ts, as_of))


def conflict_rows(rows: Rows, newer: np.ndarray) -> Rows:
    """Second, conflicting versions of ``rows``: other values, a newer or older source timestamp."""
    versions = rows.versions + CONFLICT_VERSION_OFFSET
    base = rows.ctx.base(rows.keys, versions)
    as_of = rows.as_of_us
    u = uniform(base, "conflict_ts")
    gap = np.maximum(as_of - rows.source_ts - 1, 0)
    later = rows.source_ts + 1 + np.floor(u * gap).astype(np.int64)
    earlier = rows.source_ts - 1_000_000 - np.floor(u * 30 * DAY_US).astype(np.int64)
    ts = np.where(newer, later, earlier).astype(np.int64)
    out = Rows(
        rows.ctx, rows.batch, rows.keys, versions, base, ts, ingestion_after(base, ts, as_of)
    )
    out.__dict__["ids"] = rows.ids
    return out
