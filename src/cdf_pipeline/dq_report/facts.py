"""What the report shows, read from ``ops.runs``, ``ops.ingested_files`` and the quarantine tables.

Everything data-sized is aggregated in Spark; what reaches Python is a row per run (``ops.runs``
holds one per run, see ``lakehouse/ops.py``), a row per (tenant, entity, status) or rule, and
samples bounded by a window (``SAMPLES_PER_RULE`` rows per rule, ``OLDEST_OPEN`` per tenant,
``FILE_PROBLEMS`` per tenant), each value cut to ``VALUE_CHARS``. Every query filters on the
tenants asked for, so nothing of another tenant is read into the report.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.lakehouse.quarantine import KEY, OPEN
from cdf_pipeline.lakehouse.tables import TableNames

#: Quarantined rows shown per rule and tenant, newest first.
SAMPLES_PER_RULE = 3
#: Open quarantine rows listed per tenant, oldest first.
OLDEST_OPEN = 5
#: Failed files and drift notes listed per tenant, newest first.
FILE_PROBLEMS = 20
#: A value (or a run's message, a file's error) is cut to this many characters.
VALUE_CHARS = 200
#: The row as sent is cut to this many characters before it leaves Spark.
ORIGINAL_CHARS = 1000
#: Samples are shown for this many rules per tenant, those with most open rows: with the cuts
#: above, a tenant's samples stay under ~70 KB of the page, whatever the number of rules.
SAMPLED_RULES = 20

#: ``ops.runs`` columns the report reads; a lakehouse without one is of an older layout.
RUN_COLUMNS = (
    "tenant_id",
    "run_id",
    "trace_id",
    "status",
    "message",
    "started_at",
    "duration_s",
    "read",
    "inserted",
    "updated",
    "quarantined",
    "promoted",
    "pass_rate",
    "violation_counts",
    "inputs",
)

#: Column names whose values a sample never shows (a customer may send credentials by mistake).
SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|api_?key|credential|private", re.I)
MASK = "***"


@dataclass(frozen=True)
class Run:
    """One ``ops.runs`` row, as the report uses it."""

    tenant: str
    run_id: str
    trace_id: str | None
    status: str
    message: str
    started_at: datetime
    duration_s: float
    read: int
    inserted: int
    updated: int
    quarantined: int
    promoted: int
    pass_rate: float | None
    violations: dict[str, int]
    files: list[dict[str, Any]]

    @property
    def has_data(self) -> bool:
        """Whether the run staged rows (its pass rate and rule counts mean something)."""
        return self.read + self.promoted > 0


@dataclass
class TenantFacts:
    """Everything the report knows about one tenant."""

    tenant: str
    threshold: float
    runs: list[Run] = field(default_factory=list)
    #: (entity, status) -> (rows, oldest ``_quarantined_at``)
    quarantine: dict[tuple[str, str], tuple[int, datetime | None]] = field(default_factory=dict)
    #: (entity, rule) -> open rows
    open_by_rule: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_open: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    #: (entity, status) -> files in the manifest
    manifest: dict[tuple[str, str], int] = field(default_factory=dict)
    file_problems: list[dict[str, Any]] = field(default_factory=list)

    def open_rows(self) -> int:
        return sum(n for (_, status), (n, _) in self.quarantine.items() if status == OPEN)

    def data_runs(self) -> list[Run]:
        return [r for r in self.runs if r.has_data]

    def manifest_failed(self) -> int:
        return sum(n for (_, status), n in self.manifest.items() if status == "FAILED")

    def rule_moves(self, top: int = 5) -> list[tuple[str, int, int]]:
        """(rule, rows in the previous run, rows in the latest) of the rules whose count moved
        most between the last two runs that staged rows, largest move first."""
        runs = self.data_runs()
        if len(runs) < 2:
            return []
        before, after = runs[-2].violations, runs[-1].violations
        moves = [(rule, before.get(rule, 0), after.get(rule, 0)) for rule in {*before, *after}]
        moves = [m for m in moves if m[1] != m[2]]
        moves.sort(key=lambda m: (-abs(m[2] - m[1]), m[0]))
        return moves[:top]


def _basename(col: Column) -> Column:
    return F.element_at(F.split(col, "/"), -1)


def _cut(col: Column, chars: int = VALUE_CHARS) -> Column:
    return F.substring(col, 1, chars)


def read_runs(
    spark: SparkSession, names: TableNames, tenants: list[str], since: datetime | None
) -> list[Run]:
    """The tenants' runs since ``since``, oldest first (a row per run; files cut to their name)."""
    runs = spark.table(names.runs).where(F.col("tenant_id").isin(tenants))
    if since is not None:
        runs = runs.where(F.col("started_at") >= F.lit(since))
    files = F.transform(
        F.coalesce(F.col("inputs"), F.array()),
        lambda f: F.struct(
            f["entity"].alias("entity"),
            _basename(f["file"]).alias("file"),
            f["rows"].alias("rows"),
            f["status"].alias("status"),
            _cut(f["error"]).alias("error"),
            _cut(f["note"]).alias("note"),
        ),
    )
    rows = (
        runs.select(
            *RUN_COLUMNS[:4],
            _cut(F.coalesce(F.col("message"), F.lit(""))).alias("message"),
            *RUN_COLUMNS[5:-1],
            files.alias("inputs"),
        )
        .orderBy("tenant_id", "started_at", "run_id")
        .collect()
    )
    return [
        Run(
            tenant=r["tenant_id"],
            run_id=r["run_id"],
            trace_id=r["trace_id"],
            status=r["status"],
            message=r["message"],
            started_at=r["started_at"],
            duration_s=float(r["duration_s"] or 0.0),
            read=int(r["read"] or 0),
            inserted=int(r["inserted"] or 0),
            updated=int(r["updated"] or 0),
            quarantined=int(r["quarantined"] or 0),
            promoted=int(r["promoted"] or 0),
            pass_rate=r["pass_rate"],
            violations={k: int(v) for k, v in (r["violation_counts"] or {}).items()},
            files=[f.asDict() for f in r["inputs"]],
        )
        for r in rows
    ]


