"""Customer-shaped files: the contract shape (typed) or a flat, all-string shape.

* parquet + contract: the contract's Arrow types as they are.
* csv + contract: timestamps as ISO-8601 UTC text (``2025-03-04T05:06:07.123456Z``), arrays as
  JSON text (``["a","b"]``), ``geo_coords`` as JSON text (``{"lat":1.5,"lon":-3.25}``); numbers,
  decimals and dates as the CSV writer prints them.
* flat (parquet or csv): every column a string; numbers as text, timestamps ISO-8601; suppliers'
  arrays as JSON text, parts' arrays comma-separated; ``geo_coords`` split into ``geo_lat`` and
  ``geo_lon`` in its place.

Array elements the generator makes never contain quotes, backslashes or commas, so the JSON and
comma-separated texts need no escaping.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from cdf_pipeline.contracts import Kind
from cdf_pipeline.contracts import entity as contract

FORMATS = ("parquet", "csv")
SHAPES = ("contract", "flat")


def iso_timestamps(arr: pa.Array) -> pa.Array:
    """ISO-8601 UTC text with microseconds and a ``Z`` suffix."""
    text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")  # %S includes the microseconds
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "")


def json_lists(arr: pa.Array) -> pa.Array:
    """list<string> as JSON array text (``[]`` when empty, null when null)."""
    inner = pc.binary_join(arr, '","')
    text = pc.binary_join_element_wise(pa.scalar('["'), inner, pa.scalar('"]'), "")
    empty = pc.equal(pc.list_value_length(arr), 0)
    return pc.if_else(empty, pa.scalar("[]"), text)


def comma_lists(arr: pa.Array) -> pa.Array:
    return pc.binary_join(arr, ",")


def _num(arr: pa.Array) -> pa.Array:
    return arr.cast(pa.string())


def json_geo(arr: pa.Array) -> pa.Array:
    lat, lon = _num(arr.field("lat")), _num(arr.field("lon"))
    return pc.binary_join_element_wise(
        pa.scalar('{"lat":'), lat, pa.scalar(',"lon":'), lon, pa.scalar("}"), ""
    )


def reshape(table: pa.Table, entity: str, fmt: str, shape: str) -> pa.Table:
    """Turn a contract-typed table into the requested customer shape."""
    if fmt == "parquet" and shape == "contract":
        return table
    names: list[str] = []
    arrays: list[pa.Array] = []
    for f in contract(entity).fields:
        col = table.column(f.name).combine_chunks()
        if f.kind is Kind.TIMESTAMP:
            names.append(f.name)
            arrays.append(iso_timestamps(col))
        elif f.kind is Kind.STRING_ARRAY:
            names.append(f.name)
            flat_commas = shape == "flat" and entity == "parts"
            arrays.append(comma_lists(col) if flat_commas else json_lists(col))
        elif f.kind is Kind.GEO and shape == "flat":
            names += ["geo_lat", "geo_lon"]
            arrays += [_num(col.field("lat")), _num(col.field("lon"))]
        elif f.kind is Kind.GEO:
            names.append(f.name)
            arrays.append(json_geo(col))
        elif shape == "flat" and f.kind is not Kind.STRING:
            names.append(f.name)
            arrays.append(_num(col))
        else:
            names.append(f.name)
            arrays.append(col)
    return pa.Table.from_arrays(arrays, names=names)
