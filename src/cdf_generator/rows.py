"""A slice of a plan with the per-row hashes and timestamps every column builder starts from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from cdf_generator.hashing import I64, U64, uniform
from cdf_generator.plan import (
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


def make_conflicts(rows: Rows, mask: np.ndarray, newer: np.ndarray) -> None:
    """Turn ``rows[mask]`` (copies of their originals) into second, conflicting versions.

    They get other values (another value version) and a source timestamp just newer than the
    original's (still before as-of) or up to 30 days older, per ``newer``.
    """
    if not mask.any():
        return
    versions = rows.versions[mask] + CONFLICT_VERSION_OFFSET
    base = rows.ctx.base(rows.keys[mask], versions)
    ts = rows.source_ts[mask]
    as_of = rows.as_of_us
    u = uniform(base, "conflict_ts")
    later = ts + 1 + np.floor(u * np.maximum(as_of - ts - 1, 0)).astype(np.int64)
    earlier = ts - 1_000_000 - np.floor(u * 30 * DAY_US).astype(np.int64)
    ts = np.where(newer[mask], later, earlier).astype(np.int64)
    rows.versions[mask] = versions
    rows.base[mask] = base
    rows.source_ts[mask] = ts
    rows.ingestion_ts[mask] = ingestion_after(base, ts, as_of)
