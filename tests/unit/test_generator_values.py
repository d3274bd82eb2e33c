"""Distributions, pinned values, id format and tenant disjointness."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cdf_generator.api import build_tables
from cdf_generator.checks import clean_mask
from cdf_generator.plan import Universe
from cdf_pipeline.contracts import PARTS, SUPPLIERS, Format, python_pattern

N = 100_000
AS_OF_US = Universe(42, ("acme",), N, N).as_of_us(1)
ULID = re.compile(python_pattern(Format.ULID))


@pytest.fixture(scope="module")
def suppliers() -> pa.Table:
    data, _ = build_tables("acme", "suppliers", suppliers=N, parts=1_000, dirty_rate=0.0)
    return data


@pytest.fixture(scope="module")
def parts() -> pa.Table:
    data, _ = build_tables("acme", "parts", suppliers=10_000, parts=N, dirty_rate=0.0)
    return data


def _shares(col: pa.ChunkedArray) -> dict[str, float]:
    counts = Counter(col.to_pylist())
    return {k: v / len(col) for k, v in counts.items()}


def test_clean_data_passes_every_row_rule(suppliers: pa.Table, parts: pa.Table) -> None:
    assert clean_mask(suppliers, SUPPLIERS, AS_OF_US).all()
    assert clean_mask(parts, PARTS, AS_OF_US).all()
    assert suppliers.num_rows == N and parts.num_rows == N


def test_country_mix(suppliers: pa.Table) -> None:
    s = _shares(suppliers.column("country"))
    for code, share in {"CN": 0.22, "US": 0.18, "DE": 0.10, "MX": 0.10, "IN": 0.10}.items():
        assert s[code] == pytest.approx(share, abs=0.01)
    assert len(s) > 100  # the tail covers many other ISO codes


def test_risk_is_bimodal_and_anti_correlated_with_on_time(suppliers: pa.Table) -> None:
    risk = suppliers.column("risk_score").to_numpy()
    on_time = suppliers.column("on_time_delivery_rate").to_numpy()
    assert ((risk >= 20) & (risk <= 40) | (risk >= 60) & (risk <= 85)).all()
    assert ((risk > 40) & (risk < 60)).sum() == 0
    assert 0.2 < (risk >= 60).mean() < 0.4
    assert np.corrcoef(risk, on_time)[0, 1] < -0.3
    assert on_time.mean() == pytest.approx(93, abs=1.0)
    assert on_time.min() >= 60 and on_time.max() <= 100


def test_certifications_are_independent_bernoullis(suppliers: pa.Table) -> None:
    flat = Counter(pc.list_flatten(suppliers.column("certifications")).to_pylist())
    for cert, share in {"ISO9001": 0.70, "IATF16949": 0.30, "AS9100": 0.10}.items():
        assert flat[cert] / N == pytest.approx(share, abs=0.01)


def test_part_mixes(parts: pa.Table) -> None:
    cat = _shares(parts.column("category"))
    for code, share in {
        "ELECTRICAL": 0.35,
        "MECHANICAL": 0.35,
        "RAW_MATERIAL": 0.20,
        "OTHER": 0.10,
    }.items():
        assert cat[code] == pytest.approx(share, abs=0.01)
    life = _shares(parts.column("lifecycle_status"))
    for code, share in {"ACTIVE": 0.75, "NEW": 0.10, "NRND": 0.10, "EOL": 0.05}.items():
        assert life[code] == pytest.approx(share, abs=0.01)


def test_lead_time_by_category_and_cost(parts: pa.Table) -> None:
    means = {}
    for cat in ("ELECTRICAL", "MECHANICAL", "RAW_MATERIAL", "OTHER"):
        sel = pc.equal(parts.column("category"), cat)
        means[cat] = pc.mean(pc.filter(parts.column("lead_time_days_avg"), sel)).as_py()
    assert means["ELECTRICAL"] == max(means.values())
    assert means["RAW_MATERIAL"] == min(means.values())
    p95, avg = parts.column("lead_time_days_p95"), parts.column("lead_time_days_avg")
    assert pc.all(pc.greater_equal(p95, avg)).as_py()
    cost = parts.column("unit_cost").cast(pa.float64()).to_numpy()
    log = np.log(cost)
    assert (cost > 0).all() and abs(float(np.mean(log) - np.median(log))) < 0.05  # log-normal
    counts = pc.list_value_length(parts.column("qualified_supplier_ids")).to_numpy()
    assert set(np.unique(counts)) == {1, 2, 3}


def test_timestamps_are_in_the_clean_window(suppliers: pa.Table) -> None:
    day = 86_400_000_000
    ts = suppliers.column("source_timestamp").cast(pa.int64()).to_numpy()
    ing = suppliers.column("ingestion_timestamp").cast(pa.int64()).to_numpy()
    assert ts.min() >= AS_OF_US - 365 * day and ts.max() <= AS_OF_US - day
    assert (ing >= ts).all() and (ing <= AS_OF_US).all()


def test_ids_are_ulids_unique_and_disjoint_across_tenants() -> None:
    ids = {}
    for tenant in ("acme", "globex"):
        for entity in ("suppliers", "parts"):
            data, _ = build_tables(
                tenant, entity, tenants=["acme", "globex"], suppliers=5_000, parts=5_000
            )
            pk = "supplier_id" if entity == "suppliers" else "part_id"
            ids[(tenant, entity)] = set(data.column(pk).to_pylist())
            assert all(ULID.match(i) for i in ids[(tenant, entity)])
            assert len(ids[(tenant, entity)]) == 5_000
    assert not ids[("acme", "suppliers")] & ids[("globex", "suppliers")]
    assert not ids[("acme", "parts")] & ids[("globex", "parts")]
    assert not ids[("acme", "suppliers")] & ids[("acme", "parts")]


def test_pinned_values() -> None:
    """A refactor must not silently change the data: these come from seed 42, tenant acme."""
    sup, _ = build_tables("acme", "suppliers", suppliers=100, parts=100, seed=42)
    part, _ = build_tables("acme", "parts", suppliers=100, parts=100, seed=42)
    row = sup.slice(0, 1).to_pylist()[0]
    assert row["supplier_id"] == PINNED["supplier_id"]
    assert row["supplier_code"] == "SUP-0000000"
    assert row["country"] == PINNED["country"]
    assert row["risk_score"] == PINNED["risk_score"]
    assert row["on_time_delivery_rate"] == PINNED["on_time_delivery_rate"]
    assert part.column("part_id")[0].as_py() == PINNED["part_id"]
    assert str(part.column("unit_cost")[0].as_py()) == PINNED["unit_cost"]


PINNED = {
    "supplier_id": "01JV2DMSWPF115KVQT0QFESSKD",
    "country": "CN",
    "risk_score": 24.32,
    "on_time_delivery_rate": 95.33,
    "part_id": "01JJSXBCCM1XF6J9BW0QFESSKD",
    "unit_cost": "63.320761",
}
