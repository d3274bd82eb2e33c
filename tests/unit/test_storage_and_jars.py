"""The storage layer on local files, S3 settings resolution, and which jars each profile needs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cdf_pipeline import jars
from cdf_pipeline.config import load_settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.spark import check_master, needed_jars, session_options
from cdf_pipeline.storage import (
    BROKEN_LINK,
    LINK_LEAVES_ROOT,
    S3Config,
    Storage,
    canonical,
    spark_uri,
)

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _settings(profile: str, environ: dict[str, str] | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    return load_settings(profile, conf_dir=CONF, environ=environ or {}, overrides=overrides)


def test_endpoint_and_region_come_from_the_standard_aws_variables_first() -> None:
    profile = {"endpoint": "http://minio:9000", "region": "eu-west-1"}
    assert S3Config.resolve(**profile, environ={}) == S3Config(
        "http://minio:9000", "eu-west-1", path_style=True
    )
    env = {"AWS_ENDPOINT_URL": "http://general:1", "AWS_DEFAULT_REGION": "us-west-2"}
    assert S3Config.resolve(**profile, environ=env).endpoint == "http://general:1"
    env |= {"AWS_ENDPOINT_URL_S3": "http://s3-only:2", "AWS_REGION": "ap-south-1"}
    resolved = S3Config.resolve(**profile, environ=env)
    assert (resolved.endpoint, resolved.region) == ("http://s3-only:2", "ap-south-1")
    # AWS itself: virtual-hosted addressing unless asked otherwise.
    assert S3Config.resolve(environ={}) == S3Config(None, None, path_style=False)
    with pytest.raises(ConfigError, match="must be an http"):
        S3Config.resolve(endpoint="minio:9000", environ={})


def test_local_profile_needs_only_the_iceberg_runtime_and_sqlite(tmp_path: Path) -> None:
    local = needed_jars(_settings("local", root=str(tmp_path)))
    assert local == [jars.ICEBERG_RUNTIME, jars.SQLITE_JDBC]
    aws = needed_jars(_settings("aws"))
    assert set(aws) == {jars.ICEBERG_RUNTIME, jars.ICEBERG_AWS, jars.HADOOP_AWS}
    docker = needed_jars(_settings("docker"))
    assert set(docker) == {jars.ICEBERG_RUNTIME, jars.ICEBERG_AWS, jars.HADOOP_AWS}
    jdbc_local = needed_jars(_settings("jdbc", root=str(tmp_path)))
    assert jdbc_local == [jars.ICEBERG_RUNTIME, jars.POSTGRES_JDBC]
    jdbc_s3 = needed_jars(_settings("jdbc", root="s3://bucket/lake"))
    assert set(jdbc_s3) == set(jdbc_local) | {jars.ICEBERG_AWS, jars.HADOOP_AWS}


def test_every_component_gets_the_endpoint_and_no_credential() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    settings = _settings("aws", environ=env, root="s3://bucket/prefix")
    old = dict(os.environ)
    os.environ.update(env)  # the S3 settings are resolved from the process environment
    try:
        opts = session_options(settings)
    finally:
        os.environ.clear()
        os.environ.update(old)
    cat = "spark.sql.catalog.cdf"
    assert opts["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:5000"
    assert opts["spark.hadoop.fs.s3a.endpoint.region"] == "eu-central-1"
    assert opts["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert opts[f"{cat}.s3.endpoint"] == "http://127.0.0.1:5000"
    assert opts[f"{cat}.glue.endpoint"] == "http://127.0.0.1:5000"
    assert opts[f"{cat}.client.region"] == "eu-central-1"
    assert opts[f"{cat}.warehouse"] == "s3://bucket/prefix/warehouse"
    dump = repr(opts)
    assert SECRET not in dump and "AKIAEXAMPLE" not in dump


def test_every_s3_client_gives_up_within_the_profiles_storage_timeout() -> None:
    """``storage.timeout_seconds`` bounds each request of S3A, S3FileIO and Glue (a quarter of
    it, a few retries with short waits); the default is 60 s."""
    assert _settings("aws").storage.timeout_seconds == 60
    settings = _settings("aws", root="s3://bucket/lake", storage={"timeout_seconds": 20})
    opts = session_options(settings)
    cat, s3a = "spark.sql.catalog.cdf", "spark.hadoop.fs.s3a"
    assert opts[f"{s3a}.connection.timeout"] == "5000"
    assert opts[f"{s3a}.connection.establish.timeout"] == "5000"
    assert (opts[f"{s3a}.attempts.maximum"], opts[f"{s3a}.retry.limit"]) == ("3", "3")
    assert opts[f"{cat}.http-client.apache.socket-timeout-ms"] == "5000"
    assert opts[f"{cat}.http-client.apache.connection-timeout-ms"] == "5000"
    assert opts[f"{cat}.s3.retry.num-retries"] == "3"
    assert int(opts[f"{cat}.s3.retry.max-wait-ms"]) <= 5000
    with pytest.raises(ConfigError, match="timeout_seconds"):
        _settings("aws", storage={"timeout_seconds": 1})


def test_the_jvm_logs_to_stderr_only_under_verbose() -> None:
    """At the default verbosity the JVM logs nothing (a failing command's one line is all);
    ``cdf -v`` (DEBUG) shows its warnings and Java traces."""
    import logging

    def log_config() -> str:
        return session_options(_settings("local"), with_jars=False)["spark.driver.extraJavaOptions"]

    package = logging.getLogger("cdf_pipeline")
    old = package.level
    try:
        package.setLevel(logging.INFO)
        assert "log4j2-quiet.properties" in log_config()
        package.setLevel(logging.DEBUG)
        assert "/log4j2.properties" in log_config()
    finally:
        package.setLevel(old)


@pytest.mark.parametrize("master", ["garbage", "local[two]", "local[2", ""])
def test_a_malformed_master_is_a_config_error(master: str) -> None:
    with pytest.raises(ConfigError, match="not a Spark master URL"):
        check_master(master)


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "yarn", "spark://h:7077"])
def test_valid_masters_pass(master: str) -> None:
    check_master(master)


def test_jars_dir_serves_air_gapped_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jars.JARS_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"lacks org\.apache\.iceberg:iceberg-aws-bundle"):
        jars.resolve([jars.ICEBERG_AWS])
    (tmp_path / jars.ICEBERG_AWS.file_name).write_bytes(b"PK")
    assert jars.resolve([jars.ICEBERG_AWS]) == [tmp_path / jars.ICEBERG_AWS.file_name]


def test_an_unresolvable_jar_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jars.IVY_DIR_ENV, str(tmp_path / "ivy"))
    bogus = jars.Jar("org.example.nothere", "no-such-artifact", "0.0.1", "test")
    with pytest.raises(ConfigError) as err:
        jars.resolve([bogus])
    message = str(err.value)
    assert "org.example.nothere:no-such-artifact:0.0.1" in message
    assert "not found" in message and "CDF_JARS_DIR" in message
    assert "\n" not in message


def test_storage_lists_hashes_and_moves_local_files(tmp_path: Path) -> None:
    storage = Storage(S3Config())
    root = tmp_path / "raw"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "one.parquet").write_bytes(b"one")
    (root / "a" / "two.csv").write_bytes(b"two")
    (root / "a" / "skip.txt").write_bytes(b"x")
    listed = storage.list_files(str(root), (".parquet", ".csv"))
    assert listed == [str(root / "a" / "b" / "one.parquet"), str(root / "a" / "two.csv")]
    assert storage.list_files(str(tmp_path / "missing"), (".csv",)) == []
    assert storage.sha256(listed[0]) == hashlib.sha256(b"one").hexdigest()
    with storage.staged_file(str(root / "c"), ".csv") as tmp:
        tmp.write_bytes(b"three")
        storage.put(tmp, str(root / "c" / "three.csv"))
    assert (root / "c" / "three.csv").read_bytes() == b"three"
    assert [p.name for p in (root / "c").iterdir()] == ["three.csv"]


def test_links_that_leave_the_root_are_refused_and_said_so(tmp_path: Path) -> None:
    """A link whose target leaves the listed tree is never listed, and never dropped silently:
    the listing names it with the reason. Links inside the tree are read as files."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.csv").write_text("a\n1\n")
    (outside / "folder" / "more.csv").write_text("a\n2\n")
    root = tmp_path / "raw"
    (root / "sub").mkdir(parents=True)
    (root / "inside.csv").write_text("a\n1\n")
    (root / "data.bin").write_text("a\n3\n")
    (root / "escape.csv").symlink_to(outside / "secret.csv")
    (root / "sub" / "linked_folder").symlink_to(outside / "folder")
    (root / "sub" / "alias.csv").symlink_to(root / "data.bin")
    (root / "sub" / "dangling.csv").symlink_to(root / "gone.csv")
    (root / "sub" / "loop").symlink_to(root)  # a folder link inside: not descended
    listing = Storage(S3Config()).list_tree(str(root), (".csv",))
    assert listing.files == [str(root / "inside.csv"), str(root / "sub" / "alias.csv")]
    assert listing.refused == [
        (str(root / "escape.csv"), LINK_LEAVES_ROOT),
        (str(root / "sub" / "dangling.csv"), BROKEN_LINK),
        (str(root / "sub" / "linked_folder"), LINK_LEAVES_ROOT),
    ]
    assert Storage(S3Config()).list_files(str(root), (".csv",)) == listing.files


