"""Move a lakehouse made with Iceberg's hadoop catalog into the embedded default's JDBC catalog.

Up to 0.1 the embedded default catalogued tables with the hadoop catalog: each table's current
metadata file is named by ``metadata/version-hint.text`` beside it. That catalog commits by
renaming files, which Iceberg documents as unsafe for several writers, so the default is now
Iceberg's JDBC catalog in ``{root}/catalog.db`` (SQLite). The table files do not move: both
catalogs place a table at ``warehouse/<namespace>/<table>``, so migrating registers each table's
current metadata file in the new catalog (Iceberg's ``register_table``) and copies nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.sqlite_catalog import catalog_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HadoopTable:
    """A table the hadoop catalog left under the warehouse, and its current metadata file."""

    namespace: str
    name: str
    metadata_file: Path

    @property
    def identifier(self) -> str:
        return f"{self.namespace}.{self.name}"


def hadoop_tables(warehouse: Path) -> list[HadoopTable]:
    """Every ``<namespace>/<table>`` under ``warehouse`` that has a ``version-hint.text``."""
    found = []
    for hint in sorted(warehouse.glob("*/*/metadata/version-hint.text")):
        version = hint.read_text().strip()
        metadata = hint.parent / f"v{version}.metadata.json"
        if version.isdigit() and metadata.is_file():
            table_dir = hint.parent.parent
            found.append(HadoopTable(table_dir.parent.name, table_dir.name, metadata))
        else:
            logger.warning("skipping %s: its version hint names no metadata file", hint.parent)
    return found


def unmigrated(settings: Settings) -> list[HadoopTable]:
    """Hadoop-catalog tables of this lakehouse that its SQLite catalog does not know yet."""
    database = settings.sqlite_catalog_path
    warehouse = Path(settings.warehouse_uri)
    if database is None or not warehouse.is_dir():
        return []
    known = catalog_tables(database).get(settings.catalog.name, set())
    return [t for t in hadoop_tables(warehouse) if t.identifier not in known]


def require_migrated(settings: Settings) -> None:
    """A lakehouse made with the hadoop catalog is migrated before a job writes to it.

    Raises:
        ConfigError: naming the command that migrates it.
    """
    left = unmigrated(settings)
    if left:
        raise ConfigError(
            f"the lakehouse at {settings.root} was made with the hadoop catalog (cdf-pipeline "
            f"0.1; {len(left)} table(s) such as {left[0].identifier}) and the embedded default is "
            f"now a SQLite catalog: run 'cdf migrate-catalog --root {settings.root}' once "
            "(it registers the tables in place, copying nothing)"
        )


def migrate(spark: SparkSession, settings: Settings) -> list[HadoopTable]:
    """Register every unmigrated hadoop table in the SQLite catalog; returns what it registered.

    Run it while no job writes to the lakehouse: a hadoop commit made after it would not be seen.
    """
    if settings.sqlite_catalog_path is None:
        raise ConfigError(
            f"the {settings.profile} profile's catalog is {settings.catalog.type}, not the "
            "embedded SQLite catalog; migrate-catalog moves a local lakehouse only"
        )
    tables = unmigrated(settings)
    catalog = settings.catalog.name
    for ns in sorted({t.namespace for t in tables}):
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.{ns}")
    for t in tables:
        spark.sql(
            f"CALL {catalog}.system.register_table(table => '{t.identifier}', "
            f"metadata_file => '{_quoted(t.metadata_file.resolve())}')"
        )
        logger.info("registered %s (%s)", t.identifier, t.metadata_file.name)
    return tables


def _quoted(path: Path) -> str:
    """``path`` inside a single-quoted Spark SQL string."""
    return str(path).replace("\\", "\\\\").replace("'", "\\'")
