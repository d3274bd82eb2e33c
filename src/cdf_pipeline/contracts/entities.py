"""The two data contracts, suppliers (33 fields) and parts (23 fields): the single source of truth.

Field order here is the column order of every derived schema.
"""

from __future__ import annotations

from cdf_pipeline.contracts.model import Entity, Field, ForeignKey, Format, Kind, Rule, RuleKind
from cdf_pipeline.contracts.reference import (
    INCOTERMS_2020,
    ISO_COUNTRIES,
    ISO_CURRENCIES,
    UNITS_OF_MEASURE,
)
from cdf_pipeline.contracts.validation import contract_set

#: Bumped whenever a rule changes meaning; stored with every quarantined row.
RULE_SET_VERSION = "2026.11.2"
SCHEMA_VERSION = "1.0"

_S, _I, _D = Kind.STRING, Kind.INT, Kind.DOUBLE


def _lineage_fields(entity: str) -> tuple[Field, ...]:
    """The four provenance fields both entities end with."""
    return (
        Field("data_source", _S, "System the record came from (ERP name, portal, file feed)"),
        Field(
            "source_timestamp",
            Kind.TIMESTAMP,
            f"When the source last changed this {entity}; decides which version wins",
            required=True,
            not_future=True,
        ),
        Field("ingestion_timestamp", Kind.TIMESTAMP, "When the customer exported the record"),
        Field("schema_version", _S, "Contract version the sender targeted"),
    )


SUPPLIERS = Entity(
    name="suppliers",
    doc="A company a tenant buys from, with its risk and performance metrics.",
    primary_key="supplier_id",
    fields=(
        Field("supplier_id", _S, "Supplier key (ULID)", required=True, fmt=Format.ULID),
        Field("tenant_id", _S, "Owning tenant", required=True, fmt=Format.TENANT),
        Field("supplier_code", _S, "The tenant's own code for the supplier"),
        Field("legal_name", _S, "Registered legal name", required=True),
        Field("dba_name", _S, "Trading name, when different"),
        Field("country", _S, "ISO-3166 alpha-2 country", required=True, enum=ISO_COUNTRIES),
        Field("region", _S, "Sales region (free text)"),
        Field("address_line1", _S, "Street address", free_text=True),
        Field("address_line2", _S, "Address complement", free_text=True),
        Field("city", _S, "City"),
        Field("state", _S, "State or province"),
        Field("postal_code", _S, "Postal code"),
        Field("contact_email", _S, "Primary contact address", required=True, fmt=Format.EMAIL),
        Field("contact_phone", _S, "Primary contact phone"),
        Field("preferred_currency", _S, "ISO-4217 currency", enum=ISO_CURRENCIES),
        Field("incoterms", _S, "Incoterms 2020 rule", enum=INCOTERMS_2020),
        Field("lead_time_days_avg", _I, "Average lead time in days", minimum=0, maximum=365),
        Field(
            "lead_time_days_p95", _I, "95th percentile lead time in days", minimum=0, maximum=730
        ),
        Field("on_time_delivery_rate", _D, "On-time deliveries, percent", minimum=0, maximum=100),
        Field("defect_rate_ppm", _I, "Defects per million units", minimum=0, maximum=1_000_000),
        Field(
            "capacity_units_per_week",
            _I,
            "Weekly capacity in units",
            minimum=0,
            exclusive_minimum=True,
        ),
        Field("risk_score", _D, "Composite supply risk, 0 (safe) to 100", minimum=0, maximum=100),
        Field("financial_risk_tier", _S, "Financial risk tier", enum=("LOW", "MEDIUM", "HIGH")),
        Field("certifications", Kind.STRING_ARRAY, "Quality certifications held (e.g. ISO9001)"),
        Field("compliance_flags", Kind.STRING_ARRAY, "Compliance programmes (e.g. REACH, RoHS)"),
        Field(
            "approved_status",
            _S,
            "Approval state in the tenant's vendor process",
            enum=("PENDING", "APPROVED", "SUSPENDED", "BLACKLISTED"),
        ),
        Field("contracts", Kind.STRING_ARRAY, "Ids of contracts in force"),
        Field("terms_version", _S, "Version of the signed terms"),
        Field("geo_coords", Kind.GEO, "Site location; lat in [-90, 90], lon in [-180, 180]"),
        *_lineage_fields("supplier"),
    ),
    cross_field_rules=(
        Rule(
            RuleKind.P95_GE_AVG,
            "lead_time_days_p95",
            "lead_time_days_p95 must not be below lead_time_days_avg",
            other="lead_time_days_avg",
        ),
    ),
)

