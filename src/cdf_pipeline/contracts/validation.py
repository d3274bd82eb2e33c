"""Every contract checked as it is declared: a mistake fails at import, saying how to fix it.

:func:`contract_set` is how a set of contracts is declared (``entities.py`` builds ``ENTITIES``
with it): it checks each entity on its own (fields, keys, rules and the kinds they apply to, from
``rule_registry``) and the set as a whole (names, foreign-key targets and their keys), then raises
one :class:`~cdf_pipeline.exceptions.ContractError` listing every problem, or returns the set.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from cdf_pipeline.contracts.model import Entity, Field, Kind, Rule
from cdf_pipeline.contracts.rule_registry import ROW_RULES
from cdf_pipeline.exceptions import ContractError

#: Columns the job reads on every entity: it runs one tenant at a time (``tenant_id``) and keeps
#: the newest version of a key (``source_timestamp``).
JOB_FIELDS: dict[str, Kind] = {"tenant_id": Kind.STRING, "source_timestamp": Kind.TIMESTAMP}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _kinds(kinds: Iterable[Kind]) -> str:
    return ", ".join(sorted(k.value for k in kinds))


def _identifier(name: str, what: str) -> list[str]:
    """A problem when ``name`` is not a lower-case identifier (it names tables and columns)."""
    if _NAME.match(name):
        return []
    fixed = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_") or "name"
    return [f"{what} {name!r} is not a lower-case identifier: rename it, e.g. {fixed!r}"]


def _unknown(name: str, known: Iterable[str], what: str) -> str:
    """``'x' is not a <what>``, with the nearest known names as a suggestion."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name!r} is not {what}{hint}"


def _field_problems(f: Field) -> list[str]:
    """What is wrong with one field's own declaration (its rules' kinds are checked elsewhere)."""
    out = _identifier(f.name, "field name")
    if f.enum is not None:
        if not f.enum:
            out.append(f"{f.name}: enum=() lists no code; list the allowed codes or drop enum=")
        dupes = sorted({c for c in f.enum if f.enum.count(c) > 1})
        if dupes:
            out.append(f"{f.name}: enum lists {dupes} more than once; list each code once")
        for code in f.enum:
            if code != code.strip(" ").upper() or not code.strip():
                out.append(
                    f"{f.name}: enum code {code!r} can never match (values are trimmed and "
                    f"upper-cased before the check); write it as {code.strip(' ').upper()!r}"
                )
    if (f.max_length is not None or f.free_text) and not f.is_text:
        what = "an enum field" if f.enum is not None else f"{f.kind.value}"
        out.append(
            f"{f.name}: max_length= and free_text= apply to text fields (string or "
            f"array<string> without enum=), and {f.name} is {what}; drop them"
        )
    elif f.max_length is not None and f.max_length < 1:
        out.append(f"{f.name}: max_length={f.max_length} admits no text; use a positive length")
    if f.exclusive_minimum and f.minimum is None:
        out.append(f"{f.name}: exclusive_minimum=True needs a minimum=; add one or drop it")
    if f.minimum is not None and f.maximum is not None:
        empty = f.minimum >= f.maximum if f.exclusive_minimum else f.minimum > f.maximum
        if empty:
            out.append(
                f"{f.name}: the range {f.range_text} holds no value; "
                "swap or correct minimum= and maximum="
            )
    return out


def _rule_problems(entity: Entity, rule: Rule, cross_field: bool) -> list[str]:
    """Can ``rule`` be checked on ``entity``'s rows: a known kind, on columns of the right kinds?"""
    names = entity.field_names
    entry = ROW_RULES.get(rule.kind)
    cross_kinds = sorted(k.name for k, r in ROW_RULES.items() if r.other is not None)
    if entry is None:
        return [
            f"cross-field rule {rule.code}: RuleKind.{rule.kind.name} is not checked on rows "
            f"(see rule_registry.CHECKED_ELSEWHERE); use one of {cross_kinds}"
        ]
    if cross_field and entry.other is None:
        return [
            f"cross-field rule {rule.code}: RuleKind.{rule.kind.name} is a field rule; declare "
            f"it on the field ({entry.declared_by}) or use one of {cross_kinds}"
        ]
    if rule.column not in names:
        return [f"rule {rule.code}: {_unknown(rule.column, names, 'a field')}; name a field"]
    f = entity.field(rule.column)
    out = []
    if f.kind not in entry.on:
        out.append(
            f"{f.name}: the {rule.kind.value} rule ({entry.declared_by}) applies to "
            f"{_kinds(entry.on)} fields, and {f.name} is {f.kind.value}; "
            "drop the rule or change the field's kind"
        )
    if entry.other is None:
        return out
    if rule.other is None or rule.other == rule.column:
        return [*out, f"rule {rule.code}: set other= to the second field it compares with"]
    if rule.other not in names:
        return [*out, f"rule {rule.code}: other={_unknown(rule.other, names, 'a field')}"]
    other = entity.field(rule.other)
    if other.kind not in entry.other:
        out.append(
            f"rule {rule.code}: other={rule.other!r} is {other.kind.value}, and the "
            f"{rule.kind.value} rule compares with {_kinds(entry.other)}; "
            "name a field of one of those kinds"
        )
    return out


