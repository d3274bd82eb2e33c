"""The anomaly catalogue: every defect the generator can inject and the rule codes it must trigger.

Codes are looked up in the contracts (``Entity.rule(...).code``), never spelled here, so a renamed
rule breaks at import, not silently in the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdf_pipeline.contracts import PARTS, SUPPLIERS, Entity, RuleKind


@dataclass(frozen=True)
class Anomaly:
    """One anomaly type. ``variants`` holds the codes of each way it can be injected."""

    name: str
    variants: tuple[tuple[str, ...], ...]
    #: False for the change-batch kinds (late_version, late_parent), which are not chosen by hash.
    injectable: bool = True


def _codes(entity: Entity, *rules: tuple[str, RuleKind]) -> tuple[str, ...]:
    return tuple(entity.rule(column, kind).code for column, kind in rules)


def _fk(entity: Entity) -> tuple[str, ...]:
    return tuple(r.code for r in entity.fk_rules)


def _shared(entity: Entity) -> tuple[Anomaly, ...]:
    return (
        Anomaly("future_timestamp", (_codes(entity, ("source_timestamp", RuleKind.NOT_FUTURE)),)),
        Anomaly("p95_below_avg", (_codes(entity, ("lead_time_days_p95", RuleKind.P95_GE_AVG)),)),
        Anomaly("duplicate_exact", ((),)),
        Anomaly("duplicate_conflict", ((entity.duplicate_rule.code,),)),
    )


SUPPLIER_ANOMALIES: tuple[Anomaly, ...] = (
    Anomaly("out_of_range_rate", (_codes(SUPPLIERS, ("on_time_delivery_rate", RuleKind.RANGE)),)),
    Anomaly("missing_contact", (_codes(SUPPLIERS, ("contact_email", RuleKind.REQUIRED)),)),
    Anomaly("bogus_country", (_codes(SUPPLIERS, ("country", RuleKind.ENUM)),)),
    Anomaly("null_required", (_codes(SUPPLIERS, ("legal_name", RuleKind.REQUIRED)),)),
    Anomaly(
        "bad_enum",
        (
            _codes(SUPPLIERS, ("approved_status", RuleKind.ENUM)),
            _codes(SUPPLIERS, ("financial_risk_tier", RuleKind.ENUM)),
        ),
    ),
    Anomaly("bad_geo", (_codes(SUPPLIERS, ("geo_coords", RuleKind.RANGE)),) * 2),
    Anomaly("malformed_email", (_codes(SUPPLIERS, ("contact_email", RuleKind.FORMAT)),) * 3),
    *_shared(SUPPLIERS),
    Anomaly("late_version", ((),), injectable=False),
)

PART_ANOMALIES: tuple[Anomaly, ...] = (
    Anomaly("orphan_default_supplier", (_fk(PARTS),)),
    Anomaly(
        "orphan_qualified_supplier",
        (_codes(PARTS, ("qualified_supplier_ids", RuleKind.FOREIGN_KEY)),),
    ),
    Anomaly("cross_tenant_supplier", (_fk(PARTS),)),
    Anomaly("negative_cost", (_codes(PARTS, ("unit_cost", RuleKind.RANGE)),)),
    Anomaly("wrong_uom", (_codes(PARTS, ("uom", RuleKind.ENUM)),)),
    Anomaly("null_required", (_codes(PARTS, ("part_number", RuleKind.REQUIRED)),)),
    Anomaly("bad_enum", (_codes(PARTS, ("category", RuleKind.ENUM)),)),
    *_shared(PARTS),
    Anomaly("late_version", ((),), injectable=False),
    Anomaly("late_parent", (_fk(PARTS),), injectable=False),
)

CATALOG: dict[str, tuple[Anomaly, ...]] = {
    SUPPLIERS.name: SUPPLIER_ANOMALIES,
    PARTS.name: PART_ANOMALIES,
}
NONE = -1  # anomaly index of a clean row


def anomalies(entity: str) -> tuple[Anomaly, ...]:
    """The catalogue of one entity (injectable kinds first)."""
    return CATALOG[entity]


def injectable_count(entity: str) -> int:
    return sum(a.injectable for a in CATALOG[entity])


def index(entity: str, name: str) -> int:
    """Position of anomaly ``name`` in the entity's catalogue."""
    for i, a in enumerate(CATALOG[entity]):
        if a.name == name:
            return i
    raise KeyError(f"{entity} has no anomaly {name!r}")


def max_variants(entity: str) -> int:
    return max(len(a.variants) for a in CATALOG[entity])
