"""Typed, layered configuration: ``base`` <- profile <- tenant <- environment <- command-line flags.

Files live in a ``conf/`` folder (``conf/base.yaml``, ``conf/<profile>.yaml``,
``conf/tenants/<tenant>.yaml``). Environment variables ``CDF__SECTION__KEY=value`` override any
key (``CDF__SPARK__MASTER=local[4]``); ``CDF_ROOT`` sets the local root. pydantic-settings does
the layering (one settings source per layer, merged key by key) and reads the environment (prefix
``CDF__``, sections split at ``__``). Everything is validated when loaded: an unknown key, a wrong
type or a missing file fails with the file, the key and a hint. Credentials never live here: they
come from the environment or the AWS default chain.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.locations import is_s3
from cdf_pipeline.tenants import validate_tenant_id

PROFILES = ("local", "docker", "aws", "jdbc")
#: Iceberg's JDBC catalog in a SQLite file: the embedded default's catalog.
SQLITE_JDBC_PREFIX = "jdbc:sqlite:"


_URI_SECRET = re.compile(r"//[^/@]*:[^/@]*@|[?&;](password|secret|token)=", re.IGNORECASE)
#: A location (root, raw, labels, warehouse; local path or URI) whose path segment holds
#: ``something:something@``: userinfo, wherever it sits (``/data/user:pass@x``,
#: ``s3://key:secret@bucket``). Locations are stored in every table's metadata and in ``ops``.
_LOCATION_SECRET = re.compile(r"[^/@]*:[^/@]*@")


_SECRET_KEY = re.compile(r"password|secret|token|access-key|credential", re.IGNORECASE)


def carries_credential(uri: str) -> bool:
    """Whether ``uri`` holds a credential (``user:password@``, a ``password=`` parameter)."""
    return bool(_URI_SECRET.search(uri))


def _no_credentials(value: str | None) -> str | None:
    """Credentials never live in configuration; a URI that carries one is refused unprinted."""
    if value and carries_credential(value):
        raise ValueError(
            "the URI carries a credential (user:password@ or a password= parameter); remove it "
            "and use PGUSER/PGPASSWORD, ~/.pgpass or the AWS default chain instead"
        )
    return value


def _no_credentials_in_location(value: str | None) -> str | None:
    """A location carrying ``user:password@`` anywhere (local paths too) is refused unprinted."""
    if value and _LOCATION_SECRET.search(value):
        raise ValueError(
            "the location carries a credential (user:password@ in a path segment); remove it "
            "and use the AWS default chain or the environment instead"
        )
    return _no_credentials(value)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogSettings(_Section):
    """Where the Iceberg tables are catalogued."""

    type: Literal["hadoop", "jdbc", "rest", "glue"] = "jdbc"
    name: str = "cdf"
    warehouse: str = "{root}/warehouse"
    #: The catalog service or database: ``jdbc:sqlite:{root}/catalog.db`` (the embedded
    #: default), ``jdbc:postgresql://host/db``, or a REST catalog's ``http(s)://`` address.
    uri: str | None = "jdbc:sqlite:{root}/catalog.db"
    #: Put before every namespace (``silver`` -> ``<prefix>silver``), so two deployments can
    #: share one catalog (a Glue account): Glue databases are flat and account-wide.
    namespace_prefix: str = Field("", pattern=r"^[a-z0-9_]*$")

    _uri_ok = field_validator("uri")(_no_credentials)
    _warehouse_ok = field_validator("warehouse")(_no_credentials_in_location)
    #: Extra catalog properties passed as ``spark.sql.catalog.<name>.<key>`` (no secrets here).
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("properties")
    @classmethod
    def _no_secret_properties(cls, props: dict[str, str]) -> dict[str, str]:
        for key, value in props.items():
            if _SECRET_KEY.search(key):
                raise ValueError(
                    f"catalog.properties.{key} would hold a credential; remove it and use "
                    "PGUSER/PGPASSWORD, ~/.pgpass or the AWS default chain instead"
                )
            _no_credentials(value)
        return props


class SparkSettings(_Section):
    """How the SparkSession is built."""

    master: str = "local[2]"
    app_name: str = "cdf-pipeline"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(16, ge=1)
    #: Key sets up to this many rows (repeated keys, rows with missing parents) are broadcast to
    #: the batch instead of shuffling it; larger ones (a parts batch sent before its suppliers)
    #: are joined the usual way.
    broadcast_max_rows: int = Field(500_000, ge=0)
    #: A tenant's parent keys (one short text per supplier) up to this many are broadcast to the
    #: foreign-key check and audit, so the children's references are never shuffled.
    broadcast_max_parent_keys: int = Field(2_000_000, ge=0)
    #: A change batch's updates (at most broadcast_max_rows rows) of at most this many bytes
    #: (128 MiB: about 200,000 rows) are broadcast into the silver MERGE, so silver is scanned
    #: against them in place instead of shuffled and sorted; 0 leaves the choice to Spark's
    #: spark.sql.autoBroadcastJoinThreshold.
    merge_broadcast_max_bytes: int = Field(128 * 1024 * 1024, ge=0)
    log_level: str = "WARN"
    #: Extra options for a driver JVM the job starts (not one spark-submit already started), e.g.
    #: ``-XX:TieredStopAtLevel=1``: the JIT's first tier only, which makes a short run of a small
    #: tenant in a cold process cost far less CPU (the test suite uses it, with
    #: ``-XX:ReservedCodeCacheSize=240m``: the first tier alone shrinks the code cache to 48 MB);
    #: leave it off for big loads, whose hot loops want the optimising tier.
    driver_java_options: str = ""
    conf: dict[str, str] = Field(default_factory=dict)


class StorageSettings(_Section):
    """Where raw files live, and how S3 is reached (the AWS variables win, see storage.py)."""

    raw: str = "{root}/raw"
    labels: str = "{root}/labels"
    #: A custom S3 endpoint (MinIO, moto); AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL override it.
    s3_endpoint_url: str | None = None
    #: AWS_REGION / AWS_DEFAULT_REGION override it.
    s3_region: str | None = None
    #: Path-style bucket addressing; default: on for a custom endpoint, off for AWS.
    s3_path_style: bool | None = None
    #: How long a command goes on once a bucket of the root stops answering (the endpoint gone,
    #: the bucket deleted): past it the command fails with one line (exit 1). Every S3 client's
    #: timeouts and retries are derived from it, so each request gives up well within it.
    timeout_seconds: float = Field(60.0, ge=10.0, le=3600.0)
    #: The text encoding of the tenant's CSV files (a tenant file sets it when its system
    #: exports e.g. latin-1 or cp1252); text that does not decode fails the file, never lands
    #: as replacement characters.
    csv_encoding: str = "utf-8"

    _uris_ok = field_validator("s3_endpoint_url")(_no_credentials)
    _locations_ok = field_validator("raw", "labels")(_no_credentials_in_location)

    @field_validator("csv_encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            # Python's canonical name (latin-1 -> iso8859-1): one that Java's charsets, which
            # Spark's CSV reader uses, know as well.
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(
                f"unknown text encoding {value!r}: use a name such as utf-8, latin-1 or cp1252"
            ) from None


class LandingSettings(_Section):
    """Where a tenant's customer data lands before the raw zone, and how it is read (``cdf land``).

    ``uri`` is a folder, an ``s3://bucket/prefix`` or a ``postgresql://user@host:port/db``
    (password from the libpq conventions, never here). ``{tenant}`` in it is the tenant id: one
    prefix per tenant is also how ``cdf listen`` maps an S3 event to its tenant.
    """

    uri: str = "{root}/landing/{tenant}"
    #: Per entity, a regular expression searched in a file's path below ``uri`` (default: the
    #: entity's name as a folder or a file-name prefix, see docs/operations.md).
    entity_patterns: dict[str, str] = Field(default_factory=dict)
    #: The PostgreSQL schema holding one table per entity (``{tenant}`` allowed).
    postgres_schema: str = Field("landing", pattern=r"^[a-z_][a-z0-9_]*(\{tenant\}[a-z0-9_]*)?$")
    #: What an incremental PostgreSQL pull advances on: ``xmin`` (every row version written since
    #: the last pull, whatever its timestamps) or a contract column such as ``source_timestamp``
    #: (the primary key breaks ties; misses rows written with a value behind the cursor).
    cursor_column: str = Field("xmin", pattern=r"^[a-z_][a-z0-9_]*$")
    #: Where landed files go afterwards: left alone (default), deleted, or moved under
    #: ``archive_uri``; both only once the raw copy is verified by its hash.
    after_land: Literal["keep", "delete", "archive"] = "keep"
    archive_uri: str | None = None

    _uris_ok = field_validator("uri", "archive_uri")(_no_credentials)

    @field_validator("entity_patterns")
    @classmethod
    def _patterns_ok(cls, patterns: dict[str, str]) -> dict[str, str]:
        for entity, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"entity_patterns.{entity}: not a regular expression ({exc})"
                ) from None
        return patterns


class LeaseSettings(_Section):
    """The tenant lease: one run (or maintenance) of a tenant at a time, however many processes.

    A holder renews its lease every quarter of ``ttl_seconds``; a holder that was killed stops
    renewing, and its lease can be taken over once it has expired.
    """

    #: Where leases are kept: ``None`` (default) puts them in the JDBC catalog's own database
    #: (the embedded default's SQLite file, or PostgreSQL); other catalogs (Glue, REST) need a
    #: ``postgresql://user@host/db`` or ``sqlite:/path`` here, or use a SQLite file in the user's
    #: cache folder, which only guards runs on this machine.
    uri: str | None = None
    ttl_seconds: float = Field(60.0, ge=1.0)
    #: With ``--wait``: how often a waiting run asks again.
    poll_seconds: float = Field(2.0, gt=0)

    _uri_ok = field_validator("uri")(_no_credentials)


class MaintenanceSettings(_Section):
    """What ``cdf maintain`` keeps (its flags override these)."""

    #: Snapshots younger than this many days are kept ...
    retain_days: float = Field(7.0, ge=0)
    #: ... and at least this many of the latest, however old.
    retain_last: int = Field(5, ge=1)
    #: Unreferenced files younger than this are left alone: they may belong to a commit in
    #: flight (Iceberg issue 4194); under a day is refused.
    orphan_days: float = Field(3.0, ge=1.0)


class QualitySettings(_Section):
    """Rules the contract leaves to the operator."""

    #: A run publishes only if at least this share of the rows read is valid.
    min_pass_rate: float = Field(0.5, ge=0.0, le=1.0)
    #: Clock skew tolerated before a source_timestamp counts as "in the future".
    future_skew_seconds: int = Field(300, ge=0)
    #: What to do with columns a file has that the contract does not: report and ignore them, or
    #: quarantine the whole file's rows.
    extra_columns: Literal["ignore", "quarantine"] = "ignore"


class TelemetrySettings(_Section):
    """Profile defaults for OpenTelemetry; the standard OTEL_* variables win."""

    traces_exporter: Literal["none", "otlp", "console", "jsonl"] = "none"
    metrics_exporter: Literal["none", "otlp", "console"] = "none"
    otlp_endpoint: str | None = None
    export_timeout_seconds: float = Field(5.0, gt=0)
    jsonl_path: str = "{root}/telemetry/spans.jsonl"


#: The layers :func:`load_settings` puts under the flags, highest priority first: a context
#: variable, because pydantic-settings asks the class for its sources, not the call.
_layers: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar("_layers", default=())


class Settings(BaseSettings):
    """The whole configuration of one run."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="CDF__", env_nested_delimiter="__"
    )

    profile: str = "local"
    tenant: str | None = None
    #: The tenant's own file, when it has one (set by :func:`load_settings`, not configured).
    tenant_file: str | None = None
    root: str = "./lakehouse"
    catalog: CatalogSettings = CatalogSettings()
    spark: SparkSettings = SparkSettings()
    storage: StorageSettings = StorageSettings()
    quality: QualitySettings = QualitySettings()
    landing: LandingSettings = LandingSettings()
    lease: LeaseSettings = LeaseSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    _root_ok = field_validator("root")(_no_credentials_in_location)

    @field_validator("tenant")
    @classmethod
    def _tenant_ok(cls, v: str | None) -> str | None:
        return None if v is None else validate_tenant_id(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The keyword arguments (command-line flags) over the layers of :func:`load_settings`;
        ``Settings(...)`` outside it reads neither files nor the environment."""
        return (init_settings, *_layers.get())

    def path(self, template: str) -> str:
        """Expand ``{root}`` in a configured location."""
        return template.replace("{root}", self.root.rstrip("/"))

    @property
    def raw_uri(self) -> str:
        return self.path(self.storage.raw)

    @property
    def labels_uri(self) -> str:
        return self.path(self.storage.labels)

    @property
    def warehouse_uri(self) -> str:
        return self.path(self.catalog.warehouse)

    @property
    def catalog_uri(self) -> str | None:
        """``catalog.uri`` with ``{root}`` expanded; a SQLite file's path made absolute, since
        the JVM and pyiceberg must open the same file whatever their working folder."""
        uri = self.catalog.uri
        if uri is None:
            return None
        uri = self.path(uri)
        file = uri.removeprefix(SQLITE_JDBC_PREFIX)
        if file != uri and not is_s3(file):
            return SQLITE_JDBC_PREFIX + str(Path(file).absolute())
        return uri

    @property
    def sqlite_catalog_path(self) -> Path | None:
        """The local SQLite file holding the catalog, when it is one (the embedded default)."""
        uri = self.catalog_uri
        if self.catalog.type != "jdbc" or not uri or not uri.startswith(SQLITE_JDBC_PREFIX):
            return None
        file = uri.removeprefix(SQLITE_JDBC_PREFIX)
        return None if is_s3(file) else Path(file)

    def landing_uri(self, tenant: str) -> str:
        """The tenant's landing zone (``{root}`` and ``{tenant}`` expanded)."""
        return self.path(self.landing.uri).replace("{tenant}", validate_tenant_id(tenant))


def default_conf_dir() -> Path:
    """``$CDF_CONF_DIR``, else ``./conf`` (a deployment's own), else the profiles shipped inside
    the package (``cdf_pipeline/conf``, which the checkout's ``conf/`` links to)."""
    if env := os.environ.get("CDF_CONF_DIR"):
        return Path(env)
    cwd_conf = Path.cwd() / "conf"
    if (cwd_conf / "base.yaml").is_file():
        return cwd_conf
    return Path(__file__).resolve().parent / "conf"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(data).__name__}"
        )
    return data


