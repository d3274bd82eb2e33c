"""Reading and writing the landing manifest (``ops.landed_files``) through Spark.

It holds a row per landing object per change (a few per file), so reading a tenant's rows to the
driver is fine; the data never passes through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.landing.record import DUPLICATE, LANDED, UNMATCHED, LandedObject
from cdf_pipeline.tenants import validate_tenant_id


@dataclass
class Known:
    """What the manifest already says of a tenant's landing objects."""

    #: (source, version) of every object already decided (landed, duplicate, unmatched): such
    #: an object is not read again until it changes.
    seen: set[tuple[str, str]] = field(default_factory=set)
    #: sha256 -> the raw file holding those bytes, for every landed object.
    hashes: dict[str, str] = field(default_factory=dict)


def known(spark: SparkSession, names: TableNames, tenant: str) -> Known:
    rows = (
        spark.table(names.landed_files)
        .where(
            (F.col("tenant_id") == validate_tenant_id(tenant))
            & F.col("outcome").isin(LANDED, DUPLICATE, UNMATCHED)
        )
        .select("source", "version", "outcome", "sha256", "raw_file")
        .collect()
    )
    out = Known()
    for r in rows:
        out.seen.add((r["source"], r["version"]))
        if r["outcome"] == LANDED and r["sha256"]:
            out.hashes[r["sha256"]] = r["raw_file"]
    return out


def last_cursor(spark: SparkSession, names: TableNames, tenant: str, source: str) -> str | None:
    """The cursor of the latest landed pull of ``source`` (None before the first)."""
    row = (
        spark.table(names.landed_files)
        .where(
            (F.col("tenant_id") == validate_tenant_id(tenant))
            & (F.col("source") == source)
            & F.col("cursor").isNotNull()
            & F.col("outcome").isin(LANDED, DUPLICATE)
        )
        .orderBy(F.col("landed_at").desc())
        .select("cursor")
        .first()
    )
    return None if row is None else str(row[0])


def record(spark: SparkSession, names: TableNames, objects: Iterable[LandedObject]) -> None:
    """Append manifest rows (one commit)."""
    rows = [o.row() for o in objects]
    if rows:
        schema = spark.table(names.landed_files).schema
        spark.createDataFrame(rows, schema=schema).writeTo(names.landed_files).append()
