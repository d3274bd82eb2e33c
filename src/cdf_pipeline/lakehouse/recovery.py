"""Tables whose current metadata file is gone: named, then re-registered or dropped.

Why this exists: a catalog (Glue, JDBC, REST) holds, per table, only a pointer to the table's
current metadata file. When that file disappears (a bucket emptied, or deleted and created again;
a lifecycle rule; a delete by hand), every load of the table fails, ``CREATE TABLE IF NOT EXISTS``
included, so every run stops before it reads a row, and no setting can fix it. There are two ways
back, both through the Iceberg catalog itself (so they work for every catalog type):

- re-register the table from the newest metadata file that survives, older than the missing one:
  the table as of that commit. Later commits are lost, and the raw files they ingested must be sent
  again to be ingested again;
- when none survives, drop the catalog entry (no file is deleted: a drop without purge never reads
  the missing file), so that the next run creates the table empty and rebuilds it from the raw
  files sent again. Only when asked (``--drop-broken``): it forgets every row the table held.

Re-registering is a drop then a register (catalogs have no "re-point" call); a process killed
between the two leaves the table absent with its surviving metadata file still there, which
Iceberg's ``CALL <catalog>.system.register_table`` brings back. Nothing here takes tenant leases:
no run can read or commit to a table that cannot be loaded. How a lost table is recognised (the
error every command meets) is :mod:`.lost`, which ``tables`` uses too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdf_pipeline.lakehouse.lost import missing_metadata_file
from cdf_pipeline.lakehouse.maintenance import maintained_tables, short_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdf_pipeline.lakehouse.tables import TableNames
    from cdf_pipeline.storage import Storage

logger = logging.getLogger(__name__)

#: What happened to a lost table.
REREGISTERED, DROPPED, LEFT = "reregistered", "dropped", "left"
#: ``00012-<uuid>.metadata.json`` (metastore catalogs) or ``v12.metadata.json`` (hadoop tables).
_VERSION = re.compile(r"^v?(\d+)[-.]")


@dataclass(frozen=True)
class Recovery:
    """One lost table and what was done about it."""

    table: str  # namespace.table
    missing: str  # the metadata file the catalog pointed at
    action: str  # REREGISTERED, DROPPED or LEFT (no survivor, not asked to drop)
    restored_from: str | None = None  # the metadata file it was re-registered from

    @property
    def recovered(self) -> bool:
        return self.action != LEFT

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "missing_metadata_file": self.missing,
            "action": self.action,
            "restored_from": self.restored_from,
            "restored_version": metadata_version(self.restored_from or ""),
        }


def metadata_version(location: str) -> int | None:
    """The version number in a metadata file's name (``00012-<uuid>.metadata.json`` -> 12)."""
    found = _VERSION.match(location.rstrip("/").rsplit("/", 1)[-1])
    return int(found.group(1)) if found else None


def newest_survivor(storage: Storage, missing: str) -> str | None:
    """The newest metadata file beside ``missing`` with a lower version, if any.

    Only older versions qualify: a newer one there was written by a commit the catalog never
    took (it failed or died), so it is not a state the table ever had.
    """
    folder = missing.rsplit("/", 1)[0]
    lost_version = metadata_version(missing)
    candidates = [
        (version, f)
        for f in storage.list_files(folder, (".metadata.json",))
        if (version := metadata_version(f)) is not None
        and (lost_version is None or version < lost_version)
    ]
    return max(candidates)[1] if candidates else None


def _iceberg_catalog(spark: SparkSession, name: str) -> Any:
    """The Iceberg catalog behind the session's Spark catalog ``name`` (on the driver)."""
    return spark._jsparkSession.sessionState().catalogManager().catalog(name).icebergCatalog()


def _identifier(spark: SparkSession, table: str) -> Any:
    jvm = spark._jvm
    assert jvm is not None
    return jvm.org.apache.iceberg.catalog.TableIdentifier.parse(short_name(table))


def _absent(exc: BaseException) -> bool:
    """Whether loading failed because the table (or its namespace) does not exist at all."""
    text = str(exc)
    return "NoSuchTableException" in text or "NoSuchNamespaceException" in text


def find_lost(spark: SparkSession, names: TableNames) -> list[tuple[str, str]]:
    """(table, missing metadata file) of each maintained table the catalog cannot load because
    its current metadata file is gone. Tables that do not exist are not lost (a run creates
    them). Loads table metadata only."""
    catalog = _iceberg_catalog(spark, names.catalog)
    lost = []
    for table in maintained_tables(names):
        try:
            catalog.loadTable(_identifier(spark, table))
        except Exception as exc:  # py4j's wrapper of the catalog's Java exception
            missing = missing_metadata_file(exc)
            if missing is not None:
                lost.append((table, missing))
            elif not _absent(exc):
                raise
    return lost


def recover_lost_tables(
    spark: SparkSession, names: TableNames, storage: Storage, *, drop: bool = False
) -> list[Recovery]:
    """Re-register each lost table from its newest surviving metadata file; with ``drop``,
    drop (without purge) those of which none survives. What was done, per lost table."""
    catalog = _iceberg_catalog(spark, names.catalog)
    done = []
    for table, missing in find_lost(spark, names):
        ident = _identifier(spark, table)
        survivor = newest_survivor(storage, missing)
        if survivor is not None:
            catalog.dropTable(ident, False)
            catalog.registerTable(ident, survivor)
            logger.info("%s: re-registered from %s (%s is missing)", table, survivor, missing)
            done.append(Recovery(short_name(table), missing, REREGISTERED, survivor))
        elif drop:
            catalog.dropTable(ident, False)
            logger.info("%s: dropped (%s is missing, no older one survives)", table, missing)
            done.append(Recovery(short_name(table), missing, DROPPED))
        else:
            done.append(Recovery(short_name(table), missing, LEFT))
    return done
