"""The landing manifest (``ops.landed_files``) through pyiceberg: a landing step without Spark.

The Lambda handler lands objects where no JVM runs; it keeps the same records in the same
Iceberg table the Spark jobs write, through the same catalog. The table belongs to the Spark
jobs (``ensure_tables`` creates it with its partitioning and properties): this module only reads
and appends, and a missing table is a deployment step not yet done, said so.

Catalogs: ``glue`` (the aws profile), ``rest`` and ``jdbc`` (pyiceberg's SQL catalog on the same
PostgreSQL database or SQLite file; ``pip install 'pyiceberg[sql-postgres]'``). The ``hadoop``
catalog keeps its metadata in a local folder of the machine running Spark, which a Lambda
function cannot share: it is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, get_type_hints
from urllib.parse import urlsplit

import pyarrow as pa

from cdf_pipeline.config import SQLITE_JDBC_PREFIX, Settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.landed import DUPLICATE, LANDED, UNMATCHED, LandedObject
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.landing.manifest import Known
from cdf_pipeline.storage import s3_config
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

#: Concurrent Lambda invocations append to one table: Iceberg's optimistic commits conflict.
COMMIT_ATTEMPTS = 6

_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    # Spark's ``timestamp`` is Iceberg's timestamp with time zone: UTC microseconds.
    datetime: pa.timestamp("us", tz="UTC"),
}


def arrow_schema() -> pa.Schema:
    """The manifest row's Arrow schema, derived from :class:`LandedObject` (its one definition)."""
    hints = get_type_hints(LandedObject)
    fields = []
    for f in dataclasses.fields(LandedObject):
        hint = hints[f.name]
        base = next(t for t in getattr(hint, "__args__", (hint,)) if t is not type(None))
        fields.append(pa.field(f.name, _ARROW_TYPES[base], nullable=True))
    return pa.schema(fields)


def catalog_properties(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """pyiceberg's properties for the profile's catalog (credentials only from the environment
    and the AWS default chain; the result may hold PGPASSWORD: never log it).

    Raises:
        ConfigError: a ``hadoop`` catalog, or a catalog without the URI it needs.
    """
    env = os.environ if environ is None else environ
    cat = settings.catalog
    s3 = s3_config(settings)
    props: dict[str, str] = {"warehouse": settings.warehouse_uri, **cat.properties}
    if s3.endpoint:
        props["s3.endpoint"] = s3.endpoint
    if s3.region:
        props["s3.region"] = s3.region
    props["s3.path-style-access"] = str(s3.path_style).lower()
    if cat.type == "hadoop":
        raise ConfigError(
            f"the {settings.profile} profile's hadoop catalog keeps its tables in a local folder "
            "of the Spark machine, which a Lambda function cannot share: deploy the handler with "
            "a glue (aws), rest (docker) or jdbc catalog"
        )
    if cat.type == "glue":
        props["type"] = "glue"
        if glue := env.get("AWS_ENDPOINT_URL_GLUE") or env.get("AWS_ENDPOINT_URL"):
            props["glue.endpoint"] = glue
        if s3.region:
            props["glue.region"] = s3.region
        return props
    if not cat.uri:
        raise ConfigError(f"catalog.uri is not set for the {cat.type} catalog")
    if cat.type == "rest":
        return {**props, "type": "rest", "uri": cat.uri}
    return {**props, "type": "sql", "uri": _sqlalchemy_url(settings.catalog_uri or cat.uri, env)}


def _sqlalchemy_url(jdbc: str, env: Mapping[str, str]) -> str:
    """``jdbc:postgresql://host:port/db`` as SQLAlchemy's URL, login from PGUSER/PGPASSWORD;
    ``jdbc:sqlite:/path`` (the embedded default's catalog) as ``sqlite:////path``."""
    from urllib.parse import quote

    if jdbc.startswith(SQLITE_JDBC_PREFIX):
        return "sqlite:///" + jdbc.removeprefix(SQLITE_JDBC_PREFIX)
    if not jdbc.startswith("jdbc:postgresql://"):
        raise ConfigError(f"catalog.uri {jdbc!r}: only jdbc:postgresql:// catalogs are supported")
    parts = urlsplit(jdbc.removeprefix("jdbc:"))
    user, password = env.get("PGUSER", ""), env.get("PGPASSWORD", "")
    login = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"postgresql+psycopg2://{login}{'@' if login else ''}{parts.netloc}{parts.path}"


def load_catalog(settings: Settings) -> Any:
    """The profile's Iceberg catalog through pyiceberg (named like Spark's, ``catalog.name``).

    Raises:
        ConfigError: as :func:`catalog_properties`, or a driver that is not installed.
    """
    from pyiceberg.catalog import load_catalog as pyiceberg_catalog

    props = catalog_properties(settings)
    try:
        return pyiceberg_catalog(settings.catalog.name, **props)
    except ImportError as exc:
        raise ConfigError(
            f"the {props['type']} catalog needs an extra package ({exc.name}): "
            "pip install 'pyiceberg[glue,sql-postgres]'"
        ) from None


def _expressions() -> Any:
    """pyiceberg's expression classes (pydantic models the pydantic mypy plugin misreads)."""
    from pyiceberg import expressions

    return expressions


class IcebergManifest:
    """The landing manifest read and appended through a pyiceberg catalog."""

    def __init__(self, catalog: Any, names: TableNames) -> None:
        from pyiceberg.exceptions import NoSuchTableError

        self.identifier = f"{names.prefix}ops.landed_files"
        try:
            self.table = catalog.load_table(self.identifier)
        except NoSuchTableError:
            raise ConfigError(
                f"the landing manifest {self.identifier} does not exist in catalog "
                f"{names.catalog!r}: run 'cdf land' or 'cdf run' once with this profile (the "
                "Spark jobs create the tables), then invoke the handler again"
            ) from None

    def _rows(self, where: Any, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        return list(
            self.table.scan(row_filter=where, selected_fields=columns).to_arrow().to_pylist()
        )

    def known(self, tenant: str) -> Known:
        ex = _expressions()
        where = ex.And(
            ex.EqualTo("tenant_id", validate_tenant_id(tenant)),
            ex.In("outcome", (LANDED, DUPLICATE, UNMATCHED)),
        )
        out = Known()
        for r in self._rows(where, ("source", "version", "outcome", "sha256", "raw_file")):
            out.seen.add((r["source"], r["version"]))
            if r["outcome"] == LANDED and r["sha256"]:
                out.hashes[r["sha256"]] = r["raw_file"]
        return out

    def last_cursor(self, tenant: str, source: str) -> str | None:
        ex = _expressions()
        where = ex.And(
            ex.EqualTo("tenant_id", validate_tenant_id(tenant)),
            ex.EqualTo("source", source),
            ex.NotNull("cursor"),
            ex.In("outcome", (LANDED, DUPLICATE)),
        )
        rows = self._rows(where, ("cursor", "landed_at"))
        latest = max(rows, key=lambda r: r["landed_at"], default=None)
        return None if latest is None else str(latest["cursor"])

    def record(self, objects: Iterable[LandedObject]) -> None:
        """Append manifest rows (one commit, retried on a concurrent writer's conflict)."""
        from pyiceberg.exceptions import CommitFailedException

        rows = [o.row() for o in objects]
        if not rows:
            return
        batch = pa.Table.from_pylist(rows, schema=arrow_schema())
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                self.table.append(batch)
                return
            except CommitFailedException:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                logger.info("manifest commit conflict (attempt %d): retrying", attempt)
                time.sleep(min(5.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))
                self.table.refresh()
