"""A contract declared wrong fails at import, with a message that says what to change and where.

Each case builds one broken contract set and states the whole message it must produce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from cdf_pipeline.contracts import (
    ENTITIES,
    PARTS,
    SUPPLIERS,
    Entity,
    Field,
    ForeignKey,
    Kind,
    Rule,
    RuleKind,
    contract_set,
)
from cdf_pipeline.contracts.validation import contract_problems
from cdf_pipeline.exceptions import CdfError, ContractError


def things(*fields: Field, name: str = "things", **changes: object) -> Entity:
    """A minimal valid contract (key, tenant, timestamp) with ``fields`` and ``changes``."""
    base = (
        Field("thing_id", Kind.STRING, "key", required=True),
        Field("tenant_id", Kind.STRING, "tenant", required=True),
        Field("source_timestamp", Kind.TIMESTAMP, "version", required=True),
    )
    entity = Entity(name=name, doc="test", primary_key="thing_id", fields=(*base, *fields))
    return dataclasses.replace(entity, **changes)  # type: ignore[arg-type]


def parts(**changes: object) -> Entity:
    return dataclasses.replace(PARTS, **changes)  # type: ignore[arg-type]


def suppliers_with(rule: Rule) -> list[Entity]:
    """The contracts, suppliers' cross-field rules replaced by ``rule``."""
    return [dataclasses.replace(SUPPLIERS, cross_field_rules=(rule,))]


def parts_with(rule: Rule) -> list[Entity]:
    """The contracts, parts' cross-field rules replaced by ``rule``."""
    return [SUPPLIERS, parts(cross_field_rules=(rule,))]


P95 = SUPPLIERS.cross_field_rules[0]
CONTAINS = PARTS.cross_field_rules[1]
QUALIFIED = "qualified_supplier_ids"
_F = Field  # short, for the tables below