def test_a_linked_folder_below_the_trusted_root_leaves_the_tree(tmp_path: Path) -> None:
    """The configured raw root may itself be a link; a tenant folder linked to another
    tenant's is not: every file reached through it is refused, none read."""
    real = tmp_path / "disk" / "raw"
    (real / "tenant_id=b" / "entity=x").mkdir(parents=True)
    (real / "tenant_id=b" / "entity=x" / "b.csv").write_text("a\n1\n")
    (real / "tenant_id=a").symlink_to(real / "tenant_id=b")
    raw = tmp_path / "raw"
    raw.symlink_to(real)
    storage = Storage(S3Config())
    own = storage.list_tree(str(raw / "tenant_id=b" / "entity=x"), (".csv",), trusted_root=str(raw))
    assert own.files == [str(raw / "tenant_id=b" / "entity=x" / "b.csv")]
    other = storage.list_tree(
        str(raw / "tenant_id=a" / "entity=x"), (".csv",), trusted_root=str(raw)
    )
    assert other.files == []
    assert other.refused == [(str(raw / "tenant_id=a" / "entity=x" / "b.csv"), LINK_LEAVES_ROOT)]


def test_uris_have_one_spelling() -> None:
    assert spark_uri("s3://b/k/f.parquet") == "s3a://b/k/f.parquet"
    assert spark_uri("/data/f.parquet") == "/data/f.parquet"
    assert canonical("s3a://b/k/f.parquet") == "s3://b/k/f.parquet"
    assert canonical("relative/f.csv") == str(Path("relative/f.csv").resolve())


def test_the_jdbc_password_is_never_a_launch_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Launch options become the JVM's command line, which every local user can read."""
    monkeypatch.setenv("PGUSER", "cdf")
    monkeypatch.setenv("PGPASSWORD", SECRET)
    opts = session_options(_settings("jdbc", root=str(tmp_path)))
    assert opts["spark.sql.catalog.cdf.jdbc.user"] == "cdf"
    assert SECRET not in repr(opts)
