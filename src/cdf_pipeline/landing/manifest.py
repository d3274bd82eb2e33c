"""The landing manifest (``ops.landed_files``): what a landing step needs of it, and its Spark
implementation.

It holds a row per landing object per change (a few per file), so reading a tenant's rows to the
driver is fine; the data never passes through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
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


class Manifest(Protocol):
    """Where landing decisions are kept: Spark here, any other engine that can append to the
    same Iceberg table elsewhere (a Lambda function has no Spark)."""

    def known(self, tenant: str) -> Known: ...

    def last_cursor(self, tenant: str, source: str) -> str | None: ...

    def record(self, objects: Iterable[LandedObject]) -> None: ...


class SparkManifest:
    """The landing manifest read and written through a SparkSession's catalog."""

    def __init__(self, spark: SparkSession, names: TableNames) -> None:
        self.spark, self.table = spark, names.landed_files

    def _tenant_rows(self, tenant: str) -> DataFrame:
        return self.spark.table(self.table).where(F.col("tenant_id") == validate_tenant_id(tenant))

    def known(self, tenant: str) -> Known:
        rows = (
            self._tenant_rows(tenant)
            .where(F.col("outcome").isin(LANDED, DUPLICATE, UNMATCHED))
            .select("source", "version", "outcome", "sha256", "raw_file")
            .collect()
        )
        out = Known()
        for r in rows:
            out.seen.add((r["source"], r["version"]))
            if r["outcome"] == LANDED and r["sha256"]:
                out.hashes[r["sha256"]] = r["raw_file"]
        return out

    def last_cursor(self, tenant: str, source: str) -> str | None:
        """The cursor of the latest landed pull of ``source`` (None before the first)."""
        row = (
            self._tenant_rows(tenant)
            .where(
                (F.col("source") == source)
                & F.col("cursor").isNotNull()
                & F.col("outcome").isin(LANDED, DUPLICATE)
            )
            .orderBy(F.col("landed_at").desc())
            .select("cursor")
            .first()
        )
        return None if row is None else str(row[0])

    def record(self, objects: Iterable[LandedObject]) -> None:
        """Append manifest rows (one commit)."""
        rows = [o.row() for o in objects]
        if rows:
            schema = self.spark.table(self.table).schema
            self.spark.createDataFrame(rows, schema=schema).writeTo(self.table).append()
