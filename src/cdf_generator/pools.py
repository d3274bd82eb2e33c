"""Value pools and categorical tables: built once per seed; rows pick from them by hashed index.

Faker is used only here, to make a few thousand realistic names, seeded so pools are reproducible.
Code lists come from the contract's enums, so a clean value is valid by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdf_pipeline.contracts import PARTS, SUPPLIERS

POOL_SIZE = 800
COMBO_POOL_SIZE = 65_536
_ALPHA = re.compile(r"^[A-Za-z]+$")
_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")


def _enum(entity_field: tuple[str, ...] | None) -> tuple[str, ...]:
    assert entity_field is not None
    return entity_field


COUNTRY_ENUM = _enum(SUPPLIERS.field("country").enum)
CURRENCY_ENUM = _enum(SUPPLIERS.field("preferred_currency").enum)
INCOTERM_ENUM = _enum(SUPPLIERS.field("incoterms").enum)
UOM_ENUM = _enum(PARTS.field("uom").enum)


def _weighted(
    head: dict[str, float], universe: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """``head`` codes with their shares, the rest of ``universe`` sharing what is left equally."""
    for code in head:
        if code not in universe:
            raise ValueError(f"{code!r} is not in the contract's code list")
    rest = [c for c in universe if c not in head]
    left = 1.0 - sum(head.values())
    values = (*head, *rest)
    weights = (*head.values(), *([left / len(rest)] * len(rest)))
    return values, weights


#: Zipf-like country mix (seed 002): CN 22 %, US 18 %, DE/MX/IN 10 % each, then a decaying tail.
COUNTRIES, COUNTRY_WEIGHTS = _weighted(
    {"CN": 0.22, "US": 0.18, "DE": 0.10, "MX": 0.10, "IN": 0.10, "JP": 0.05, "KR": 0.04,
     "TW": 0.03, "VN": 0.03, "IT": 0.02, "FR": 0.02, "GB": 0.02, "PL": 0.02, "BR": 0.02},
    COUNTRY_ENUM,
)  # fmt: skip
CURRENCIES, CURRENCY_WEIGHTS = _weighted(
    {"USD": 0.40, "EUR": 0.25, "CNY": 0.15, "JPY": 0.05, "MXN": 0.05, "INR": 0.05}, CURRENCY_ENUM
)
_APAC = {"CN", "JP", "KR", "TW", "VN", "IN", "TH", "MY", "SG", "ID", "PH", "AU", "NZ"}
_AMERICAS = {"US", "CA", "MX", "BR", "AR", "CL", "CO", "PE"}
REGIONS = tuple(
    "APAC" if c in _APAC else "AMERICAS" if c in _AMERICAS else "EMEA" for c in COUNTRIES
)

RISK_TIERS = ("LOW", "MEDIUM", "HIGH")
APPROVED_STATUSES = ("APPROVED", "PENDING", "SUSPENDED", "BLACKLISTED")
APPROVED_WEIGHTS = (0.70, 0.15, 0.10, 0.05)
CERTIFICATIONS = (("ISO9001", 0.70), ("IATF16949", 0.30), ("AS9100", 0.10))
COMPLIANCE_FLAGS = (("REACH", 0.60), ("RoHS", 0.50), ("CONFLICT_MINERALS", 0.20))
DATA_SOURCES = ("SAP_ECC", "ORACLE_EBS", "SUPPLIER_PORTAL", "CSV_FEED", "COUPA")
TERMS_VERSIONS = ("2022.1", "2023.1", "2023.2", "2024.1", "2025.1")
CATEGORIES = ("ELECTRICAL", "MECHANICAL", "RAW_MATERIAL", "OTHER")
CATEGORY_WEIGHTS = (0.35, 0.35, 0.20, 0.10)
#: Mean lead time (days) per category, same order: electrical longest, raw material shortest.
CATEGORY_LEAD_DAYS = (60.0, 35.0, 12.0, 25.0)
LIFECYCLES = ("ACTIVE", "NEW", "NRND", "EOL")
LIFECYCLE_WEIGHTS = (0.75, 0.10, 0.10, 0.05)
#: Units per category (all from the contract's list): counted, weighed, measured.
UOM_BY_CATEGORY = (
    ("EA", "PCS", "SET", "ROLL"),
    ("EA", "PCS", "PR", "SET", "BOX"),
    ("KG", "T", "LB", "M", "M2", "M3", "L"),
    ("EA", "BOX", "G", "ML", "FT"),
)
QUALITY_GRADES = ("A", "B", "C")
QUALITY_WEIGHTS = (0.6, 0.3, 0.1)
HAZARD_CLASSES = ("2.1", "3", "4.1", "5.1", "6.1", "8", "9")
MOQS = (1, 5, 10, 25, 50, 100, 250, 500, 1000)
# fmt: off
PART_NOUNS = ("Resistor", "Capacitor", "Connector", "Bracket", "Bearing", "Gasket", "Bolt",
              "Housing", "Sensor", "Relay", "Cable", "Sheet", "Bar", "Pellet", "Valve", "Spring")
PART_ADJECTIVES = ("Stainless", "High-temp", "Miniature", "Sealed", "Coated", "Heavy-duty",
                   "Precision", "Low-noise", "Galvanized", "Flexible", "Molded", "Shielded")
# fmt: on

for _table in UOM_BY_CATEGORY:
    for _u in _table:
        if _u not in UOM_ENUM:
            raise ValueError(f"unit {_u!r} is not in the contract's list")
for _c in CATEGORIES:
    if _c not in _enum(PARTS.field("category").enum):
        raise ValueError(f"category {_c!r} is not in the contract")


@dataclass(frozen=True)
class TextPools:
    """Realistic text values (Faker-made, seeded) as Arrow arrays ready for ``take``."""

    companies: pa.StringArray
    company_suffixes: pa.StringArray
    first_names: pa.StringArray  # lower-case ASCII letters only (safe in an e-mail local part)
    last_names: pa.StringArray
    domains: pa.StringArray
    streets: pa.StringArray
    cities: pa.StringArray
    states: pa.StringArray
    #: Pre-combined values (built once, so rows need a single ``take``, not string joins).
    legal_names: pa.StringArray  # company + legal suffix
    emails: pa.StringArray  # first.lastNN@domain, valid under the contract's e-mail format
    addresses: pa.StringArray  # "<number> <street>"


def _unique(values: list[str], limit: int) -> list[str]:
    return sorted(dict.fromkeys(values))[:limit]


@lru_cache(maxsize=8)
def text_pools(seed: int) -> TextPools:
    """Build the seeded pools once per seed (about 0.3 s, most of it Faker)."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    n = POOL_SIZE
    companies = _unique([fake.company().replace(",", "") for _ in range(n)], n)
    firsts = _unique(
        [f.lower() for f in (fake.first_name() for _ in range(n)) if _ALPHA.match(f)], n
    )
    lasts = _unique([f.lower() for f in (fake.last_name() for _ in range(n)) if _ALPHA.match(f)], n)
    domains = _unique([d for d in (fake.domain_name() for _ in range(n)) if _DOMAIN.match(d)], n)
    streets = _unique([fake.street_name() for _ in range(n)], n)
    cities = _unique([fake.city() for _ in range(n)], n)
    states = _unique([fake.state_abbr() for _ in range(200)], n)

    def arr(values: list[str]) -> pa.StringArray:
        return pa.array(values, pa.string())

    # Pre-combined pools: numpy picks and Arrow joins (a Python loop here costs ~0.5 s).
    rng = np.random.default_rng(seed)
    suffixes = ["Inc", "LLC", "GmbH", "Ltd", "S.A.", "Co. Ltd", "AG", "S.A. de C.V."]

    def pick(values: list[str]) -> pa.Array:
        return arr(values).take(pa.array(rng.integers(0, len(values), COMBO_POOL_SIZE)))

    def join(*parts: pa.Array | str) -> pa.StringArray:
        args = [pa.scalar(p) if isinstance(p, str) else p for p in parts]
        return pc.binary_join_element_wise(*args, "")

    numbers = pa.array(rng.integers(0, 100, COMBO_POOL_SIZE)).cast(pa.string())
    street_no = pa.array(rng.integers(1, 10_000, COMBO_POOL_SIZE)).cast(pa.string())
    legal = join(pick(companies), " ", pick(suffixes))
    emails = join(pick(firsts), ".", pick(lasts), numbers, "@", pick(domains))
    addresses = join(street_no, " ", pick(streets))
    return TextPools(
        companies=arr(companies),
        company_suffixes=arr(suffixes),
        first_names=arr(firsts),
        last_names=arr(lasts),
        domains=arr(domains),
        streets=arr(streets),
        cities=arr(cities),
        states=arr(states),
        legal_names=legal,
        emails=emails,
        addresses=addresses,
    )
