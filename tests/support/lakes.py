"""Fresh lakehouses on the tests' one SparkSession, each with its own catalog."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any


def make_lake(spark: Any, root: Path, *, tenant: str | None = None, **catalog: Any) -> Any:
    """Settings of a fresh lakehouse under ``root`` with its own Iceberg catalog on ``spark``.

    The catalog is registered at runtime under a unique name, with the options a job would
    build it with (the embedded default: a SQLite catalog in ``root/catalog.db``), so tests never
    see each other's tables while sharing one session. ``catalog`` overrides catalog settings.
    """
    from cdf_pipeline.config import load_settings
    from cdf_pipeline.lakehouse.sqlite_catalog import ensure_catalog_file
    from cdf_pipeline.spark import catalog_options

    name = f"t{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        "local", tenant=tenant, overrides={"root": str(root), "catalog": {"name": name, **catalog}}
    )
    if settings.sqlite_catalog_path is not None:  # as build_session does for its own catalog
        ensure_catalog_file(settings.sqlite_catalog_path)
    for key, value in catalog_options(settings).items():
        spark.conf.set(key, value)
    return settings
