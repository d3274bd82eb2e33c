"""The one SparkSession factory, used by ``jobs/``, the CLI and the test fixture.

The jars come from :mod:`cdf_pipeline.jars` (only what the profile needs), the catalog and the S3
connectors from the profile, and S3 endpoints and region from :mod:`cdf_pipeline.storage`, so
Spark's S3A, Iceberg's S3FileIO and GlueCatalog reach the same place as every other component.
No credential is ever set here: each component takes them from the AWS default chain, and the
JDBC catalog's PostgreSQL driver from the libpq variables or ``~/.pgpass``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cdf_pipeline import jars
from cdf_pipeline.config import Settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse import sqlite_catalog
from cdf_pipeline.storage import S3Config, is_s3, s3_config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
#: The JVM's log under ``cdf -v``: warnings and errors with their Java traces, without five
#: expected warnings (see the file).
_LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
#: ... and otherwise: nothing, so a failing command's own one-line error is all stderr shows.
_LOG4J2_QUIET = Path(__file__).with_name("log4j2-quiet.properties")
_CATALOG_IMPL = {
    "jdbc": "org.apache.iceberg.jdbc.JdbcCatalog",
    "rest": "org.apache.iceberg.rest.RESTCatalog",
    "glue": "org.apache.iceberg.aws.glue.GlueCatalog",
}
_S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"
#: The SQLite driver's connection settings for a catalog several processes write at once:
#: write-ahead logging lets readers go on during a commit; a transaction takes the write lock when
#: it begins (IMMEDIATE), so a commit never reads a snapshot that another writer then outdates
#: (SQLITE_BUSY_SNAPSHOT, which no waiting cures); and a writer that finds the lock taken waits
#: up to 60 s instead of failing at once with SQLITE_BUSY.
SQLITE_OPTIONS = {
    "jdbc.journal_mode": "WAL",
    "jdbc.transaction_mode": "IMMEDIATE",
    "jdbc.busy_timeout": "60000",
}
_AWS_V1_DEFAULT_CHAIN = "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"
#: The masters Spark accepts (checked before a JVM starts, so a typo is one line, not a trace).
_MASTER = re.compile(
    r"^(local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn"
    r"|(spark|k8s|mesos)://\S+)$"
)


def jvm_logs_shown() -> bool:
    """Whether the JVM's log goes to stderr: when this package logs at DEBUG (``cdf -v``).

    At the default verbosity a failing command prints one line that says what failed; the
    JVM's retry warnings and stack frames would bury it (a store that vanished under a run made
    thousands of them), so they are shown only when asked for.
    """
    return logger.isEnabledFor(logging.DEBUG)


def tables_on_s3(settings: Settings) -> bool:
    """Whether Iceberg writes table files to S3 (through S3FileIO)."""
    io_impl = settings.catalog.properties.get("io-impl")
    glue = settings.catalog.type == "glue"
    return glue or io_impl == _S3_FILE_IO or is_s3(settings.warehouse_uri)


def needed_jars(settings: Settings) -> list[jars.Jar]:
    """The jars this configuration needs (the embedded default: the Iceberg runtime and SQLite)."""
    return jars.needed(
        catalog_type=settings.catalog.type,
        catalog_uri=settings.catalog_uri,
        s3_tables=tables_on_s3(settings),
        s3_files=is_s3(settings.raw_uri),
    )


def s3a_options(s3: S3Config) -> dict[str, str]:
    """Hadoop S3A settings: Spark reads raw ``s3a://`` files with the job's S3 configuration."""
    prefix = "spark.hadoop.fs.s3a"
    opts = {
        # The SDK's default chain: environment, AWS_PROFILE / SSO, container and instance roles.
        f"{prefix}.aws.credentials.provider": _AWS_V1_DEFAULT_CHAIN,
        f"{prefix}.path.style.access": str(s3.path_style).lower(),
        # Fail in seconds, not minutes, when the endpoint does not answer: a read waits a
        # quarter of storage.timeout_seconds (Hadoop's default: 200 s), a few times at most.
        f"{prefix}.connection.establish.timeout": _ms(s3.connect_timeout_s),
        f"{prefix}.connection.timeout": _ms(s3.request_timeout_s),
        f"{prefix}.attempts.maximum": "3",
        f"{prefix}.retry.limit": "3",
        f"{prefix}.retry.interval": "500ms",
    }
    if s3.endpoint:
        opts[f"{prefix}.endpoint"] = s3.endpoint
        opts[f"{prefix}.connection.ssl.enabled"] = str(s3.endpoint.startswith("https")).lower()
    if s3.region:
        opts[f"{prefix}.endpoint.region"] = s3.region
    return opts