#: label -> (the contract set, the one message it must produce).
CASES: dict[str, tuple[Callable[[], list[Entity]], str]] = {
    "fk to an unknown entity": (
        lambda: [SUPPLIERS, parts(foreign_keys=(ForeignKey("default_supplier_id", "supplier"),))],
        "contract 'parts': foreign key default_supplier_id -> 'supplier': 'supplier' is not a "
        "declared entity (did you mean 'suppliers'?)",
    ),
    "fk to an entity declared after": (
        lambda: [parts(foreign_keys=PARTS.foreign_keys[:1]), SUPPLIERS],
        "contract 'parts': foreign key default_supplier_id -> 'suppliers': parents load before "
        "children, so declare 'suppliers' before 'parts' (an entity cannot reference itself or "
        "one declared after it)",
    ),
    "fk to itself": (
        lambda: [things(foreign_keys=(ForeignKey("thing_id", "things"),))],
        "contract 'things': foreign key thing_id -> 'things': parents load before children, so "
        "declare 'things' before 'things' (an entity cannot reference itself or one declared "
        "after it)",
    ),
    "fk to a parent whose key is not a string": (
        lambda: [
            things(
                fields=(
                    _F("thing_id", Kind.INT, "key", required=True),
                    *things().fields[1:],
                )
            ),
            things(
                _F("thing_ref", Kind.STRING, "ref"),
                name="children",
                foreign_keys=(ForeignKey("thing_ref", "things"),),
            ),
        ],
        "contract 'children': foreign key thing_ref -> 'things': its key things.thing_id is int, "
        "and foreign keys hold string keys: make the primary key a string",
    ),
    "fk column that is a list without is_array": (
        lambda: [SUPPLIERS, parts(foreign_keys=(ForeignKey(QUALIFIED, "suppliers"),))],
        "contract 'parts': foreign key qualified_supplier_ids is array<string>: a key column is "
        "string, a list of keys array<string> with is_array=True; fix the kind or is_array",
    ),
    "fk column that is not a field": (
        lambda: [SUPPLIERS, parts(foreign_keys=(ForeignKey("default_supplier", "suppliers"),))],
        "contract 'parts': foreign key column 'default_supplier' is not a field "
        "(did you mean 'default_supplier_id'?)",
    ),
    "cross-field operand that is not a field": (
        lambda: suppliers_with(dataclasses.replace(P95, other="lead_time_days_average")),
        "contract 'suppliers': rule lead_time_days_p95.below_avg: other='lead_time_days_average' "
        "is not a field (did you mean 'lead_time_days_avg'?)",
    ),
    "cross-field operand of another kind": (
        lambda: parts_with(dataclasses.replace(CONTAINS, other="last_price_change")),
        "contract 'parts': rule qualified_supplier_ids.missing_default: other='last_price_change' "
        "is date, and the missing_default rule compares with string; name a field of one of "
        "those kinds",
    ),
    "cross-field rule on a column of another kind": (
        lambda: suppliers_with(dataclasses.replace(P95, column="legal_name")),
        "contract 'suppliers': legal_name: the below_avg rule (cross_field_rules) applies to "
        "decimal(18,6), double, int fields, and legal_name is string; drop the rule or change "
        "the field's kind",
    ),
    "cross-field rule on a column that is not a field": (
        lambda: suppliers_with(dataclasses.replace(P95, column="lead_time_p95")),
        "contract 'suppliers': rule lead_time_p95.below_avg: 'lead_time_p95' is not a field "
        "(did you mean 'lead_time_days_p95'?); name a field",
    ),
    "cross-field rule without its second column": (
        lambda: suppliers_with(dataclasses.replace(P95, other=None)),
        "contract 'suppliers': rule lead_time_days_p95.below_avg: set other= to the second "
        "field it compares with",
    ),
    "field rule declared as a cross-field rule": (
        lambda: suppliers_with(Rule(RuleKind.ENUM, "region", "a code", other="country")),
        "contract 'suppliers': cross-field rule region.enum: RuleKind.ENUM is a field rule; "
        "declare it on the field (enum=(...)) or use one of ['CONTAINS', 'P95_GE_AVG']",
    ),
    "rule kind not checked on rows declared as a cross-field rule": (
        lambda: suppliers_with(Rule(RuleKind.FOREIGN_KEY, "region", "exists", other="country")),
        "contract 'suppliers': cross-field rule region.fk: RuleKind.FOREIGN_KEY is not checked "
        "on rows (see rule_registry.CHECKED_ELSEWHERE); use one of ['CONTAINS', 'P95_GE_AVG']",
    ),
    "empty enum": (
        lambda: [things(_F("colour", Kind.STRING, "colour", enum=()))],
        "contract 'things': colour: enum=() lists no code; list the allowed codes or drop enum=",
    ),
    "enum code that can never match": (
        lambda: [things(_F("colour", Kind.STRING, "colour", enum=("RED", "green ")))],
        "contract 'things': colour: enum code 'green ' can never match (values are trimmed and "
        "upper-cased before the check); write it as 'GREEN'",
    ),
    "enum code listed twice": (
        lambda: [things(_F("colour", Kind.STRING, "colour", enum=("RED", "RED")))],
        "contract 'things': colour: enum lists ['RED'] more than once; list each code once",
    ),
    "max_length on a number": (
        lambda: [things(_F("size", Kind.INT, "size", max_length=10))],
        "contract 'things': size: max_length= and free_text= apply to text fields (string or "
        "array<string> without enum=), and size is int; drop them",
    ),
    "free_text on an enum": (
        lambda: [things(_F("colour", Kind.STRING, "colour", enum=("RED",), free_text=True))],
        "contract 'things': colour: max_length= and free_text= apply to text fields (string or "
        "array<string> without enum=), and colour is an enum field; drop them",
    ),
    "max_length that admits nothing": (
        lambda: [things(_F("note", Kind.STRING, "note", max_length=0))],
        "contract 'things': note: max_length=0 admits no text; use a positive length",
    ),
    "enum on a number": (
        lambda: [things(_F("size", Kind.INT, "size", enum=("1", "2")))],
        "contract 'things': size: the enum rule (enum=(...)) applies to string fields, and size is "
        "int; drop the rule or change the field's kind",
    ),
    "not_future on a date": (
        lambda: [things(_F("born", Kind.DATE, "birthday", not_future=True))],
        "contract 'things': born: the future rule (not_future=True) applies to timestamp fields, "
        "and born is date; drop the rule or change the field's kind",
    ),
    "range that holds no value": (
        lambda: [things(_F("size", Kind.INT, "size", minimum=10, maximum=1))],
        "contract 'things': size: the range [10, 1] holds no value; swap or correct minimum= and "
        "maximum=",
    ),
    "exclusive minimum without a minimum": (
        lambda: [things(_F("size", Kind.INT, "size", maximum=10, exclusive_minimum=True))],
        "contract 'things': size: exclusive_minimum=True needs a minimum=; add one or drop it",
    ),
    "no tenant_id": (
        lambda: [things(fields=things().fields[::2])],
        "contract 'things': every entity needs a required string field 'tenant_id' (the job runs "
        "one tenant at a time and keeps the newest source_timestamp of a key): declare "
        "Field('tenant_id', Kind.STRING, ..., required=True)",
    ),
    "primary key that is not a field": (
        lambda: [things(primary_key="thing")],
        "contract 'things': primary_key='thing' is not a field (did you mean 'thing_id'?)",
    ),
    "optional primary key": (
        lambda: [things(fields=(_F("thing_id", Kind.STRING, "key"), *things().fields[1:]))],
        "contract 'things': primary key thing_id: declare it required=True",
    ),
    "field declared twice": (
        lambda: [things(_F("tenant_id", Kind.STRING, "again"))],
        "contract 'things': declares fields ['tenant_id'] more than once; keep one of each",
    ),
    "entity name that is not an identifier": (
        lambda: [things(name="Price List")],
        "contract 'Price List': entity name 'Price List' is not a lower-case identifier: rename "
        "it, e.g. 'price_list'",
    ),
    "field name that is not an identifier": (
        lambda: [things(_F("unit-cost", Kind.DOUBLE, "cost"))],
        "contract 'things': field name 'unit-cost' is not a lower-case identifier: rename it, "
        "e.g. 'unit_cost'",
    ),
    "two entities of one name": (
        lambda: [things(), things()],
        "two contracts are named 'things': rename one",
    ),
}


