"""Files: layout, content hashes, byte-identical output for any chunk size, CSV and flat shapes."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from cdf_generator.api import build_tables, generate
from cdf_pipeline.exceptions import InputError, InvalidTenantError

KW = {"suppliers": 3_000, "parts": 3_000, "seed": 7}


def test_layout_and_content_hash(tmp_path: Path) -> None:
    s = generate(["acme", "globex"], root_uri=str(tmp_path), **KW)  # type: ignore[arg-type]
    assert len(s.files) == 4 and len(s.label_files) == 4
    for f in s.files:
        p = Path(f)
        assert p.parent.name == "ingest_date=2026-01-01"
        assert p.name == hashlib.sha256(p.read_bytes()).hexdigest() + ".parquet"
    labels = pq.read_table(s.label_files[0])
    assert labels.schema.names == [
        "tenant_id",
        "entity",
        "batch",
        "pk",
        "position",
        "anomaly",
        "codes",
        "source_file",
    ]
    assert set(labels.column("source_file").to_pylist()) == {Path(s.files[0]).name}
    assert s.label_files[0].endswith(
        "labels/tenant_id=acme/entity=suppliers/batch=1/labels.parquet"
    )
    assert s.tenants["acme"]["suppliers"].anomalies == labels.num_rows
    assert not list(tmp_path.rglob(".tmp-*"))


def test_bytes_do_not_depend_on_chunk_rows(tmp_path: Path) -> None:
    a = generate(["acme"], root_uri=str(tmp_path / "a"), chunk_rows=1_000, **KW)  # type: ignore[arg-type]
    b = generate(["acme"], root_uri=str(tmp_path / "b"), chunk_rows=70_001, **KW)  # type: ignore[arg-type]
    assert [Path(f).name for f in a.files] == [Path(f).name for f in b.files]
    la, lb = (pq.read_table(x.label_files[1]) for x in (a, b))
    assert la.equals(lb)


def test_ingest_date_follows_batch(tmp_path: Path) -> None:
    s = generate(["acme"], root_uri=str(tmp_path), batch=3, **KW)  # type: ignore[arg-type]
    assert all("ingest_date=2026-01-03" in f for f in s.files)
    assert s.batch == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"suppliers": 0}, InputError),
        ({"parts": -5}, InputError),
        ({"dirty_rate": 0.7}, InputError),
        ({"dirty_rate": -0.1}, InputError),
        ({"batch": 0}, InputError),
        ({"fmt": "xlsx"}, InputError),
        ({"tenants": ["Bad/Tenant"]}, InvalidTenantError),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, error: type) -> None:  # type: ignore[type-arg]
    args = {"tenants": ["acme"], "suppliers": 10, "parts": 10, "root_uri": str(tmp_path), **kwargs}
    with pytest.raises(error):
        generate(**args)


def test_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        generate(["acme"], 10, 10, root_uri=str(blocker / "sub"))


@pytest.mark.parametrize("entity", ["suppliers", "parts"])
def test_csv_contract_shape_parses_back(entity: str) -> None:
    typed, labels = build_tables("acme", entity, **KW)  # type: ignore[arg-type]
    shaped, labels_csv = build_tables("acme", entity, fmt="csv", **KW)  # type: ignore[arg-type]
    assert labels.equals(labels_csv)
    buf = io.BytesIO()
    pacsv.write_csv(shaped, buf)
    back = pacsv.read_csv(io.BytesIO(buf.getvalue()), convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in shaped.schema.names}))  # fmt: skip
    for i in (0, 1, 17, typed.num_rows - 1):
        want, got = typed.slice(i, 1).to_pylist()[0], back.slice(i, 1).to_pylist()[0]
        ts = want["source_timestamp"]
        assert got["source_timestamp"] == ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lists = [f.name for f in typed.schema if pa.types.is_list(f.type)]
        for name in lists:
            assert json.loads(got[name]) == want[name]
        if entity == "suppliers":
            assert json.loads(got["geo_coords"]) == want["geo_coords"]
        assert got[typed.schema.names[0]] == want[typed.schema.names[0]]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_flat_shape(fmt: str) -> None:
    typed, labels = build_tables("acme", "suppliers", **KW)  # type: ignore[arg-type]
    flat, labels_flat = build_tables("acme", "suppliers", fmt=fmt, shape="flat", **KW)  # type: ignore[arg-type]
    assert labels.equals(labels_flat)
    assert all(pa.types.is_string(f.type) for f in flat.schema)
    assert "geo_coords" not in flat.schema.names
    names = flat.schema.names
    assert names.index("geo_lat") + 1 == names.index("geo_lon")
    row, want = flat.slice(5, 1).to_pylist()[0], typed.slice(5, 1).to_pylist()[0]
    assert float(row["geo_lat"]) == want["geo_coords"]["lat"]
    assert float(row["on_time_delivery_rate"]) == want["on_time_delivery_rate"]
    assert int(row["lead_time_days_avg"]) == want["lead_time_days_avg"]
    assert json.loads(row["certifications"]) == want["certifications"]
    parts_typed, _ = build_tables("acme", "parts", **KW)  # type: ignore[arg-type]
    parts_flat, _ = build_tables("acme", "parts", fmt=fmt, shape="flat", **KW)  # type: ignore[arg-type]
    prow, pwant = parts_flat.slice(3, 1).to_pylist()[0], parts_typed.slice(3, 1).to_pylist()[0]
    assert prow["qualified_supplier_ids"].split(",") == pwant["qualified_supplier_ids"]
    assert prow["unit_cost"] == str(pwant["unit_cost"])
    assert prow["last_price_change"] == pwant["last_price_change"].isoformat()


def test_csv_file_written(tmp_path: Path) -> None:
    s = generate(["acme"], root_uri=str(tmp_path), fmt="csv", shape="flat", **KW)  # type: ignore[arg-type]
    path = Path(s.files[0])
    assert path.suffix == ".csv"
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert table.num_rows == s.tenants["acme"]["suppliers"].rows


def test_empty_change_batch_writes_empty_files(tmp_path: Path) -> None:
    s = generate(["acme"], 1, 1, root_uri=str(tmp_path), batch=2, change_rate=0.0)
    assert [e.rows for e in s.tenants["acme"].values()] == [0, 0]
    assert pq.read_table(s.files[1]).num_rows == 0