def entity_problems(entity: Entity) -> list[str]:
    """Everything wrong with one contract on its own, each item saying how to fix it."""
    out = _identifier(entity.name, "entity name")
    names = entity.field_names
    if not entity.fields:
        out.append("declares no field")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        out.append(f"declares fields {dupes} more than once; keep one of each")
    for name, kind in JOB_FIELDS.items():
        f = next((f for f in entity.fields if f.name == name), None)
        if f is None or f.kind is not kind or not f.required:
            out.append(
                f"every entity needs a required {kind.value} field {name!r} (the job runs one "
                "tenant at a time and keeps the newest source_timestamp of a key): "
                f"declare Field({name!r}, Kind.{kind.name}, ..., required=True)"
            )
    if entity.primary_key not in names:
        out.append(f"primary_key={_unknown(entity.primary_key, names, 'a field')}")
    elif not entity.field(entity.primary_key).required:
        out.append(f"primary key {entity.primary_key}: declare it required=True")
    if entity.key_buckets < 1:
        out.append(f"key_buckets={entity.key_buckets}: use a positive bucket count, e.g. 16")
    for f in entity.fields:
        out += _field_problems(f)
    for rule in entity.row_rules:
        out += _rule_problems(entity, rule, cross_field=rule in entity.cross_field_rules)
    for fk in entity.foreign_keys:
        if fk.column not in names:
            out.append(f"foreign key column {_unknown(fk.column, names, 'a field')}")
            continue
        want = Kind.STRING_ARRAY if fk.is_array else Kind.STRING
        have = entity.field(fk.column).kind
        if have is not want:
            out.append(
                f"foreign key {fk.column} is {have.value}: a key column is string, a list of "
                "keys array<string> with is_array=True; fix the kind or is_array"
            )
    codes = [r.code for r in (*entity.row_rules, *entity.fk_rules, entity.duplicate_rule)]
    # A field declared twice derives its rules twice: reported once, as the field (above).
    twice = sorted({c for c in codes if codes.count(c) > 1 and c.split(".")[0] not in dupes})
    if twice:
        out.append(f"rules {twice} are declared twice; declare each rule once")
    return [f"contract {entity.name!r}: {p}" for p in out]


def contract_problems(entities: Iterable[Entity]) -> list[str]:
    """Everything wrong with a set of contracts, in load order (parents before children)."""
    entities = list(entities)
    out: list[str] = []
    names = [e.name for e in entities]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"two contracts are named {name!r}: rename one")
    for i, e in enumerate(entities):
        out += entity_problems(e)
        earlier = {p.name: p for p in entities[:i]}
        for fk in e.foreign_keys:
            where = f"contract {e.name!r}: foreign key {fk.column} -> {fk.entity!r}"
            if fk.entity not in names:
                out.append(f"{where}: {_unknown(fk.entity, names, 'a declared entity')}")
            elif fk.entity not in earlier:
                out.append(
                    f"{where}: parents load before children, so declare {fk.entity!r} before "
                    f"{e.name!r} (an entity cannot reference itself or one declared after it)"
                )
            elif (parent := earlier[fk.entity]).primary_key in parent.field_names:
                key = parent.field(parent.primary_key)
                if key.kind is not Kind.STRING:
                    out.append(
                        f"{where}: its key {parent.name}.{key.name} is {key.kind.value}, and "
                        "foreign keys hold string keys: make the primary key a string"
                    )
    return out


def contract_set(*entities: Entity) -> dict[str, Entity]:
    """The contracts by name, in load order, once every one is valid.

    Raises:
        ContractError: listing every problem of every contract, each with how to fix it.
    """
    problems = contract_problems(entities)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ContractError(f"{len(problems)} problem(s) in the data contracts:\n{lines}")
    return {e.name: e for e in entities}