@pytest.mark.parametrize("label", list(CASES))
def test_a_broken_contract_names_what_to_change(label: str) -> None:
    build, message = CASES[label]
    assert contract_problems(build()) == [message]


def test_contract_set_raises_one_error_listing_every_problem() -> None:
    broken = things(
        _F("colour", Kind.STRING, "colour", enum=()),
        _F("size", Kind.INT, "size", minimum=10, maximum=1),
    )
    with pytest.raises(ContractError) as raised:
        contract_set(SUPPLIERS, broken, parts(foreign_keys=(ForeignKey("x", "suppliers"),)))
    message = str(raised.value)
    assert message.splitlines() == [
        "3 problem(s) in the data contracts:",
        "  - contract 'things': colour: enum=() lists no code; list the allowed codes or drop "
        "enum=",
        "  - contract 'things': size: the range [10, 1] holds no value; swap or correct minimum= "
        "and maximum=",
        "  - contract 'parts': foreign key column 'x' is not a field",
    ]
    assert isinstance(raised.value, CdfError) and isinstance(raised.value, ValueError)


def test_the_declared_contracts_are_valid_and_kept_in_load_order() -> None:
    assert contract_problems(ENTITIES.values()) == []
    assert contract_set(SUPPLIERS, PARTS) == ENTITIES
    assert list(contract_set(SUPPLIERS, PARTS, things())) == ["suppliers", "parts", "things"]
