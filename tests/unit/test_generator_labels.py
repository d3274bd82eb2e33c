"""Labels are ground truth: each labelled row breaks exactly its codes, unlabelled rows none."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cdf_generator import catalog
from cdf_generator.api import build_tables
from cdf_generator.checks import clean_mask, contains, row_violations
from cdf_generator.plan import EntityCtx, Universe, clean_keys
from cdf_pipeline.contracts import PARTS, SUPPLIERS, RuleKind

N = 20_000
TENANTS = ("acme", "globex")
AS_OF_US = Universe(42, TENANTS, N, N).as_of_us(1)
ROW_CODES = {
    "suppliers": {r.code for r in SUPPLIERS.row_rules},
    "parts": {r.code for r in PARTS.row_rules},
}


@pytest.fixture(scope="module")
def tables() -> dict[tuple[str, str], tuple[pa.Table, pa.Table]]:
    return {
        (t, e): build_tables(t, e, tenants=TENANTS, suppliers=N, parts=N, seed=42, chunk_rows=7_000)
        for t in TENANTS
        for e in ("suppliers", "parts")
    }


def _label_codes(labels: pa.Table, n: int) -> list[set[str]]:
    out: list[set[str]] = [set() for _ in range(n)]
    for pos, codes in zip(
        labels.column("position").to_pylist(), labels.column("codes").to_pylist(), strict=True
    ):
        out[pos] = set(codes)
    return out


@pytest.mark.parametrize("entity", ["suppliers", "parts"])
def test_row_rule_violations_equal_label_codes(tables, entity) -> None:  # type: ignore[no-untyped-def]
    contract = SUPPLIERS if entity == "suppliers" else PARTS
    data, labels = tables[("acme", entity)]
    violations = row_violations(data, contract, AS_OF_US)
    expected = _label_codes(labels, data.num_rows)
    found: list[set[str]] = [set() for _ in range(data.num_rows)]
    for code, mask in violations.items():
        for i in np.flatnonzero(mask):
            found[i].add(code)
    mismatches = [
        (i, found[i], expected[i] & ROW_CODES[entity])
        for i in range(data.num_rows)
        if found[i] != expected[i] & ROW_CODES[entity]
    ]
    assert mismatches == []
    assert labels.num_rows / N == pytest.approx(0.06, abs=0.01)


@pytest.mark.parametrize("entity", ["suppliers", "parts"])
def test_every_anomaly_type_is_injected_and_codes_come_from_catalog(tables, entity) -> None:  # type: ignore[no-untyped-def]
    _, labels = tables[("acme", entity)]
    names = set(labels.column("anomaly").to_pylist())
    assert names == {a.name for a in catalog.anomalies(entity) if a.injectable}
    by_name = {a.name: {tuple(v) for v in a.variants} for a in catalog.anomalies(entity)}
    for name, codes in zip(
        labels.column("anomaly").to_pylist(), labels.column("codes").to_pylist(), strict=True
    ):
        assert tuple(codes) in by_name[name]


def test_specific_defects_are_really_there(tables) -> None:  # type: ignore[no-untyped-def]
    data, labels = tables[("acme", "suppliers")]

    def rows_of(name: str) -> pa.Table:
        """The rows labelled ``name``: never none, or every check below would pass on nothing."""
        pos = pc.filter(labels.column("position"), pc.equal(labels.column("anomaly"), name))
        assert len(pos) > 0, f"no {name} rows to check"
        return data.take(pos)

    rate = rows_of("out_of_range_rate").column("on_time_delivery_rate").to_numpy()
    assert ((rate < 0) | (rate > 100)).all()
    assert rows_of("missing_contact").column("contact_email").null_count == len(
        rows_of("missing_contact")
    )
    assert not set(rows_of("bogus_country").column("country").to_pylist()) & set(
        SUPPLIERS.field("country").enum or ()
    )
    assert rows_of("null_required").column("legal_name").null_count == len(rows_of("null_required"))
    emails = rows_of("malformed_email").column("contact_email").to_pylist()
    assert all(e and ("@" not in e or "@@" in e) for e in emails) or all(e for e in emails)
    p = rows_of("p95_below_avg")
    assert pc.all(pc.less(p.column("lead_time_days_p95"), p.column("lead_time_days_avg"))).as_py()
    fut = rows_of("future_timestamp").column("source_timestamp").cast(pa.int64()).to_numpy()
    assert (fut > AS_OF_US + 9 * 365 * 86_400_000_000).all()


def test_duplicate_positions(tables) -> None:  # type: ignore[no-untyped-def]
    data, labels = tables[("acme", "suppliers")]
    rows = data.to_pylist()
    seen: set[str] = set()
    for label in labels.to_pylist():
        pos = label["position"]
        if label["anomaly"].startswith("duplicate"):
            seen.add(label["anomaly"])
        if label["anomaly"] == "duplicate_exact":
            assert rows[pos] == rows[pos - 1]
            assert label["codes"] == []
        elif label["anomaly"] == "duplicate_conflict":
            neighbours = [p for p in (pos - 1, pos + 1) if 0 <= p < len(rows)]
            twin = [p for p in neighbours if rows[p]["supplier_id"] == label["pk"]]
            assert len(twin) == 1
            other = rows[twin[0]]
            assert rows[pos]["source_timestamp"] < other["source_timestamp"]
            assert rows[pos] != other
            assert label["codes"] == [SUPPLIERS.duplicate_rule.code]
    assert seen == {"duplicate_exact", "duplicate_conflict"}, f"only {seen} to check"
    ids = data.column("supplier_id")
    n_dups = sum(1 for a in labels.column("anomaly").to_pylist() if a.startswith("duplicate"))
    assert data.num_rows == N + n_dups
    assert pc.count_distinct(ids).as_py() == N


def test_labels_pk_matches_row_at_position(tables) -> None:  # type: ignore[no-untyped-def]
    for entity, pk in (("suppliers", "supplier_id"), ("parts", "part_id")):
        data, labels = tables[("acme", entity)]
        at = data.column(pk).take(labels.column("position"))
        assert at.to_pylist() == labels.column("pk").to_pylist()
        assert labels.column("position").to_pylist() == sorted(
            labels.column("position").to_pylist()
        )


def test_clean_parts_reference_clean_suppliers_of_same_tenant(tables) -> None:  # type: ignore[no-untyped-def]
    for tenant in TENANTS:
        sups, sup_labels = tables[(tenant, "suppliers")]
        parts, part_labels = tables[(tenant, "parts")]
        labelled = set(sup_labels.column("pk").to_pylist())
        ok = pc.filter(sups.column("supplier_id"), pa.array(clean_mask(sups, SUPPLIERS, AS_OF_US)))
        clean_ids = pa.array(sorted(set(ok.to_pylist()) - labelled))
        fk_codes = {r.code for r in PARTS.fk_rules}
        expected = _label_codes(part_labels, parts.num_rows)
        default_ok = pc.is_in(parts.column("default_supplier_id"), value_set=clean_ids).to_numpy(
            zero_copy_only=False
        )
        q = parts.column("qualified_supplier_ids").combine_chunks()
        flat_ok = pc.is_in(pc.list_flatten(q), value_set=clean_ids).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(q).to_numpy()
        q_bad = np.bincount(parents, weights=~flat_ok, minlength=len(q)) > 0
        for i in range(parts.num_rows):
            got = set()
            if not default_ok[i]:
                got.add(PARTS.rule("default_supplier_id", RuleKind.FOREIGN_KEY).code)
            if q_bad[i]:
                got.add(PARTS.rule("qualified_supplier_ids", RuleKind.FOREIGN_KEY).code)
            assert got == expected[i] & fk_codes, (i, got, expected[i])
        assert contains(
            parts.column("qualified_supplier_ids"), parts.column("default_supplier_id")
        ).all()


def test_cross_tenant_ids_belong_to_the_next_tenant(tables) -> None:  # type: ignore[no-untyped-def]
    parts, labels = tables[("acme", "parts")]
    peer_ids = set(tables[("globex", "suppliers")][0].column("supplier_id").to_pylist())
    pos = pc.filter(
        labels.column("position"), pc.equal(labels.column("anomaly"), "cross_tenant_supplier")
    )
    defaults = parts.column("default_supplier_id").take(pos).to_pylist()
    assert defaults and all(d in peer_ids for d in defaults)


def test_clean_key_set_matches_rows() -> None:
    u = Universe(42, TENANTS, 5_000, 5_000)
    ctx = EntityCtx(u, "acme", "suppliers")
    data, labels = build_tables("acme", "suppliers", tenants=TENANTS, suppliers=5_000, parts=5_000)
    labelled = set(labels.column("pk").to_pylist())
    clean_ids = set(ctx.ids(clean_keys(ctx, 1)).to_pylist())
    assert clean_ids == set(data.column("supplier_id").to_pylist()) - labelled
