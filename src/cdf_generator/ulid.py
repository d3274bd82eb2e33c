"""Vectorized ULIDs: 26 Crockford base32 characters built as a uint8 matrix, no per-row Python.

Layout (128 bits): 48-bit millisecond time | 40-bit namespace | 40-bit key permutation. The
namespace is a hash of (seed, tenant, entity), the low part an invertible permutation of the key
index, so ids are unique within a tenant and entity by construction and namespaces keep tenants
apart.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cdf_generator.hashing import U64, label_hash

ALPHABET = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGITS = np.frombuffer(ALPHABET, dtype=np.uint8)
MASK40 = (1 << 40) - 1
_M40 = np.uint64(MASK40)
_FIVE_BITS = np.uint64(31)
ULID_CHARS = 26


def namespace(seed: int, tenant: str, entity: str) -> int:
    """The 40-bit namespace of a tenant's entity ids (the top of the ULID's random part)."""
    return label_hash("ulid-namespace", seed, tenant, entity) & MASK40


def permute40(keys: U64) -> U64:
    """An invertible permutation of [0, 2**40): odd multiplies, xor-shifts and an add, mod 2**40."""
    x = (keys.astype(np.uint64) * np.uint64(0x9E3779B97F)) & _M40
    x ^= x >> np.uint64(19)
    x = (x * np.uint64(0xC2B2AE3D27)) & _M40
    x ^= x >> np.uint64(21)
    return (x + np.uint64(0x5DEECE66D)) & _M40


def encode(millis: U64, high40: U64 | int, low40: U64) -> pa.StringArray:
    """Encode ULIDs from their three parts (arrays of equal length, or a scalar ``high40``)."""
    n = len(low40)
    out = np.empty((n, ULID_CHARS), dtype=np.uint8)
    ms = np.asarray(millis, dtype=np.uint64)
    hi = np.asarray(high40, dtype=np.uint64)
    lo = np.asarray(low40, dtype=np.uint64)
    for i in range(10):
        out[:, 9 - i] = _DIGITS[(ms >> np.uint64(5 * i)) & _FIVE_BITS]
    for i in range(8):
        out[:, 17 - i] = _DIGITS[(hi >> np.uint64(5 * i)) & _FIVE_BITS]
        out[:, 25 - i] = _DIGITS[(lo >> np.uint64(5 * i)) & _FIVE_BITS]
    offsets = np.arange(0, ULID_CHARS * (n + 1), ULID_CHARS, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def hex_strings(values: U64, width: int = 16) -> pa.StringArray:
    """Lower-case hex of the low ``4 * width`` bits of each value (a fixed-width string column)."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    n = len(values)
    out = np.empty((n, width), dtype=np.uint8)
    v = np.asarray(values, dtype=np.uint64)
    for i in range(width):
        out[:, width - 1 - i] = digits[(v >> np.uint64(4 * i)) & np.uint64(15)]
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))
