"""What a data file holds: which keys, at which version, in which role, with which anomaly.

Batch 1 is the first load (every key once). A change batch ``N >= 2`` holds updates, late
out-of-order versions and new keys (plus, for parts, "late parent" parts whose suppliers only
arrive in batch ``N + 1``). All selections are hash based, so the plan of any batch, and the set of
clean suppliers a part may reference, can be recomputed cheaply and identically anywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pyarrow as pa

from cdf_generator import catalog, ulid
from cdf_generator.hashing import I64, U64, label_hash, randint, row_hash, uniform

DAY_US = 86_400_000_000
ROLE_BASE, ROLE_UPDATE, ROLE_LATE, ROLE_NEW, ROLE_LATE_PARENT = 0, 1, 2, 3, 4
#: Version numbers used for value hashing beyond the batch number itself.
LATE_VERSION_OFFSET = 1_000
CONFLICT_VERSION_OFFSET = 2_000
UPDATE_SHARE, LATE_SHARE, LATE_PARENT_SHARE = 0.60, 0.10, 0.05


@dataclass(frozen=True)
class Universe:
    """Everything fixed for one generation: seed, tenants, base sizes and rates."""

    seed: int
    tenants: tuple[str, ...]
    suppliers: int
    parts: int
    dirty_rate: float = 0.06
    change_rate: float = 0.10
    as_of: dt.date = dt.date(2026, 1, 1)

    def size(self, entity: str) -> int:
        return self.suppliers if entity == "suppliers" else self.parts

    def as_of_us(self, batch: int) -> int:
        """Logical "now" of a batch in epoch microseconds (batch b: as_of + (b - 1) days)."""
        epoch = dt.date(1970, 1, 1)
        return ((self.as_of - epoch).days + batch - 1) * DAY_US

    def as_of_date(self, batch: int) -> dt.date:
        return self.as_of + dt.timedelta(days=batch - 1)

    def change_counts(self, entity: str) -> tuple[int, int, int, int]:
        """(updates, late versions, new keys, late parents among the new keys) of a change batch."""
        m = round(self.size(entity) * self.change_rate)
        updates = round(m * UPDATE_SHARE)
        late = round(m * LATE_SHARE)
        new = max(m - updates - late, 0)
        late_parents = min(round(m * LATE_PARENT_SHARE), new) if entity == "parts" else 0
        return updates, late, new, late_parents

    def new_per_batch(self, entity: str) -> int:
        return self.change_counts(entity)[2]

    def peer(self, tenant: str) -> str:
        """The tenant whose supplier ids cross-tenant parts borrow (next in the list, cyclic)."""
        if len(self.tenants) == 1:
            return f"{tenant}_peer"
        i = self.tenants.index(tenant)
        return self.tenants[(i + 1) % len(self.tenants)]


@dataclass(frozen=True)
class EntityCtx:
    """One tenant's entity inside a universe: the hash context and id namespace of its rows."""

    universe: Universe
    tenant: str
    entity: str

    @cached_property
    def context(self) -> int:
        return label_hash("rows", self.universe.seed, self.tenant, self.entity)

    @cached_property
    def namespace(self) -> int:
        return ulid.namespace(self.universe.seed, self.tenant, self.entity)

    @property
    def size(self) -> int:
        return self.universe.size(self.entity)

    def base(self, keys: I64, versions: I64 | int) -> U64:
        return row_hash(self.context, keys, np.broadcast_to(np.asarray(versions), keys.shape))

    def fresh_ts(self, base: U64, batch: int) -> I64:
        """Source timestamp of a key's first version: uniform in [as_of - 365 d, as_of - 1 d]."""
        as_of = self.universe.as_of_us(batch)
        u = uniform(base, "source_timestamp")
        return (as_of - DAY_US - np.floor(u * 364 * DAY_US)).astype(np.int64)

    def birth_batch(self, keys: I64) -> I64:
        """The batch that introduced each key (1 for base keys)."""
        size, per = self.size, max(self.universe.new_per_batch(self.entity), 1)
        return np.where(keys < size, 1, 2 + (keys - size) // per).astype(np.int64)

    def first_ts(self, keys: I64) -> I64:
        """Source timestamp of each key's first version (the time part of its ULID)."""
        births = self.birth_batch(keys)
        out = np.empty(len(keys), dtype=np.int64)
        for b in np.unique(births):
            sel = births == b
            out[sel] = self.fresh_ts(self.base(keys[sel], int(b)), int(b))
        return out

    def ids(self, keys: I64) -> pa.StringArray:
        """The ULIDs of keys (unique per tenant and entity by construction)."""
        ms = (self.first_ts(keys) // 1000).astype(np.uint64)
        return ulid.encode(ms, self.namespace, ulid.permute40(keys.astype(np.uint64)))

    def anomaly_of(self, base: U64) -> I64:
        """Anomaly index per row (``catalog.NONE`` when clean): dirty by hash, type by hash."""
        dirty = uniform(base, "dirty") < self.universe.dirty_rate
        kind = randint(base, "anomaly", 0, catalog.injectable_count(self.entity))
        return np.where(dirty, kind, catalog.NONE).astype(np.int64)

    def new_keys(self, batch: int) -> I64:
        per = self.universe.new_per_batch(self.entity)
        start = self.size + (batch - 2) * per
        return np.arange(start, start + per, dtype=np.int64)


@dataclass(frozen=True)
class Plan:
    """The rows of one data file before duplicates, in key order."""

    keys: I64
    versions: I64
    roles: I64
    anomalies: I64

    def __len__(self) -> int:
        return len(self.keys)


@lru_cache(maxsize=64)
def clean_keys(ctx: EntityCtx, batch: int) -> I64:
    """Keys of ``ctx`` with a clean row by ``batch``: clean base keys plus clean new keys."""
    base_keys = np.arange(ctx.size, dtype=np.int64)
    parts = [base_keys[ctx.anomaly_of(ctx.base(base_keys, 1)) == catalog.NONE]]
    for b in range(2, batch + 1):
        parts.append(new_clean_keys(ctx, b))
    return np.concatenate(parts)


def new_clean_keys(ctx: EntityCtx, batch: int) -> I64:
    """The new keys of change batch ``batch`` whose row is clean."""
    new = ctx.new_keys(batch)
    return new[ctx.anomaly_of(ctx.base(new, batch)) == catalog.NONE]


@lru_cache(maxsize=16)
def make_plan(ctx: EntityCtx, batch: int) -> Plan:
    """The plan of one (tenant, entity, batch) data file."""
    if batch == 1:
        keys = np.arange(ctx.size, dtype=np.int64)
        ones = np.ones(len(keys), dtype=np.int64)
        return Plan(keys, ones, np.full(len(keys), ROLE_BASE), ctx.anomaly_of(ctx.base(keys, 1)))
    n_upd, n_late, _n_new, n_lp = ctx.universe.change_counts(ctx.entity)
    base_clean = clean_keys(ctx, 1)
    n_upd = min(n_upd, len(base_clean))
    n_late = min(n_late, len(base_clean) - n_upd)
    order = np.argsort(uniform(ctx.base(base_clean, batch), "change"), kind="stable")
    upd = base_clean[order[:n_upd]]
    late = base_clean[order[n_upd : n_upd + n_late]]
    new = ctx.new_keys(batch)
    if n_lp and ctx.entity == "parts" and len(next_batch_suppliers(ctx, batch)) == 0:
        n_lp = 0
    lp_order = np.argsort(uniform(ctx.base(new, batch), "late_parent"), kind="stable")
    is_lp = np.zeros(len(new), dtype=bool)
    is_lp[lp_order[:n_lp]] = True
    keys = np.concatenate([upd, late, new])
    roles = np.concatenate(
        [
            np.full(len(upd), ROLE_UPDATE),
            np.full(len(late), ROLE_LATE),
            np.where(is_lp, ROLE_LATE_PARENT, ROLE_NEW),
        ]
    ).astype(np.int64)
    versions = np.where(roles == ROLE_LATE, LATE_VERSION_OFFSET + batch, batch).astype(np.int64)
    anomalies = ctx.anomaly_of(ctx.base(keys, versions))
    anomalies[roles == ROLE_LATE] = catalog.index(ctx.entity, "late_version")
    if ctx.entity == "parts":
        anomalies[roles == ROLE_LATE_PARENT] = catalog.index(ctx.entity, "late_parent")
    sort = np.argsort(keys, kind="stable")
    return Plan(keys[sort], versions[sort], roles[sort], anomalies[sort])


def supplier_ctx(ctx: EntityCtx, tenant: str | None = None) -> EntityCtx:
    return EntityCtx(ctx.universe, tenant or ctx.tenant, "suppliers")


def next_batch_suppliers(ctx: EntityCtx, batch: int) -> I64:
    """Clean suppliers that first arrive in ``batch + 1`` (the parents of late-parent parts)."""
    sup = supplier_ctx(ctx)
    if sup.universe.new_per_batch("suppliers") == 0:
        return np.empty(0, dtype=np.int64)
    return new_clean_keys(sup, batch + 1)
