"""Checks that run before Spark starts, so bad configuration fails in one line and touches nothing.

Each check reaches what the run will need (the root, the buckets, the catalog service) and turns
a failure into a :class:`ConfigError` that says what, where and how to fix it. The CLI maps that to
exit code 2, which a scheduler can tell apart from bad data (1). No table is created or touched
before these pass, and no message carries a credential: only endpoints, buckets and names.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cdf_pipeline.config import SQLITE_JDBC_PREFIX, Settings
from cdf_pipeline.exceptions import ConfigError, InputError
from cdf_pipeline.lakehouse import lease
from cdf_pipeline.lakehouse.migrate import require_migrated
from cdf_pipeline.lakehouse.sqlite_catalog import catalog_tables
from cdf_pipeline.storage import Storage, is_s3

_TIMEOUT_S = 5.0


def check_run(settings: Settings, storage: Storage, *, create_root: bool = False) -> None:
    """Everything a silver run needs, reachable and usable.

    A local root that does not exist is an error (usually a typo) unless ``create_root``.

    Raises:
        ConfigError: naming the location or service at fault and how to fix it.
    """
    if not create_root and not is_s3(settings.root) and not Path(settings.root).exists():
        raise ConfigError(
            f"root {settings.root} does not exist: check --root / CDF_ROOT, create data there "
            "with 'cdf generate', or pass --create-root to start an empty lakehouse"
        )
    sqlite = (settings.catalog_uri or "").removeprefix(SQLITE_JDBC_PREFIX)
    if settings.catalog.type == "jdbc" and is_s3(sqlite):
        raise ConfigError(
            f"the {settings.profile} profile keeps its catalog in a SQLite file under the root, "
            f"which cannot live on S3 ({sqlite}); use --profile aws, docker or jdbc for an s3:// "
            "root, or set catalog.uri to a local jdbc:sqlite: file"
        )
    _check_catalog_name(settings)
    require_migrated(settings)
    if settings.catalog.type == "hadoop" and is_s3(settings.warehouse_uri):
        raise ConfigError(
            f"the {settings.profile} profile keeps tables with Iceberg's hadoop catalog on local "
            f"files, not on S3 ({settings.warehouse_uri}); use --profile aws, docker or jdbc for "
            "an s3:// root"
        )
    locations = {"raw": settings.raw_uri, "warehouse": settings.warehouse_uri}
    for what, uri in locations.items():
        try:
            if is_s3(uri):
                storage.check_bucket(uri)
                storage.check_readable(uri)
            elif what == "warehouse":
                _check_can_create(uri)
        except InputError as exc:
            raise ConfigError(f"{what} location: {exc}") from None
    _check_catalog(settings, storage)
    lease.check_reachable(settings)


def _check_can_create(folder: str) -> None:
    """``folder`` exists as a writable folder, or its nearest existing parent is one (nothing is
    created here: a run that stops at a later check leaves no trace)."""
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "is not a folder" if not existing.is_dir() else "is not writable"
        raise InputError(f"cannot create {folder}: {existing} {why}; choose another --root")


def _check_catalog_name(settings: Settings) -> None:
    """The SQLite catalog keys its tables by ``catalog.name``: under another name an existing
    lakehouse reads as empty and a run would start a second set of tables over the same files."""
    path = settings.sqlite_catalog_path
    if path is None:
        return
    names = sorted(catalog_tables(path))
    if names and settings.catalog.name not in names:
        held = ", ".join(f"'{n}'" for n in names)
        raise ConfigError(
            f"{path} holds the tables of catalog {held}, not '{settings.catalog.name}': set "
            f"catalog.name (CDF__CATALOG__NAME) back to {held.split(', ')[0]}, or choose another "
            "--root for a new lakehouse"
        )


def _check_catalog(settings: Settings, storage: Storage) -> None:
    cat = settings.catalog
    if cat.type == "rest":
        _check_http(f"{(cat.uri or '').rstrip('/')}/v1/config", "the REST catalog", "catalog.uri")
    elif cat.type == "jdbc":
        _check_jdbc_server(cat.uri or "")
    elif cat.type == "glue":
        _check_glue(settings, storage)


def _check_http(url: str, what: str, key: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # the service answers; auth or path problems show up in the run
            return
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise ConfigError(f"cannot reach {what} at {url} ({reason}); check {key} and that it runs")


def _check_jdbc_server(uri: str) -> None:
    """The database server answers on its port (the login is checked by the driver)."""
    if not uri.startswith("jdbc:"):
        raise ConfigError(f"catalog.uri {uri!r} is not a JDBC URL (jdbc:postgresql://host/db)")
    parts = urlsplit(uri[len("jdbc:") :])
    if parts.scheme == "sqlite" or not parts.hostname:
        return
    port = parts.port or (5432 if parts.scheme == "postgresql" else 0)
    try:
        with socket.create_connection((parts.hostname, port), timeout=_TIMEOUT_S):
            return
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the JDBC catalog's database at {parts.hostname}:{port} "
            f"({exc.strerror or exc}); check catalog.uri (CDF__CATALOG__URI) and that it runs"
        ) from None


def _check_glue(settings: Settings, storage: Storage) -> None:
    """Glue answers with these credentials and allows reading databases."""
    import boto3
    import botocore.exceptions as bex
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_GLUE") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(connect_timeout=_TIMEOUT_S, read_timeout=30, retries={"max_attempts": 2})
    where = endpoint or "AWS Glue"
    try:
        glue = boto3.client(
            "glue", region_name=storage.s3.region, endpoint_url=endpoint, config=config
        )
        glue.get_databases(MaxResults=1)
    except bex.NoCredentialsError:
        raise ConfigError(
            "no AWS credentials found for Glue: configure the AWS default chain (AWS_PROFILE, "
            "SSO, an instance or EMR role, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        ) from None
    except bex.NoRegionError:
        raise ConfigError(
            "no AWS region for Glue: set AWS_REGION or storage.s3_region in the profile"
        ) from None
    except bex.ClientError as exc:
        code = _error_code(exc)
        raise ConfigError(
            f"Glue at {where} refused GetDatabases ({code}); the job needs glue:GetDatabase(s), "
            "CreateDatabase, GetTable(s), CreateTable and UpdateTable (docs/deploy-aws.md)"
        ) from None
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError) as exc:
        raise ConfigError(
            f"cannot reach Glue at {where} ({type(exc).__name__}); check AWS_ENDPOINT_URL_GLUE / "
            "AWS_ENDPOINT_URL and the network"
        ) from None
    _check_glue_databases(glue, settings, where)


def _check_glue_databases(glue: Any, settings: Settings, where: str) -> None:
    """Each namespace's database may be read (a missing one is fine: the run creates it).

    GetDatabases above is allowed on the catalog alone; the databases and their tables are
    usually granted by name, so a policy scoped to other names fails here, not mid-run.
    """
    import botocore.exceptions as bex

    from cdf_pipeline.lakehouse.tables import NAMESPACES

    for ns in NAMESPACES:
        name = f"{settings.catalog.namespace_prefix}{ns}"
        try:
            glue.get_database(Name=name)
        except bex.ClientError as exc:
            code = _error_code(exc)
            if code == "EntityNotFoundException":
                continue
            raise ConfigError(
                f"Glue at {where} refused GetDatabase on {name!r} ({code}); the job needs "
                "glue:GetDatabase, GetTable(s), CreateTable and UpdateTable on the databases "
                f"{settings.catalog.namespace_prefix}silver, quarantine and ops and their tables "
                "(docs/deploy-aws.md)"
            ) from None


def _error_code(exc: Any) -> str:
    """A botocore ClientError's code; a bare status (some endpoints answer so) as a name."""
    code = str(exc.response.get("Error", {}).get("Code", "error"))
    if code.isdigit():
        return "AccessDenied" if code == "403" else f"HTTP {code}"
    return code
