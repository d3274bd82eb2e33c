"""Data contracts: each entity declared once; schemas, DDL, rules and docs derive from them."""

from cdf_pipeline.contracts.entities import (
    ENTITIES,
    PARTS,
    RULE_SET_VERSION,
    SCHEMA_VERSION,
    SUPPLIERS,
    entity,
)
from cdf_pipeline.contracts.model import (
    FORMAT_PATTERNS,
    Entity,
    Field,
    ForeignKey,
    Format,
    Kind,
    Rule,
    RuleKind,
    python_pattern,
)
from cdf_pipeline.contracts.validation import contract_set

__all__ = [
    "ENTITIES",
    "FORMAT_PATTERNS",
    "PARTS",
    "RULE_SET_VERSION",
    "SCHEMA_VERSION",
    "SUPPLIERS",
    "Entity",
    "Field",
    "ForeignKey",
    "Format",
    "Kind",
    "Rule",
    "RuleKind",
    "contract_set",
    "entity",
    "python_pattern",
]