def s3_file_io_options(s3: S3Config, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Iceberg catalog properties for S3FileIO (and the Glue client) from the S3 configuration."""
    env = os.environ if environ is None else environ
    opts = {"io-impl": _S3_FILE_IO}
    if s3.endpoint:
        opts["s3.endpoint"] = s3.endpoint
    opts["s3.path-style-access"] = str(s3.path_style).lower()
    if s3.region:
        opts["client.region"] = s3.region
    if glue := env.get("AWS_ENDPOINT_URL_GLUE") or env.get("AWS_ENDPOINT_URL"):
        opts["glue.endpoint"] = glue
    return {**opts, **aws_client_timeouts(s3)}


def aws_client_timeouts(s3: S3Config) -> dict[str, str]:
    """Timeouts and retries of Iceberg's AWS clients (S3FileIO, Glue) from ``s3.timeout_s``.

    Iceberg's defaults retry S3 five times with back-offs up to 20 s, over connections that wait
    unbounded for an answer; here each request waits at most a quarter of the timeout and is
    retried three times with short back-offs. (Iceberg's table loads retry on top of this; what
    bounds those is ``store_watch``.)
    """
    return {
        "s3.retry.num-retries": "3",
        "s3.retry.min-wait-ms": "500",
        "s3.retry.max-wait-ms": _ms(min(s3.request_timeout_s, 5.0)),
        "http-client.apache.connection-timeout-ms": _ms(s3.connect_timeout_s),
        "http-client.apache.socket-timeout-ms": _ms(s3.request_timeout_s),
        "http-client.apache.connection-acquisition-timeout-ms": _ms(s3.request_timeout_s),
    }


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def jdbc_login_options(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The JDBC catalog's user from the libpq variable ``PGUSER``.

    The PostgreSQL driver reads ``~/.pgpass`` (or ``PGPASSFILE``) by itself but not ``PGUSER``
    or ``PGPASSWORD``. The password is never a launch option (those end up on the command line
    of the JVM that PySpark starts, visible to every user of the machine): see
    :func:`_set_jdbc_password`.
    """
    env = os.environ if environ is None else environ
    return {"jdbc.user": env["PGUSER"]} if env.get("PGUSER") else {}


def _set_jdbc_password(session: SparkSession, settings: Settings) -> None:
    """``PGPASSWORD`` into the running session's configuration, read when the catalog first
    loads; Spark redacts ``password`` keys wherever it shows its configuration."""
    password = os.environ.get("PGPASSWORD")
    if settings.catalog.type == "jdbc" and password:
        session.conf.set(f"spark.sql.catalog.{settings.catalog.name}.jdbc.password", password)


def jar_options(settings: Settings) -> dict[str, str]:
    """``spark.jars``: local files for the jars this profile needs (resolved once, then cached)."""
    return {"spark.jars": ",".join(str(p) for p in jars.resolve(needed_jars(settings)))}


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
    if not is_s3(warehouse):
        warehouse = str(Path(warehouse).resolve())
    opts[f"{prefix}.warehouse"] = warehouse
    uri = settings.catalog_uri
    if uri and cat.type in ("jdbc", "rest"):
        opts[f"{prefix}.uri"] = uri
    if tables_on_s3(settings):
        for key, value in s3_file_io_options(s3_config(settings)).items():
            opts[f"{prefix}.{key}"] = value
    if cat.type == "jdbc" and settings.sqlite_catalog_path is None:
        opts.update({f"{prefix}.{k}": v for k, v in jdbc_login_options().items()})
    for key, value in cat.properties.items():
        opts[f"{prefix}.{key}"] = value
    if settings.sqlite_catalog_path is not None:  # its tables made before Spark starts
        sqlite = {**SQLITE_OPTIONS, **sqlite_catalog.CATALOG_PROPERTIES}
        opts.update({f"{prefix}.{k}": v for k, v in sqlite.items()})
    return opts


def log4j2_config() -> Path:
    """The JVM's log configuration file for this verbosity (:func:`jvm_logs_shown`)."""
    return _LOG4J2_CONFIG if jvm_logs_shown() else _LOG4J2_QUIET


def session_options(
    settings: Settings, app_name: str | None = None, *, with_jars: bool = True
) -> dict[str, str]:
    """Every option the session is built with (inspectable without starting a JVM).

    ``with_jars=False`` leaves out ``spark.jars``, for a JVM that already has the classes.
    """
    opts = {
        "spark.app.name": app_name or settings.spark.app_name,
        "spark.master": settings.spark.master,
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.sql.extensions": _EXTENSIONS,
        "spark.sql.defaultCatalog": settings.catalog.name,
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        # Tenant runs in threads of one application each take a pool of their own (pipeline/
        # many.py): fair shares between pools, so one big tenant does not starve the rest.
        "spark.scheduler.mode": "FAIR",
        # Validation builds very wide expression trees; inferring constraints over them makes
        # planning slow and, once a plan joins a frame with itself, exhausts the driver heap.
        "spark.sql.constraintPropagation.enabled": "false",
        # A run compiles ~200-250 classes (the validation projections alone are too wide for
        # whole-stage code generation); with Spark's default of 100 cached classes each run
        # evicted the last one's and compiled them all again. Runs of one driver reuse them.
        "spark.sql.codegen.cache.maxEntries": "1000",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
        # Nanosecond timestamps (what pandas writes by default) cannot be read as timestamps
        # by Spark 3.5: read as long nanoseconds, and made timestamps again (ingest/read.py).
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.iceberg.handle-timestamp-without-timezone": "true",
        # Applies to JVMs PySpark launches (not to one spark-submit already started).
        "spark.driver.extraJavaOptions": (
            f"-Dlog4j2.configurationFile={log4j2_config().as_uri()} "
            f"{settings.spark.driver_java_options}"
        ).strip(),
    }
    if with_jars:
        opts.update(jar_options(settings))
    opts.update(catalog_options(settings))
    if is_s3(settings.raw_uri):
        opts.update(s3a_options(s3_config(settings)))
    opts.update(settings.spark.conf)
    return opts


#: JVM classes PySpark looks up by their simple name for nearly every Column it builds
#: (``F.col``, ``F.lit``, ``when``, the sequences of ``select``). Py4J resolves a simple name by
#: trying the gateway's wildcard imports one by one, and every wrong guess is a class-loader miss
#: that searches each jar on the classpath: a third of the time it takes to build an
#: expression. Imported by full name, they resolve at once (``benchmarks/py4j_names_bench.py``).
_HOT_CLASSES = (
    "org.apache.spark.sql.functions",
    "org.apache.spark.api.python.PythonUtils",
    "org.apache.spark.sql.api.python.PythonSQLUtils",
)


def _import_hot_classes(session: SparkSession) -> None:
    """Import :data:`_HOT_CLASSES` singly into the gateway's view (for the JVM's lifetime)."""
    from py4j.java_gateway import java_import

    jvm = session.sparkContext._jvm
    assert jvm is not None
    for name in _HOT_CLASSES:
        java_import(jvm, name)


def _running_under_spark_submit() -> bool:
    """spark-submit starts the JVM before Python and hands it over through this variable."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _submitted_with_iceberg() -> bool:
    """Under spark-submit: whether ``--packages`` / ``--jars`` already brought Iceberg in."""
    from pyspark import SparkContext

    SparkContext._ensure_initialized()
    jvm = SparkContext._jvm
    assert jvm is not None
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    try:
        jvm.java.lang.Class.forName(_EXTENSIONS, False, loader)
    except Exception:  # py4j wraps ClassNotFoundException; any failure means "not loaded"
        return False
    return True


def _load_jars_into_running_jvm(jar_list: str) -> None:
    """Make the jars visible to a JVM that spark-submit already started.

    Options set on the builder reach only JVMs that PySpark itself launches; under spark-submit the
    driver classpath is fixed, so ``spark.jars`` alone would leave the Iceberg catalog class
    missing. spark-submit's context class loader is a ``MutableURLClassLoader``: adding the jars'
    URLs to it before the session exists lets the extensions and catalog load.
    """
    from pyspark import SparkContext

    jvm = SparkContext._jvm
    assert jvm is not None
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    if not hasattr(loader, "addURL"):  # pragma: no cover - depends on the launcher
        raise ConfigError(
            "Spark was started without the Iceberg runtime on its classpath; pass it explicitly: "
            f"spark-submit --jars {jar_list} ..."
        )
    for jar in jar_list.split(","):
        loader.addURL(jvm.java.io.File(jar).toURI().toURL())


def _warn_fixed_driver_memory(wanted: str) -> None:
    """spark-submit sized the driver JVM before Python ran: the profile cannot change it."""
    from pyspark import SparkContext

    jvm = SparkContext._jvm
    assert jvm is not None
    given = jvm.java.lang.System.getProperty("spark.driver.memory")
    if given != wanted:
        logger.warning(
            "spark-submit started the driver with %s of memory; the profile's "
            "spark.driver_memory %s cannot apply to a running JVM: pass --driver-memory %s",
            given or "the default (1g)",
            wanted,
            wanted,
        )


def check_master(master: str) -> None:
    """A malformed ``spark.master`` is a configuration error, found before any JVM starts."""
    if not _MASTER.match(master):
        raise ConfigError(
            f"spark.master {master!r} is not a Spark master URL: use local[N], local[*], yarn, "
            "spark://host:port or k8s://... (CDF__SPARK__MASTER or spark.master in the profile)"
        )


def build_session(settings: Settings, app_name: str | None = None) -> SparkSession:
    """Build (or return the running) SparkSession configured for ``settings``.

    Only entry points and the test fixture call this; library functions take the session as an
    argument.

    Raises:
        ConfigError: a malformed master, a jar that cannot be resolved, or a JVM that would not
            start (a one-line reason instead of the gateway's traceback).
    """
    from pyspark.sql import SparkSession

    check_master(settings.spark.master)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        # A local session talks only to itself: bind to loopback, not the first interface found.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    submitted = _running_under_spark_submit()
    # Under spark-submit --packages/--jars the classes are there: resolve nothing ourselves.
    preloaded = submitted and _submitted_with_iceberg()
    options = session_options(settings, app_name, with_jars=not preloaded)
    if settings.sqlite_catalog_path is not None:
        sqlite_catalog.ensure_catalog_file(settings.sqlite_catalog_path)
    if submitted and not preloaded:
        _load_jars_into_running_jvm(options["spark.jars"])
    if submitted:
        _warn_fixed_driver_memory(settings.spark.driver_memory)
    builder = SparkSession.builder
    for key, value in options.items():
        builder = builder.config(key, value)
    logger.debug("starting Spark (%s)", settings.spark.master)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # PySparkRuntimeError (JAVA_GATEWAY_EXITED) and py4j errors
        if type(exc).__name__ not in ("PySparkRuntimeError", "Py4JError", "Py4JJavaError"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"Spark did not start with master {settings.spark.master!r} ({first}); check "
            "JAVA_HOME / java on PATH (Java 17), spark.master and spark.conf in the profile"
        ) from exc
    _import_hot_classes(session)
    # Also for a JVM spark-submit started with a log configuration of its own.
    session.sparkContext.setLogLevel(settings.spark.log_level if jvm_logs_shown() else "OFF")
    _set_jdbc_password(session, settings)
    return session
