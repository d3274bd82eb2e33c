"""When a row breaks each kind of row rule, said once for every engine that checks rows.

Each row rule kind has one :class:`RowRule` entry in :data:`ROW_RULES`: the field kinds it may be
declared on and its *breach*, the condition under which a row breaks it, written in the small
engine-neutral vocabulary below. Two compilers turn a breach into something that runs: Spark
Column expressions in ``quality/rules.py`` (the silver job) and pyarrow masks in
``cdf_generator/checks.py`` (labelled test data, no Spark). So a new rule kind is one entry
here; only a new node of the vocabulary needs a case in both compilers (mypy and
``tests/unit/test_rule_registry.py`` fail until it has one).

Meaning, for every engine: SQL's three-valued logic, over values as ``quality.normalise`` leaves
them (text trimmed, blank text null, enum codes upper-case). A breach that comes out null (it
depends on a value nobody sent) is no breach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from cdf_pipeline.contracts.model import FORMAT_PATTERNS, Entity, Field, Kind, Rule, RuleKind

# --- The vocabulary: operands -------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """The row's value of ``column`` (of its struct member ``part``, when given)."""

    column: str
    part: str | None = None


@dataclass(frozen=True)
class Clock:
    """The run's clock: the instant after which a timestamp is in the future."""


CLOCK = Clock()

# --- The vocabulary: conditions -----------------------------------------------------------------


@dataclass(frozen=True)
class _OnOneValue:
    value: Value


class IsNull(_OnOneValue):
    """The value is null."""


class NotNull(_OnOneValue):
    """The value is not null."""


class IsBlank(_OnOneValue):
    """Text that is empty once trimmed."""


class IsEmpty(_OnOneValue):
    """A list without elements."""


@dataclass(frozen=True)
class NotIn:
    value: Value
    codes: tuple[str, ...]


@dataclass(frozen=True)
class NotMatching:
    """Text the regular expression does not match (Java and RE2 syntax agree on ours)."""

    value: Value
    pattern: str


@dataclass(frozen=True)
class HasMatch:
    """Text in which the regular expression matches somewhere (Java's ``find``, RE2's search);
    with ``each``, a list with such an element."""

    value: Value
    pattern: str
    each: bool = False


@dataclass(frozen=True)
class LongerThan:
    """Text of more than ``limit`` characters (Unicode code points); with ``each``, a list with
    such an element."""

    value: Value
    limit: int
    each: bool = False


@dataclass(frozen=True)
class Compare:
    """``value <op> than``, against a number, another value or the run's clock."""

    value: Value
    op: Literal["<", "<=", ">"]
    than: float | Value | Clock


@dataclass(frozen=True)
class Lacks:
    """The list ``items`` does not hold ``item``.

    As SQL's ``NOT array_contains``: unknown when either is null, or when the list holds a null
    element but not the item (normalised lists hold no null element).
    """

    items: Value
    item: Value


@dataclass(frozen=True)
class _OfTerms:
    terms: tuple[Breach, ...]


class AnyOf(_OfTerms):
    """At least one term holds."""


class AllOf(_OfTerms):
    """Every term holds."""


Breach = (
    IsNull
    | NotNull
    | IsBlank
    | IsEmpty
    | NotIn
    | NotMatching
    | HasMatch
    | LongerThan
    | Compare
    | Lacks
    | AnyOf
    | AllOf
)

#: Every node a compiler must handle (the test of both compilers walks this).
NODES: tuple[type, ...] = get_args(Breach)

# --- The rules ----------------------------------------------------------------------------------

NUMBERS = frozenset({Kind.INT, Kind.DOUBLE, Kind.DECIMAL})
TEXT = frozenset({Kind.STRING, Kind.STRING_ARRAY})

#: The bounds of each member of a GEO value (the contract states them in the field docs).
GEO_BOUNDS: dict[str, tuple[float, float]] = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0)}


@dataclass(frozen=True)
class RowRule:
    """One kind of row rule: where it may be declared, and when a row breaks it."""

    #: Kinds of the rule's column it may be declared on.
    on: frozenset[Kind]
    #: How a contract declares it (for messages that say how to fix a declaration).
    declared_by: str
    #: When a row breaks the rule, from the rule's field and the rule itself.
    breach: Callable[[Field, Rule], Breach]
    #: Cross-field rules only: kinds the second column (``Rule.other``) may have.
    other: frozenset[Kind] | None = None


def _required(f: Field, rule: Rule) -> Breach:
    v = Value(f.name)
    if f.kind is Kind.STRING:
        return AnyOf((IsNull(v), IsBlank(v)))
    if f.kind is Kind.STRING_ARRAY:
        return AnyOf((IsNull(v), IsEmpty(v)))
    return IsNull(v)


