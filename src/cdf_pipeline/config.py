"""Typed, layered configuration: ``base`` <- profile <- tenant <- environment variables.

Files live in a ``conf/`` folder (``conf/base.yaml``, ``conf/<profile>.yaml``,
``conf/tenants/<tenant>.yaml``). Environment variables ``CDF__SECTION__KEY=value`` override any
key (``CDF__SPARK__MASTER=local[4]``); ``CDF_ROOT`` sets the local root. Everything is validated
when loaded: an unknown key, a wrong type or a missing file fails with the file, the key and a hint.
Credentials never live here: they come from the environment or the AWS default chain.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.tenants import validate_tenant_id

PROFILES = ("local", "docker", "aws", "jdbc")
ENV_PREFIX = "CDF__"


_URI_SECRET = re.compile(r"//[^/@]*:[^/@]*@|[?&;](password|secret|token)=", re.IGNORECASE)


def _no_credentials(value: str | None) -> str | None:
    """Credentials never live in configuration; a URI that carries one is refused unprinted."""
    if value and _URI_SECRET.search(value):
        raise ValueError(
            "the URI carries a credential (user:password@ or a password= parameter); remove it "
            "and use PGUSER/PGPASSWORD, ~/.pgpass or the AWS default chain instead"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogSettings(_Section):
    """Where the Iceberg tables are catalogued."""

    type: Literal["hadoop", "jdbc", "rest", "glue"] = "hadoop"
    name: str = "cdf"
    warehouse: str = "{root}/warehouse"
    uri: str | None = None
    #: Put before every namespace (``silver`` -> ``<prefix>silver``), so two deployments can
    #: share one catalog (a Glue account): Glue databases are flat and account-wide.
    namespace_prefix: str = Field("", pattern=r"^[a-z0-9_]*$")

    _uri_ok = field_validator("uri", "warehouse")(_no_credentials)
    #: Extra catalog properties passed as ``spark.sql.catalog.<name>.<key>`` (no secrets here).
    properties: dict[str, str] = Field(default_factory=dict)


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
    log_level: str = "WARN"
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


class Settings(_Section):
    """The whole configuration of one run."""

    profile: str = "local"
    tenant: str | None = None
    root: str = "./lakehouse"
    catalog: CatalogSettings = CatalogSettings()
    spark: SparkSettings = SparkSettings()
    storage: StorageSettings = StorageSettings()
    quality: QualitySettings = QualitySettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    _root_ok = field_validator("root")(_no_credentials)

    @field_validator("tenant")
    @classmethod
    def _tenant_ok(cls, v: str | None) -> str | None:
        return None if v is None else validate_tenant_id(v)

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


def default_conf_dir() -> Path:
    """``$CDF_CONF_DIR``, else ``./conf``, else the ``conf/`` of this source checkout."""
    if env := os.environ.get("CDF_CONF_DIR"):
        return Path(env)
    cwd_conf = Path.cwd() / "conf"
    if (cwd_conf / "base.yaml").is_file():
        return cwd_conf
    return Path(__file__).resolve().parents[2] / "conf"


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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_layer(environ: dict[str, str]) -> dict[str, Any]:
    """``CDF__A__B=v`` -> ``{"a": {"b": "v"}}`` (values parsed as YAML scalars)."""
    layer: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        node = layer
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(raw) if raw else raw
    if root := environ.get("CDF_ROOT"):
        layer["root"] = root
    return layer


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
    return "invalid configuration in " + where + ":\n  " + "\n  ".join(lines)


def load_settings(
    profile: str = "local",
    *,
    tenant: str | None = None,
    conf_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
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
    env = dict(os.environ if environ is None else environ)
    if tenant is not None:
        validate_tenant_id(tenant)
    base_file = conf / "base.yaml"
    profile_file = conf / f"{profile}.yaml"
    if not base_file.is_file():
        raise ConfigError(
            f"config file {base_file} not found: run from the project folder or set CDF_CONF_DIR"
        )
    if not profile_file.is_file():
        known = sorted(p.stem for p in conf.glob("*.yaml") if p.stem != "base")
        raise ConfigError(
            f"unknown profile {profile!r}: no {profile_file}; known profiles: {known}"
        )
    sources = [str(base_file), str(profile_file)]
    data = _merge(_read_yaml(base_file), _read_yaml(profile_file))
    if tenant is not None:
        tenant_file = conf / "tenants" / f"{tenant}.yaml"
        if tenant_file.is_file():
            data = _merge(data, _read_yaml(tenant_file))
            sources.append(str(tenant_file))
    env_layer = _env_layer(env)
    if env_layer:
        data = _merge(data, env_layer)
        sources.append("environment (CDF_ROOT / CDF__*)")
    data = _merge(data, {"profile": profile, "tenant": tenant, **(overrides or {})})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None
