"""The vocabulary data contracts are written in: fields, entities and the rules derived from them.

A contract is declared once (``entities.py``); every schema, DDL statement, validation rule and the
contracts document is derived from these objects, so adding a field or a rule is one edit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property


class Kind(str, enum.Enum):
    """Logical type of a contract field; ``schemas.py`` maps each to Spark, Arrow, Iceberg, SQL."""

    STRING = "string"
    INT = "int"
    DOUBLE = "double"
    DECIMAL = "decimal(18,6)"
    DATE = "date"
    TIMESTAMP = "timestamp"
    STRING_ARRAY = "array<string>"
    GEO = "struct<lat:double,lon:double>"


class Format(str, enum.Enum):
    """Text formats a string field can be held to (regular expressions in ``FORMAT_PATTERNS``)."""

    ULID = "ulid"
    EMAIL = "email"
    TENANT = "tenant"


#: The regular expressions behind each :class:`Format`, in the syntax Java (Spark) and RE2
#: (pyarrow) share. They end in ``\z``, not ``$``: Java's ``$`` also matches before a final line
#: break, so ``"<ulid>\n"`` passed the ULID format in Spark (and failed it in pyarrow).
FORMAT_PATTERNS: dict[Format, str] = {
    Format.ULID: r"^[0-9A-HJKMNP-TV-Z]{26}\z",
    Format.EMAIL: r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\z",
    Format.TENANT: r"^[a-z][a-z0-9_]{1,31}\z",
}


def python_pattern(fmt: Format) -> str:
    r"""``fmt``'s pattern in Python's ``re`` spelling: ``\Z`` for the end of the text (Python
    reads ``\z`` only from 3.14)."""
    return FORMAT_PATTERNS[fmt].replace(r"\z", r"\Z")


class RuleKind(str, enum.Enum):
    """What a rule checks. Codes are ``<column>.<kind>``: stable names for labels and reports."""

    REQUIRED = "required"
    TYPE = "type"  # a value that cannot be cast to the contract type
    ENUM = "enum"
    RANGE = "range"
    FORMAT = "format"
    P95_GE_AVG = "below_avg"  # lead_time_days_p95 must not be below lead_time_days_avg
    NOT_FUTURE = "future"  # a timestamp later than the run's clock (plus skew allowance)
    TOO_LONG = "too_long"  # text (or a list's element) longer than the field's max_length
    CONTROL_CHARS = "control_chars"  # text (or a list's element) holding a control character
    CONTAINS = "missing_default"  # an array must contain another column's value
    TENANT_MATCH = "tenant_mismatch"  # the row's tenant_id is not the tenant being run
    FOREIGN_KEY = "fk"
    DUPLICATE = "duplicate"  # a conflicting older version of a key seen in the same batch
    MISSING_COLUMN = "missing_column"  # schema drift: a required column is absent from the file
    EXTRA_COLUMN = "extra_column"  # schema drift: a column the contract does not know (if strict)


#: The most characters a text field (or an element of a text list) may hold unless it declares
#: its own ``max_length``: far above any name, code or address line a source system sends, far
#: below the megabyte values that would bloat every table and report they reach.
DEFAULT_MAX_LENGTH = 500

#: Control characters no text may hold: C0 (U+0000-U+001F, NUL included), DEL and C1
#: (U+007F-U+009F, what mis-decoded Windows-1252 leaves). Java and RE2 read ``\xNN`` alike.
CONTROL_CHARACTERS = r"[\x00-\x1F\x7F-\x9F]"
#: The same, less tab, line feed and carriage return: a free-text field (an address pasted from
#: a letter, a description) may hold tabs and line breaks.
FREE_TEXT_CONTROL_CHARACTERS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"


@dataclass(frozen=True)
class Rule:
    """One check a row must pass. ``column`` is where the violation is reported."""

    kind: RuleKind
    column: str
    doc: str
    other: str | None = None  # the second column of a cross-field rule

    @property
    def code(self) -> str:
        return f"{self.column}.{self.kind.value}"


#: Rules every entity has on any column; their docs are templates.
_GENERIC_DOCS: dict[RuleKind, str] = {
    RuleKind.TYPE: "{column} holds a value that cannot be cast to its contract type",
    RuleKind.MISSING_COLUMN: "the file has no {column} column, which the contract requires",
    RuleKind.EXTRA_COLUMN: "the file has a column {column} the contract does not define",
    RuleKind.TENANT_MATCH: "{column} names another tenant than the one being run",
}


@dataclass(frozen=True)
class ForeignKey:
    """``column`` (a scalar or an array of keys) must name rows of ``entity`` in the same tenant."""

    column: str
    entity: str
    is_array: bool = False


@dataclass(frozen=True)
class Field:
    """One column of an entity, with everything the pipeline needs to know about it."""

    name: str
    kind: Kind
    doc: str
    required: bool = False
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    fmt: Format | None = None
    not_future: bool = False
    #: Text fields (strings and lists of strings without an ``enum``, whose codes bound them
    #: already): the most characters a value (each element of a list) may hold; None means
    #: :data:`DEFAULT_MAX_LENGTH`.
    max_length: int | None = None
    #: Text fields: tab and line breaks are allowed (every other control character is not).
    free_text: bool = False

    @property
    def is_text(self) -> bool:
        """Free text or codes outside any list: held to a length and to no control characters."""
        return self.kind in (Kind.STRING, Kind.STRING_ARRAY) and self.enum is None

    @property
    def text_limit(self) -> int | None:
        """The most characters a value may hold (None for fields that are not text)."""
        if not self.is_text:
            return None
        return DEFAULT_MAX_LENGTH if self.max_length is None else self.max_length

    @property
    def control_characters(self) -> str:
        """The character class of the control characters this field may not hold."""
        return FREE_TEXT_CONTROL_CHARACTERS if self.free_text else CONTROL_CHARACTERS

    @property
    def range_text(self) -> str | None:
        """The allowed range in interval notation, or None when unbounded."""
        if self.minimum is None and self.maximum is None:
            return None
        low = "(" if self.exclusive_minimum else "["
        lo = "-inf" if self.minimum is None else _num(self.minimum)
        hi = "+inf" if self.maximum is None else _num(self.maximum)
        return f"{low}{lo}, {hi}{')' if self.maximum is None else ']'}"


def _text_rules(f: Field, limit: int) -> list[Rule]:
    each = "each element of " if f.kind is Kind.STRING_ARRAY else ""
    allowed = "; tab and line breaks allowed" if f.free_text else ""
    return [
        Rule(RuleKind.TOO_LONG, f.name, f"{each}{f.name} must be at most {limit} characters"),
        Rule(
            RuleKind.CONTROL_CHARS,
            f.name,
            f"{each}{f.name} must hold no control character (U+0000-U+001F, U+007F-U+009F"
            f"{allowed})",
        ),
    ]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Entity:
    """A contract: an ordered field list, its primary key, foreign keys and cross-field rules.

    Declare contracts through ``validation.contract_set``, which checks them as a set.
    """

    name: str
    doc: str
    fields: tuple[Field, ...]
    primary_key: str
    foreign_keys: tuple[ForeignKey, ...] = ()
    cross_field_rules: tuple[Rule, ...] = field(default_factory=tuple)
    #: Table partitioning: Iceberg buckets of the primary key per tenant partition.
    key_buckets: int = 16

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"contract {self.name!r} has no field {name!r}")

    @cached_property
    def row_rules(self) -> tuple[Rule, ...]:
        """Every rule that can be checked on one row alone, in a stable order."""
        rules: list[Rule] = []
        for f in self.fields:
            if f.required:
                rules.append(Rule(RuleKind.REQUIRED, f.name, f"{f.name} must be present"))
            if f.enum is not None:
                rules.append(
                    Rule(RuleKind.ENUM, f.name, f"{f.name} must be one of the listed codes")
                )
            if f.range_text is not None or f.kind is Kind.GEO:
                rules.append(Rule(RuleKind.RANGE, f.name, f"{f.name} must lie in its range"))
            if f.fmt is not None:
                rules.append(
                    Rule(RuleKind.FORMAT, f.name, f"{f.name} must match the {f.fmt.value} format")
                )
            if f.not_future:
                rules.append(
                    Rule(RuleKind.NOT_FUTURE, f.name, f"{f.name} must not be in the future")
                )
            if f.text_limit is not None:
                rules += _text_rules(f, f.text_limit)
        rules.extend(self.cross_field_rules)
        return tuple(rules)

    @property
    def fk_rules(self) -> tuple[Rule, ...]:
        return tuple(
            Rule(
                RuleKind.FOREIGN_KEY,
                fk.column,
                f"every id in {fk.column} must exist in {fk.entity}",
            )
            for fk in self.foreign_keys
        )

    @property
    def duplicate_rule(self) -> Rule:
        return Rule(
            RuleKind.DUPLICATE,
            self.primary_key,
            "a newer conflicting version of this key arrived in the same batch",
        )

    def rule(self, column: str, kind: RuleKind) -> Rule:
        """The rule of ``kind`` on ``column`` (so callers never spell a code by hand)."""
        for r in (*self.row_rules, *self.fk_rules, self.duplicate_rule):
            if r.column == column and r.kind is kind:
                return r
        if kind in _GENERIC_DOCS:
            return Rule(kind, column, _GENERIC_DOCS[kind].format(column=column))
        raise KeyError(f"contract {self.name!r} has no {kind.value} rule on {column!r}")
