"""Shared fixtures: one session-scoped SparkSession, a moto S3 server and a PostgreSQL on
loopback, tmp lakehouses, telemetry captured in memory.

Helpers that tests import live in ``support/`` (this file only uses them): a test never imports
from ``conftest``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import class_archive
from support.environment import cli_env, free_port, require
from support.jvm import BASE_JVM_OPTIONS, OWN_ARCHIVE_DIR, SESSION_JVM_OPTIONS
from support.lakes import make_lake
from support.otel import OtelCapture, OtlpReceiver, start_capture

_ARCHIVE_BUILDER = pytest.StashKey["class_archive.ArchiveBuilder"]()


def pytest_configure(config: pytest.Config) -> None:
    """The controller starts building the class archive for the JVMs the tests start (not for a
    run that leaves the slow tests out: few of the others start a JVM)."""
    if OWN_ARCHIVE_DIR is None or "not slow" in (config.getoption("markexpr") or ""):
        return
    path = Path(os.environ[class_archive.ENV])
    builder = class_archive.ArchiveBuilder(path, cli_env(), BASE_JVM_OPTIONS)
    config.stash[_ARCHIVE_BUILDER] = builder
    builder.start()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first: with ``--dist loadfile`` (the Makefile's), each test module runs
    whole in one process, modules in the order of their first test here, so the long modules
    start early and the short ones fill the end; neither process is left with a long module
    while the other has nothing to do.

    A module in one process builds its shared set-up once (a first load in a cold child, a
    deployed stack, a report lakehouse). Scheduled test by test, each process that got one of
    its tests built it again: a 3-process run built some of them three times.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config: pytest.Config) -> None:
    builder = config.stash.get(_ARCHIVE_BUILDER, None)
    if builder is not None:
        builder.stop()
    if OWN_ARCHIVE_DIR is not None:
        shutil.rmtree(OWN_ARCHIVE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one SparkSession of the test run, built by the library's own factory.

    Its Iceberg catalog points at a session-wide warehouse; tests that need isolation use
    their own table namespace or their own tenant ids.
    """
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.spark import build_session

    root = tmp_path_factory.mktemp("lakehouse")
    settings = load_settings(
        "local",
        overrides={
            "root": str(root),
            "spark": {
                "shuffle_partitions": 2,
                # 3g, not 2g: in one full run a worker's session JVM died (connection reset, no
                # message) during the hostile corpus's 50 MB CSV field, after the tests before it
                # had filled its heap; Spark ends a local-mode JVM on an OOM in a task.
                "driver_memory": "3g",
                "driver_java_options": SESSION_JVM_OPTIONS,
            },
        },
    )
    session = build_session(settings, app_name="cdf-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real moto S3 server in this process, listening on a free loopback port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - dev extra missing
        require(False, "moto[server] is not installed (pip install -e '.[dev]')")
        raise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    old = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    # moto accepts any credentials; these are throwaway test values, not secrets.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One throwaway PostgreSQL for the test session (``servers/postgres.py``); each test keeps
    to its own schemas, catalogs or databases on it."""
    from servers.postgres import start_postgres, stop_postgres

    try:
        server = start_postgres(tmp_path_factory.mktemp("pg"))
    except (RuntimeError, OSError) as exc:
        require(False, f"a throwaway PostgreSQL could not start: {exc}")
        raise
    try:
        yield server
    finally:
        stop_postgres(server)


@pytest.fixture
def lake(spark: Any, tmp_path: Path) -> Any:
    """A fresh lakehouse (own root, own catalog) for one test."""
    return make_lake(spark, tmp_path / "lake")


@pytest.fixture
def another_lake(spark: Any, tmp_path: Path) -> Any:
    """A second fresh lakehouse, for tests that compare two runs side by side."""
    return make_lake(spark, tmp_path / "other")


@pytest.fixture
def lakehouse(tmp_path: Path) -> Path:
    """An empty local root directory for one test."""
    root = tmp_path / "lakehouse"
    root.mkdir()
    return root


# --- OpenTelemetry: in-memory capture and a real OTLP/HTTP receiver on loopback -----------------


@pytest.fixture
def otel(tmp_path: Path) -> Iterator[OtelCapture]:
    """Telemetry on for one test (local profile, no exporter but in-memory ones), then off."""
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.telemetry import setup as telemetry_setup

    capture = start_capture(load_settings("local", overrides={"root": str(tmp_path)}))
    try:
        yield capture
    finally:
        telemetry_setup.shutdown()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()
