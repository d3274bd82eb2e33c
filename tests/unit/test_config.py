"""Layered configuration, tenant ids, session options per profile, and the jobs/ wiring."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cdf_pipeline.config import PROFILES, Settings, load_settings
from cdf_pipeline.exceptions import ConfigError, InvalidTenantError
from cdf_pipeline.spark import session_options
from cdf_pipeline.tenants import parse_tenant_list, validate_tenant_id

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
PROFILE_FILES = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem != "base")
JOB_FILES = sorted((REPO / "jobs").glob("*.py"))

CATALOG = "spark.sql.catalog.cdf"


def load(profile: str = "local", **kwargs: object) -> Settings:
    """Load from the repository's conf/ with an empty environment unless one is given."""
    kwargs.setdefault("conf_dir", CONF)
    kwargs.setdefault("environ", {})
    return load_settings(profile, **kwargs)  # type: ignore[arg-type]


def write_conf(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_conf_holds_exactly_the_known_profiles() -> None:
    assert sorted(PROFILES) == PROFILE_FILES


@pytest.mark.parametrize("profile", PROFILE_FILES)
def test_every_profile_loads(profile: str) -> None:
    settings = load(profile)
    assert settings.profile == profile
    assert settings.tenant is None
    expected_catalog = {"local": "jdbc", "docker": "rest", "aws": "glue", "jdbc": "jdbc"}[profile]
    assert settings.catalog.type == expected_catalog


def test_tenant_file_is_layered_on_the_profile() -> None:
    assert load("local").quality.min_pass_rate == 0.5
    acme = load("local", tenant="acme")
    assert (acme.tenant, acme.quality.min_pass_rate) == ("acme", 0.8)
    # A tenant without a file runs on the profile's settings.
    assert load("local", tenant="globex").quality.min_pass_rate == 0.5


def test_layers_base_profile_tenant_env_then_overrides(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path,
        {
            "base.yaml": "root: /base\nspark: {master: 'local[1]'}\n"
            "quality: {min_pass_rate: 0.1, future_skew_seconds: 10}\n"
            "catalog: {properties: {a: '1'}}\n",
            "local.yaml": "quality: {min_pass_rate: 0.2, future_skew_seconds: 20}\n"
            "catalog: {properties: {b: '2'}}\n",
            "tenants/acme.yaml": "quality: {min_pass_rate: 0.3}\n",
        },
    )
    env = {"CDF__QUALITY__MIN_PASS_RATE": "0.4", "CDF_ROOT": "/env", "OTHER": "x"}

    profile_only = load(conf_dir=conf)
    assert profile_only.spark.master == "local[1]"  # base, untouched by the profile
    assert profile_only.quality.future_skew_seconds == 20  # profile over base
    assert profile_only.quality.min_pass_rate == 0.2
    assert profile_only.catalog.properties == {"a": "1", "b": "2"}  # mappings merge key by key
    assert profile_only.root == "/base"

    assert load(conf_dir=conf, tenant="acme").quality.min_pass_rate == 0.3
    with_env = load(conf_dir=conf, tenant="acme", environ=env)
    assert with_env.quality.min_pass_rate == 0.4
    assert with_env.quality.future_skew_seconds == 20
    assert with_env.root == "/env"
    assert with_env.warehouse_uri == "/env/warehouse"

    flags = load(conf_dir=conf, tenant="acme", environ=env, overrides={"root": "/flag"})
    assert flags.root == "/flag"


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path, {"base.yaml": "root: /x\n", "local.yaml": "quality: {min_pass_rat: 0.5}\n"}
    )
    with pytest.raises(ConfigError) as err:
        load(conf_dir=conf)
    message = str(err.value)
    assert "unknown key 'quality.min_pass_rat'" in message
    assert str(conf / "local.yaml") in message


def test_unknown_env_key_is_rejected_too() -> None:
    with pytest.raises(ConfigError) as err:
        load(environ={"CDF__SPARK__MASTR": "local[4]"})
    assert "unknown key 'spark.mastr'" in str(err.value)
    assert "environment (CDF_ROOT / CDF__*)" in str(err.value)


def test_unknown_top_level_env_key_and_a_section_that_is_not_json_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load(environ={"CDF__BOGUS": "1"})
    with pytest.raises(ConfigError, match=r"CDF__\*.*field \"spark\""):
        load(environ={"CDF__SPARK": "master=local[4]"})


