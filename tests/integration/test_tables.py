"""ensure_tables: the DDL runs once per session and catalog, from any number of threads, and a
new session creates what is missing again; ops.runs keeps one record per run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdf_pipeline import run_record as S
from cdf_pipeline.contracts import SUPPLIERS
from cdf_pipeline.lakehouse import ops
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables, table_ddl

pytestmark = pytest.mark.spark


def _counting(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The DDL statements ``spark`` runs from now on (its ``sql`` is wrapped)."""
    seen: list[str] = []
    run: Callable[..., Any] = spark.sql

    def sql(query: str, *args: Any, **kwargs: Any) -> Any:
        if query.startswith("CREATE"):
            seen.append(query)
        return run(query, *args, **kwargs)

    monkeypatch.setattr(spark, "sql", sql)
    return seen


def _names() -> TableNames:
    """Tables of their own in the session's ``cdf`` catalog (a catalog every session knows)."""
    return TableNames("cdf", prefix=f"t{uuid.uuid4().hex[:8]}_")


def test_the_ddl_runs_once_per_session_from_many_threads(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _names()
    seen = _counting(spark, monkeypatch)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: ensure_tables(spark, names), range(8)))
    assert seen == table_ddl(names)  # each statement once, in order
    ensure_tables(spark, names)
    assert len(seen) == len(table_ddl(names))
    assert spark.catalog.tableExists(names.silver(SUPPLIERS))


def test_a_new_session_creates_a_dropped_table_again(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _names()
    ensure_tables(spark, names)
    spark.sql(f"DROP TABLE {names.silver(SUPPLIERS)}")
    ensure_tables(spark, names)  # this session has run its DDL: the drop goes unnoticed
    assert not spark.catalog.tableExists(names.silver(SUPPLIERS))

    other = spark.newSession()
    seen = _counting(other, monkeypatch)
    ensure_tables(other, names)
    assert seen == table_ddl(names)
    assert other.catalog.tableExists(names.silver(SUPPLIERS))


def test_silver_and_quarantine_files_keep_dictionaries_for_codes_only(spark: SparkSession) -> None:
    """A column of many distinct values is written plain once its dictionary passes 64 KB
    (at Parquet's 2 MB default, names repeating every 10,000 rows kept theirs: dictionary and
    indices were smaller than the plain values), while a code list keeps its dictionary."""
    names = _names()
    ensure_tables(spark, names)
    given = {
        "supplier_id": F.format_string("01JD%022d", F.col("id")),  # 26 characters, unique
        "tenant_id": F.lit("acme"),
        "legal_name": F.format_string("Supplier number %010d", F.col("id") % 10_000),
        "country": F.element_at(
            F.array(*map(F.lit, ("DE", "FR", "US"))), (F.col("id") % 3 + 1).cast("int")
        ),
    }
    for table in (names.silver(SUPPLIERS), names.quarantine(SUPPLIERS)):
        schema = spark.table(table).schema
        rows = spark.range(200_000, numPartitions=1).select(
            *(given.get(f.name, F.lit(None).cast(f.dataType)).alias(f.name) for f in schema)
        )
        rows.writeTo(table).append()
        for (path,) in spark.sql(f"SELECT file_path FROM {table}.files").collect():
            meta = pq.ParquetFile(path.removeprefix("file:")).metadata.row_group(0)
            chunks = {
                meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)
            }
            assert not chunks["legal_name"].has_dictionary_page, (table, path)
            assert chunks["country"].has_dictionary_page, (table, path)


def test_a_failure_record_never_replaces_a_finished_one(spark: SparkSession) -> None:
    """A run that lost its lease after its PUBLISHING record may have been completed under its
    id by the run that took the tenant over: its own FAILED record must not replace that."""
    names = _names()
    ensure_tables(spark, names)
    now = datetime.now(timezone.utc)
    run = S.RunSummary(tenant="over", run_id="r1", status=S.PUBLISHING, started_at=now)

    def record(status: str, **kw: Any) -> None:
        run.status = status
        ops.upsert_run(spark, names, run.row(), f"v_{uuid.uuid4().hex[:8]}", **kw)

    def recorded() -> list[str]:
        return [r.status for r in spark.table(names.runs).collect()]

    record(S.PUBLISHING)
    record(S.FAILED, over_publishing_only=True)  # still PUBLISHING: the failure is recorded
    assert recorded() == [S.FAILED]
    record(S.SUCCEEDED)  # the run that took over completed the publish
    record(S.FAILED, over_publishing_only=True)
    assert recorded() == [S.SUCCEEDED]
