"""A small pyarrow evaluator of the contracts' row rules, for checking generated files.

It is not the silver job's validator (that one is Spark), but it compiles the same rules: when a
row breaks each one is said once, in ``contracts/rule_registry.py``, and :func:`row_violations`
turns that into pyarrow masks. So tests and users see, without Spark, which row rules each row of
a contract-shaped table breaks. Values are read as the silver job's normalise leaves them: text
trimmed of spaces, blank text null, enum codes upper-case.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import NoReturn

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cdf_generator.arrow_util import TS_TYPE
from cdf_pipeline.contracts import Entity, Field, Kind
from cdf_pipeline.contracts import rule_registry as R

Mask = npt.NDArray[np.bool_]

_COMPARE: dict[str, Callable[..., pa.Array]] = {
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
}


def _np(arr: pa.Array | pa.ChunkedArray) -> Mask:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _normalised(f: Field, col: pa.Array) -> pa.Array:
    """``col`` as ``quality.normalise`` leaves it, as far as the row rules can tell."""
    if f.kind is Kind.STRING:
        text = pc.utf8_trim(col, characters=" ")  # Spark's trim: spaces only
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        return pc.utf8_upper(text) if f.enum is not None else text
    if f.kind is Kind.STRING_ARRAY:
        return _normalised_lists(col, required=f.required)
    if f.kind is Kind.DECIMAL:
        return col.cast(pa.float64())
    return col


def _normalised_lists(col: pa.Array, *, required: bool) -> pa.Array:
    """Elements trimmed, null and blank ones dropped; an absent optional list is empty."""
    flat = pc.utf8_trim(pc.list_flatten(col), characters=" ")
    keep = _np(pc.not_equal(flat, ""))
    parents = pc.list_parent_indices(col).to_numpy()
    offsets = np.zeros(len(col) + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents[keep], minlength=len(col)), out=offsets[1:])
    absent = pc.is_null(col) if required else None
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)), mask=absent)


class TableValues:
    """The table's values by ``Value``, each column normalised once."""

    def __init__(self, table: pa.Table, entity: Entity) -> None:
        self.table, self.entity = table, entity
        self._columns: dict[str, pa.Array] = {}

    def __call__(self, v: R.Value) -> pa.Array:
        col = self._columns.get(v.column)
        if col is None:
            raw = self.table.column(v.column).combine_chunks()
            col = self._columns[v.column] = _normalised(self.entity.field(v.column), raw)
        return col if v.part is None else pc.struct_field(col, v.part)


def _null_where_null(value: pa.Array, result: pa.Array) -> pa.Array:
    """``result``, unknown (null) where ``value`` is null, as in SQL."""
    return pc.if_else(pc.is_valid(value), result, pa.scalar(None, pa.bool_()))


def _lacks(lists: pa.Array, values: pa.Array) -> pa.Array:
    """Spark's ``NOT array_contains``: unknown for a null list or value, or a null element."""
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    eq = pc.equal(flat, values.take(pa.array(parents)))
    n = len(lists)
    hit = np.bincount(parents, weights=_np(eq), minlength=n) > 0
    unknown = np.bincount(parents, weights=_np(pc.is_null(eq)), minlength=n) > 0
    result = pa.array(~hit, mask=~hit & unknown)
    return _null_where_null(lists, _null_where_null(values, result))


def _any_element(lists: pa.Array, hits: pa.Array) -> pa.Array:
    """Per list: does any element hold ``hits`` (a mask over the flattened elements)?

    As Spark's ``exists``: unknown (null) for a null list, or when no element holds and one
    is unknown.
    """
    parents = pc.list_parent_indices(lists).to_numpy()
    n = len(lists)
    hit = np.bincount(parents, weights=_np(hits), minlength=n) > 0
    unknown = np.bincount(parents, weights=_np(pc.is_null(hits)), minlength=n) > 0
    return _null_where_null(lists, pa.array(hit, mask=~hit & unknown))


def _per_value(col: pa.Array, each: bool, test: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``test`` on a text column, or on every element of a list column (any element)."""
    if not each:
        return test(col)
    return _any_element(col, test(pc.list_flatten(col)))


def _fold(op: Callable[..., pa.Array], terms: list[pa.Array], n: int, *, empty: bool) -> pa.Array:
    return reduce(op, terms) if terms else pa.repeat(pa.scalar(empty), n)


def _unhandled(node: NoReturn) -> NoReturn:
    raise TypeError(f"no pyarrow mask for {node!r}")


def mask(node: R.Breach, values: TableValues, clock: pa.Scalar) -> pa.Array:
    """A boolean array, true where ``node`` holds and null where it is unknown."""
    match node:
        case R.IsNull(v):
            return pc.is_null(values(v))
        case R.NotNull(v):
            return pc.is_valid(values(v))
        case R.IsBlank(v):
            return pc.equal(pc.utf8_trim(values(v), characters=" "), "")
        case R.IsEmpty(v):
            return pc.equal(pc.list_value_length(values(v)), 0)
        case R.NotIn(v, codes):
            col = values(v)
            found = pc.is_in(col, value_set=pa.array(codes, pa.string()))
            return _null_where_null(col, pc.invert(found))
        case R.NotMatching(v, pattern):
            return pc.invert(pc.match_substring_regex(values(v), pattern))
        case R.HasMatch(v, pattern, each):
            return _per_value(values(v), each, lambda text: pc.match_substring_regex(text, pattern))
        case R.LongerThan(v, limit, each):
            return _per_value(values(v), each, lambda text: pc.greater(pc.utf8_length(text), limit))
        case R.Compare(v, op, than):
            right = (
                values(than)
                if isinstance(than, R.Value)
                else clock
                if isinstance(than, R.Clock)
                else than
            )
            return _COMPARE[op](values(v), right)
        case R.Lacks(items, item):
            return _lacks(values(items), values(item))
        case R.AnyOf(terms):
            n = values.table.num_rows
            return _fold(pc.or_kleene, [mask(t, values, clock) for t in terms], n, empty=False)
        case R.AllOf(terms):
            n = values.table.num_rows
            return _fold(pc.and_kleene, [mask(t, values, clock) for t in terms], n, empty=True)
    _unhandled(node)


def contains(lists: pa.ChunkedArray, values: pa.ChunkedArray) -> Mask:
    """Per row: does the list hold the row's value? (null lists or values: False)."""
    return _np(pc.invert(_lacks(lists.combine_chunks(), values.combine_chunks())))


def row_violations(table: pa.Table, entity: Entity, as_of_us: int) -> dict[str, Mask]:
    """For each row rule of ``entity``, the rows of a contract-shaped ``table`` that break it.

    ``as_of_us`` is the run's clock (microseconds since the epoch): later timestamps are future.
    """
    values = TableValues(table, entity)
    clock = pa.scalar(as_of_us, TS_TYPE)
    return {r.code: _np(mask(R.breach(entity, r), values, clock)) for r in entity.row_rules}


def clean_mask(table: pa.Table, entity: Entity, as_of_us: int) -> Mask:
    """Rows that break no row rule."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for m in row_violations(table, entity, as_of_us).values():
        bad |= m
    return ~bad