def test_env_values_take_the_type_of_their_key() -> None:
    settings = load(
        environ={
            "CDF__SPARK__SHUFFLE_PARTITIONS": "2",
            "CDF__STORAGE__S3_PATH_STYLE": "true",
            "CDF__CATALOG__PROPERTIES__CLIENT_REGION": "eu-west-1",  # one entry of a mapping
            "CDF__TELEMETRY": '{"traces_exporter": "jsonl"}',  # a whole section, as JSON
            "cdf__spark__master": "local[4]",  # names are case-insensitive
        }
    )
    assert settings.spark.shuffle_partitions == 2
    assert settings.storage.s3_path_style is True
    assert settings.catalog.properties == {"client_region": "eu-west-1"}
    assert settings.telemetry.traces_exporter == "jsonl"
    assert settings.spark.master == "local[4]"
    with pytest.raises(ValidationError, match="frozen"):
        settings.root = "/elsewhere"  # type: ignore[misc]


def test_a_credential_in_a_uri_is_refused_without_echoing_it() -> None:
    uri = "jdbc:postgresql://cdf:s3cr3t-pw@db:5432/cdf"
    with pytest.raises(ConfigError) as err:
        load("jdbc", environ={"CDF__CATALOG__URI": uri})
    assert "key 'catalog.uri'" in str(err.value) and "credential" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)


def test_the_environment_is_read_by_load_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDF__SPARK__MASTER", "local[3]")
    monkeypatch.setenv("CDF_ROOT", "/from-env")
    assert (Settings().spark.master, Settings().root) == ("local[2]", "./lakehouse")
    loaded = load_settings("local", conf_dir=CONF)  # environ defaults to os.environ
    assert (loaded.spark.master, loaded.root) == ("local[3]", "/from-env")


def test_wrong_type_names_the_key_and_the_value(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path, {"base.yaml": "root: /x\n", "local.yaml": "spark: {shuffle_partitions: many}\n"}
    )
    with pytest.raises(ConfigError) as err:
        load(conf_dir=conf)
    assert "key 'spark.shuffle_partitions'" in str(err.value)
    assert "'many'" in str(err.value)
    with pytest.raises(ConfigError, match=r"quality\.min_pass_rate"):
        load(environ={"CDF__QUALITY__MIN_PASS_RATE": "1.5"})


def test_missing_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load("staging")
    assert "unknown profile 'staging'" in str(err.value)
    assert str(sorted(PROFILES)) in str(err.value)


def test_missing_base_file_says_where_to_run_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CDF_CONF_DIR"):
        load(conf_dir=tmp_path)


BAD_TENANTS = ["../x", "A", "a", "acme/../b", "x" * 40, "acme corp", "Acme", "1acme", "", "acme;"]
GOOD_TENANTS = ["acme", "globex_eu", "ab", "a1", "x" * 32]


@pytest.mark.parametrize("tenant", BAD_TENANTS)
def test_invalid_tenant_ids_are_rejected(tenant: str) -> None:
    with pytest.raises(InvalidTenantError, match="invalid tenant id"):
        validate_tenant_id(tenant)
    with pytest.raises(InvalidTenantError):
        load(tenant=tenant)


@pytest.mark.parametrize("tenant", GOOD_TENANTS)
def test_valid_tenant_ids_are_accepted(tenant: str) -> None:
    assert validate_tenant_id(tenant) == tenant
    assert load(tenant=tenant).tenant == tenant


def test_tenant_lists_are_validated_and_deduplicated() -> None:
    assert parse_tenant_list(" acme, globex ,acme,") == ["acme", "globex"]
    with pytest.raises(InvalidTenantError):
        parse_tenant_list("acme,../etc")
    with pytest.raises(InvalidTenantError, match="no tenant"):
        parse_tenant_list(" , ")


