"""``cdf quarantine``: list a tenant's open quarantine rows; export them for the customer to fix.

The export has the columns the customer sent, in the order sent (from ``_original``, the row as
sent), values as sent (text), plus a ``reasons`` column; a fixed file sent back into the raw
zone is read by the next run like any file. A row of it that lands in silver resolves its open
quarantine rows (same primary key), and a row still broken is quarantined anew with its new
reasons while the older copy is resolved by it (``lakehouse/quarantine.resolve_sent_again``).

Counts are aggregated in Spark; the export is written by Spark (one task, so one file), never
collected to the driver.
"""

from __future__ import annotations

import codecs
import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import InputError
from cdf_pipeline.ingest.files import CSV_PARSE
from cdf_pipeline.lakehouse.quarantine import KEY, OPEN
from cdf_pipeline.lakehouse.tables import TableNames
from cdf_pipeline.orchestration.session import spark_session
from cdf_pipeline.storage import Storage
from cdf_pipeline.tenants import validate_tenant_id

logger = logging.getLogger(__name__)

#: What ``cdf quarantine`` groups open rows by, and the column each reads.
GROUPINGS = {"rule": "rule", "file": "_source_file", "run": "_run_id"}
REASONS = "reasons"
FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class OpenCount:
    entity: str
    group: str
    rows: int


def open_rows(spark: SparkSession, names: TableNames, tenant: str, entity: str) -> DataFrame:
    """The tenant's OPEN quarantine rows of one entity."""
    table = spark.table(names.quarantine(ENTITIES[entity]))
    return table.where(
        (F.col("tenant_id") == F.lit(validate_tenant_id(tenant))) & (F.col("_status") == OPEN)
    )


def open_counts(
    spark: SparkSession, names: TableNames, tenant: str, by: str, entities: list[str]
) -> list[OpenCount]:
    """Open rows per rule, source file or run (a row breaking two rules counts under both)."""
    out = []
    for entity in entities:
        rows = open_rows(spark, names, tenant, entity)
        if by == "rule":
            rows = rows.select(F.explode(F.col("_violations.rule")).alias("rule"))
        group = F.col(GROUPINGS[by])
        if by == "file":
            group = F.element_at(F.split(group, "/"), -1)
        counted = rows.groupBy(group.alias("g")).count().orderBy(F.col("count").desc(), "g")
        out += [OpenCount(entity, str(r["g"]), int(r["count"])) for r in counted.collect()]
    return out


def _reasons_text() -> Column:
    """``rule (value); rule (value)`` for the customer: what is wrong with the row."""
    one = F.transform(
        F.col("_violations"),
        lambda v: F.concat(
            v["rule"],
            F.when(v["value"].isNotNull(), F.concat(F.lit(" ("), v["value"], F.lit(")"))).otherwise(
                F.lit("")
            ),
        ),
    )
    return F.array_join(one, "; ")


def file_columns(storage: Storage, uri: str, encoding: str = "utf-8") -> list[str]:
    """A raw file's column names, in its order: the Parquet footer or the CSV header only (a
    CSV file read as text in ``encoding``, the tenant's)."""
    if uri.endswith(".parquet"):
        with storage.open_random(uri) as handle:
            return list(pq.read_metadata(handle).schema.to_arrow_schema().names)
    options = pacsv.ReadOptions(encoding=encoding)
    with storage.open(uri) as stream:
        return list(
            pacsv.open_csv(stream, read_options=options, parse_options=CSV_PARSE).schema.names
        )


def sent_columns(
    spark: SparkSession,
    names: TableNames,
    storage: Storage,
    tenant: str,
    rows: DataFrame,
    *,
    encoding: str = "utf-8",
) -> list[str]:
    """The column names the rows were sent with, in the order sent.

    Read from the headers of the rows' source files (found by name in the tenant's manifest;
    a name per column, nothing of the data), their union in file order when files differ.
    ``_original`` cannot tell on its own: it leaves out a row's null values. A file gone from
    the raw zone (retention) falls back to the names ``_original`` holds, first seen first.
    """
    sources = rows.select(F.col("_source_file").alias("name")).distinct()
    manifest = spark.table(names.ingested_files).where(
        (F.col("tenant_id") == F.lit(validate_tenant_id(tenant))) & (F.col("status") == "INGESTED")
    )
    found = manifest.select("file", F.element_at(F.split("file", "/"), -1).alias("name")).join(
        sources, "name", "left_semi"
    )
    files = [r[0] for r in found.select("file").distinct().orderBy("file").collect()]
    columns: dict[str, None] = {}
    try:
        for uri in files:
            columns.update(dict.fromkeys(file_columns(storage, uri, encoding)))
        if columns:
            return list(columns)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        logger.warning("source files unreadable (%s): columns from the rows as sent", exc)
    keys = rows.select(F.posexplode(F.json_object_keys(F.col("_original"))).alias("pos", "key"))
    ordered = keys.groupBy("key").agg(F.min("pos").alias("pos")).orderBy("pos", "key")
    return [str(r["key"]) for r in ordered.collect()]


