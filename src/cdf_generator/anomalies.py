"""Inject each anomaly into the rows chosen for it, breaking exactly the rules of its label.

Every function receives the row mask of its anomaly and replaces only those rows' values; values
are drawn from the row's hash, so they are as deterministic as the clean ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cdf_generator import catalog, pools, refs, ulid
from cdf_generator.arrow_util import TS_TYPE, decimal_from_micros, float64
from cdf_generator.hashing import U64, randint, uniform
from cdf_generator.plan import DAY_US, EntityCtx, clean_keys, next_batch_suppliers, supplier_ctx
from cdf_generator.rows import Rows
from cdf_pipeline.exceptions import InputError

Mask = npt.NDArray[np.bool_]
Cols = dict[str, pa.Array]

#: Invalid even after trim + upper-case (UK and EU are common mistakes, USA is alpha-3).
BOGUS_COUNTRIES = ("XX", "ZZ", "UK", "EU", "USA", "GER")
BAD_STATUSES = ("MAYBE", "UNKNOWN", "ON_HOLD")
BAD_TIERS = ("UNKNOWN", "VERY_HIGH", "N/A")
BAD_CATEGORIES = ("ELECTRONIC", "MISC", "UNKNOWN", "HARDWARE")
WRONG_UOMS = ("EACH", "KGS", "METRE", "PIECE", "UNIT", "LBS", "PC")
EMAIL_BREAKS = ("#", "@@", " at ")
YEAR_US = 365 * DAY_US

for _bad, _field in (
    (BOGUS_COUNTRIES, pools.COUNTRY_ENUM),
    (WRONG_UOMS, pools.UOM_ENUM),
    (BAD_STATUSES, pools.APPROVED_STATUSES),
    (BAD_TIERS, pools.RISK_TIERS),
    (BAD_CATEGORIES, pools.CATEGORIES),
):
    assert not {v.strip().upper() for v in _bad} & set(_field), _bad


def _put(cols: Cols, name: str, mask: Mask, values: pa.Array) -> None:
    cols[name] = pc.replace_with_mask(cols[name], pa.array(mask), values.cast(cols[name].type))


def _pick(values: tuple[str, ...], base: U64, column: str) -> pa.Array:
    return pa.array(list(values), pa.string()).take(pa.array(randint(base, column, 0, len(values))))


def _ints(cols: Cols, name: str, mask: Mask) -> npt.NDArray[np.int64]:
    return np.asarray(
        cols[name].filter(pa.array(mask)).to_numpy(zero_copy_only=False), dtype=np.int64
    )


def out_of_range_rate(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    b = rows.base[mask]
    over = uniform(b, "bad_rate_side") < 0.5
    amount = 0.01 + np.round(50 * uniform(b, "bad_rate"), 2)
    _put(cols, "on_time_delivery_rate", mask, float64(np.where(over, 100.0 + amount, -amount)))


def missing_contact(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    _put(cols, "contact_email", mask, pa.nulls(int(mask.sum()), pa.string()))


def bogus_country(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    _put(cols, "country", mask, _pick(BOGUS_COUNTRIES, rows.base[mask], "bogus_country"))


def future_timestamp(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    b = rows.base[mask]
    ahead = 10 * YEAR_US + np.floor(uniform(b, "future_ts") * 90 * YEAR_US).astype(np.int64)
    _put(cols, "source_timestamp", mask, pa.array(rows.as_of_us + ahead).view(TS_TYPE))


def null_required(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    name = "legal_name" if rows.ctx.entity == "suppliers" else "part_number"
    _put(cols, name, mask, pa.nulls(int(mask.sum()), pa.string()))


def bad_enum(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    if rows.ctx.entity == "parts":
        _put(cols, "category", mask, _pick(BAD_CATEGORIES, rows.base[mask], "bad_enum"))
        return
    status, tier = mask & (variant == 0), mask & (variant == 1)
    _put(cols, "approved_status", status, _pick(BAD_STATUSES, rows.base[status], "bad_enum"))
    _put(cols, "financial_risk_tier", tier, _pick(BAD_TIERS, rows.base[tier], "bad_enum"))


def bad_geo(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    geo = cols["geo_coords"]
    lat = geo.field("lat").to_numpy(zero_copy_only=False).copy()
    lon = geo.field("lon").to_numpy(zero_copy_only=False).copy()
    b = rows.base
    sign = np.where(uniform(b, "bad_geo_side") < 0.5, -1.0, 1.0)
    on_lat, on_lon = mask & (variant == 0), mask & (variant == 1)
    lat[on_lat] = (sign * np.round(90.5 + 80 * uniform(b, "bad_geo")))[on_lat]
    lon[on_lon] = (sign * np.round(180.5 + 170 * uniform(b, "bad_geo")))[on_lon]
    cols["geo_coords"] = pa.StructArray.from_arrays(
        [float64(lat), float64(lon)], names=["lat", "lon"]
    )


def p95_below_avg(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    avg = _ints(cols, "lead_time_days_avg", mask)  # clean averages are >= 1
    below = avg - 1 - np.floor(uniform(rows.base[mask], "p95_below") * (avg - 1)).astype(np.int64)
    _put(cols, "lead_time_days_p95", mask, pa.array(below.astype(np.int32)))


def malformed_email(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    emails = cols["contact_email"].filter(pa.array(mask))
    v = variant[mask]
    broken = [
        pc.replace_substring(emails, "@", brk) for brk in EMAIL_BREAKS
    ]  # three small arrays; pick per row
    chooser = pa.array(v.astype(np.int8))
    out = pc.choose(chooser, *broken)
    _put(cols, "contact_email", mask, out)


def negative_cost(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    b = rows.base[mask]
    micros = -(10_000 + np.floor(uniform(b, "negative_cost") * 1e9)).astype(np.int64)
    _put(cols, "unit_cost", mask, decimal_from_micros(micros))


def wrong_uom(rows: Rows, cols: Cols, mask: Mask, variant: np.ndarray) -> None:
    _put(cols, "uom", mask, _pick(WRONG_UOMS, rows.base[mask], "wrong_uom"))


#: The anomalies that change columns of their own row. The others (duplicates, late versions, late
#: parents, foreign keys) are made by how rows are repeated, ordered or referenced.
COLUMN_INJECTORS: dict[str, Callable[[Rows, Cols, Mask, np.ndarray], None]] = {
    "out_of_range_rate": out_of_range_rate,
    "missing_contact": missing_contact,
    "bogus_country": bogus_country,
    "future_timestamp": future_timestamp,
    "null_required": null_required,
    "bad_enum": bad_enum,
    "bad_geo": bad_geo,
    "p95_below_avg": p95_below_avg,
    "malformed_email": malformed_email,
    "negative_cost": negative_cost,
    "wrong_uom": wrong_uom,
}


def inject_columns(rows: Rows, cols: Cols, anomaly: np.ndarray, variant: np.ndarray) -> None:
    """Apply every column-level anomaly present in ``anomaly`` (indices into the catalogue)."""
    for i, a in enumerate(catalog.anomalies(rows.ctx.entity)):
        fn = COLUMN_INJECTORS.get(a.name)
        mask = anomaly == i
        if fn is not None and mask.any():
            fn(rows, cols, mask, variant)


def part_refs(rows: Rows, anomaly: np.ndarray) -> refs.Refs:
    """Supplier slots of part rows: clean picks, then FK anomalies swap or add slots."""
    ctx, n = rows.ctx, rows.n
    sup = supplier_ctx(ctx)
    out = refs.Refs.empty(n)
    lp = anomaly == (_idx(ctx, "late_parent"))
    normal = np.flatnonzero(~lp)
    pool = clean_keys(sup, rows.batch)
    if len(pool) == 0 and len(normal):
        raise InputError("no clean supplier to reference: raise --suppliers or lower --dirty-rate")
    refs.fill_from_pool(out, normal, rows.base[normal], sup, pool, "qualified")
    if lp.any():
        late = np.flatnonzero(lp)
        refs.fill_from_pool(
            out, late, rows.base[late], sup, next_batch_suppliers(ctx, rows.batch), "late_parent"
        )

    seed = ctx.universe.seed
    ghost_ns = refs.ghost_namespace(seed, ctx.tenant)
    ms_row = (rows.source_ts // 1000).astype(np.uint64)
    ghost_low = (rows.base ^ np.uint64(0x5BD1E995)) & np.uint64(ulid.MASK40)

    orphan = np.flatnonzero(anomaly == _idx(ctx, "orphan_default_supplier"))
    out.set_slot(orphan, 0, ms_row[orphan], ghost_ns, ghost_low[orphan])

    extra = np.flatnonzero(anomaly == _idx(ctx, "orphan_qualified_supplier"))
    out.set_slot(extra, out.count[extra], ms_row[extra], ghost_ns, ghost_low[extra])
    out.count[extra] += 1

    cross = np.flatnonzero(anomaly == _idx(ctx, "cross_tenant_supplier"))
    if len(cross):
        peer = supplier_ctx(ctx, ctx.universe.peer(ctx.tenant))
        peer_pool = clean_keys(peer, 1)
        if len(peer_pool) == 0:
            raise InputError(f"tenant {peer.tenant!r} has no clean supplier: raise --suppliers")
        pick = peer_pool[randint(rows.base[cross], "cross_tenant", 0, len(peer_pool))]
        ms, low = refs.supplier_parts(peer, pick)
        out.set_slot(cross, 0, ms, peer.namespace, low)
    return out


def _idx(ctx: EntityCtx, name: str) -> int:
    return catalog.index(ctx.entity, name)