@pytest.mark.parametrize(
    ("profile", "catalog_options"),
    [
        (
            "local",
            {
                f"{CATALOG}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
                f"{CATALOG}.jdbc.journal_mode": "WAL",
                f"{CATALOG}.jdbc.transaction_mode": "IMMEDIATE",
                f"{CATALOG}.jdbc.init-catalog-tables": "false",
                f"{CATALOG}.jdbc.schema-version": "V0",
                f"{CATALOG}.jdbc.busy_timeout": "60000",
            },
        ),
        (
            "docker",
            {
                f"{CATALOG}.catalog-impl": "org.apache.iceberg.rest.RESTCatalog",
                f"{CATALOG}.uri": "http://iceberg-rest:8181",
                f"{CATALOG}.warehouse": "s3://cdf-lake/warehouse",
            },
        ),
        (
            "aws",
            {
                f"{CATALOG}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
                f"{CATALOG}.warehouse": "s3://cdf-lake-prod/warehouse",
                f"{CATALOG}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                "spark.hadoop.fs.s3a.aws.credentials.provider": (
                    "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"
                ),
            },
        ),
        (
            "jdbc",
            {
                f"{CATALOG}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
                f"{CATALOG}.uri": "jdbc:postgresql://localhost:5432/cdf",
            },
        ),
    ],
)
def test_every_profile_builds_session_options(
    profile: str, catalog_options: dict[str, str], tmp_path: Path
) -> None:
    local_root = profile in ("local", "jdbc")
    settings = load(profile, overrides={"root": str(tmp_path)} if local_root else None)
    opts = session_options(settings, app_name="probe")  # a dict: no JVM is started
    assert opts[CATALOG] == "org.apache.iceberg.spark.SparkCatalog"
    assert opts["spark.sql.defaultCatalog"] == "cdf"
    assert opts["spark.sql.session.timeZone"] == "UTC"
    assert opts["spark.app.name"] == "probe"
    assert all(Path(jar).is_file() for jar in opts["spark.jars"].split(","))
    for key, value in catalog_options.items():
        assert opts[key] == value, key
    if local_root:
        assert opts[f"{CATALOG}.warehouse"] == str(tmp_path / "warehouse")
    if profile == "local":  # the catalog's SQLite file under the root, whatever the cwd
        assert opts[f"{CATALOG}.uri"] == f"jdbc:sqlite:{tmp_path}/catalog.db"


JOB_PARAMS = [pytest.param(p, id=p.name) for p in JOB_FILES]


@pytest.mark.parametrize("path", JOB_PARAMS)
def test_every_job_module_imports(path: Path) -> None:
    """Importing under a non-__main__ name must neither fail nor start a run."""
    spec = importlib.util.spec_from_file_location(f"jobs_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__, f"{path.name}: say how to run the job in its docstring"


@pytest.mark.parametrize(
    ("key", "overrides"),
    [
        ("root", {"root": "/data/user:s3cr3t-pw@x"}),
        ("root", {"root": "s3://AKIAKEY:s3cr3t-pw@bucket/lake"}),
        ("storage.raw", {"storage": {"raw": "/mnt/raw/ak:s3cr3t-pw@host/raw"}}),
        ("storage.labels", {"storage": {"labels": "s3://k:s3cr3t-pw@bucket/labels"}}),
        ("catalog.warehouse", {"catalog": {"warehouse": "./wh/u:s3cr3t-pw@wh"}}),
    ],
)
def test_a_credential_in_a_location_is_refused_without_echoing_it(
    key: str, overrides: dict[str, Any]
) -> None:
    """Locations end up in every table's metadata and in ops: ``user:pass@`` is refused in a
    local path as in a URI, on one line, and the value is never repeated."""
    with pytest.raises(ConfigError) as err:
        load("local", overrides=overrides)
    text = str(err.value)
    assert f"key '{key}'" in text and "credential" in text
    assert "s3cr3t-pw" not in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "root", ["/data/lake", "/data/a:b/c@d", "/data/user@host", "s3://bucket/team:x/lake"]
)
def test_locations_without_userinfo_are_accepted(root: str) -> None:
    """A colon and an at-sign in different segments, or an at-sign alone, are not userinfo."""
    assert load("local", overrides={"root": root}).root == root


def test_a_csv_encoding_is_checked_and_named_as_spark_knows_it() -> None:
    declared = load_settings("local", overrides={"storage": {"csv_encoding": "latin-1"}})
    assert declared.storage.csv_encoding == "iso8859-1"  # Java's charsets know this name
    with pytest.raises(
        ConfigError, match=r"storage\.csv_encoding.*unknown text encoding 'klingon'"
    ):
        load_settings("local", overrides={"storage": {"csv_encoding": "klingon"}})
