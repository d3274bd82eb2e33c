"""Supplier references of parts, kept as ULID parts (time, namespace, low bits) per slot.

A part holds up to four slots: slot 0 is the default supplier, slots ``< count`` the qualified
list. Anomalies swap slots for ghost or foreign ids before the strings are encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cdf_generator import ulid
from cdf_generator.arrow_util import lists
from cdf_generator.hashing import I64, U64, choice, label_hash, randint, uniform
from cdf_generator.plan import EntityCtx

SLOTS = 4
QUALIFIED_WEIGHTS = (0.45, 0.35, 0.20)  # 1, 2 or 3 qualified suppliers


@dataclass
class Refs:
    """Per-row supplier slots: (n, SLOTS) arrays of ULID parts and the used slot count."""

    millis: U64
    high: U64
    low: U64
    count: I64

    @classmethod
    def empty(cls, n: int) -> Refs:
        z = np.zeros((n, SLOTS), dtype=np.uint64)
        return cls(z.copy(), z.copy(), z.copy(), np.zeros(n, dtype=np.int64))

    def set_slot(
        self, rows: np.ndarray, slot: np.ndarray | int, millis: U64, high: U64 | int, low: U64
    ) -> None:
        self.millis[rows, slot] = millis
        self.high[rows, slot] = high
        self.low[rows, slot] = low

    def default_ids(self) -> pa.StringArray:
        return ulid.encode(self.millis[:, 0], self.high[:, 0], self.low[:, 0])

    def qualified_ids(self) -> pa.ListArray:
        used = np.arange(SLOTS)[None, :] < self.count[:, None]
        flat = ulid.encode(self.millis[used], self.high[used], self.low[used])
        return lists(self.count, flat)


def pick_distinct(base: U64, pool_size: int, count: I64, column: str) -> I64:
    """Up to 3 distinct indices into [0, pool_size) per row (columns past ``count`` unused)."""
    i0 = randint(base, column, 0, max(pool_size, 1), 0)
    out = np.zeros((len(base), 3), dtype=np.int64)
    out[:, 0] = i0
    if pool_size >= 2:
        a = 1 + np.floor(uniform(base, column, 1) * (pool_size - 1)).astype(np.int64)
        out[:, 1] = (i0 + a) % pool_size
    if pool_size >= 3:
        c = 1 + np.floor(uniform(base, column, 2) * (pool_size - 2)).astype(np.int64)
        c = np.where(c >= a, c + 1, c)
        out[:, 2] = (i0 + c) % pool_size
    return out


def supplier_parts(sup: EntityCtx, keys: I64) -> tuple[U64, U64]:
    """(millis, low40) ULID parts of supplier keys of ``sup`` (namespace is ``sup.namespace``)."""
    ms = (sup.first_ts(keys) // 1000).astype(np.uint64)
    return ms, ulid.permute40(keys.astype(np.uint64))


def fill_from_pool(
    refs: Refs, rows: np.ndarray, base: U64, sup: EntityCtx, pool: I64, column: str
) -> None:
    """Fill the qualified slots of ``rows`` with distinct suppliers drawn from ``pool``."""
    if len(rows) == 0:
        return
    count = np.minimum(1 + choice(base, f"{column}_count", QUALIFIED_WEIGHTS), len(pool))
    picks = pool[pick_distinct(base, len(pool), count, column)]
    refs.count[rows] = count
    for slot in range(3):
        use = count > slot
        ms, low = supplier_parts(sup, picks[use, slot])
        refs.set_slot(rows[use], slot, ms, sup.namespace, low)


def ghost_namespace(seed: int, tenant: str) -> int:
    """Namespace of well-formed supplier ids that belong to nobody (orphans)."""
    return label_hash("ghost-suppliers", seed, tenant) & ulid.MASK40