class _Environment(EnvSettingsSource):
    """``CDF__SECTION__KEY`` (pydantic-settings' nested delimiter) and ``CDF_ROOT`` from
    ``environ``, a mapping given to :func:`load_settings` (pydantic-settings reads os.environ)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self.environ.items()}

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        prefix = self.env_prefix.lower()  # names are matched lower-cased
        for name, value in self.env_vars.items():
            key = name[len(prefix) :].split("__")[0]
            if name.startswith(prefix) and key not in Settings.model_fields:
                data[key] = value  # skipped by pydantic-settings; validation names it unknown
        if root := self.environ.get("CDF_ROOT"):
            data["root"] = root
        return data


def _explain(exc: ValidationError, sources: list[str]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}' (remove it or check its spelling)")
        elif "credential" in err["msg"]:  # never echo a value that holds a secret
            lines.append(f"key '{key}': {err['msg']}")
        else:
            lines.append(f"key '{key}': {err['msg']} (got {err.get('input')!r})")
    where = ", ".join(sources)
    # One line, however many problems: a scheduler's log shows the whole error.
    return "invalid configuration in " + where + ": " + "; ".join(lines)


def load_settings(
    profile: str = "local",
    *,
    tenant: str | None = None,
    conf_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load and validate the settings of ``profile`` (and ``tenant``, when given).

    Args:
        profile: one of ``PROFILES`` (a file ``conf/<profile>.yaml`` must exist).
        tenant: tenant id; ``conf/tenants/<tenant>.yaml`` is layered on when present.
        conf_dir: folder holding the YAML files (default: :func:`default_conf_dir`).
        overrides: last layer, from command-line flags (``{"root": "/data"}``).
        environ: environment to read (default ``os.environ``).

    Raises:
        ConfigError: naming the file and key at fault and how to fix it.
    """
    conf = conf_dir or default_conf_dir()
    if tenant is not None:
        validate_tenant_id(tenant)
    files = [conf / "base.yaml", conf / f"{profile}.yaml"]
    if not files[0].is_file():
        raise ConfigError(
            f"config file {files[0]} not found: run from the project folder or set CDF_CONF_DIR"
        )
    if not files[1].is_file():
        known = sorted(p.stem for p in conf.glob("*.yaml") if p.stem != "base")
        raise ConfigError(f"unknown profile {profile!r}: no {files[1]}; known profiles: {known}")
    if tenant is not None and (conf / "tenants" / f"{tenant}.yaml").is_file():
        files.append(conf / "tenants" / f"{tenant}.yaml")
    env = _Environment(os.environ if environ is None else environ)
    token = _layers.set((env, *(InitSettingsSource(Settings, _read_yaml(f)) for f in files[::-1])))
    try:
        sources = [str(f) for f in files] + (["environment (CDF_ROOT / CDF__*)"] if env() else [])
        tenant_file = str(files[2]) if len(files) > 2 else None
        fixed = {"profile": profile, "tenant": tenant, "tenant_file": tenant_file}
        return Settings(**{**fixed, **(overrides or {})})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None
    except SettingsError as exc:  # CDF__<SECTION>=<not JSON>
        raise ConfigError(f"invalid environment variable (CDF__*): {exc}") from None
    finally:
        _layers.reset(token)