def _quarantine_union(
    spark: SparkSession,
    names: TableNames,
    tenants: list[str],
    exists: Callable[[str], bool],
    select: Callable[[DataFrame, str], DataFrame],
) -> DataFrame | None:
    """``select(table, entity)`` over every entity's quarantine table, as one DataFrame (one
    Spark job for all entities); None when no quarantine table exists yet."""
    parts = []
    for name, entity in ENTITIES.items():
        table = names.quarantine(entity)
        if not exists(table):
            continue
        rows = spark.table(table).where(F.col("tenant_id").isin(tenants))
        parts.append(select(rows, name))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def _status_counts(rows: DataFrame, entity: str) -> DataFrame:
    return rows.groupBy("tenant_id", "_status", F.lit(entity).alias("entity")).agg(
        F.count(F.lit(1)).alias("rows"),
        F.min("_quarantined_at").alias("oldest"),
    )


def _open_by_rule(rows: DataFrame, entity: str) -> DataFrame:
    return (
        rows.where(F.col("_status") == OPEN)
        .select("tenant_id", F.explode(F.col("_violations.rule")).alias("rule"))
        .groupBy("tenant_id", "rule", F.lit(entity).alias("entity"))
        .agg(F.count(F.lit(1)).alias("rows"))
    )


def _row_ref(rows: DataFrame, entity: str) -> list[Column]:
    """The columns that name a quarantined row: its key, file, run and when it was set aside."""
    pk = ENTITIES[entity].primary_key
    return [
        F.col("tenant_id"),
        F.lit(entity).alias("entity"),
        _cut(F.col(pk).cast("string")).alias("key"),
        _basename(F.col("_source_file")).alias("file"),
        F.col("_run_id").alias("run_id"),
        F.col("_quarantined_at").alias("quarantined_at"),
    ]


def _oldest_open(rows: DataFrame, entity: str) -> DataFrame:
    w = Window.partitionBy("tenant_id").orderBy("_quarantined_at", KEY)
    return (
        rows.where(F.col("_status") == OPEN)
        .select(
            *_row_ref(rows, entity),
            F.array_join(F.col("_violations.rule"), ", ").alias("rules"),
            F.row_number().over(w).alias("n"),
        )
        .where(F.col("n") <= OLDEST_OPEN)
    )


def _samples(rows: DataFrame, entity: str) -> DataFrame:
    w = Window.partitionBy("tenant_id", "rule").orderBy(F.col("quarantined_at").desc(), KEY)
    reasons = F.transform(
        "_violations",
        lambda v: F.struct(
            v["rule"].alias("rule"), v["column"].alias("column"), _cut(v["value"]).alias("value")
        ),
    )
    return (
        rows.where(F.col("_status") == OPEN)
        .select(
            *_row_ref(rows, entity),
            _cut(F.col("_original"), ORIGINAL_CHARS).alias("original"),
            reasons.alias("reasons"),
            F.col(KEY),
            F.explode(F.col("_violations.rule")).alias("rule"),
        )
        .withColumn("n", F.row_number().over(w))
        .where(F.col("n") <= SAMPLES_PER_RULE)
        .drop(KEY)
    )


