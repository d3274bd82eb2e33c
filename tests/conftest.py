"""Shared fixtures: one session-scoped SparkSession, a moto S3 server on loopback, tmp lakehouses.

In CI (``CI=true``) a test may not skip for missing infrastructure: :func:`require` fails instead.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip locally when infrastructure is missing; fail in CI, where everything must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and required infrastructure is missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        overrides={"root": str(root), "spark": {"shuffle_partitions": 2, "driver_memory": "2g"}},
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


def make_lake(spark: Any, root: Path) -> Any:
    """Settings of a fresh lakehouse under ``root`` with its own Iceberg catalog on ``spark``.

    The catalog is registered at runtime under a unique name, so tests never see each other's
    tables while sharing one session.
    """
    from cdf_pipeline.config import load_settings

    name = f"t{uuid.uuid4().hex[:12]}"
    prefix = f"spark.sql.catalog.{name}"
    spark.conf.set(prefix, "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set(f"{prefix}.type", "hadoop")
    spark.conf.set(f"{prefix}.warehouse", str(root / "warehouse"))
    return load_settings("local", overrides={"root": str(root), "catalog": {"name": name}})


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
