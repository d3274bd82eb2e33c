"""The PostgreSQL landing source against a real, throwaway server: ``cdf generate --to`` loads the
generated rows, ``pull_entity`` brings them back as contract-typed Parquet, incrementally.

Expected rows come from the generator's own tables (:func:`cdf_generator.api.build_tables`) or
from what the test changed through another client (psycopg2); never from the pull's code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from servers.postgres import PostgresServer
from support.environment import free_port

from cdf_generator.api import build_tables, generate
from cdf_pipeline.cli.main import main
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import ConfigError, InputError
from cdf_pipeline.postgres.pull import PullResult, pull_entity

pytestmark = [pytest.mark.postgres]

SIZES = {"suppliers": 1200, "parts": 1000}
#: Recent, so that every clean timestamp is in the past for the pull's clock.
AS_OF = dt.date.today() - dt.timedelta(days=30)


@pytest.fixture
def uri(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The password-less URI; libpq finds the password in PGPASSWORD, as in production."""
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    return postgres.dsn()


def sql(postgres: PostgresServer, *statements: str) -> list[Any]:
    """Run statements through a second client (psycopg2); the last one's rows, if any."""
    with psycopg2.connect(postgres.dsn(with_password=True)) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
        return cur.fetchall() if cur.description else []


def load(uri: str, tmp_path: Path, schema: str, batch: int = 1, tenants: str = "acme") -> Any:
    return generate(
        tenants.split(","), SIZES["suppliers"], SIZES["parts"], seed=7, batch=batch, as_of=AS_OF,
        root_uri=str(tmp_path / "lake"), pg_uri=uri, pg_schema=schema,
    )  # fmt: skip


def expected(entity: str, batch: int = 1, tenant: str = "acme") -> pa.Table:
    """The generator's rows in the pull's order: cursor column, then key, nulls last."""
    table, _ = build_tables(
        tenant,
        entity,
        suppliers=SIZES["suppliers"],
        parts=SIZES["parts"],
        seed=7,
        batch=batch,
        as_of=AS_OF,
    )
    keys = [(c, "ascending", "at_end") for c in ("source_timestamp", ENTITIES[entity].primary_key)]
    return table.sort_by(keys)


def pull(uri: str, dest: Path, schema: str, entity: str = "suppliers", **kw: Any) -> PullResult:
    return pull_entity(uri, ENTITIES[entity], dest, schema=schema, **kw)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keys(path: Path, entity: str = "suppliers") -> set[str]:
    return set(pq.read_table(path).column(ENTITIES[entity].primary_key).to_pylist())


@pytest.mark.parametrize("entity", ["suppliers", "parts"])
def test_generated_rows_come_back_equal(uri: str, tmp_path: Path, entity: str) -> None:
    schema = f"eq_{entity}"
    load(uri, tmp_path, schema)
    result = pull(uri, tmp_path / "out.parquet", schema, entity)

    assert result.path is not None
    got = pq.read_table(result.path)
    want = expected(entity)
    assert got.schema.equals(want.schema)  # the contract's Arrow types, no source metadata
    assert got.equals(want)  # every row and value, anomalies included, in the pull's order
    assert result.rows == want.num_rows
    assert result.missing_columns == result.extra_columns == () and result.unparsed == {}


def test_a_pull_with_nothing_new_writes_nothing(uri: str, tmp_path: Path) -> None:
    load(uri, tmp_path, "noop")
    first = pull(uri, tmp_path / "1.parquet", "noop")
    again = pull(uri, tmp_path / "2.parquet", "noop", cursor=first.cursor)

    assert first.has_rows and first.cursor is not None
    assert not again.has_rows and again.rows == 0 and again.path is None
    assert again.cursor == first.cursor  # nothing to advance
    assert not list(tmp_path.glob("2.parquet*"))  # no file, no leftover part file