def _by_tenant(rows: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        d = r.asDict(recursive=True)
        out[d.pop("tenant_id")].append(d)
    return out


def redact(original: str | None) -> str:
    """The row as sent, with values of secret-looking columns masked and each value cut to
    ``VALUE_CHARS`` (a cut-short row is masked by pattern instead)."""
    if not original:
        return ""
    try:
        row = json.loads(original)
    except ValueError:  # cut short by ORIGINAL_CHARS
        return re.sub(
            r'("(?:[^"]*(?:pass|secret|token|api_?key|credential|private)[^"]*)"\s*:\s*)'
            r'("(?:[^"\\]|\\.)*"|[^,}]*)',
            lambda m: m.group(1) + json.dumps(MASK),
            original,
            flags=re.I,
        )
    if not isinstance(row, dict):
        return original[:VALUE_CHARS]
    shown = {}
    for k, v in row.items():
        if SECRET_NAME.search(str(k)):
            shown[k] = MASK
        elif isinstance(v, str) and len(v) > VALUE_CHARS:
            shown[k] = v[:VALUE_CHARS] + "…"
        else:
            shown[k] = v
    return json.dumps(shown, ensure_ascii=False, default=str)


def read_quarantine(
    spark: SparkSession,
    names: TableNames,
    facts: dict[str, TenantFacts],
    exists: Callable[[str], bool],
) -> None:
    """Open/resolved counts, open rows per rule, oldest open rows and samples, into ``facts``."""
    tenants = sorted(facts)
    union = _quarantine_union  # four Spark jobs in all, whatever the number of entities
    status = union(spark, names, tenants, exists, _status_counts)
    if status is None:
        return
    for r in status.collect():
        facts[r["tenant_id"]].quarantine[(r["entity"], r["_status"])] = (r["rows"], r["oldest"])
    by_rule = union(spark, names, tenants, exists, _open_by_rule)
    for r in by_rule.collect() if by_rule is not None else []:
        facts[r["tenant_id"]].open_by_rule[(r["entity"], r["rule"])] = int(r["rows"])
    oldest = union(spark, names, tenants, exists, _oldest_open)
    for tenant, rows in _by_tenant(oldest.collect() if oldest is not None else []).items():
        facts[tenant].oldest_open = sorted(rows, key=lambda d: d["quarantined_at"])
    samples = union(spark, names, tenants, exists, _samples)
    for tenant, rows in _by_tenant(samples.collect() if samples is not None else []).items():
        busiest = sorted(facts[tenant].open_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = {rule for (_, rule), _ in busiest[:SAMPLED_RULES]}
        rows = [d for d in rows if d["rule"] in shown]
        for d in rows:
            d["original"] = redact(d["original"])
            for reason in d["reasons"]:
                if SECRET_NAME.search(reason.get("column") or ""):
                    reason["value"] = MASK
        facts[tenant].samples = sorted(rows, key=lambda d: (d["rule"], d["n"]))


def read_manifest(
    spark: SparkSession, names: TableNames, facts: dict[str, TenantFacts], since: datetime | None
) -> None:
    """Files per (entity, status) from ``ops.ingested_files``, and the latest files that were not
    simply ingested (failed, or skipped or ignored where the manifest records those) or drifted,
    with their error or note."""
    files = spark.table(names.ingested_files).where(F.col("tenant_id").isin(sorted(facts)))
    if since is not None:
        files = files.where(F.col("ingested_at") >= F.lit(since))
    for r in files.groupBy("tenant_id", "entity", "status").count().collect():
        facts[r["tenant_id"]].manifest[(r["entity"], r["status"])] = int(r["count"])
    w = Window.partitionBy("tenant_id").orderBy(F.col("ingested_at").desc(), "file")
    problems = (
        files.where((F.col("status") != "INGESTED") | F.col("note").isNotNull())
        .select(
            "tenant_id",
            "entity",
            _basename(F.col("file")).alias("file"),
            "status",
            "run_id",
            "ingested_at",
            _cut(F.col("error")).alias("error"),
            _cut(F.col("note")).alias("note"),
            F.row_number().over(w).alias("n"),
        )
        .where(F.col("n") <= FILE_PROBLEMS)
    )
    for tenant, rows in _by_tenant(problems.collect()).items():
        facts[tenant].file_problems = sorted(rows, key=lambda d: d["n"])
