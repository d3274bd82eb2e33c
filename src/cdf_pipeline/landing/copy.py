"""Exact, streamed copies into the raw zone, named by the SHA-256 of their bytes.

One read of the source: its bytes are hashed while they stream to a temporary name in the target
folder (``.landing-<uuid>.part``, which the silver job never lists), then the copy is renamed to
``<sha256><suffix>``. Memory stays at one chunk plus the S3 upload's part buffer, whatever the
object's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass

from cdf_pipeline.storage import Storage, join

CHUNK = 8 << 20


@dataclass(frozen=True)
class Copied:
    sha256: str
    size: int
    #: Where the bytes are now: a temporary name to :func:`settle` or remove.
    temporary: str


def stream_copy(storage: Storage, src: str, dest_dir: str) -> Copied:
    """Copy ``src`` to a temporary file in ``dest_dir``, hashing it on the way."""
    tmp = join(dest_dir, f".landing-{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with storage.open(src) as source, storage.open_output(tmp) as target:
            while block := source.read(CHUNK):
                digest.update(block)
                target.write(block)
                size += len(block)
    except BaseException:
        _remove_quietly(storage, tmp)
        raise
    return Copied(digest.hexdigest(), size, tmp)


def settle(storage: Storage, copied: Copied, dest_dir: str, suffix: str) -> str:
    """Give the copy its content name (``<sha256><suffix>``); returns its URI."""
    final = join(dest_dir, f"{copied.sha256}{suffix}")
    storage.move(copied.temporary, final)
    return final


def discard(storage: Storage, copied: Copied) -> None:
    _remove_quietly(storage, copied.temporary)


def _remove_quietly(storage: Storage, uri: str) -> None:
    with contextlib.suppress(OSError):  # never written, or already gone
        storage.delete(uri)