PARTS = Entity(
    name="parts",
    doc="An item a tenant buys, with the suppliers qualified to deliver it.",
    primary_key="part_id",
    fields=(
        Field("part_id", _S, "Part key (ULID)", required=True, fmt=Format.ULID),
        Field("tenant_id", _S, "Owning tenant", required=True, fmt=Format.TENANT),
        Field("part_number", _S, "The tenant's part number", required=True),
        Field("description", _S, "Free-text description", free_text=True, max_length=4000),
        Field(
            "category",
            _S,
            "Part family",
            required=True,
            enum=("ELECTRICAL", "MECHANICAL", "RAW_MATERIAL", "OTHER"),
        ),
        Field("lifecycle_status", _S, "Lifecycle stage", enum=("NEW", "ACTIVE", "NRND", "EOL")),
        Field("uom", _S, "Unit of measure", required=True, enum=UNITS_OF_MEASURE),
        Field("spec_hash", _S, "Hash of the engineering specification"),
        Field("bom_compatibility", Kind.STRING_ARRAY, "Bills of material the part fits"),
        Field(
            "default_supplier_id",
            _S,
            "Supplier used by default (FK to suppliers of the same tenant)",
            required=True,
        ),
        Field(
            "qualified_supplier_ids",
            Kind.STRING_ARRAY,
            "All suppliers qualified for the part (each an FK); contains the default",
            required=True,
        ),
        Field("unit_cost", Kind.DECIMAL, "Unit cost in the supplier's currency", minimum=0),
        Field("moq", _I, "Minimum order quantity", minimum=0, exclusive_minimum=True),
        Field("lead_time_days_avg", _I, "Average lead time in days", minimum=0, maximum=365),
        Field(
            "lead_time_days_p95", _I, "95th percentile lead time in days", minimum=0, maximum=730
        ),
        Field("quality_grade", _S, "Incoming quality grade", enum=("A", "B", "C")),
        Field("compliance_flags", Kind.STRING_ARRAY, "Compliance programmes (e.g. REACH, RoHS)"),
        Field("hazard_class", _S, "UN hazard class, when hazardous"),
        Field("last_price_change", Kind.DATE, "Date of the last price change"),
        *_lineage_fields("part"),
    ),
    foreign_keys=(
        ForeignKey("default_supplier_id", "suppliers"),
        ForeignKey("qualified_supplier_ids", "suppliers", is_array=True),
    ),
    cross_field_rules=(
        Rule(
            RuleKind.P95_GE_AVG,
            "lead_time_days_p95",
            "lead_time_days_p95 must not be below lead_time_days_avg",
            other="lead_time_days_avg",
        ),
        Rule(
            RuleKind.CONTAINS,
            "qualified_supplier_ids",
            "qualified_supplier_ids must contain default_supplier_id",
            other="default_supplier_id",
        ),
    ),
)

#: Every contract by name, in load order (parents before children), checked at import.
ENTITIES: dict[str, Entity] = contract_set(SUPPLIERS, PARTS)


def entity(name: str) -> Entity:
    """Look a contract up by name, with a clear error for a typo."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; expected one of {sorted(ENTITIES)}") from None