def test_incremental_pull_takes_exactly_the_inserted_and_updated_rows(
    postgres: PostgresServer, uri: str, tmp_path: Path
) -> None:
    load(uri, tmp_path, "incr")
    first = pull(uri, tmp_path / "1.parquet", "incr")
    base = pq.read_table(tmp_path / "1.parquet")
    clean = base.filter(pc.is_valid(base["supplier_id"]))
    updated = clean.column("supplier_id").to_pylist()[:5]
    ids = ", ".join(f"'{k}'" for k in updated)
    sql(
        postgres,
        f"UPDATE incr.suppliers SET legal_name = 'Renamed ' || supplier_id, "
        f"source_timestamp = now() - interval '1 minute' WHERE supplier_id IN ({ids})",
        "INSERT INTO incr.suppliers SELECT * FROM incr.suppliers WHERE supplier_id = "
        f"'{updated[0]}'",
        "UPDATE incr.suppliers SET supplier_id = 'NEW' || supplier_id WHERE ctid = "
        f"(SELECT max(ctid) FROM incr.suppliers WHERE supplier_id = '{updated[0]}')",
    )
    second = pull(uri, tmp_path / "2.parquet", "incr", cursor=first.cursor)

    assert second.path is not None
    assert keys(second.path) == {*updated, f"NEW{updated[0]}"}
    got = pq.read_table(second.path)
    renamed = pc.starts_with(got["legal_name"], "Renamed ")
    assert pc.all(renamed).as_py()
    third = pull(uri, tmp_path / "3.parquet", "incr", cursor=second.cursor)
    assert third.rows == 0 and third.path is None


def test_a_change_batch_is_pulled_as_updated_and_new_rows(uri: str, tmp_path: Path) -> None:
    load(uri, tmp_path, "chg")
    first = pull(uri, tmp_path / "1.parquet", "chg")
    load(uri, tmp_path, "chg", batch=2)
    second = pull(uri, tmp_path / "2.parquet", "chg", cursor=first.cursor)

    pk, ts = "supplier_id", "source_timestamp"
    one, two = (expected("suppliers", b).select([pk, ts]) for b in (1, 2))
    held = one.group_by(pk).aggregate([(ts, "max")]).rename_columns([pk, "held"])
    joined = two.join(held, pk, join_type="left outer")
    # What a customer database holds after the change batch: new keys, and keys whose batch-2
    # version is newer than the version held (a late, older version is not applied).
    applied = joined.filter(
        pc.or_(
            pc.is_null(joined["held"]), pc.fill_null(pc.greater(joined[ts], joined["held"]), False)
        )
    )
    # What a timestamp cursor can see of it: rows stamped after the cursor, up to the clock.
    after = pa.scalar(dt.datetime.fromisoformat(json.loads(first.cursor or "")["value"]))
    now = pa.scalar(dt.datetime.now(dt.timezone.utc))
    seen = pc.and_(pc.greater(applied[ts], after), pc.less_equal(applied[ts], now))
    want = applied.filter(seen).group_by(pk).aggregate([(ts, "max")]).sort_by(pk)

    assert second.path is not None
    got = pq.read_table(second.path).group_by(pk).aggregate([(ts, "max")]).sort_by(pk)
    assert got.equals(want)  # exactly the changed keys, each at its newest version
    assert pc.sum(pc.is_valid(applied.filter(seen)["held"])).as_py() > 0  # updates ...
    assert pc.sum(pc.is_null(applied.filter(seen)["held"])).as_py() > 0  # ... and new keys
    # The limit of a cursor on a business timestamp: new keys whose source_timestamp is older
    # than the cursor (first versions made upstream long ago) are not seen by the pull.
    behind = applied.filter(pc.fill_null(pc.less_equal(applied[ts], after), False))
    assert pc.all(pc.is_null(behind["held"])).as_py()
    assert (
        behind.num_rows
        + applied.filter(seen).num_rows
        + pc.sum(pc.fill_null(pc.greater(applied[ts], now), False)).as_py()
        == applied.num_rows - applied[ts].null_count
    )


def test_an_xmin_cursor_takes_every_write_of_a_change_batch(uri: str, tmp_path: Path) -> None:
    load(uri, tmp_path, "wr")
    first = pull(uri, tmp_path / "1.parquet", "wr", cursor_column="xmin")
    idle = pull(uri, tmp_path / "idle.parquet", "wr", cursor=first.cursor, cursor_column="xmin")
    load(uri, tmp_path, "wr", batch=2)
    second = pull(uri, tmp_path / "2.parquet", "wr", cursor=first.cursor, cursor_column="xmin")
    after = pull(uri, tmp_path / "3.parquet", "wr", cursor=second.cursor, cursor_column="xmin")

    assert first.path is not None
    # The heap's order, unsorted: compare as sets of rows (sorted on every scalar column).
    got_first, want_first = pq.read_table(first.path), expected("suppliers")
    by_all = [
        (f.name, "ascending", "at_end") for f in want_first.schema if not pa.types.is_nested(f.type)
    ]
    assert got_first.sort_by(by_all).equals(want_first.sort_by(by_all))
    assert idle.rows == 0 and idle.path is None and idle.cursor == first.cursor
    pk, ts = "supplier_id", "source_timestamp"
    one, two = (expected("suppliers", b).select([pk, ts]) for b in (1, 2))
    held = one.group_by(pk).aggregate([(ts, "max")]).rename_columns([pk, "held"])
    joined = two.join(held, pk, join_type="left outer")
    newer = pc.fill_null(pc.greater(joined[ts], joined["held"]), False)
    applied = joined.filter(pc.or_(pc.is_null(joined["held"]), newer))
    want = applied.group_by(pk).aggregate([(ts, "max")]).sort_by(pk)
    assert second.path is not None
    got = pq.read_table(second.path).group_by(pk).aggregate([(ts, "max")]).sort_by(pk)
    # Every written key, new keys with old timestamps and future-stamped rows included.
    assert got.equals(want)
    assert pc.sum(pc.is_null(applied["held"])).as_py() > 0
    assert after.rows == 0 and after.path is None


def test_the_same_rows_give_the_same_bytes(
    postgres: PostgresServer, uri: str, tmp_path: Path
) -> None:
    load(uri, tmp_path, "det")
    # The same rows in another physical order, in another schema.
    sql(
        postgres,
        "CREATE SCHEMA det2",
        "CREATE TABLE det2.suppliers AS SELECT * FROM det.suppliers ORDER BY md5(legal_name || "
        "coalesce(supplier_id, ''))",
    )
    a = pull(uri, tmp_path / "a.parquet", "det")
    b = pull(uri, tmp_path / "b.parquet", "det")
    c = pull(uri, tmp_path / "c.parquet", "det2")
    assert a.path and b.path and c.path
    assert sha(a.path) == sha(b.path) == sha(c.path)
    # The xmin cursor reads the heap in order, unsorted: an unchanged table, the same bytes;
    # the same rows stored in another order, the same rows (in other bytes).
    x1 = pull(uri, tmp_path / "x1.parquet", "det", cursor_column="xmin")
    x2 = pull(uri, tmp_path / "x2.parquet", "det", cursor_column="xmin")
    x3 = pull(uri, tmp_path / "x3.parquet", "det2", cursor_column="xmin")
    assert x1.path and x2.path and x3.path
    assert sha(x1.path) == sha(x2.path)
    by_all = [(f.name, "ascending", "at_end") for f in pq.read_schema(a.path)
              if not pa.types.is_nested(f.type)]  # fmt: skip
    assert pq.read_table(x3.path).sort_by(by_all).equals(pq.read_table(a.path).sort_by(by_all))
    assert a.cursor == c.cursor


def test_null_and_future_cursor_rows_are_taken_first_then_counted(
    postgres: PostgresServer, uri: str, tmp_path: Path
) -> None:
    load(uri, tmp_path, "nul")
    sql(
        postgres,
        "UPDATE nul.suppliers SET source_timestamp = NULL WHERE supplier_id IN "
        "(SELECT supplier_id FROM nul.suppliers ORDER BY supplier_id LIMIT 3)",
    )
    nulls, future = sql(
        postgres,
        "SELECT count(*) FILTER (WHERE source_timestamp IS NULL), "
        "count(*) FILTER (WHERE source_timestamp > now()) FROM nul.suppliers",
    )[0]
    first = pull(uri, tmp_path / "1.parquet", "nul")
    assert first.path is not None and first.rows == expected("suppliers").num_rows
    cursor = json.loads(first.cursor or "")
    # The cursor stops at the clock: the generator's future timestamps do not hide later rows.
    assert cursor["value"] < "2100" and future > 0
    again = pull(uri, tmp_path / "2.parquet", "nul", cursor=first.cursor)
    assert (again.rows, again.null_cursor_rows, again.future_cursor_rows) == (0, nulls, future)


