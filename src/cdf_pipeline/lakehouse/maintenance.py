"""Table maintenance: compaction per tenant, snapshot expiry and orphan-file removal per table.

Why each step exists:

- compaction: silver (and the quarantine and ops tables, for the quarantine's resolutions) is
  merge-on-read, so every change batch adds small data files and position-delete files that every
  reader must open and apply until they are folded into new data files. Compaction is scoped to
  one tenant's partitions (``where => "tenant_id = 't'"``) so that it runs under that tenant's
  lease and never rewrites files a run of the tenant is writing deletes against (two such commits
  conflict and one fails validation).
- snapshot expiry: each run commits several snapshots, and every snapshot keeps the files it
  references alive, replaced ones included (compaction frees no space until the snapshots that
  still see the old files expire).
- orphan-file removal: files no snapshot references (a write that died before its commit) stay
  forever otherwise. Only files older than a safe window are removed: a file a commit in flight
  has written is unreferenced until that commit lands, and removing it corrupts the table
  (Iceberg issue 4194). Iceberg's own procedure refuses less than a day; so does this module.

Expiry and orphan removal are table-wide: they act on snapshots and unreferenced files, never on
the live files of a tenant's partition, so they do not need the tenants' leases (a run reads the
snapshot that was current when it started, which is never expired, and the only commits that
remove a tenant's live files are that tenant's own, which its lease keeps out).

Every figure comes from table metadata (``files``, ``snapshots``, ``partitions``): nothing here
reads table data. Timestamps are computed by the caller's clock and passed as literals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from cdf_pipeline.config import MaintenanceSettings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.jars import ICEBERG_VERSION
from cdf_pipeline.tenants import validate_tenant_id

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdf_pipeline.lakehouse.tables import TableNames

logger = logging.getLogger(__name__)

#: Snapshots younger than this are kept (time travel to the runs of the last week).
DEFAULT_RETAIN_DAYS = MaintenanceSettings().retain_days
#: ... and at least this many of the latest, however old.
DEFAULT_RETAIN_LAST = MaintenanceSettings().retain_last
#: Unreferenced files younger than this are left alone: they may belong to a commit in flight.
DEFAULT_ORPHAN_DAYS = MaintenanceSettings().orphan_days
#: Below this the window is unsafe (a slow commit's files could go); refused, as Iceberg does.
MIN_ORPHAN_DAYS = 1.0

#: ``rewrite_data_files`` options (bin-pack, the default strategy):
#: - ``min-input-files`` 2: a partition holding two or more files (each change batch adds one) is
#:   rewritten into one, however small they are; Iceberg's default (5) leaves small tenants alone;
#: - ``delete-file-threshold`` 1: every data file with a delete file is rewritten with its deletes
#:   applied, which is what folds merge-on-read deletes away;
#: - ``remove-dangling-deletes``: the delete files whose data files were all rewritten are
#:   dropped in the same call (otherwise they stay in the table's metadata, and are counted and
#:   planned by every reader, until a later rewrite);
#: - ``use-starting-sequence-number`` false: the new data files get the rewrite's own sequence
#:   number. Iceberg's default gives them the one of the snapshot the rewrite started from, so
#:   that deletes committed *during* the rewrite still apply to them; but then a delete file of
#:   that same snapshot (the tenant's last MERGE, when it was the table's last commit) is not
#:   older than every data file of its partition, which is how a dangling delete is recognised,
#:   and it stays. Nothing commits deletes to the tenant's partitions during the rewrite (the
#:   lease), and a concurrent one would fail the rewrite's validation rather than be lost.
REWRITE_DATA_OPTIONS = {
    "min-input-files": "2",
    "delete-file-threshold": "1",
    "remove-dangling-deletes": "true",
    "use-starting-sequence-number": "false",
}

#: Iceberg before 1.11 fails ``rewrite_position_delete_files`` on tables with list or map
#: columns ("Invalid partition field parent: list<string>", apache/iceberg#14619, fixed in 1.11
#: by #15632 and #15743). Silver, quarantine and ops.runs have such columns, so the step is
#: skipped there (the data rewrite folds their delete files anyway) until the pin moves.
POSITION_DELETES_NESTED_BUG = tuple(int(p) for p in ICEBERG_VERSION.split(".")[:2]) < (1, 11)


@dataclass(frozen=True)
class FileStats:
    """The live files of a table (or of one tenant's partitions) in its current snapshot."""

    data_files: int = 0
    delete_files: int = 0
    bytes: int = 0
    #: The most data files in one partition: two or more means there is something to bin-pack.
    most_in_partition: int = 0

    def __add__(self, other: FileStats) -> FileStats:
        return FileStats(
            self.data_files + other.data_files,
            self.delete_files + other.delete_files,
            self.bytes + other.bytes,
            max(self.most_in_partition, other.most_in_partition),
        )

    @property
    def needs_compaction(self) -> bool:
        """Whether ``rewrite_data_files`` with :data:`REWRITE_DATA_OPTIONS` has work here."""
        return self.delete_files > 0 or self.most_in_partition >= 2


@dataclass(frozen=True)
class Compaction:
    """What compacting one table for one tenant did (the procedures' own counts)."""

    data_files_rewritten: int = 0
    data_files_added: int = 0
    delete_files_removed: int = 0
    delete_files_rewritten: int = 0
    #: Why a step was not run, when it had work (the Iceberg 1.10 guard above).
    note: str = ""


def maintained_tables(names: TableNames) -> list[str]:
    """Every table maintenance looks after: each contract's silver and quarantine table, then
    the ops tables. All are partitioned by ``tenant_id`` first, so each can be compacted per
    tenant."""
    tables = [t(e) for e in ENTITIES.values() for t in (names.silver, names.quarantine)]
    return [*tables, names.runs, names.ingested_files, names.landed_files]


def short_name(table: str) -> str:
    """``namespace.table`` of a fully qualified name: what the procedures take as ``table``
    (the catalog is the one the ``CALL`` names)."""
    return table.split(".", 1)[1]


def catalog_of(table: str) -> str:
    return table.split(".", 1)[0]


def timestamp_literal(at: datetime) -> str:
    """A Spark SQL ``TIMESTAMP`` literal for ``at``, in UTC with its offset spelled out, so the
    session's time zone cannot shift it."""
    if at.tzinfo is None:
        raise ValueError("timestamps passed to maintenance must be timezone-aware")
    return f"TIMESTAMP '{at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}+00:00'"


def file_stats(
    spark: SparkSession, tables: list[str], tenant: str | None = None
) -> dict[tuple[str, str], FileStats]:
    """``(table, tenant) -> FileStats`` for every tenant (or just ``tenant``) of ``tables``, from
    their ``files`` metadata tables in one query. Tables without a snapshot have no entry."""
    where = f"WHERE p.tenant_id = '{validate_tenant_id(tenant)}'" if tenant else ""
    parts = [
        f"""SELECT '{t}' AS tbl, p.tenant_id AS tenant_id, sum(d) AS data_files,
              sum(x) AS delete_files, sum(b) AS bytes, max(d) AS most
            FROM (SELECT partition AS p, sum(IF(content = 0, 1, 0)) AS d,
                    sum(IF(content = 0, 0, 1)) AS x, sum(file_size_in_bytes) AS b
                  FROM {t}.files GROUP BY partition)
            {where} GROUP BY p.tenant_id"""
        for t in tables
    ]
    rows = spark.sql(" UNION ALL ".join(parts)).collect()  # one row per (table, tenant)
    return {
        (r["tbl"], r["tenant_id"]): FileStats(
            int(r["data_files"]), int(r["delete_files"]), int(r["bytes"]), int(r["most"])
        )
        for r in rows
    }


def tenants_of(spark: SparkSession, tables: list[str]) -> list[str]:
    """Every tenant with rows in any of ``tables``, sorted (from the partitions metadata)."""
    union = " UNION ".join(f"SELECT partition.tenant_id AS t FROM {t}.partitions" for t in tables)
    return sorted(r["t"] for r in spark.sql(union).collect() if r["t"] is not None)


def compact(
    spark: SparkSession, table: str, tenant: str, before: FileStats | None = None
) -> Compaction:
    """Fold one tenant's delete files and small files of ``table`` into new data files.

    ``before``: the tenant's file stats, when known; nothing is called when they show no work.
    ``rewrite_position_delete_files`` runs only for delete files the data rewrite left behind
    (none, normally: every data file with deletes is rewritten), where Iceberg 1.10 can run it.
    """
    tenant = validate_tenant_id(tenant)
    if before is not None and not before.needs_compaction:
        return Compaction()
    catalog, name = catalog_of(table), short_name(table)
    where = f"tenant_id = '{tenant}'"
    options = ", ".join(f"'{k}', '{v}'" for k, v in REWRITE_DATA_OPTIONS.items())
    row = spark.sql(
        f"CALL {catalog}.system.rewrite_data_files(table => '{name}', "
        f'where => "{where}", options => map({options}))'
    ).first()
    assert row is not None
    done = Compaction(
        data_files_rewritten=int(row["rewritten_data_files_count"]),
        data_files_added=int(row["added_data_files_count"]),
        delete_files_removed=int(row["removed_delete_files_count"]),
    )
    if before is not None:
        left = before.delete_files - done.delete_files_removed
    else:
        left = file_stats(spark, [table], tenant).get((table, tenant), FileStats()).delete_files
    if left == 0:
        return done
    if POSITION_DELETES_NESTED_BUG and has_nested_columns(spark, table):
        note = (
            f"{left} delete file(s) left: rewrite_position_delete_files fails on tables with "
            "list or map columns in Iceberg 1.10 (apache/iceberg#14619)"
        )
        logger.warning("%s, tenant %s: %s", table, tenant, note)
        return Compaction(
            done.data_files_rewritten, done.data_files_added, done.delete_files_removed, note=note
        )
    return Compaction(
        done.data_files_rewritten,
        done.data_files_added,
        done.delete_files_removed,
        rewrite_position_deletes(spark, table, tenant),
    )


def rewrite_position_deletes(spark: SparkSession, table: str, tenant: str) -> int:
    """Compact one tenant's position-delete files of ``table`` (and drop dangling ones); how
    many delete files were rewritten."""
    where = f"tenant_id = '{validate_tenant_id(tenant)}'"
    row = spark.sql(
        f"CALL {catalog_of(table)}.system.rewrite_position_delete_files("
        f"table => '{short_name(table)}', where => \"{where}\", "
        "options => map('rewrite-all', 'true'))"
    ).first()
    return int(row["rewritten_delete_files_count"]) if row is not None else 0


def has_nested_columns(spark: SparkSession, table: str) -> bool:
    """Whether any column of ``table`` is (or holds) a list or a map."""
    from pyspark.sql import types as T

    def nested(dt: T.DataType) -> bool:
        if isinstance(dt, T.ArrayType | T.MapType):
            return True
        return isinstance(dt, T.StructType) and any(nested(f.dataType) for f in dt.fields)

    return any(nested(f.dataType) for f in spark.table(table).schema.fields)


def snapshots(spark: SparkSession, table: str) -> dict[int, datetime]:
    """Id -> commit time of ``table``'s snapshots (metadata: a few per run, not data-sized)."""
    rows = spark.sql(f"SELECT snapshot_id, committed_at FROM {table}.snapshots").collect()
    return {int(r[0]): _utc(r[1]) for r in rows}


def _utc(at: datetime) -> datetime:
    """Spark returns naive datetimes in the session's time zone, UTC for this package's
    sessions (``spark.sql.session.timeZone``)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def expirable(snaps: dict[int, datetime], cutoff: datetime, retain_last: int) -> int:
    """How many of ``snaps`` are older than ``cutoff`` and not among the ``retain_last`` latest:
    an upper bound of what ``expire_snapshots`` removes (it also keeps tagged and branch heads)."""
    latest = sorted(snaps.values(), reverse=True)[:retain_last]
    keep_from = min(latest) if latest else cutoff
    return sum(1 for at in snaps.values() if at < cutoff and at < keep_from)


def expire_snapshots(
    spark: SparkSession, table: str, *, now: datetime, retain_days: float, retain_last: int
) -> int:
    """Expire the snapshots of ``table`` older than ``retain_days`` before ``now``, keeping at
    least the ``retain_last`` latest, and delete the files only they referenced. How many
    snapshots were expired.

    Raises:
        ConfigError: a negative retention or fewer than one snapshot to keep.
    """
    check_retention(retain_days, retain_last)
    cutoff = now - timedelta(days=retain_days)
    before = snapshots(spark, table)
    if expirable(before, cutoff, retain_last) == 0:
        return 0  # nothing old enough: no call, no commit
    spark.sql(
        f"CALL {catalog_of(table)}.system.expire_snapshots(table => '{short_name(table)}', "
        f"older_than => {timestamp_literal(cutoff)}, retain_last => {int(retain_last)})"
    ).collect()
    return len(before.keys() - snapshots(spark, table).keys())


def remove_orphan_files(
    spark: SparkSession, table: str, *, now: datetime, older_than_days: float
) -> int:
    """Delete the files under ``table``'s location that no snapshot references and that are
    older than ``older_than_days`` before ``now``; how many were deleted.

    Raises:
        ConfigError: a window under :data:`MIN_ORPHAN_DAYS` (see the module docstring).
    """
    check_orphan_window(older_than_days)
    older_than = timestamp_literal(now - timedelta(days=older_than_days))
    removed = spark.sql(
        f"CALL {catalog_of(table)}.system.remove_orphan_files(table => '{short_name(table)}', "
        f"older_than => {older_than})"
    ).collect()  # one row per file removed: metadata-sized
    for r in removed[:20]:
        logger.info("%s: removed orphan file %s", table, r[0])
    return len(removed)


def check_orphan_window(days: float) -> None:
    """Refuse an orphan window under a day: files of commits in flight would be deleted.

    Raises:
        ConfigError: ``days`` is under :data:`MIN_ORPHAN_DAYS`.
    """
    if not days >= MIN_ORPHAN_DAYS:  # also refuses NaN
        raise ConfigError(
            f"orphan files must be older than at least {MIN_ORPHAN_DAYS:g} day to be removed, "
            f"got {days:g}: a shorter window deletes the files of commits still in flight and "
            "corrupts the table (Iceberg issue 4194); the default is "
            f"{DEFAULT_ORPHAN_DAYS:g} days"
        )


def check_retention(retain_days: float, retain_last: int) -> None:
    """Refuse a negative retention or keeping no snapshot.

    Raises:
        ConfigError: ``retain_days`` < 0 or ``retain_last`` < 1.
    """
    if not retain_days >= 0:
        raise ConfigError(f"--retain-days must be 0 or more, got {retain_days:g}")
    if retain_last < 1:
        raise ConfigError(f"--retain-last must be at least 1, got {retain_last}")
