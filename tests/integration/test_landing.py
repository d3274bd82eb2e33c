"""Landing zones (a folder, an S3 prefix on moto) into the raw zone, then the silver job.

Each test has its own lakehouse and catalog (``lake``) on the shared session; landing files are
the generator's own output, placed under customer-style names.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from support.environment import cli_env

from cdf_generator.api import generate
from cdf_pipeline import run_record as S
from cdf_pipeline.config import Settings, load_settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.lakehouse.landed import DUPLICATE, FAILED, LANDED, UNMATCHED
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.landing.land import LandSummary, land_tenant
from cdf_pipeline.landing.spark_manifest import SparkManifest
from cdf_pipeline.pipeline.silver import run_tenant
from cdf_pipeline.storage import S3Config, Storage, s3_config

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TENANT = "landco"
ROWS = 800


def generated(tmp: Path, batch: int = 1) -> dict[str, Path]:
    """One generated file per entity (the same seed gives the same rows and bytes)."""
    root = tmp / f"gen{batch}"
    generate([TENANT], ROWS, ROWS, seed=7, batch=batch, root_uri=str(root))
    return {
        e: next((root / "raw" / f"tenant_id={TENANT}" / f"entity={e}").rglob("*.parquet"))
        for e in ENTITIES
    }


def with_landing(
    lake: Settings, landing: str, endpoint: str | None = None, **extra: Any
) -> Settings:
    """``lake`` (its root and catalog) with a landing zone, and an S3 endpoint when on moto."""
    storage: dict[str, Any] = {"s3_endpoint_url": endpoint} if endpoint else {}
    storage.update(extra.pop("storage", {}))
    return load_settings(
        "local",
        overrides={
            "root": lake.root,
            "catalog": {"name": lake.catalog.name},
            "landing": {"uri": landing, **extra},
            "storage": storage,
        },
    )


def land(spark: SparkSession, settings: Settings, **kw: Any) -> LandSummary:
    names = TableNames.of(settings)
    ensure_tables(spark, names)
    return land_tenant(SparkManifest(spark, names), settings, TENANT, **kw)


def outcomes(summary: LandSummary) -> dict[str, str]:
    """Source file name -> outcome."""
    return {o.source.rsplit("/", 1)[-1]: o.outcome for o in summary.objects}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"landing-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def put(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key=key, Body=data)


def tenant_count(spark: SparkSession, table: str) -> int:
    return spark.table(table).where(F.col("tenant_id") == TENANT).count()


def test_s3_prefix_lands_exact_copies_and_every_landed_row_is_accounted_for_in_silver(
    spark: SparkSession, lake: Settings, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    files = generated(tmp_path)
    sent = {
        "suppliers/2026-11-27-export.parquet": files["suppliers"].read_bytes(),
        "exports/parts_0001.parquet": files["parts"].read_bytes(),
        "notes.txt": b"call Bob about the parts feed\n",
        "misc/prices.parquet": files["parts"].read_bytes(),
    }
    for key, data in sent.items():
        put(s3_endpoint, bucket, f"in/{TENANT}/{key}", data)
    settings = with_landing(lake, f"s3://{bucket}/in/{{tenant}}", s3_endpoint)

    summary = land(spark, settings)

    assert outcomes(summary) == {
        "2026-11-27-export.parquet": LANDED,
        "parts_0001.parquet": LANDED,
        "notes.txt": UNMATCHED,
        "prices.parquet": UNMATCHED,
    }
    assert summary.exit_code == 0
    landed = {o.entity: o for o in summary.objects if o.outcome == LANDED}
    for entity, key in (("suppliers", "suppliers/2026-11-27-export.parquet"),
                        ("parts", "exports/parts_0001.parquet")):  # fmt: skip
        raw = Path(landed[entity].raw_file or "")
        assert raw.read_bytes() == sent[key]  # an exact copy
        assert raw.name == f"{sha(sent[key])}.parquet"
        assert f"tenant_id={TENANT}/entity={entity}/ingest_date=" in str(raw)
    # Unmatched objects are reported, never moved: the source still holds them.
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"in/{TENANT}/{k}" for k in sent}

    run = run_tenant(spark, settings, TENANT)

    assert run.status == S.SUCCEEDED
    names = TableNames.of(settings)
    for entity, obj in landed.items():
        c = run.entities[entity]
        assert c.read == pq.read_metadata(obj.raw_file).num_rows  # every landed row was read
        assert tenant_count(spark, names.silver(entity)) == c.inserted
        assert tenant_count(spark, names.quarantine(entity)) == c.quarantined
        assert c.inserted + c.quarantined + c.duplicates_dropped == c.read


def test_a_reupload_lands_nothing_and_a_changed_object_lands_again(
    spark: SparkSession, lake: Settings, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    first, second = generated(tmp_path, 1), generated(tmp_path, 2)
    settings = with_landing(lake, f"s3://{bucket}/in/{{tenant}}", s3_endpoint)
    put(
        s3_endpoint, bucket, f"in/{TENANT}/suppliers/daily.parquet", first["suppliers"].read_bytes()
    )
    assert outcomes(land(spark, settings)) == {"daily.parquet": LANDED}

    # The same bytes under another name: recorded, nothing written to raw.
    put(s3_endpoint, bucket, f"in/{TENANT}/suppliers/copy.parquet", first["suppliers"].read_bytes())
    again = land(spark, settings)
    assert outcomes(again) == {"copy.parquet": DUPLICATE}
    assert again.already_seen == 1
    raw_dir = Path(settings.raw_uri) / f"tenant_id={TENANT}" / "entity=suppliers"
    assert len(list(raw_dir.rglob("*.parquet"))) == 1

    # A new version at the same key lands as a new raw file.
    put(
        s3_endpoint,
        bucket,
        f"in/{TENANT}/suppliers/daily.parquet",
        second["suppliers"].read_bytes(),
    )
    changed = land(spark, settings)
    assert outcomes(changed) == {"daily.parquet": LANDED}
    assert len(list(raw_dir.rglob("*.parquet"))) == 2

    # Nothing new: nothing read, nothing recorded.
    quiet = land(spark, settings)
    assert quiet.objects == [] and quiet.already_seen == 2


def test_a_local_landing_folder_into_raw_on_s3_keeps_the_bytes(
    spark: SparkSession, lake: Settings, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    files = generated(tmp_path)
    folder = tmp_path / "landing" / TENANT / "parts"
    folder.mkdir(parents=True)
    (folder / "parts.parquet").write_bytes(files["parts"].read_bytes())
    settings = with_landing(
        lake, str(tmp_path / "landing" / "{tenant}"), s3_endpoint,
        storage={"raw": f"s3://{bucket}/raw"},
    )  # fmt: skip

    summary = land(spark, settings)

    (obj,) = summary.objects
    assert obj.outcome == LANDED and obj.raw_file is not None
    assert obj.raw_file.startswith(f"s3://{bucket}/raw/tenant_id={TENANT}/entity=parts/")
    storage = Storage(s3_config(settings))
    with storage.open(obj.raw_file) as stream:
        assert stream.read() == files["parts"].read_bytes()
    assert not [u for u in storage.list_files(f"s3://{bucket}/raw", (".part",))]  # no leftovers


def test_delete_and_archive_only_after_the_raw_copy_verifies(
    spark: SparkSession, lake: Settings, tmp_path: Path
) -> None:
    files = generated(tmp_path)
    landing = tmp_path / "landing" / TENANT
    (landing / "suppliers").mkdir(parents=True)
    (landing / "parts").mkdir(parents=True)
    (landing / "suppliers" / "s.parquet").write_bytes(files["suppliers"].read_bytes())
    (landing / "parts" / "p.parquet").write_bytes(files["parts"].read_bytes())
    (landing / "parts" / "empty.csv").write_bytes(b"")
    settings = with_landing(
        lake, str(tmp_path / "landing" / "{tenant}"),
        after_land="archive", archive_uri=str(tmp_path / "archive" / "{tenant}"),
    )  # fmt: skip
    archive = tmp_path / "archive" / TENANT

    summary = land(spark, settings)  # as configured: archive under the tenant's folder

    assert outcomes(summary) == {"s.parquet": LANDED, "p.parquet": LANDED, "empty.csv": FAILED}
    assert summary.exit_code == 1
    assert (archive / "suppliers" / "s.parquet").read_bytes() == files["suppliers"].read_bytes()
    assert not (landing / "suppliers" / "s.parquet").exists()
    # A file that did not land stays where it is.
    assert (landing / "parts" / "empty.csv").exists()
    failed = next(o for o in summary.objects if o.outcome == FAILED)
    assert "empty file" in (failed.detail or "")

    (landing / "suppliers" / "s2.parquet").write_bytes(files["suppliers"].read_bytes())
    deleted = land(spark, settings, after_land="delete")
    # The same bytes again: a duplicate, and deleting it is safe (raw holds them, verified).
    assert outcomes(deleted) == {"s2.parquet": DUPLICATE, "empty.csv": FAILED}
    assert not (landing / "suppliers" / "s2.parquet").exists()


def test_the_manifest_keeps_every_decision(
    spark: SparkSession, lake: Settings, tmp_path: Path
) -> None:
    files = generated(tmp_path)
    landing = tmp_path / "landing" / TENANT
    landing.mkdir(parents=True)
    (landing / "suppliers.parquet").write_bytes(files["suppliers"].read_bytes())
    (landing / "readme.md").write_bytes(b"# exports\n")
    settings = with_landing(lake, str(tmp_path / "landing" / "{tenant}"))

    summary = land(spark, settings)

    rows = (
        spark.table(TableNames.of(settings).landed_files)
        .where(F.col("tenant_id") == TENANT)
        .select("source", "outcome", "entity", "sha256", "size", "land_id")
        .collect()
    )
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == {"suppliers.parquet", "readme.md"}
    data = files["suppliers"].read_bytes()
    assert by_name["suppliers.parquet"]["sha256"] == sha(data)
    assert by_name["suppliers.parquet"]["size"] == len(data)
    assert by_name["suppliers.parquet"]["entity"] == "suppliers"
    assert by_name["readme.md"]["outcome"] == UNMATCHED
    assert {r["land_id"] for r in rows} == {summary.land_id}


# --- the command line, as a scheduler runs it -----------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SECRET = "never-print-this-secret-0123456789"


def cdf_land(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cdf_pipeline.cli", "land", "--tenant", TENANT, "--root"]
    return subprocess.run(
        [*cmd, str(root), *extra],
        cwd=REPO, env=cli_env(CDF__SPARK__MASTER="local[1]"), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def test_cdf_land_prints_a_summary_and_json_and_refuses_bad_sources(tmp_path: Path) -> None:
    files = generated(tmp_path)
    root = tmp_path / "lake"
    landing = root / "landing" / TENANT / "parts"
    landing.mkdir(parents=True)
    (landing / "parts-1.parquet").write_bytes(files["parts"].read_bytes())
    (landing.parent / "notes.txt").write_text("not data\n")

    ok = cdf_land(root, "--json")

    assert ok.returncode == 0, ok.stderr[-2000:]
    result = json.loads(ok.stdout.strip().splitlines()[-1])
    assert result["counts"] == {"LANDED": 1, "DUPLICATE": 0, "UNMATCHED": 1, "FAILED": 0}
    assert "UNMATCHED" in ok.stderr and "notes.txt" in ok.stderr  # reported to the person too

    for extra, needle in (
        (("--from", str(tmp_path / "nowhere")), "does not exist"),
        (("--from", f"s3://AKIA:{SECRET}@bucket/in/"), "carries a credential"),
        (("--archive-to", str(tmp_path / "a"), "--delete-after-land"), "not allowed with"),
    ):
        bad = cdf_land(root, *extra)
        lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert len(lines) == 1 and needle in lines[0], bad.stderr[-2000:]
        assert SECRET not in bad.stdout + bad.stderr


def test_generated_customer_files_through_landing_quarantine_exactly_the_labelled_rows(
    spark: SparkSession, lake: Settings
) -> None:
    from test_silver_job import expected_codes, labels, quarantined_codes

    landing = str(Path(lake.root) / "drop")
    summary = generate([TENANT], ROWS, ROWS, seed=3, root_uri=lake.root, landing_uri=landing)
    assert all(f.startswith(landing) and "_batch1." in f for f in summary.files)
    settings = with_landing(lake, landing + "/{tenant}")

    landed = land(spark, settings)
    run = run_tenant(spark, settings, TENANT)

    assert landed.counts[LANDED] == len(ENTITIES) and run.status == S.SUCCEEDED
    for entity in ENTITIES:
        lab = labels(spark, lake, TENANT, entity, 1)
        assert_df_equality(
            quarantined_codes(spark, lake, entity, TENANT),
            expected_codes(lab),
            ignore_row_order=True,
            ignore_nullable=True,
        )


def test_a_link_leaving_the_landing_zone_is_reported_and_never_read(
    spark: SparkSession, lake: Settings, tmp_path: Path
) -> None:
    files = generated(tmp_path)
    secret = tmp_path / "elsewhere" / "suppliers.parquet"
    secret.parent.mkdir()
    secret.write_bytes(files["suppliers"].read_bytes())
    landing = tmp_path / "landing" / TENANT / "suppliers"
    landing.mkdir(parents=True)
    (landing / "linked.parquet").symlink_to(secret)
    settings = with_landing(lake, str(tmp_path / "landing" / "{tenant}"))

    summary = land(spark, settings)

    assert outcomes(summary) == {"linked.parquet": FAILED}
    (obj,) = summary.objects
    assert "not followed" in (obj.detail or "") and obj.sha256 is None
    assert not list((Path(settings.raw_uri)).rglob("*.parquet"))


def test_generate_to_an_s3_landing_prefix_writes_customer_named_files(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = Storage(S3Config(endpoint=s3_endpoint, region="us-east-1", path_style=True))
    summary = generate(
        [TENANT], 300, 300, seed=9, root_uri=str(tmp_path / "root"),
        landing_uri=f"s3://{bucket}/drop", storage=storage,
    )  # fmt: skip

    keys = sorted(
        o["Key"]
        for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)[
            "Contents"
        ]
    )
    assert keys == sorted(f"drop/{TENANT}/{e}/{e}_2026-01-01_batch1.parquet" for e in ENTITIES)
    assert sorted(summary.files) == [f"s3://{bucket}/{k}" for k in keys]
    # The labels name each file by its content hash: the raw name it gets when it lands.
    for entity in ENTITIES:
        label = tmp_path / "root" / "labels" / f"tenant_id={TENANT}" / f"entity={entity}"
        source = pq.read_table(label / "batch=1" / "labels.parquet").column("source_file")
        uri = f"s3://{bucket}/drop/{TENANT}/{entity}/{entity}_2026-01-01_batch1.parquet"
        with storage.open(uri) as f:
            assert set(source.to_pylist()) == {f"{sha(f.read())}.parquet"}
