"""The Iceberg tables of the lakehouse, created idempotently from the contracts.

Silver tables are merge-on-read: a change batch writes its new rows plus small delete files
instead of rewriting every data file it touches. Measured on these machines, a 10k-row change into
1M rows costs 4.1 s merge-on-read against 15.9 s copy-on-write; readers pay a little to apply
deletes until compaction (``rewrite_data_files``) folds them in. See docs/architecture.md.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdf_pipeline.contracts import ENTITIES, Entity
from cdf_pipeline.contracts.schemas import iceberg_columns_sql
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.commits import is_creation_race
from cdf_pipeline.lakehouse.landed import columns_sql as landed_columns_sql
from cdf_pipeline.lakehouse.lost import lost_table_error, missing_metadata_file
from cdf_pipeline.run_record import runs_columns_sql
from cdf_pipeline.tenants import validate_tenant_id

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdf_pipeline.config import Settings

REASONS_SQL = "array<struct<rule:string,column:string,value:string>>"

#: Parquet-java dictionary-encodes a column until the dictionary reaches this size (or its first
#: page compresses no better that way), and only then falls back to plain encoding. At the 2 MB
#: default, many-valued columns (keys, e-mails, names, the row as sent) put a large share of a
#: file's values through the dictionary before being written plain: a 1M-row silver append
#: spent about a third of its write CPU there (docs/benchmarks.md). 64 KB still holds the
#: dictionary of every code list and of most repeated values.
_DICTIONARY_MAX_BYTES = {"write.parquet.dict-size-bytes": str(64 * 1024)}

_SILVER_PROPERTIES = {
    "format-version": "2",
    "write.merge.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.delete.mode": "merge-on-read",
    "write.parquet.compression-codec": "zstd",
    **_DICTIONARY_MAX_BYTES,
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    # Parallel tenant jobs commit to the same table: retry optimistic-concurrency conflicts.
    "commit.retry.num-retries": "10",
    "commit.retry.min-wait-ms": "200",
}
_SMALL_PROPERTIES = {
    "format-version": "2",
    "write.merge.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "commit.retry.num-retries": "10",
}

#: ops.runs: a run replaces its own record by MERGE (its PUBLISHING row by its final one) while
#: other runs of the tenant append theirs without its lease (BUSY). Each MERGE touches only its
#: own run's row, so a row appended meanwhile is no conflict: snapshot isolation. Iceberg's
#: default (serializable) fails the MERGE on any file added to the tenant's partition since.
MERGE_ISOLATION = "write.merge.isolation-level"
_RUNS_PROPERTIES = {**_SMALL_PROPERTIES, MERGE_ISOLATION: "snapshot"}
_QUARANTINE_PROPERTIES = {**_SMALL_PROPERTIES, **_DICTIONARY_MAX_BYTES}

QUARANTINE_EXTRA = f"""`_original` string,
  `_violations` {REASONS_SQL},
  `_source_file` string,
  `_run_id` string,
  `_rule_set_version` string,
  `_quarantined_at` timestamp,
  `_quarantine_key` string,
  `_status` string,
  `_resolved_run_id` string,
  `_resolved_at` timestamp"""

FILES_COLUMNS = """`tenant_id` string,
  `entity` string,
  `file` string,
  `sha256` string,
  `rows` bigint,
  `run_id` string,
  `ingested_at` timestamp,
  `status` string,
  `error` string,
  `note` string,
  `size` bigint,
  `mtime_ns` bigint"""

#: Manifest columns added after the first release, with their types: an existing
#: ``ops.ingested_files`` gets them (:func:`ensure_tables`), its old rows read null.
FILES_COLUMNS_ADDED = {"size": "bigint", "mtime_ns": "bigint"}


NAMESPACES = ("silver", "quarantine", "ops")


@dataclass(frozen=True)
class TableNames:
    """Fully qualified names of every table, for one catalog.

    ``prefix`` goes before each namespace (``cdf_prod_`` gives ``cdf_prod_silver.suppliers``), so
    two deployments can share one catalog; a Glue database is one namespace.
    """

    catalog: str
    prefix: str = ""

    @classmethod
    def of(cls, settings: Settings) -> TableNames:
        return cls(settings.catalog.name, settings.catalog.namespace_prefix)

    def namespace(self, ns: str) -> str:
        return f"{self.catalog}.{self.prefix}{ns}"

    def silver(self, entity: Entity | str) -> str:
        return f"{self.namespace('silver')}.{_name(entity)}"

    def quarantine(self, entity: Entity | str) -> str:
        return f"{self.namespace('quarantine')}.{_name(entity)}"

    @property
    def runs(self) -> str:
        return f"{self.namespace('ops')}.runs"

    @property
    def ingested_files(self) -> str:
        return f"{self.namespace('ops')}.ingested_files"

    @property
    def landed_files(self) -> str:
        return f"{self.namespace('ops')}.landed_files"


def _name(entity: Entity | str) -> str:
    return entity if isinstance(entity, str) else entity.name


def _props(props: dict[str, str]) -> str:
    return ", ".join(f"'{k}'='{v}'" for k, v in props.items())


def table_ddl(names: TableNames) -> list[str]:
    """Every ``CREATE ... IF NOT EXISTS`` statement, in creation order."""
    stmts = [f"CREATE NAMESPACE IF NOT EXISTS {names.namespace(ns)}" for ns in NAMESPACES]
    for e in ENTITIES.values():
        stmts.append(
            f"CREATE TABLE IF NOT EXISTS {names.silver(e)} (\n  {iceberg_columns_sql(e)}\n)\n"
            "USING iceberg\n"
            f"PARTITIONED BY (tenant_id, bucket({e.key_buckets}, {e.primary_key}))\n"
            f"TBLPROPERTIES ({_props(_SILVER_PROPERTIES)})"
        )
        stmts.append(
            f"CREATE TABLE IF NOT EXISTS {names.quarantine(e)} (\n"
            f"  {iceberg_columns_sql(e, with_lineage=False)},\n  {QUARANTINE_EXTRA}\n)\n"
            "USING iceberg\n"
            f"PARTITIONED BY (tenant_id) TBLPROPERTIES ({_props(_QUARANTINE_PROPERTIES)})"
        )
    stmts.append(
        f"CREATE TABLE IF NOT EXISTS {names.runs} (\n  {runs_columns_sql()}\n) USING iceberg\n"
        f"PARTITIONED BY (tenant_id) TBLPROPERTIES ({_props(_RUNS_PROPERTIES)})"
    )
    stmts.append(
        f"CREATE TABLE IF NOT EXISTS {names.ingested_files} (\n  {FILES_COLUMNS}\n) USING iceberg\n"
        f"PARTITIONED BY (tenant_id) TBLPROPERTIES ({_props(_SMALL_PROPERTIES)})"
    )
    stmts.append(
        f"CREATE TABLE IF NOT EXISTS {names.landed_files} (\n  {landed_columns_sql()}\n) "
        f"USING iceberg\nPARTITIONED BY (tenant_id) TBLPROPERTIES ({_props(_SMALL_PROPERTIES)})"
    )
    return stmts


#: The DDL statements already run, per session (weakly held: a stopped session's entry goes with
#: it) and catalog. ``ensure_tables`` is called by every run, and a driver that runs many tenants
#: (threads of one session) would otherwise send the catalog ~17 ``CREATE ... IF NOT EXISTS``
#: per run, each a metadata load (an HTTP call or a metadata file read).
_DONE: weakref.WeakKeyDictionary[SparkSession, dict[TableNames, set[str]]] = (
    weakref.WeakKeyDictionary()
)
_DONE_LOCK = threading.Lock()
#: Times a DDL statement runs when it keeps losing a race to create the same name.
DDL_ATTEMPTS = 3


def ensure_tables(spark: SparkSession, names: TableNames) -> None:
    """Create every namespace and table that does not exist yet, once per session and catalog.

    The first call in a session runs every ``CREATE ... IF NOT EXISTS``; later calls for the same
    session and ``names`` run only statements not run yet (an entity registered since), so
    concurrent tenant runs in threads of one session pay for the DDL once. A table dropped
    behind a running session's back is created again by the next session, not by this one.

    Raises:
        LostTableError: a table's current metadata file is missing (names the table, the file
            and ``cdf maintain --repair``): the catalog answered, so it is not a setting.
        ConfigError: the catalog refused (a wrong password, a missing permission): the first
            contact with the catalog is where a bad login shows, and it is not bad data.
    """
    with _DONE_LOCK:  # one thread runs the DDL; the others wait for it, then find it done
        done = _DONE.setdefault(spark, {}).setdefault(names, set())
        for stmt in table_ddl(names):
            if stmt in done:
                continue
            _run_ddl(spark, names, stmt)
            done.add(stmt)
        for stmt in _added_columns_ddl(spark, names, done) + _runs_isolation_ddl(
            spark, names, done
        ):
            _run_ddl(spark, names, stmt)


def _runs_isolation_ddl(spark: SparkSession, names: TableNames, done: set[str]) -> list[str]:
    """``ALTER TABLE ... SET TBLPROPERTIES`` for an ``ops.runs`` made before its MERGEs took
    snapshot isolation (once per session: the check reads the table's properties)."""
    marker = f"-- isolation of {names.runs}"
    if marker in done:
        return []
    done.add(marker)
    props = {r[0]: r[1] for r in spark.sql(f"SHOW TBLPROPERTIES {names.runs}").collect()}
    if props.get(MERGE_ISOLATION) == _RUNS_PROPERTIES[MERGE_ISOLATION]:
        return []
    return [f"ALTER TABLE {names.runs} SET TBLPROPERTIES ({_props({MERGE_ISOLATION: 'snapshot'})})"]


def _added_columns_ddl(spark: SparkSession, names: TableNames, done: set[str]) -> list[str]:
    """``ALTER TABLE ... ADD COLUMNS`` for a manifest made before its newer columns (once per
    session: the check reads the table's schema, a metadata load)."""
    marker = f"-- columns of {names.ingested_files}"
    if marker in done:
        return []
    done.add(marker)
    have = set(spark.table(names.ingested_files).columns)
    missing = [f"`{c}` {t}" for c, t in FILES_COLUMNS_ADDED.items() if c not in have]
    if not missing:
        return []
    return [f"ALTER TABLE {names.ingested_files} ADD COLUMNS ({', '.join(missing)})"]


def _run_ddl(spark: SparkSession, names: TableNames, stmt: str) -> None:
    """One ``CREATE ... IF NOT EXISTS``, run again if another process created the same name
    at the same moment (lakehouse/commits.py: the JDBC catalog reports that as a key violation)."""
    for attempt in range(1, DDL_ATTEMPTS + 1):
        try:
            spark.sql(stmt)
            return
        except Exception as exc:  # py4j and pyspark wrappers of the catalog's Java exception
            cause = java_root_cause(exc)
            if attempt < DDL_ATTEMPTS and is_creation_race(exc, cause):
                continue
            missing = missing_metadata_file(exc)
            if missing is not None:
                raise lost_table_error(_target(stmt), missing) from exc
            raise ConfigError(
                f"catalog {names.catalog!r} refused {stmt.split('(')[0].strip()!r}: "
                f"{cause}; check the catalog settings and credentials"
            ) from exc


_TARGET = re.compile(r"(?:TABLE|NAMESPACE)(?: IF NOT EXISTS)? (\S+)")


def _target(stmt: str) -> str:
    """The table (or namespace) a DDL statement names."""
    found = _TARGET.search(stmt)
    return found.group(1) if found else stmt.split("(")[0].strip()


def java_root_cause(exc: BaseException) -> str:
    """The innermost Java exception's class and message (one line), else the Python message."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_java_exception", None)
    if java is not None:
        try:
            while java.getCause() is not None:
                java = java.getCause()
            text = f"{java.getClass().getSimpleName()}: {java.getMessage()}"
            return text.splitlines()[0]
        except Exception:  # the gateway may be gone; fall back to the Python text
            pass
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def tenant_rows(spark: SparkSession, table: str, tenant: str) -> int:
    """Rows in the tenant's data files, from table metadata (no data read).

    An upper bound: a row replaced by a merge-on-read update counts until compaction. Summed
    here from the ``partitions`` metadata table (a row per partition, at most the key buckets
    for a tenant): one Spark job, where a ``sum`` over ``data_files`` took two (an aggregate's
    exchange is a job of its own under AQE); a run makes about seven of these lookups.
    """
    tenant = validate_tenant_id(tenant)
    rows = spark.sql(
        f"SELECT record_count FROM {table}.partitions WHERE partition.tenant_id = '{tenant}'"
    ).collect()
    return sum(int(r[0]) for r in rows)


def current_snapshot_ids(spark: SparkSession, tables: list[str]) -> dict[str, int]:
    """Current snapshot id of each table that has one, keyed ``namespace.table`` (one query)."""
    union = " UNION ALL ".join(
        f"SELECT '{t.split('.', 1)[1]}' AS t, snapshot_id FROM {t}.refs WHERE name = 'main'"
        for t in tables
    )
    return {r["t"]: int(r["snapshot_id"]) for r in spark.sql(union).collect()}
