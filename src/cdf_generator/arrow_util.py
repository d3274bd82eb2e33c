"""Small vectorized Arrow builders shared by the entity generators (no per-row Python)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import product

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cdf_generator.hashing import I64

TS_TYPE = pa.timestamp("us", tz="UTC")


def const_str(value: str, n: int) -> pa.StringArray:
    """``n`` copies of one string, as a plain string array."""
    raw = value.encode()
    data = np.tile(np.frombuffer(raw, dtype=np.uint8), n)
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def take(
    pool: Sequence[str] | pa.Array, idx: npt.ArrayLike, nulls: npt.NDArray[np.bool_] | None = None
) -> pa.Array:
    """``pool[idx]`` per row; rows where ``nulls`` is true become null."""
    values = pool if isinstance(pool, pa.Array) else pa.array(list(pool), pa.string())
    return values.take(pa.array(np.asarray(idx, dtype=np.int64), mask=nulls))


def int_str(values: npt.ArrayLike, width: int = 0) -> pa.Array:
    """Integers as decimal strings, zero-padded to ``width``."""
    s = pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())
    return pc.utf8_lpad(s, width=width, padding="0") if width else s


def join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and literal strings (null if any is null)."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, "")


def lists(counts: I64, values: pa.Array) -> pa.ListArray:
    """A list<string> array whose row i holds the next ``counts[i]`` values."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


@lru_cache(maxsize=32)
def _combos(names: tuple[str, ...]) -> pa.ListArray:
    rows = []
    for bits in product((0, 1), repeat=len(names)):
        rows.append([n for n, b in zip(names, reversed(bits), strict=True) if b])
    return pa.array(rows, pa.list_(pa.string()))


def flag_lists(names: tuple[str, ...], flags: Sequence[npt.NDArray[np.bool_]]) -> pa.Array:
    """list<string> of the names whose flag is set, via a table of all 2**k combinations."""
    code = np.zeros(len(flags[0]), dtype=np.int64)
    for i, f in enumerate(flags):
        code |= f.astype(np.int64) << i
    return _combos(names).take(pa.array(code))


def decimal_from_micros(micros: I64, precision: int = 18, scale: int = 6) -> pa.Array:
    """decimal128(precision, scale) from integer units of 10**-scale (16-byte two's complement)."""
    n = len(micros)
    words = np.empty((n, 2), dtype=np.int64)
    words[:, 0] = micros
    words[:, 1] = micros >> 63
    return pa.Array.from_buffers(pa.decimal128(precision, scale), n, [None, pa.py_buffer(words)])


def timestamps(micros: I64) -> pa.Array:
    return pa.array(np.asarray(micros, dtype=np.int64)).view(TS_TYPE)


def int32(values: npt.ArrayLike) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int32))


def float64(values: npt.ArrayLike) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.float64))


def geo(lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]) -> pa.StructArray:
    return pa.StructArray.from_arrays([float64(lat), float64(lon)], names=["lat", "lon"])


_DIGIT4 = np.array([list(f"{i:04d}".encode()) for i in range(10_000)], dtype=np.uint8)


def digits(values: npt.ArrayLike, width: int, prefix: str = "", suffix: str = "") -> pa.StringArray:
    """Fixed-width strings ``prefix + zero-padded decimal + suffix`` built as a byte matrix."""
    v = np.asarray(values, dtype=np.int64).copy()
    n, pre, suf = len(v), prefix.encode(), suffix.encode()
    total = len(pre) + width + len(suf)
    out = np.empty((n, total), dtype=np.uint8)
    if pre:
        out[:, : len(pre)] = np.frombuffer(pre, dtype=np.uint8)
    if suf:
        out[:, total - len(suf) :] = np.frombuffer(suf, dtype=np.uint8)
    end = len(pre) + width
    for right in range(end, len(pre), -4):  # four digits per step, via a lookup table
        k = min(4, right - len(pre))
        out[:, right - k : right] = _DIGIT4[v % 10_000][:, 4 - k :]
        v //= 10_000
    offsets = np.arange(n + 1, dtype=np.int32) * total
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))
