"""A lost table has a way back; a store that vanishes under a run fails it in bounded time.

On moto (S3 and Glue) with the aws profile, as a scheduler runs it: ``cdf`` child processes. A
table whose current metadata file is gone (a bucket emptied and created again, a file deleted by
hand) fails every run in one line naming the table, the file and the repair; ``cdf maintain
--repair`` re-registers it from its newest surviving metadata file or, with ``--drop-broken``,
drops it so the next run rebuilds it from the raw files sent again. A store that vanishes under a
run (its endpoint killed, its bucket deleted) ends the run within ``storage.timeout_seconds``: one
line on stderr at the default verbosity, the JVM's Java traces under ``-v``.

One lakehouse (a bucket and Glue namespaces of the session's moto server) serves the repair
tests, which read what they compare at their own start, so their order does not matter; each
vanishing store is a bucket or a moto server of its own. The embedded default's repair (JDBC
catalog in SQLite, local files) runs in the session's JVM.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.environment import cli_env, free_port, require
from support.lakes import make_lake

from cdf_generator.api import generate
from cdf_pipeline.lakehouse.maintenance import maintained_tables, short_name
from cdf_pipeline.lakehouse.tables import TableNames, ensure_tables
from cdf_pipeline.orchestration.maintain import maintain
from cdf_pipeline.orchestration.maintain_report import REPAIR, format_report
from cdf_pipeline.storage import S3Config, Storage

pytestmark = [pytest.mark.slow, pytest.mark.catalogs, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
TENANT, ROWS, SEED = "acme", 120, 11
#: moto accepts any credentials; these throwaway values are what the tests assert never leak.
AWS_KEY, AWS_SECRET = "AKIATESTONLYKEY", "lost-table-secret-never-printed"
#: What a store that vanished may take beyond its timeout to end the run: the Python side
#: writing its line and the process exiting.
ALLOWANCE_S = 10.0


@dataclass
class Lake:
    """A lakehouse on a moto server: its bucket, Glue namespace prefix and first load."""

    endpoint: str
    bucket: str
    prefix: str
    first: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/lake"

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(
            AWS_ACCESS_KEY_ID=AWS_KEY, AWS_SECRET_ACCESS_KEY=AWS_SECRET, AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=self.endpoint, CDF__CATALOG__NAMESPACE_PREFIX=self.prefix,
            CDF__SPARK__MASTER="local[2]", **extra,
        )  # fmt: skip

    def command(self, *args: str, verbose: bool = False) -> list[str]:
        flags = ["-v"] if verbose else []
        return [sys.executable, "-m", "cdf_pipeline.cli", *flags, *args,
                "--profile", "aws", "--root", self.root]  # fmt: skip

    def cdf(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.command(*args), cwd=REPO, env=self.env(), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert AWS_SECRET not in proc.stdout + proc.stderr
        return proc

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET,
        )  # fmt: skip

    def generate(self, batch: int = 1) -> None:
        """The tenant's raw files of ``batch`` (the same bytes every time)."""
        storage = Storage(S3Config(self.endpoint, "us-east-1", path_style=True))
        generate([TENANT], ROWS, ROWS, seed=SEED, batch=batch, root_uri=self.root, storage=storage)

    def pointer(self, table: str) -> str:
        """The metadata file Glue points ``namespace.table`` at (the prefix added here)."""
        database, name = table.split(".")
        got = self.client("glue").get_table(DatabaseName=self.prefix + database, Name=name)
        return str(got["Table"]["Parameters"]["metadata_location"])

    def rows(self, table: str) -> int:
        """The tenant's rows in ``namespace.table``, read by pyiceberg through Glue."""
        from pyiceberg.expressions import EqualTo

        loaded = self.pyiceberg().load_table(self.prefix + table)
        scan = loaded.scan(row_filter=EqualTo("tenant_id", TENANT), selected_fields=("tenant_id",))
        return scan.to_arrow().num_rows

    def pyiceberg(self) -> Any:
        from pyiceberg.catalog import load_catalog

        return load_catalog("cdf", **self.pyiceberg_properties(), type="glue",
                            **{"glue.endpoint": self.endpoint, "glue.region": "us-east-1",
                               "glue.access-key-id": AWS_KEY,
                               "glue.secret-access-key": AWS_SECRET})  # fmt: skip

    def pyiceberg_properties(self) -> dict[str, str]:
        return {"s3.endpoint": self.endpoint, "s3.path-style-access": "true",
                "s3.access-key-id": AWS_KEY, "s3.secret-access-key": AWS_SECRET,
                "s3.region": "us-east-1"}  # fmt: skip


def new_lake(endpoint: str) -> Lake:
    lake = Lake(endpoint, f"lost-{uuid.uuid4().hex[:10]}", f"t{uuid.uuid4().hex[:6]}_")
    lake.client("s3").create_bucket(Bucket=lake.bucket)
    return lake


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stderr[-3000:]
    return dict(json.loads(lines[-1]))


def one_error_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """Exit 1 and exactly one line on stderr, the command's error (no trace, no log line)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"cdf {command}: error: "), lines[0]
    return lines[0]


def tables() -> list[str]:
    """``namespace.table`` of every table the lakehouse has (without the prefix)."""
    return [short_name(t) for t in maintained_tables(TableNames("cdf"))]


@pytest.fixture(scope="module", autouse=True)
def credentials(s3_endpoint: str) -> None:
    """pyarrow, which writes the raw files here, signs with the environment's credentials: the
    session's moto fixture sets throwaway ones (the children get their own, ``Lake.env``)."""


@pytest.fixture(scope="module")
def lake(s3_endpoint: str) -> Lake:
    """The first load of a small tenant."""
    made = new_lake(s3_endpoint)
    made.generate()
    made.first = summary(made.cdf("run", "--tenant", TENANT, "--json"))
    assert made.first["status"] == "SUCCEEDED", made.first
    return made


def metadata_files(lake: Lake, pointer: str) -> dict[int, str]:
    """Version -> metadata file in the folder of ``pointer``."""
    folder = pointer.removeprefix(f"s3://{lake.bucket}/").rsplit("/", 1)[0]
    listed = lake.client("s3").list_objects_v2(Bucket=lake.bucket, Prefix=folder + "/")
    keys = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".metadata.json")]
    return {int(k.rsplit("/", 1)[1].split("-")[0]): f"s3://{lake.bucket}/{k}" for k in keys}


def test_a_deleted_metadata_file_is_named_and_the_table_re_registered(lake: Lake) -> None:
    table = "silver.suppliers"
    current = lake.pointer(table)
    versions = metadata_files(lake, current)
    newest = max(versions)
    assert versions[newest] == current and len(versions) >= 2
    older = versions[max(v for v in versions if v < newest)]
    lake.client("s3").delete_object(
        Bucket=lake.bucket, Key=current.removeprefix(f"s3://{lake.bucket}/")
    )

    line = one_error_line(lake.cdf("run", "--tenant", TENANT), "run")
    assert f"table cdf.{lake.prefix}{table} is lost" in line, line
    assert f"metadata file {current}, which no longer exists" in line
    assert "'cdf maintain --repair'" in line and "check the catalog settings" not in line

    repaired = lake.cdf("maintain", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert summary(repaired)["lost_tables"] == [
        {
            "table": lake.prefix + table,
            "missing_metadata_file": current,
            "action": "reregistered",
            "restored_from": older,
            "restored_version": max(v for v in versions if v < newest),
        }
    ]
    assert f"re-registered from {older}" in repaired.stderr
    # The catalog points at the survivor, and the table reads as that commit left it.
    assert lake.pointer(table) == older
    from pyiceberg.table import StaticTable

    loaded = lake.pyiceberg().load_table(lake.prefix + table)
    then = StaticTable.from_metadata(older, properties=lake.pyiceberg_properties())
    assert loaded.metadata_location == older
    assert loaded.scan().to_arrow().num_rows == then.scan().to_arrow().num_rows


def delete_bucket(lake: Lake) -> None:
    """The lakehouse bucket emptied and deleted (emptied again while a run writes to it)."""
    from botocore.exceptions import ClientError

    s3 = lake.client("s3")
    for _ in range(50):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=lake.bucket, Delete={"Objects": keys})
        try:
            s3.delete_bucket(Bucket=lake.bucket)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketNotEmpty":
                raise
    raise AssertionError(f"bucket {lake.bucket} kept filling up")


