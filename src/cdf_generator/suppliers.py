"""Clean supplier columns (seed 002 distributions). Every value is valid under the contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cdf_generator import pools as P
from cdf_generator.arrow_util import (
    const_str,
    digits,
    flag_lists,
    float64,
    geo,
    int32,
    lists,
    take,
    timestamps,
)
from cdf_generator.hashing import Draws, normal, uniform
from cdf_generator.rows import Rows
from cdf_pipeline.contracts import SCHEMA_VERSION

RISKY_SHARE = 0.30


def build(rows: Rows) -> dict[str, pa.Array]:
    """Every contract column of clean supplier rows."""
    b, n = rows.base, rows.n
    pools = P.text_pools(rows.ctx.universe.seed)
    d = Draws(b)
    country = d.category("geo", 0, P.COUNTRY_WEIGHTS)

    risky = d.flag("risk", 0, RISKY_SHARE)
    r = uniform(b, "risk_score")
    risk = np.where(risky, 60 + 25 * r, 20 + 20 * r)
    # Risky suppliers deliver late more often: the on-time mean drops from 95 to 88 (mix mean ~93).
    on_time = normal(b, "on_time_delivery_rate", 0.0, 5.0) + np.where(risky, 88.0, 95.0)
    tier_u = d.u16("risk", 1)
    tier = np.where(risky, np.where(tier_u < 39322, 2, 1), np.where(tier_u < 45875, 0, 1))

    lead_avg = np.clip(np.rint(np.exp(normal(b, "lead_time_days_avg", np.log(25.0), 0.5))), 3, 200)
    lead_p95 = lead_avg + 1 + np.floor(lead_avg * uniform(b, "lead_time_days_p95"))
    metrics = normal(b, "metrics", 0.0, 1.0)
    defects = np.clip(np.rint(np.exp(5.0 + 1.5 * metrics)), 0, 1_000_000)
    capacity = np.clip(np.rint(np.exp(7.0 + d.u16("risk", 2) / 65536.0 * 3.0)), 1, 2e9)

    n_contracts = d.category("lists", 0, (0.2, 0.4, 0.3, 0.1))
    rep = np.repeat(b, n_contracts)
    contract_nums = (rep >> np.uint64(20)) % np.uint64(1_000_000)
    # A row's contracts share its hash: offset them by their rank in the row to keep them apart.
    contract_nums = (contract_nums.astype(np.int64) + _rank(n_contracts) * 7919) % 1_000_000
    return {
        "supplier_id": rows.ids,
        "tenant_id": const_str(rows.ctx.tenant, n),
        "supplier_code": digits(rows.keys, 7, "SUP-"),
        "legal_name": take(pools.legal_names, d.pick("names", 0, len(pools.legal_names))),
        "dba_name": take(
            pools.companies, d.pick("names", 1, len(pools.companies)), nulls=d.flag("names", 2, 0.6)
        ),
        "country": take(P.COUNTRIES, country),
        "region": take(P.REGIONS, country),
        "address_line1": take(pools.addresses, d.pick("address", 0, len(pools.addresses))),
        "address_line2": take(
            _SUITES, d.pick("address", 1, len(_SUITES)), nulls=d.flag("address", 2, 0.7)
        ),
        "city": take(pools.cities, d.pick("address", 3, len(pools.cities))),
        "state": take(pools.states, d.pick("geo", 1, len(pools.states))),
        "postal_code": digits(d.pick("geo", 2, 99_000) + 1000, 5),
        "contact_email": take(pools.emails, d.pick("names", 3, len(pools.emails))),
        "contact_phone": digits(
            d.pick("contact", 0, 800) * 10_000_000
            + d.u16("contact", 1) * 152
            + d.pick("contact", 2, 152)
            + 2_000_000_000,
            10,
            "+1-",
        ),
        "preferred_currency": take(P.CURRENCIES, d.category("codes", 0, P.CURRENCY_WEIGHTS)),
        "incoterms": take(P.INCOTERM_ENUM, d.pick("codes", 1, len(P.INCOTERM_ENUM))),
        "lead_time_days_avg": int32(lead_avg),
        "lead_time_days_p95": int32(lead_p95),
        "on_time_delivery_rate": float64(np.round(np.clip(on_time, 60.0, 100.0), 2)),
        "defect_rate_ppm": int32(defects),
        "capacity_units_per_week": int32(capacity),
        "risk_score": float64(np.round(risk, 2)),
        "financial_risk_tier": take(P.RISK_TIERS, tier),
        "certifications": flag_lists(
            tuple(c for c, _ in P.CERTIFICATIONS),
            [d.flag("certs", i, share) for i, (_, share) in enumerate(P.CERTIFICATIONS)],
        ),
        "compliance_flags": flag_lists(
            tuple(c for c, _ in P.COMPLIANCE_FLAGS),
            [d.flag("flags", i, share) for i, (_, share) in enumerate(P.COMPLIANCE_FLAGS)],
        ),
        "approved_status": take(P.APPROVED_STATUSES, d.category("codes", 2, P.APPROVED_WEIGHTS)),
        "contracts": lists(n_contracts, digits(contract_nums, 6, "CTR-")),
        "terms_version": take(P.TERMS_VERSIONS, d.pick("codes", 3, len(P.TERMS_VERSIONS))),
        "geo_coords": geo(
            np.round(-55.0 + 125.0 * uniform(b, "geo_lat"), 6),
            np.round(-180.0 + 360.0 * uniform(b, "geo_lon"), 6),
        ),
        "data_source": take(P.DATA_SOURCES, d.pick("lists", 1, len(P.DATA_SOURCES))),
        "source_timestamp": timestamps(rows.source_ts),
        "ingestion_timestamp": timestamps(rows.ingestion_ts),
        "schema_version": const_str(SCHEMA_VERSION, n),
    }


_SUITES = tuple(f"Suite {i}" for i in range(100, 1000))


def _rank(counts: np.ndarray) -> np.ndarray:
    """0, 1, .. within each row's run of repeated elements (for ``np.repeat`` outputs)."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts
