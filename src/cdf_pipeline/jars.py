"""The JVM jars Spark needs, pinned by Maven coordinates in one place, and their resolution.

Each profile needs a different set: the embedded default the Iceberg Spark runtime and the SQLite
driver of its catalog, S3
locations add Hadoop's S3A connector (raw files) and Iceberg's AWS bundle (S3FileIO, Glue), the
JDBC catalog on PostgreSQL adds the driver. Only what a profile uses is resolved, so a local run
never downloads the AWS SDK.

Resolution uses Apache Ivy, the resolver inside Spark's own ``--packages`` (the jar ships with
pyspark), against Maven Central, with Ivy's usual cache (``~/.ivy2/cache``, shared with
``spark.jars.packages``). It runs in a short child JVM *before* Spark starts, for two reasons:
a jar that cannot be resolved becomes one clear error instead of a dead Spark gateway, and the
result is a list of local files that also works under ``spark-submit``, whose driver classpath is
already fixed when Python starts. The resolved classpath is remembered per set of coordinates, so
later runs start no resolver at all.

Air-gapped machines, EMR and Glue jobs: ``CDF_JARS_DIR=<folder>`` takes every jar from that folder
and downloads nothing; on a cluster, ``spark-submit --packages $(cdf jars --profile aws)`` works too
(the library then finds the classes already loaded and adds nothing).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from cdf_pipeline.exceptions import ConfigError

SCALA_BINARY = "2.12"  # pyspark 3.5 wheels are built for Scala 2.12
#: 1.10.1, not 1.10.2: iceberg-aws-bundle was not published for 1.10.2, and the runtime and the
#: AWS bundle must be of one version.
ICEBERG_VERSION = "1.10.1"
#: The Hadoop that pyspark 3.5 bundles; hadoop-aws must match it exactly.
HADOOP_VERSION = "3.3.4"
JARS_DIR_ENV = "CDF_JARS_DIR"
IVY_DIR_ENV = "CDF_IVY_DIR"
_RESOLVE_TIMEOUT_S = 900  # the AWS SDK v1 bundle alone is ~280 MB


@dataclass(frozen=True)
class Jar:
    """One Maven artifact the job may need, and why."""

    group: str
    artifact: str
    version: str
    why: str
    #: Maven classifier (``tests``, ``test-fixtures``), for tools such as the REST test server.
    classifier: str | None = None

    @property
    def coordinate(self) -> str:
        tail = f":{self.classifier}" if self.classifier else ""
        return f"{self.group}:{self.artifact}:{self.version}{tail}"

    @property
    def file_name(self) -> str:
        tail = f"-{self.classifier}" if self.classifier else ""
        return f"{self.artifact}-{self.version}{tail}.jar"


ICEBERG_RUNTIME = Jar(
    "org.apache.iceberg",
    f"iceberg-spark-runtime-3.5_{SCALA_BINARY}",
    ICEBERG_VERSION,
    "Iceberg's Spark catalog, SQL extensions (MERGE) and the hadoop, JDBC and REST catalogs",
)
ICEBERG_AWS = Jar(
    "org.apache.iceberg",
    "iceberg-aws-bundle",
    ICEBERG_VERSION,
    "S3FileIO and GlueCatalog with the AWS SDK v2 they need (tables on S3, the Glue catalog)",
)
HADOOP_AWS = Jar(
    "org.apache.hadoop",
    "hadoop-aws",
    HADOOP_VERSION,
    "S3A, through which Spark reads raw files on S3; brings the AWS SDK v1 bundle it names",
)
POSTGRES_JDBC = Jar(
    "org.postgresql",
    "postgresql",
    "42.7.4",
    "the PostgreSQL driver for Iceberg's JDBC catalog",
)
SQLITE_JDBC = Jar(
    "org.xerial",
    "sqlite-jdbc",
    # One jar, no dependencies, SQLite's native library inside for Linux, macOS and Windows.
    "3.51.1.0",
    "the SQLite driver for the embedded default's catalog (Iceberg's JDBC catalog in a file)",
)
ALL_JARS = (ICEBERG_RUNTIME, ICEBERG_AWS, HADOOP_AWS, POSTGRES_JDBC, SQLITE_JDBC)


def needed(
    *, catalog_type: str, catalog_uri: str | None, s3_tables: bool, s3_files: bool
) -> list[Jar]:
    """The jars one configuration needs (the Iceberg runtime always comes first)."""
    jars = [ICEBERG_RUNTIME]
    if s3_tables or catalog_type == "glue":
        jars.append(ICEBERG_AWS)
    if s3_files:
        jars.append(HADOOP_AWS)
    if catalog_type == "jdbc" and (catalog_uri or "").startswith("jdbc:postgresql:"):
        jars.append(POSTGRES_JDBC)
    if catalog_type == "jdbc" and (catalog_uri or "").startswith("jdbc:sqlite:"):
        jars.append(SQLITE_JDBC)
    return jars


def coordinates(jars: Iterable[Jar]) -> str:
    """``group:artifact:version`` list for ``spark-submit --packages``."""
    return ",".join(j.coordinate for j in jars)


def resolve(jars: Sequence[Jar]) -> list[Path]:
    """Local jar files for ``jars`` and everything they depend on.

    Raises:
        ConfigError: when a jar is missing from ``CDF_JARS_DIR`` or cannot be resolved.
    """
    if folder := os.environ.get(JARS_DIR_ENV):
        return _from_folder(Path(folder), jars)
    ivy_dir = Path(os.environ.get(IVY_DIR_ENV) or Path.home() / ".ivy2")
    key = hashlib.sha256(coordinates(jars).encode()).hexdigest()[:16]
    remembered = ivy_dir / "cdf-pipeline" / f"classpath-{key}.txt"
    if remembered.is_file():
        paths = [Path(p) for p in remembered.read_text().split(os.pathsep) if p]
        if paths and all(p.is_file() for p in paths):
            return paths
    paths = _ivy_resolve(jars, ivy_dir)
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(os.pathsep.join(str(p) for p in paths))
    return paths


def _from_folder(folder: Path, jars: Sequence[Jar]) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{JARS_DIR_ENV}={folder} is not a folder; point it at the jars' folder")
    present = sorted(folder.glob("*.jar"))
    names = {p.name for p in present}
    missing = [
        j.coordinate
        for j in jars
        if j.file_name not in names and f"{j.group}_{j.file_name}" not in names
    ]
    if missing:
        raise ConfigError(
            f"{JARS_DIR_ENV}={folder} lacks {', '.join(missing)}; copy those jars (and their "
            f"dependencies) there, or unset {JARS_DIR_ENV} to download them from Maven Central"
        )
    return present


def _ivy_jar() -> Path:
    import pyspark

    found = sorted((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"))
    if not found:
        raise ConfigError("pyspark ships no Ivy jar here: reinstall pyspark (pip install pyspark)")
    return found[-1]


def _ivy_dependency(j: Jar) -> str:
    head = (
        f"<dependency org={quoteattr(j.group)} name={quoteattr(j.artifact)} "
        f'rev={quoteattr(j.version)} conf="default->default"'
    )
    if not j.classifier:
        return f"    {head}/>"
    artifact = (
        f'<artifact name={quoteattr(j.artifact)} type="jar" ext="jar" '
        f"m:classifier={quoteattr(j.classifier)}/>"
    )
    return f"    {head}>{artifact}</dependency>"


def _ivy_module(jars: Sequence[Jar]) -> str:
    deps = "\n".join(_ivy_dependency(j) for j in jars)
    return (
        '<ivy-module version="2.0" xmlns:m="http://ant.apache.org/ivy/maven">\n'
        '  <info organisation="cdf-pipeline" module="cdf-jars"/>\n'
        f"  <dependencies>\n{deps}\n  </dependencies>\n</ivy-module>\n"
    )


def _ivy_resolve(jars: Sequence[Jar], ivy_dir: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="cdf-ivy-") as tmp:
        module = Path(tmp) / "ivy.xml"
        module.write_text(_ivy_module(jars))
        classpath = Path(tmp) / "classpath.txt"
        cmd = [
            "java", "-jar", str(_ivy_jar()), "-ivy", str(module), "-confs", "default",
            "-cache", str(ivy_dir / "cache"), "-cachepath", str(classpath),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_RESOLVE_TIMEOUT_S, check=False
            )
        except FileNotFoundError as exc:
            raise ConfigError("java not found on PATH: install Java 17 (Spark needs it)") from exc
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(
                f"resolving {coordinates(jars)} from Maven Central took over "
                f"{_RESOLVE_TIMEOUT_S} s; check the network, or set {JARS_DIR_ENV}"
            ) from exc
        if done.returncode != 0 or not classpath.is_file():
            raise ConfigError(
                f"cannot resolve the Spark jars {coordinates(jars)} from Maven Central "
                f"({_ivy_problem(done.stdout + done.stderr)}); check network access to the "
                f"registry, or put the jars in a folder and set {JARS_DIR_ENV}"
            )
        return [Path(p) for p in classpath.read_text().strip().split(os.pathsep) if p]


def _ivy_problem(output: str) -> str:
    """The line of Ivy's report that names what went wrong."""
    for marker in ("not found", "unresolved dependency", "FAILED", "ERROR", "::"):
        for line in output.splitlines():
            text = line.strip(" \t:|")
            if marker.lower() in line.lower() and text and "::" not in text:
                return text[:300]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