@pytest.mark.spark
def test_the_embedded_catalogs_lost_table_is_re_registered(spark: Any, tmp_path: Path) -> None:
    """The same repair on the embedded default (JDBC catalog in SQLite, HadoopFileIO), in this
    process's session: the table's newest metadata file deleted, the previous one registered."""
    local = make_lake(spark, tmp_path / "lake", properties={"cache-enabled": "false"})
    names = TableNames.of(local)
    ensure_tables(spark, names)
    table = names.silver("suppliers")
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('cdf.test' = 'a second metadata file')")
    folder = Path(local.warehouse_uri) / "silver" / "suppliers" / "metadata"
    first, second = sorted(folder.glob("*.metadata.json"))
    second.unlink()

    report = maintain(spark, local, mode=REPAIR)

    assert report.exit_code == 0, format_report(report)
    assert [r.to_dict() for r in report.lost] == [
        {
            "table": "silver.suppliers",
            "missing_metadata_file": str(second),
            "action": "reregistered",
            "restored_from": str(first),
            "restored_version": 0,
        }
    ]
    assert "cdf.test" not in dict(spark.sql(f"SHOW TBLPROPERTIES {table}").collect())


def empty_and_recreate(lake: Lake) -> None:
    """What was observed: the lakehouse bucket deleted, then made again, empty."""
    delete_bucket(lake)
    lake.client("s3").create_bucket(Bucket=lake.bucket)


def test_tables_lost_with_their_bucket_are_dropped_on_request_and_rebuilt_from_raw(
    lake: Lake,
) -> None:
    pointers = {t: lake.pointer(t) for t in tables()}
    empty_and_recreate(lake)

    line = one_error_line(lake.cdf("run", "--tenant", TENANT), "run")
    lost = re.search(r"table cdf\.(\S+) is lost", line)
    assert lost is not None, line
    assert pointers[lost.group(1).removeprefix(lake.prefix)] in line
    assert "'cdf maintain --repair'" in line and "--drop-broken" in line

    kept = lake.cdf("maintain", "--repair", "--json")
    assert kept.returncode == 1, kept.stderr[-3000:]
    found = summary(kept)
    assert found["status"] == "TABLES_LOST"
    left = {r["table"]: (r["missing_metadata_file"], r["action"]) for r in found["lost_tables"]}
    assert left == {lake.prefix + t: (p, "left") for t, p in pointers.items()}
    assert "run again with --repair --drop-broken" in kept.stderr
    assert all(lake.pointer(t) == p for t, p in pointers.items())  # nothing changed

    dropped = lake.cdf("maintain", "--repair", "--drop-broken", "--json")
    assert dropped.returncode == 0, dropped.stderr[-3000:]
    actions = {r["table"]: r["action"] for r in summary(dropped)["lost_tables"]}
    assert actions == {lake.prefix + t: "dropped" for t in pointers}

    lake.generate()  # the raw files sent again
    rebuilt = summary(lake.cdf("run", "--tenant", TENANT, "--json"))
    assert rebuilt["status"] == "SUCCEEDED", rebuilt
    for entity in ("suppliers", "parts"):
        inserted = lake.first["entities"][entity]["inserted"]
        assert rebuilt["entities"][entity]["inserted"] == inserted
        assert lake.rows(f"silver.{entity}") == inserted


# --- a store that vanishes under a run ----------------------------------------------------------


@dataclass
class MotoServer:
    """A moto server in a process of its own, to be killed."""

    endpoint: str
    proc: subprocess.Popen[bytes]


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("w")
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    require(False, "a moto server of the test's own did not start")
                time.sleep(0.2)
        yield MotoServer(endpoint, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log.close()


@contextmanager
def started_run(lake: Lake, tmp_path: Path, *, verbose: bool, **env: str) -> Iterator[Any]:
    """``cdf run`` of the lake's tenant in the background, its output to files (the JVM holds
    the process's stderr: a pipe would wait for it); killed if still running at the end."""
    with (tmp_path / "run.out").open("w") as out, (tmp_path / "run.err").open("w") as err:
        run = subprocess.Popen(
            lake.command("run", "--tenant", TENANT, verbose=verbose), cwd=REPO,
            env=lake.env(**env), stdout=out, stderr=err,
        )  # fmt: skip
        try:
            yield run
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)


def wait_for_data_files(lake: Lake, run: Any) -> None:
    """Until the run has written its first table data file."""
    s3 = lake.client("s3")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and run.poll() is None:
        listed = s3.list_objects_v2(Bucket=lake.bucket, Prefix="lake/warehouse/")
        if any("/data/" in o["Key"] for o in listed.get("Contents", [])):
            return
        time.sleep(0.2)
    raise AssertionError(f"the run wrote no data file (exit {run.poll()})")


def time_to_exit(run: Any, since: float) -> float:
    run.wait(timeout=600)
    return time.monotonic() - since


def test_a_killed_endpoint_fails_the_run_within_the_bound_in_one_line(
    own_moto: MotoServer, tmp_path: Path
) -> None:
    """The profile's bound from the moment moto is killed; stderr is the error alone. The bound
    is 20 s here, so that the test does not wait out the default 60 s (which the settings' unit
    test checks) on the suite's time."""
    lake = new_lake(own_moto.endpoint)
    lake.generate()
    bound = 20
    with started_run(
        lake, tmp_path, verbose=False, CDF__STORAGE__TIMEOUT_SECONDS=str(bound)
    ) as run:
        wait_for_data_files(lake, run)
        own_moto.proc.kill()
        own_moto.proc.wait(timeout=10)
        took = time_to_exit(run, time.monotonic())
    err = (tmp_path / "run.err").read_text()
    print(f"the run ended {took:.1f} s after its endpoint was killed")
    assert took <= bound + ALLOWANCE_S, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert run.returncode == 1 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("cdf run: error: ") and "\tat " not in err


def test_a_deleted_bucket_fails_the_run_within_the_profiles_bound_with_traces_under_verbose(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """The observed case (Glue answers, the bucket is gone: Iceberg retries each metadata read
    for minutes) under a bound of 20 s; ``-v`` shows the JVM's Java traces. Without the
    catalog's table cache every table access after the deletion reads metadata, so what ends the
    run is the store watch, not a failed write."""
    lake = new_lake(s3_endpoint)
    lake.generate()
    env = {"CDF__STORAGE__TIMEOUT_SECONDS": "20",
           "CDF__CATALOG__PROPERTIES": '{"cache-enabled": "false"}'}  # fmt: skip
    with started_run(lake, tmp_path, verbose=True, **env) as run:
        wait_for_data_files(lake, run)
        delete_bucket(lake)
        took = time_to_exit(run, time.monotonic())
    err = (tmp_path / "run.err").read_text()
    print(f"the run ended {took:.1f} s after its bucket was deleted")
    assert took <= 20 + ALLOWANCE_S, err[-3000:]
    assert run.returncode == 1
    assert re.search(r"^\s+at (org\.apache|software\.amazon)\.", err, re.MULTILINE), err[-3000:]
    assert "WARN Tasks: Retrying task after failure" in err  # Iceberg's metadata-read retries
    stopped = [ln for ln in err.splitlines() if ln.startswith("cdf run: error: ")]
    watch_line = (
        rf"cdf run: error: the lakehouse bucket '{lake.bucket}' at {re.escape(lake.endpoint)} "
        r"has not answered for \d+ s \(the bucket does not exist\); stopped: check that the "
        r"endpoint is up and the bucket exists, then run again \(storage\.timeout_seconds sets "
        r"how long to wait, 20 s\)"
    )
    assert len(stopped) == 1 and re.fullmatch(watch_line, stopped[0]), err[-3000:]
    assert AWS_SECRET not in err + (tmp_path / "run.out").read_text()
