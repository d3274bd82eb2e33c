"""Where the tests run: CI's rule against skipping, free ports, a ``cdf`` child's environment.

In CI (``CI=true``) a test may not skip for missing infrastructure: :func:`require` fails instead.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from support.jvm import TEST_JVM_OPTIONS

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cli_env(**overrides: str) -> dict[str, str]:
    """The environment of a ``cdf`` child process: none of the caller's CDF/AWS/PG settings,
    Spark on loopback with this venv's Python, no telemetry export (the aws and docker profiles
    would export to a collector on localhost), and as many shuffle partitions as the test
    session has (2, not the profile's 16: a cold 300-row run took 10% less CPU, 31 s against 34,
    on its small data)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDF_", "AWS_", "PG"))}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        CDF__SPARK__DRIVER_MEMORY="1g",
        CDF__SPARK__SHUFFLE_PARTITIONS="2",
        CDF__SPARK__DRIVER_JAVA_OPTIONS=TEST_JVM_OPTIONS,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(overrides)
    return env


def require(condition: bool, reason: str) -> None:
    """Skip locally when infrastructure is missing; fail in CI, where everything must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and required infrastructure is missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
