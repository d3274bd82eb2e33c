"""A small pyarrow evaluator of the contracts' row rules, for checking generated files.

It is not the silver job's validator (that one is Spark); it lets tests and users see, without
Spark, which row rules each row of a contract-shaped table breaks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cdf_pipeline.contracts import FORMAT_PATTERNS, Entity, Kind, Rule, RuleKind

Mask = npt.NDArray[np.bool_]


def _np(arr: pa.Array | pa.ChunkedArray) -> Mask:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _as_float(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(pa.float64()) if pa.types.is_decimal(col.type) else col


def _rule_mask(table: pa.Table, entity: Entity, rule: Rule, as_of_us: int) -> Mask:
    col = table.column(rule.column)
    f = entity.field(rule.column)
    if rule.kind is RuleKind.REQUIRED:
        return _np(pc.is_null(col))
    if rule.kind is RuleKind.ENUM:
        assert f.enum is not None
        norm = pc.utf8_upper(pc.utf8_trim_whitespace(col))
        return _np(pc.invert(pc.is_in(norm, value_set=pa.array(f.enum))))
    if rule.kind is RuleKind.RANGE and f.kind is Kind.GEO:
        geo = col.combine_chunks()
        lat, lon = geo.field("lat"), geo.field("lon")
        bad = pc.or_(
            pc.or_(pc.less(lat, -90.0), pc.greater(lat, 90.0)),
            pc.or_(pc.less(lon, -180.0), pc.greater(lon, 180.0)),
        )
        return _np(bad)
    if rule.kind is RuleKind.RANGE:
        v = _as_float(col)
        bad = np.zeros(table.num_rows, dtype=bool)
        if f.minimum is not None:
            low = pc.less_equal if f.exclusive_minimum else pc.less
            bad |= _np(low(v, f.minimum))
        if f.maximum is not None:
            bad |= _np(pc.greater(v, f.maximum))
        return bad
    if rule.kind is RuleKind.FORMAT:
        assert f.fmt is not None
        return _np(pc.invert(pc.match_substring_regex(col, FORMAT_PATTERNS[f.fmt])))
    if rule.kind is RuleKind.NOT_FUTURE:
        ts = col.cast(pa.int64())
        return _np(pc.greater(ts, as_of_us))
    if rule.kind is RuleKind.P95_GE_AVG:
        assert rule.other is not None
        return _np(pc.less(col, table.column(rule.other)))
    if rule.kind is RuleKind.CONTAINS:
        assert rule.other is not None
        return ~contains(table.column(rule.column), table.column(rule.other))
    raise NotImplementedError(rule.kind)


def contains(lists: pa.ChunkedArray, values: pa.ChunkedArray) -> Mask:
    """Per row: does the list hold the row's value? (null lists or values: False)."""
    arr = lists.combine_chunks()
    flat = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy()
    val = values.combine_chunks().take(pa.array(parents))
    eq = _np(pc.equal(flat, val))
    hit = np.bincount(parents, weights=eq, minlength=len(arr)) > 0
    return np.asarray(hit, dtype=bool)


def row_violations(table: pa.Table, entity: Entity, as_of_us: int) -> dict[str, Mask]:
    """For each row rule of ``entity``, the rows of a contract-shaped ``table`` that break it."""
    return {r.code: _rule_mask(table, entity, r, as_of_us) for r in entity.row_rules}


def clean_mask(table: pa.Table, entity: Entity, as_of_us: int) -> Mask:
    """Rows that break no row rule."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for mask in row_violations(table, entity, as_of_us).values():
        bad |= mask
    return ~bad
