"""The docker-compose lakehouse matches the docker profile and the servers the tests run.

No Docker engine runs here; these checks are what can be verified without one: the file is valid
for docker-compose, and its catalog image, endpoints and warehouse agree with conf/docker.yaml and
with the Iceberg version of the jars.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from support.environment import require

from cdf_pipeline.config import load_settings
from cdf_pipeline.jars import ICEBERG_VERSION

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def test_compose_file_is_valid_for_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    require(tool is not None, "docker-compose is not installed (apt-get install docker-compose)")
    done = subprocess.run(
        [str(tool), "config", "-q"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_catalog_image_is_icebergs_rest_server_of_the_jars_version() -> None:
    image = compose()["services"]["iceberg-rest"]["image"]
    assert image == f"apache/iceberg-rest-fixture:{ICEBERG_VERSION}"


def test_docker_profile_points_at_the_compose_services() -> None:
    services = compose()["services"]
    settings = load_settings("docker", conf_dir=REPO / "conf", environ={})
    catalog = urlsplit(settings.catalog.uri or "")
    assert catalog.hostname == "iceberg-rest"
    assert f"{catalog.port}:{catalog.port}" in services["iceberg-rest"]["ports"]
    s3 = urlsplit(settings.storage.s3_endpoint_url or "")
    assert s3.hostname == "minio" and f"{s3.port}:{s3.port}" in services["minio"]["ports"]
    rest_env = services["iceberg-rest"]["environment"]
    assert rest_env["CATALOG_WAREHOUSE"] == settings.warehouse_uri
    assert rest_env["CATALOG_S3_ENDPOINT"] == settings.storage.s3_endpoint_url
    assert services["cdf"]["environment"]["AWS_ENDPOINT_URL"] == settings.storage.s3_endpoint_url
    bucket = settings.root.removeprefix("s3://")
    assert f"local/{bucket}" in services["minio-setup"]["entrypoint"]


def test_image_resolves_the_docker_profiles_jars_at_build_time() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "cdf jars --profile docker --resolve" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "lakehouse"} <= set(ignored)
