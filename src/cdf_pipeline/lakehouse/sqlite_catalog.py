"""The embedded default's catalog file: Iceberg's JDBC catalog tables in SQLite, made before Spark.

Iceberg's ``JdbcCatalog`` checks for its tables at start-up with JDBC metadata queries whose
result sets it never closes. On SQLite an open statement keeps its connection's read snapshot,
so that pooled connection later fails every commit with ``SQLITE_BUSY_SNAPSHOT`` once any other
connection has written (measured: the second run on an existing lakehouse failed so). So the
tables are created here, by Python's ``sqlite3``, with Iceberg's own DDL (schema ``V0``, which
pyiceberg's SQL catalog also reads and writes), and Spark's catalog is told not to look for them
(``jdbc.init-catalog-tables=false``). Its one remaining check (for the ``V1`` column
``iceberg_type``) finds nothing on a ``V0`` table, and a query that found nothing leaves no
statement open.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from contextlib import closing
from pathlib import Path

#: Iceberg 1.10's JdbcUtil DDL, schema V0 (no views).
_TABLES = (
    "CREATE TABLE IF NOT EXISTS iceberg_tables(catalog_name VARCHAR(255) NOT NULL,"
    "table_namespace VARCHAR(255) NOT NULL,table_name VARCHAR(255) NOT NULL,"
    "metadata_location VARCHAR(1000),previous_metadata_location VARCHAR(1000),"
    "PRIMARY KEY (catalog_name, table_namespace, table_name))",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties(catalog_name VARCHAR(255) NOT NULL,"
    "namespace VARCHAR(255) NOT NULL,property_key VARCHAR(255),property_value VARCHAR(1000),"
    "PRIMARY KEY (catalog_name, namespace, property_key))",
)
#: Catalog properties that go with a file made here.
CATALOG_PROPERTIES = {"jdbc.init-catalog-tables": "false", "jdbc.schema-version": "V0"}


def ensure_catalog_file(path: Path) -> None:
    """Create the catalog's SQLite file and tables if missing (write-ahead logging on: it is a
    property of the file, and lets readers go on while a commit writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for ddl in _TABLES:
            conn.execute(ddl)


def catalog_tables(path: Path) -> dict[str, set[str]]:
    """``namespace.table`` of every table in the file, by catalog name (empty when the file or
    its tables do not exist yet). Read-only: it creates nothing."""
    if not path.is_file():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)) as conn:
        try:
            rows = conn.execute(
                "SELECT catalog_name, table_namespace, table_name FROM iceberg_tables"
            ).fetchall()
        except sqlite3.OperationalError:  # no iceberg_tables yet
            return {}
    tables: dict[str, set[str]] = defaultdict(set)
    for catalog, namespace, name in rows:
        tables[catalog].add(f"{namespace}.{name}")
    return dict(tables)
