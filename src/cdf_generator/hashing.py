"""Counter-based randomness: each value is a pure function of (seed, tenant, entity, column, key,
version).

A row's 64-bit base hash mixes the entity context with its key index and version; each column then
mixes the base with a hash of the column name. Nothing depends on the order rows are generated in,
so any chunking yields the same values. The mixer is SplitMix64's finaliser on numpy ``uint64``
arrays (wrap-around multiplication is what we want).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_TO_UNIT = 2.0**-53


@lru_cache(maxsize=4096)
def label_hash(*parts: object) -> int:
    """A stable 64-bit hash of some labels (SHA-256, so it never changes between runs/platforms)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def mix64(x: U64) -> U64:
    """SplitMix64's finaliser: a bijection on uint64 with full avalanche (returns a new array)."""
    z = x ^ (x >> _S30)
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def row_hash(context: int, keys: npt.ArrayLike, versions: npt.ArrayLike) -> U64:
    """The base hash of each (key, version) row under an entity ``context``."""
    k = np.asarray(keys).astype(np.uint64)
    v = np.asarray(versions).astype(np.uint64)
    h = mix64(k ^ np.uint64(context))
    h += (v + np.uint64(1)) * _GOLDEN
    return mix64(h)


def bits(base: U64, column: str, draw: int = 0) -> U64:
    """64 random bits per row for ``column`` (``draw`` gives independent extra streams)."""
    return mix64(base ^ np.uint64(label_hash("column", column, draw)))


def uniform(base: U64, column: str, draw: int = 0) -> F64:
    """Uniform floats in [0, 1)."""
    return (bits(base, column, draw) >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def normal(base: U64, column: str, mean: float = 0.0, std: float = 1.0) -> F64:
    """Normal draws by Box-Muller from two independent uniform streams."""
    u1 = 1.0 - uniform(base, column, 0)  # (0, 1]: log is finite
    u2 = uniform(base, column, 1)
    return mean + std * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def randint(base: U64, column: str, low: int, high: int, draw: int = 0) -> I64:
    """Integers uniform in [low, high)."""
    u = uniform(base, column, draw)
    return (low + np.floor(u * (high - low))).astype(np.int64)


def choice(base: U64, column: str, weights: tuple[float, ...], draw: int = 0) -> I64:
    """Index of a weighted category per row (weights need not sum to 1)."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    cum /= cum[-1]
    idx = np.searchsorted(cum, uniform(base, column, draw), side="right")
    return np.minimum(idx, len(weights) - 1).astype(np.int64)


_SLOT_MASK = np.uint64(0xFFFF)


class Draws:
    """Cheap small draws: each hashed 64-bit word of a ``group`` yields four 16-bit slots.

    Used for pool indices, categories and coin flips, where 16 bits of resolution is plenty; one
    mix per four draws keeps wide tables fast. Continuous values use :func:`uniform` instead.
    """

    def __init__(self, base: U64) -> None:
        self.base = base
        self._words: dict[str, U64] = {}

    def u16(self, group: str, slot: int) -> I64:
        word = self._words.get(group)
        if word is None:
            word = self._words[group] = bits(self.base, group)
        return ((word >> np.uint64(16 * slot)) & _SLOT_MASK).astype(np.int64)

    def pick(self, group: str, slot: int, size: int) -> I64:
        """An index uniform in [0, size) (size up to 65536)."""
        return (self.u16(group, slot) * size) >> 16

    def flag(self, group: str, slot: int, p: float) -> npt.NDArray[np.bool_]:
        """True with probability ``p`` (to 1/65536)."""
        return self.u16(group, slot) < round(p * 65536)

    def category(self, group: str, slot: int, weights: tuple[float, ...]) -> I64:
        """A weighted category index via a 65536-entry lookup table."""
        return category_table(weights)[self.u16(group, slot)]


@lru_cache(maxsize=64)
def category_table(weights: tuple[float, ...]) -> I64:
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    cum /= cum[-1]
    centers = (np.arange(65536) + 0.5) / 65536
    table = np.searchsorted(cum, centers, side="right")
    return np.minimum(table, len(weights) - 1).astype(np.int64)
