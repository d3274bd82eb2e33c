"""Apache Iceberg's REST catalog fixture on a free port, its tables on a (moto) S3 server.

The server is ``org.apache.iceberg.rest.RESTCatalogServer`` from
``org.apache.iceberg:iceberg-open-api:<version>:test-fixtures``, the class the official
``apache/iceberg-rest-fixture`` image runs. That jar declares no dependencies, so
:data:`REST_SERVER_JARS` lists its runtime classpath (from Iceberg's ``open-api`` build); the
project's resolver fetches them with Ivy from Maven Central.

The server reads its whole configuration from ``CATALOG_*`` environment variables (prefix
dropped, ``__`` -> ``-``, ``_`` -> ``.``, lower-cased): a JDBC catalog on a sqlite file in
``work_dir``, S3FileIO on the moto endpoint, and ``rest.port``. It has no host setting: Jetty
listens on every interface (not only 127.0.0.1), on a random free port, for the test run only.
Its responses carry no S3 settings, so clients set ``s3.endpoint`` (and path-style access)
themselves. AWS credentials reach it through the caller's ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (the SDK's default chain).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cdf_pipeline.jars import ICEBERG_VERSION, Jar, resolve

MAIN_CLASS = "org.apache.iceberg.rest.RESTCatalogServer"
_ICEBERG = "org.apache.iceberg"
#: Versions as in Iceberg 1.10.1's gradle/libs.versions.toml.
_JETTY_VERSION = "11.0.26"
_HADOOP_VERSION = "3.4.1"
_HADOOP = "org.apache.hadoop"  # client-api + client-runtime: hadoop-common would bring Jetty 9
_FIXTURE_WHY = "RESTCatalogServer, the class the apache/iceberg-rest-fixture image runs"
_CORE_TESTS_WHY = "RESTCatalogAdapter and RESTCatalogServlet (iceberg-core's test classes)"

REST_SERVER_JARS: tuple[Jar, ...] = (
    Jar(_ICEBERG, "iceberg-open-api", ICEBERG_VERSION, _FIXTURE_WHY, classifier="test-fixtures"),
    Jar(_ICEBERG, "iceberg-core", ICEBERG_VERSION, _CORE_TESTS_WHY, classifier="tests"),
    Jar(_ICEBERG, "iceberg-core", ICEBERG_VERSION, "JdbcCatalog, REST model, FileIO plumbing"),
    Jar(_ICEBERG, "iceberg-aws", ICEBERG_VERSION, "S3FileIO"),
    Jar(_ICEBERG, "iceberg-aws-bundle", ICEBERG_VERSION, "the AWS SDK v2 that S3FileIO uses"),
    Jar("org.eclipse.jetty", "jetty-servlet", _JETTY_VERSION, "the HTTP server (brings server)"),
    Jar("org.xerial", "sqlite-jdbc", "3.50.3.0", "the JDBC catalog's database"),
    Jar("org.slf4j", "slf4j-simple", "2.0.17", "the server's log, to stderr"),
    Jar(_HADOOP, "hadoop-client-api", _HADOOP_VERSION, "the Configuration the server creates"),
    Jar(_HADOOP, "hadoop-client-runtime", _HADOOP_VERSION, "Configuration's shaded dependencies"),
)

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 40


@dataclass
class RestCatalogServer:
    """A running REST catalog: ``uri`` is the base clients use (``{uri}/v1/config``)."""

    uri: str
    process: subprocess.Popen[bytes]
    log_path: Path


def classpath() -> list[Path]:
    """The server's jars, resolved (and remembered) by the project's resolver.

    Ivy keeps one declaration per module, so a classified jar (``iceberg-core:tests``) and the
    plain jar of the same module go to separate resolutions.
    """
    classified = [j for j in REST_SERVER_JARS if j.classifier]
    plain = [j for j in REST_SERVER_JARS if not j.classifier]
    return list(dict.fromkeys([*resolve(classified), *resolve(plain)]))


def start_rest_catalog(
    work_dir: Path, *, warehouse: str, s3_endpoint: str, region: str = "us-east-1"
) -> RestCatalogServer:
    """Start the server with its catalog in ``work_dir/catalog.db`` and tables under
    ``warehouse`` (``s3://bucket/prefix``) on ``s3_endpoint``; return once it answers."""
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f"set {' and '.join(missing)} (moto accepts any value, e.g. testing)")
    work_dir = work_dir.absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    catalog = {
        "CATALOG_CATALOG__IMPL": "org.apache.iceberg.jdbc.JdbcCatalog",
        "CATALOG_URI": f"jdbc:sqlite:{work_dir / 'catalog.db'}",
        "CATALOG_JDBC_STRICT__MODE": "true",
        "CATALOG_WAREHOUSE": warehouse,
        "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
        "CATALOG_S3_ENDPOINT": s3_endpoint,
        "CATALOG_S3_PATH__STYLE__ACCESS": "true",
        "CATALOG_CLIENT_REGION": region,
        "CATALOG_REST_PORT": str(port),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env.update(catalog, AWS_REGION=region, AWS_EC2_METADATA_DISABLED="true")
    cp = os.pathsep.join(str(p) for p in classpath())
    log_path = work_dir / "rest-catalog.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["java", "-Xmx512m", "-cp", cp, MAIN_CLASS],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=work_dir,
        )  # fmt: skip
    server = RestCatalogServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(server)
    except BaseException:
        stop_rest_catalog(server)
        raise
    return server


def stop_rest_catalog(server: RestCatalogServer) -> None:
    """Terminate the server; kill it if it has not exited within a few seconds."""
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def _wait_ready(server: RestCatalogServer) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the REST catalog exited with code {server.process.returncode}"
                f"{_log_tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{server.uri}/v1/config", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"the REST catalog did not answer {server.uri}/v1/config within {_START_TIMEOUT_S:.0f} s"
        f"{_log_tail(server.log_path)}"
    )


def _log_tail(log_path: Path) -> str:
    """The log's last lines, Java stack frames left out so that the exception lines survive."""
    text = log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if not line.startswith("\tat ")]
    lines = lines[-_LOG_TAIL_LINES:]
    return f"\n--- tail of {log_path} ---\n" + "\n".join(lines)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
