"""``cdf migrate-catalog`` from settings: a hadoop-catalog lakehouse (cdf-pipeline 0.1) registered,
in place, in the embedded default's SQLite catalog."""

from __future__ import annotations

from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.migrate import HadoopTable
from cdf_pipeline.orchestration.session import spark_session


def migrate_catalog(settings: Settings) -> list[HadoopTable] | None:
    """The tables registered, or None when there was nothing to migrate (no session started).

    Raises:
        ConfigError: the profile's catalog is not the embedded SQLite catalog.
    """
    from cdf_pipeline.lakehouse.migrate import migrate, unmigrated

    if settings.sqlite_catalog_path is None:
        raise ConfigError(
            f"the {settings.profile} profile's catalog is {settings.catalog.type} "
            f"({settings.catalog_uri or 'no uri'}), not the embedded SQLite catalog: "
            "migrate-catalog moves a local lakehouse made by cdf-pipeline 0.1 only"
        )
    if not unmigrated(settings):
        return None
    with spark_session(settings, "cdf-migrate-catalog") as spark:
        return migrate(spark, settings)