def test_drift_and_unrepresentable_values_are_reported(
    postgres: PostgresServer, uri: str, tmp_path: Path
) -> None:
    load(uri, tmp_path, "drift")
    sql(
        postgres,
        "ALTER TABLE drift.suppliers DROP COLUMN dba_name",
        "ALTER TABLE drift.suppliers ADD COLUMN internal_note TEXT",
        "UPDATE drift.suppliers SET geo_coords = '\"somewhere\"' WHERE supplier_id = "
        "(SELECT min(supplier_id) FROM drift.suppliers)",
        "UPDATE drift.parts SET unit_cost = 'NaN' WHERE part_id = (SELECT min(part_id) FROM "
        "drift.parts)",
    )
    sup = pull(uri, tmp_path / "s.parquet", "drift")
    parts = pull(uri, tmp_path / "p.parquet", "drift", "parts")
    assert sup.path is not None and parts.path is not None
    assert sup.missing_columns == ("dba_name",) and sup.extra_columns == ("internal_note",)
    assert "dba_name" not in pq.read_schema(sup.path).names
    assert sup.unparsed == {"geo_coords": 1} and parts.unparsed == {"unit_cost": 1}
    assert pq.read_table(parts.path)["unit_cost"].null_count == (
        expected("parts")["unit_cost"].null_count + 1
    )


def test_generate_to_postgres_from_the_cli(
    postgres: PostgresServer, uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "--tenants", "acme,globex", "--suppliers", "300", "--parts", "200",
            "--root", str(tmp_path), "--to", uri, "--json"]  # fmt: skip
    assert main([*args, "--pg-schema", "cli_{tenant}"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    counts = sql(postgres, "SELECT count(*) FROM cli_globex.parts")[0][0]
    assert counts == summary["tenants"]["globex"]["parts"]["rows"]
    labels = pq.read_table(tmp_path / "labels/tenant_id=globex/entity=parts/batch=1/labels.parquet")
    assert labels.num_rows == summary["tenants"]["globex"]["parts"]["anomalies"] > 0
    assert set(labels.column("source_file").to_pylist()) == {"cli_globex.parts"}

    assert main([*args]) == 2  # two tenants into the one default schema
    err = capsys.readouterr().err
    assert "would mix" in err and "landing_{tenant}" in err


# --- errors: one clear line, never the password ------------------------------------------------


def assert_secret_free(postgres: PostgresServer, text: str) -> None:
    assert postgres.password not in text and "wrong-" not in text


def test_wrong_password_is_a_config_error_without_the_password(
    postgres: PostgresServer,
    uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PGPASSWORD", "wrong-" + postgres.password[:6])
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as err:
        pull(uri, tmp_path / "x.parquet", "landing")
    message = str(err.value)
    assert "rejected the login" in message and "PGPASSWORD" in message and "\n" not in message
    assert_secret_free(postgres, message + caplog.text)


def test_the_password_can_come_from_a_pgpass_file(
    postgres: PostgresServer, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(uri, tmp_path, "pass")
    passfile = tmp_path / "pgpass"
    passfile.write_text(
        f"{postgres.host}:{postgres.port}:{postgres.database}:{postgres.user}:{postgres.password}\n"
    )
    passfile.chmod(0o600)  # libpq ignores a pgpass file others can read
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert pull(uri, tmp_path / "x.parquet", "pass").rows == expected("suppliers").num_rows


def test_a_uri_with_a_password_is_refused_unechoed(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        pull(postgres.dsn(with_password=True), tmp_path / "x.parquet", "landing")
    assert "credential" in str(err.value)
    assert_secret_free(postgres, str(err.value))


def test_an_unreachable_server_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot reach PostgreSQL at cdf@127\.0\.0\.1"):
        pull(f"postgresql://cdf@127.0.0.1:{free_port()}/cdf", tmp_path / "x.parquet", "landing")


def test_missing_schema_table_and_cursor_column(
    postgres: PostgresServer, uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sql(
        postgres,
        "CREATE SCHEMA IF NOT EXISTS half",
        "CREATE TABLE half.suppliers (supplier_id TEXT)",
    )
    dest = tmp_path / "x.parquet"
    with pytest.raises(ConfigError, match="schema 'nowhere' does not exist"):
        pull(uri, dest, "nowhere")
    with pytest.raises(InputError, match=r"table half\.parts does not exist"):
        pull(uri, dest, "half", "parts")
    with pytest.raises(ConfigError, match="cursor column 'source_timestamp' is missing"):
        pull(uri, dest, "half")
    with pytest.raises(ConfigError, match="not an orderable column"):
        pull(uri, dest, "half", cursor_column="geo_coords")
    assert not dest.exists()
    assert_secret_free(postgres, caplog.text)


def test_cli_errors_exit_2_on_one_line(
    postgres: PostgresServer,
    uri: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", "wrong-password")
    code = main(["generate", "--tenants", "acme", "--suppliers", "10", "--parts", "10",
                 "--root", str(tmp_path), "--to", uri])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "rejected the login" in err and len(err.splitlines()) == 1
    assert_secret_free(postgres, err)