def _enum(f: Field, rule: Rule) -> Breach:
    return AllOf((NotNull(Value(f.name)), NotIn(Value(f.name), f.enum or ())))


def _range(f: Field, rule: Rule) -> Breach:
    v = Value(f.name)
    if f.kind is Kind.GEO:
        parts = tuple(
            AnyOf((IsNull(p), Compare(p, "<", lo), Compare(p, ">", hi)))
            for p, (lo, hi) in ((Value(f.name, name), b) for name, b in GEO_BOUNDS.items())
        )
        return AllOf((NotNull(v), AnyOf(parts)))
    bounds: list[Breach] = []
    if f.minimum is not None:
        bounds.append(Compare(v, "<=" if f.exclusive_minimum else "<", f.minimum))
    if f.maximum is not None:
        bounds.append(Compare(v, ">", f.maximum))
    return AllOf((NotNull(v), AnyOf(tuple(bounds))))


def _format(f: Field, rule: Rule) -> Breach:
    assert f.fmt is not None, f"{f.name} has no format"
    return AllOf((NotNull(Value(f.name)), NotMatching(Value(f.name), FORMAT_PATTERNS[f.fmt])))


def _not_future(f: Field, rule: Rule) -> Breach:
    return AllOf((NotNull(Value(f.name)), Compare(Value(f.name), ">", CLOCK)))


def _too_long(f: Field, rule: Rule) -> Breach:
    assert f.text_limit is not None, f"{f.name} is not text"
    return LongerThan(Value(f.name), f.text_limit, each=f.kind is Kind.STRING_ARRAY)


def _control_chars(f: Field, rule: Rule) -> Breach:
    return HasMatch(Value(f.name), f.control_characters, each=f.kind is Kind.STRING_ARRAY)


def _other(rule: Rule) -> Value:
    assert rule.other is not None, f"{rule.code} names no second column"
    return Value(rule.other)


def _below_other(f: Field, rule: Rule) -> Breach:
    v, other = Value(f.name), _other(rule)
    return AllOf((NotNull(v), NotNull(other), Compare(v, "<", other)))


def _lacks_other(f: Field, rule: Rule) -> Breach:
    v, other = Value(f.name), _other(rule)
    return AllOf((NotNull(v), NotNull(other), Lacks(v, other)))


#: Every rule kind that can be checked on one row alone (what ``Entity.row_rules`` yields).
ROW_RULES: dict[RuleKind, RowRule] = {
    RuleKind.REQUIRED: RowRule(frozenset(Kind), "required=True", _required),
    RuleKind.ENUM: RowRule(frozenset({Kind.STRING}), "enum=(...)", _enum),
    RuleKind.RANGE: RowRule(NUMBERS | {Kind.GEO}, "minimum=/maximum=", _range),
    RuleKind.FORMAT: RowRule(frozenset({Kind.STRING}), "fmt=Format...", _format),
    RuleKind.NOT_FUTURE: RowRule(frozenset({Kind.TIMESTAMP}), "not_future=True", _not_future),
    RuleKind.TOO_LONG: RowRule(TEXT, "every text field (max_length= to change it)", _too_long),
    RuleKind.CONTROL_CHARS: RowRule(
        TEXT, "every text field (free_text=True allows tab and line breaks)", _control_chars
    ),
    RuleKind.P95_GE_AVG: RowRule(NUMBERS, "cross_field_rules", _below_other, other=NUMBERS),
    RuleKind.CONTAINS: RowRule(
        frozenset({Kind.STRING_ARRAY}),
        "cross_field_rules",
        _lacks_other,
        other=frozenset({Kind.STRING}),
    ),
}

#: Rule kinds that need more than one row, or a run's parameters, and where they are checked.
CHECKED_ELSEWHERE: dict[RuleKind, str] = {
    RuleKind.TYPE: "quality/normalise.py (a value that cannot be cast)",
    RuleKind.MISSING_COLUMN: "quality/normalise.py (the file's columns)",
    RuleKind.EXTRA_COLUMN: "quality/normalise.py (the file's columns)",
    RuleKind.TENANT_MATCH: "quality/rules.py (the tenant being run)",
    RuleKind.FOREIGN_KEY: "quality/foreign_keys.py (the parent's keys)",
    RuleKind.DUPLICATE: "quality/dedupe.py (the other rows of the batch)",
}


def breach(entity: Entity, rule: Rule) -> Breach:
    """When a row of ``entity`` breaks ``rule`` (one of its ``row_rules``)."""
    return ROW_RULES[rule.kind].breach(entity.field(rule.column), rule)