def export_frame(rows: DataFrame, columns: list[str]) -> DataFrame:
    """Open rows in the shape sent: one text column per column sent, plus ``reasons``."""
    # A map of text keeps each value as sent: numbers and booleans as their JSON text, arrays and
    # objects as their JSON.
    sent = F.from_json(F.col("_original"), "map<string,string>")
    return (
        rows.orderBy(F.col("_quarantined_at"), F.col(KEY))
        .withColumn("_sent", sent)
        .select(*(F.col("_sent")[c].alias(c) for c in columns), _reasons_text().alias(REASONS))
    )


def export_open(
    spark: SparkSession,
    names: TableNames,
    storage: Storage,
    tenant: str,
    entity: str,
    out: str | Path,
    *,
    encoding: str = "utf-8",
) -> int:
    """Write the tenant's open rows of ``entity`` to ``out`` (``.csv`` or ``.parquet``); the
    number of rows written. A CSV file is written in ``encoding``, the one the tenant declared
    for its files (``storage.csv_encoding``): what it sends back is read in that encoding.

    Raises:
        InputError: an unknown format, a URI, nothing open, or a file that cannot be written.
    """
    target = Path(out)
    if "://" in str(out) or target.suffix.lower() not in FORMATS:
        raise InputError(
            f"--export {out}: give a local file ending in .csv or .parquet (the customer's "
            "original column shape plus a reasons column)"
        )
    encoding = codecs.lookup(encoding).name  # latin-1 -> iso8859-1: a name Java knows too
    rows = open_rows(spark, names, tenant, entity)
    # A file sent back with an earlier export's reasons column gets today's reasons instead.
    sent = sent_columns(spark, names, storage, tenant, rows, encoding=encoding)
    columns = [c for c in sent if c != REASONS]
    frame = export_frame(rows, columns).localCheckpoint()  # counted and written from one read
    count = frame.count()
    if count == 0:
        raise InputError(
            f"tenant {tenant} has no open quarantine rows of {entity}: nothing to export"
        )
    work = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    writer = frame.coalesce(1).write.mode("overwrite")
    try:
        if target.suffix.lower() == ".csv":
            # RFC 4180 as the raw reader has it: every field quoted, quotes doubled.
            writer.option("header", True).option("quoteAll", True).option("escape", '"').option(
                "encoding", encoding
            ).csv(str(work))
        else:
            writer.parquet(str(work))
        part = next(p for p in work.iterdir() if p.name.startswith("part-"))
        part.replace(target)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return count


# --- ``cdf quarantine`` from settings: each in a session of its own ---------------------------


@contextmanager
def _known_tenant_session(settings: Settings, tenant: str) -> Iterator[SparkSession]:
    """A session on a lakehouse that exists and knows ``tenant`` (else one clear error)."""
    from cdf_pipeline.dq_report.build import check_lakehouse, known_tenant

    check_lakehouse(settings)
    with spark_session(settings, "cdf-quarantine") as spark:
        known_tenant(spark, TableNames.of(settings), settings.root, tenant)
        yield spark


def list_open(settings: Settings, tenant: str, by: str, entities: list[str]) -> list[OpenCount]:
    """The tenant's open quarantine rows of ``entities``, counted by rule, file or run."""
    with _known_tenant_session(settings, tenant) as spark:
        return open_counts(spark, TableNames.of(settings), tenant, by, entities)


def export_for_fixing(settings: Settings, tenant: str, entity: str, out: str | Path) -> int:
    """Write the tenant's open rows of ``entity`` as sent plus ``reasons`` (:func:`export_open`),
    in the tenant's CSV encoding; the number of rows written."""
    from cdf_pipeline.storage import storage_for

    with _known_tenant_session(settings, tenant) as spark:
        return export_open(
            spark,
            TableNames.of(settings),
            storage_for(settings),
            tenant,
            entity,
            out,
            encoding=settings.storage.csv_encoding,
        )
