"""Clean supplier columns (seed 002 distributions). Every value is valid under the contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cdf_pipeline.contracts import SCHEMA_VERSION
from generator import pools as P
from generator.arrow_util import (
    const_str,
    flag_lists,
    float64,
    geo,
    int32,
    int_str,
    join,
    lists,
    take,
    timestamps,
    with_nulls,
)
from generator.hashing import choice, normal, randint, uniform
from generator.rows import Rows

RISKY_SHARE = 0.30


def build(rows: Rows) -> dict[str, pa.Array]:
    """Every contract column of clean supplier rows."""
    b, n = rows.base, rows.n
    pools = P.text_pools(rows.ctx.universe.seed)
    country = choice(b, "country", P.COUNTRY_WEIGHTS)

    risky = uniform(b, "risky") < RISKY_SHARE
    risk = np.where(risky, 60 + 25 * uniform(b, "risk_score"), 20 + 20 * uniform(b, "risk_score"))
    # Risky suppliers deliver late more often: the on-time mean drops from 95 to 88 (mix mean ~93).
    on_time = normal(b, "on_time_delivery_rate", 0.0, 5.0) + np.where(risky, 88.0, 95.0)
    tier_u = uniform(b, "financial_risk_tier")
    tier = np.where(risky, np.where(tier_u < 0.6, 2, 1), np.where(tier_u < 0.7, 0, 1))

    lead_avg = np.clip(np.rint(np.exp(normal(b, "lead_time_days_avg", np.log(25.0), 0.5))), 3, 200)
    lead_p95 = lead_avg + 1 + np.floor(lead_avg * uniform(b, "lead_time_days_p95"))
    defects = np.clip(np.rint(np.exp(normal(b, "defect_rate_ppm", 5.0, 1.5))), 0, 1_000_000)
    capacity = np.clip(np.rint(np.exp(normal(b, "capacity_units_per_week", 7.0, 1.0))), 1, 2e9)

    n_contracts = choice(b, "contracts", (0.2, 0.4, 0.3, 0.1))
    total = int(n_contracts.sum())
    contract_nums = randint(np.repeat(b, n_contracts), "contract_no", 0, 1_000_000)
    # repeat() gives equal hashes to a row's contracts: offset them by their rank in the row.
    contract_nums = (contract_nums + _rank(n_contracts, total) * 7919) % 1_000_000

    first = randint(b, "contact_first", 0, len(pools.first_names))
    last = randint(b, "contact_last", 0, len(pools.last_names))
    email = join(
        take(pools.first_names, first), ".", take(pools.last_names, last),
        int_str(randint(b, "contact_no", 0, 100)), "@",
        take(pools.domains, randint(b, "contact_domain", 0, len(pools.domains))),
    )  # fmt: skip
    company = randint(b, "legal_name", 0, len(pools.companies))
    suffix = randint(b, "legal_suffix", 0, len(pools.company_suffixes))
    return {
        "supplier_id": rows.ids,
        "tenant_id": const_str(rows.ctx.tenant, n),
        "supplier_code": join("SUP-", int_str(rows.keys, 7)),
        "legal_name": join(
            take(pools.companies, company), " ", take(pools.company_suffixes, suffix)
        ),
        "dba_name": take(pools.companies, company, nulls=uniform(b, "dba_name") < 0.6),
        "country": take(P.COUNTRIES, country),
        "region": take(P.REGIONS, country),
        "address_line1": join(
            int_str(randint(b, "street_no", 1, 9999)),
            " ",
            take(pools.streets, randint(b, "street", 0, len(pools.streets))),
        ),
        "address_line2": with_nulls(
            join("Suite ", int_str(randint(b, "suite", 100, 999))),
            uniform(b, "address_line2") < 0.7,
        ),
        "city": take(pools.cities, randint(b, "city", 0, len(pools.cities))),
        "state": take(pools.states, randint(b, "state", 0, len(pools.states))),
        "postal_code": int_str(randint(b, "postal_code", 1000, 99999), 5),
        "contact_email": email,
        "contact_phone": join(
            "+1-",
            int_str(randint(b, "phone_area", 200, 999)),
            "-",
            int_str(randint(b, "phone_no", 0, 10_000_000), 7),
        ),
        "preferred_currency": take(
            P.CURRENCIES, choice(b, "preferred_currency", P.CURRENCY_WEIGHTS)
        ),
        "incoterms": take(P.INCOTERM_ENUM, randint(b, "incoterms", 0, len(P.INCOTERM_ENUM))),
        "lead_time_days_avg": int32(lead_avg),
        "lead_time_days_p95": int32(lead_p95),
        "on_time_delivery_rate": float64(np.round(np.clip(on_time, 60.0, 100.0), 2)),
        "defect_rate_ppm": int32(defects),
        "capacity_units_per_week": int32(capacity),
        "risk_score": float64(np.round(risk, 2)),
        "financial_risk_tier": take(P.RISK_TIERS, tier),
        "certifications": flag_lists(
            tuple(c for c, _ in P.CERTIFICATIONS),
            [
                uniform(b, "certifications", i) < share
                for i, (_, share) in enumerate(P.CERTIFICATIONS)
            ],
        ),
        "compliance_flags": flag_lists(
            tuple(c for c, _ in P.COMPLIANCE_FLAGS),
            [uniform(b, "compliance_flags", i) < s for i, (_, s) in enumerate(P.COMPLIANCE_FLAGS)],
        ),
        "approved_status": take(
            P.APPROVED_STATUSES, choice(b, "approved_status", P.APPROVED_WEIGHTS)
        ),
        "contracts": lists(n_contracts, join("CTR-", int_str(contract_nums, 6))),
        "terms_version": take(
            P.TERMS_VERSIONS, randint(b, "terms_version", 0, len(P.TERMS_VERSIONS))
        ),
        "geo_coords": geo(
            np.round(-55.0 + 125.0 * uniform(b, "geo_lat"), 6),
            np.round(-180.0 + 360.0 * uniform(b, "geo_lon"), 6),
        ),
        "data_source": take(P.DATA_SOURCES, randint(b, "data_source", 0, len(P.DATA_SOURCES))),
        "source_timestamp": timestamps(rows.source_ts),
        "ingestion_timestamp": timestamps(rows.ingestion_ts),
        "schema_version": const_str(SCHEMA_VERSION, n),
    }


def _rank(counts: np.ndarray, total: int) -> np.ndarray:
    """0, 1, .. within each row's run of repeated elements (for ``np.repeat`` outputs)."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts
