"""The landing manifest (``ops.landed_files``): what a landing step needs of it.

Two engines keep it: Spark (:mod:`.spark_manifest`, the jobs) and pyiceberg
(:mod:`.iceberg_manifest`, the Lambda handler, which has no JVM). Nothing here imports either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cdf_pipeline.lakehouse.landed import LandedObject


@dataclass
class Known:
    """What the manifest already says of a tenant's landing objects."""

    #: (source, version) of every object already decided (landed, duplicate, unmatched): such
    #: an object is not read again until it changes.
    seen: set[tuple[str, str]] = field(default_factory=set)
    #: sha256 -> the raw file holding those bytes, for every landed object.
    hashes: dict[str, str] = field(default_factory=dict)


class Manifest(Protocol):
    """Where landing decisions are kept, by whichever engine appends to the table."""

    def known(self, tenant: str) -> Known: ...

    def last_cursor(self, tenant: str, source: str) -> str | None: ...

    def record(self, objects: Iterable[LandedObject]) -> None: ...
