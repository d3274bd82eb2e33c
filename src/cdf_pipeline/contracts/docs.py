"""Render ``docs/contracts.md`` from the contracts, so the document cannot drift from the code."""

from __future__ import annotations

from cdf_pipeline.contracts.entities import ENTITIES, RULE_SET_VERSION
from cdf_pipeline.contracts.model import (
    CONTROL_CHARACTERS,
    DEFAULT_MAX_LENGTH,
    FORMAT_PATTERNS,
    Entity,
    Field,
    Kind,
    RuleKind,
)
from cdf_pipeline.contracts.schemas import LINEAGE_COLUMNS

_ENUM_INLINE = 12  # longer code lists are summarised, not printed in the table


def _constraints(f: Field) -> str:
    parts: list[str] = []
    if f.enum is not None:
        if len(f.enum) <= _ENUM_INLINE:
            parts.append("one of " + ", ".join(f"`{v}`" for v in f.enum))
        else:
            parts.append(f"one of {len(f.enum)} codes (see below)")
    if f.range_text:
        parts.append(f"range {f.range_text}")
    if f.fmt is not None:
        parts.append(f"format `{f.fmt.value}`")
    if f.not_future:
        parts.append("not in the future")
    if f.text_limit is not None:
        each = "each element " if f.kind is Kind.STRING_ARRAY else ""
        breaks = " but tab and line breaks" if f.free_text else ""
        parts.append(f"{each}at most {f.text_limit} characters, no control characters{breaks}")
    return "; ".join(parts)


def _entity_section(e: Entity) -> list[str]:
    lines = [
        f"## {e.name} ({len(e.fields)} fields)",
        "",
        e.doc,
        "",
        f"Primary key: `{e.primary_key}` (unique per tenant). "
        f"Partitioned by `tenant_id`, `bucket({e.key_buckets}, {e.primary_key})`.",
        "",
    ]
    for fk in e.foreign_keys:
        what = "every element of" if fk.is_array else ""
        lines.append(f"Foreign key: {what} `{fk.column}` -> `{fk.entity}` of the same tenant.")
    lines += [
        "",
        "| # | field | type | required | rules | description |",
        "|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(e.fields, 1):
        req = "yes" if f.required else ""
        lines.append(
            f"| {i} | `{f.name}` | `{f.kind.value}` | {req} | {_constraints(f)} | {f.doc} |"
        )
    lines += ["", "Rule codes (as they appear in quarantine reasons, labels and `ops.runs`):", ""]
    for r in (*e.row_rules, *e.fk_rules, e.duplicate_rule):
        lines.append(f"- `{r.code}`: {r.doc}")
    for f in e.fields:
        if f.enum is not None and len(f.enum) > _ENUM_INLINE:
            lines += ["", f"Codes allowed in `{f.name}`: " + " ".join(f.enum)]
    return [*lines, ""]


def render_contracts_markdown() -> str:
    """The full contracts document."""
    lines = [
        "# Data contracts",
        "",
        "Generated from `src/cdf_pipeline/contracts/` by "
        "`cdf contracts --write docs/contracts.md`;",
        "do not edit by hand. A test fails when this file and the contracts disagree.",
        "",
        f"Rule-set version: `{RULE_SET_VERSION}`.",
        "",
        "Formats: " + "; ".join(f"`{k.value}` = `{v}`" for k, v in FORMAT_PATTERNS.items()) + ".",
        "",
        "Text fields (strings and lists of strings without a code list) hold at most "
        f"{DEFAULT_MAX_LENGTH} characters (Unicode code points) unless the field says otherwise "
        f"(`<column>.{RuleKind.TOO_LONG.value}`), and no control character "
        f"(`<column>.{RuleKind.CONTROL_CHARS.value}`: `{CONTROL_CHARACTERS}`, NUL included); "
        "free-text fields may hold tab, line feed and carriage return. In a list, each element "
        "is checked. Text is checked as normalised (trimmed of spaces).",
        "",
        "Rules every entity has besides those listed: "
        f"`<column>.{RuleKind.TYPE.value}` (a value that cannot be cast to the contract type), "
        f"`tenant_id.{RuleKind.TENANT_MATCH.value}` "
        "(a row of another tenant in this tenant's file), "
        f"`<column>.{RuleKind.MISSING_COLUMN.value}` (schema drift: a required column is absent), "
        f"`<column>.{RuleKind.EXTRA_COLUMN.value}` (schema drift: a column the contract does not "
        "know, when `quality.extra_columns` is `quarantine`).",
        "",
    ]
    for e in ENTITIES.values():
        lines += _entity_section(e)
    lines += ["## Lineage columns on every silver row", ""]
    lines += [f"- `{name}` ({typ}): {doc}" for name, typ, doc in LINEAGE_COLUMNS]
    return "\n".join(lines) + "\n"
