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
no run can read or commit to a table that cannot be loaded.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdf_pipeline.exceptions import LostTableError
from cdf_pipeline.lakehouse.maintenance import maintained_tables, short_name
from cdf_pipeline.storage import canonical

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdf_pipeline.lakehouse.tables import TableNames
    from cdf_pipeline.storage import Storage

logger = logging.getLogger(__name__)

#: What happened to a lost table.
REREGISTERED, DROPPED, LEFT = "reregistered", "dropped", "left"
#: The command that repairs a lost table, as the error of any command that meets one names it.
REPAIR_HINT = (
    "run 'cdf maintain --repair' (with this command's --profile and --root) to re-register it from "
    "its newest surviving metadata file, adding --drop-broken to drop it when none survives (the "
    "next run then rebuilds it from the raw files)"
)

_METADATA_FILE = re.compile(r"(\S+\.metadata\.json)\b")
_NOT_FOUND = re.compile(r"NotFoundException: [^\n]*?(\S+\.metadata\.json)")
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


def lost_table_error(table: str, missing: str) -> LostTableError:
    """The one-line error of a command that met a lost table."""
    return LostTableError(
        f"table {table} is lost: its catalog entry points at metadata file {missing}, which no "
        f"longer exists; {REPAIR_HINT}",
        table=table,
        missing=missing,
    )


def missing_metadata_file(exc: BaseException) -> str | None:
    """The table metadata file that ``exc`` says does not exist, if it says so.

    Iceberg reports a missing file as ``NotFoundException`` naming it (``Location does not
    exist: s3://...`` from S3FileIO, ``Failed to open input stream for file: ...`` from
    HadoopFileIO); ``exc`` is a py4j or pyspark wrapper of it, or of an exception it caused.
    """
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    try:
        while java is not None:
            if java.getClass().getSimpleName() in ("NotFoundException", "FileNotFoundException"):
                found = _METADATA_FILE.search(str(java.getMessage() or ""))
                if found:
                    return _plain(found.group(1))
            java = java.getCause()
    except Exception:  # the gateway may be gone: the text below still names the file
        logger.debug("could not walk the Java causes of %s", type(exc).__name__, exc_info=True)
    found = _NOT_FOUND.search(str(exc))
    return _plain(found.group(1)) if found else None


def _plain(location: str) -> str:
    """A location as the storage layer spells it (``s3a://`` -> ``s3://``; ``file:`` dropped)."""
    if location.startswith("file:"):
        location = "/" + location.removeprefix("file:").lstrip("/")
    return canonical(location)


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
