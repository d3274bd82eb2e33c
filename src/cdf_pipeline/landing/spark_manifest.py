"""The landing manifest read and written through a SparkSession's catalog (the Spark jobs).

It holds a row per landing object per change (a few per file), so reading a tenant's rows to the
driver is fine; the data never passes through here.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.lakehouse.landed import DUPLICATE, LANDED, UNMATCHED, LandedObject
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.landing.manifest import Known
from cdf_pipeline.tenants import validate_tenant_id


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
