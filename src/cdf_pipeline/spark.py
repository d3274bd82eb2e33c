"""The one SparkSession factory, used by ``jobs/``, the CLI and the test fixture.

The Iceberg runtime jar is resolved in this order: an explicit path from the settings, the jar
shipped in the ``snowpark-connect-deps-iceberg`` wheel, then Maven coordinates when the user allows
downloads. The catalog comes from the profile.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

SCALA_BINARY = "2.12"  # pyspark 3.5 wheels are built for Scala 2.12
_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
#: Warnings and errors only, without three expected warnings (see the file).
_LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
_CATALOG_IMPL = {
    "jdbc": "org.apache.iceberg.jdbc.JdbcCatalog",
    "rest": "org.apache.iceberg.rest.RESTCatalog",
    "glue": "org.apache.iceberg.aws.glue.GlueCatalog",
}


def _wheel_jar() -> Path | None:
    try:
        import snowpark_connect_deps_iceberg as deps
    except ImportError:
        return None
    jars = sorted(deps.get_jars_dir().glob(f"iceberg-spark-runtime-3.5_{SCALA_BINARY}-*.jar"))
    return jars[-1] if jars else None


def iceberg_jar_options(settings: Settings) -> dict[str, str]:
    """Spark options that put the Iceberg runtime on the classpath.

    Raises:
        ConfigError: when no jar can be found and downloads are not allowed.
    """
    explicit = settings.spark.iceberg_jar
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"spark.iceberg_jar points at {explicit}, which is not a file")
        return {"spark.jars": explicit}
    if jar := _wheel_jar():
        return {"spark.jars": str(jar)}
    if settings.spark.allow_downloads:
        return {"spark.jars.packages": settings.spark.iceberg_coordinates}
    raise ConfigError(
        "no Iceberg Spark runtime jar found: pip install 'snowpark-connect-deps-iceberg==1.0.2', "
        "set spark.iceberg_jar to a jar path, or set spark.allow_downloads: true to use Maven"
    )


def catalog_options(settings: Settings) -> dict[str, str]:
    """``spark.sql.catalog.<name>.*`` options for the profile's catalog."""
    cat = settings.catalog
    prefix = f"spark.sql.catalog.{cat.name}"
    opts = {prefix: "org.apache.iceberg.spark.SparkCatalog"}
    if cat.type == "hadoop":
        opts[f"{prefix}.type"] = "hadoop"
    else:
        opts[f"{prefix}.catalog-impl"] = _CATALOG_IMPL[cat.type]
    warehouse = settings.warehouse_uri
    if "://" not in warehouse:
        warehouse = str(Path(warehouse).resolve())
    opts[f"{prefix}.warehouse"] = warehouse
    if cat.uri:
        opts[f"{prefix}.uri"] = cat.uri
    for key, value in cat.properties.items():
        opts[f"{prefix}.{key}"] = value
    return opts


def session_options(settings: Settings, app_name: str | None = None) -> dict[str, str]:
    """Every option the session is built with (inspectable without starting a JVM)."""
    opts = {
        "spark.app.name": app_name or settings.spark.app_name,
        "spark.master": settings.spark.master,
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.sql.extensions": _EXTENSIONS,
        "spark.sql.defaultCatalog": settings.catalog.name,
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        # Validation builds very wide expression trees; inferring constraints over them makes
        # planning slow and, once a plan joins a frame with itself, exhausts the driver heap.
        "spark.sql.constraintPropagation.enabled": "false",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.iceberg.handle-timestamp-without-timezone": "true",
        # Applies to JVMs PySpark launches (not to one spark-submit already started).
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_LOG4J2_CONFIG.as_uri()}",
    }
    opts.update(iceberg_jar_options(settings))
    opts.update(catalog_options(settings))
    opts.update(settings.spark.conf)
    return opts


def _running_under_spark_submit() -> bool:
    """spark-submit starts the JVM before Python and hands it over through this variable."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _load_jar_into_running_jvm(jar: str) -> None:
    """Make a jar visible to a JVM that spark-submit already started.

    Options set on the builder reach only JVMs that PySpark itself launches; under spark-submit the
    driver classpath is fixed, so ``spark.jars`` alone would leave the Iceberg catalog class
    missing. spark-submit's context class loader is a ``MutableURLClassLoader``: adding the jar's
    URL to it before the session exists lets the extensions and catalog load.
    """
    from pyspark import SparkContext

    SparkContext._ensure_initialized()
    jvm = SparkContext._jvm
    assert jvm is not None
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    url = jvm.java.io.File(jar).toURI().toURL()
    if hasattr(loader, "addURL"):
        loader.addURL(url)
    else:  # pragma: no cover - depends on the launcher
        raise ConfigError(
            "Spark was started without the Iceberg runtime on its classpath; pass it explicitly: "
            f"spark-submit --jars {jar} ..."
        )


def build_session(settings: Settings, app_name: str | None = None) -> SparkSession:
    """Build (or return the running) SparkSession configured for ``settings``.

    Only entry points and the test fixture call this; library functions take the session as an
    argument.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        # A local session talks only to itself: bind to loopback, not the first interface found.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    options = session_options(settings, app_name)
    if _running_under_spark_submit() and "spark.jars" in options:
        _load_jar_into_running_jvm(options["spark.jars"])
    builder = SparkSession.builder
    for key, value in options.items():
        builder = builder.config(key, value)
    logger.debug("starting Spark (%s)", settings.spark.master)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.spark.log_level)
    return session
