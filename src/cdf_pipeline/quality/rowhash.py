"""The content hash that decides whether two versions of a key differ."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdf_pipeline.contracts.model import Entity, Kind

ROW_HASH = "_row_hash"


def content_columns(entity: Entity) -> list[str]:
    """Contract fields that make up a row's content: all but the timestamps.

    Timestamps are left out on purpose: a re-sent row with a newer ``source_timestamp`` and the same
    values is *unchanged*, not an update.
    """
    return [f.name for f in entity.fields if f.kind is not Kind.TIMESTAMP]


def row_hash(entity: Entity) -> Column:
    """SHA-256 (hex) of the row's content columns, stable across runs and Spark versions."""
    return F.sha2(F.to_json(F.struct(*content_columns(entity))), 256)
