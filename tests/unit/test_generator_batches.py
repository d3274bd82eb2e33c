"""Change batches: updates newer, late versions older, new keys new, late parents resolve later."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cdf_generator.api import build_tables
from cdf_generator.checks import clean_mask
from cdf_generator.plan import Universe
from cdf_pipeline.contracts import PARTS, SUPPLIERS

S = P = 20_000
DAY = 86_400_000_000
U = Universe(42, ("acme",), S, P)


def _tables(entity: str, batch: int) -> tuple[pa.Table, pa.Table]:
    return build_tables("acme", entity, suppliers=S, parts=P, batch=batch, chunk_rows=6_000)


@pytest.fixture(scope="module")
def batches() -> dict[tuple[str, int], tuple[pa.Table, pa.Table]]:
    return {(e, b): _tables(e, b) for e in ("suppliers", "parts") for b in (1, 2, 3)}


def _by_id(table: pa.Table, pk: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r[pk]: r for r in table.to_pylist()}


def test_batch_composition(batches) -> None:  # type: ignore[no-untyped-def]
    first = _by_id(batches[("suppliers", 1)][0], "supplier_id")
    data, labels = batches[("suppliers", 2)]
    as_of2 = U.as_of_us(2)
    late = set(
        pc.filter(
            labels.column("pk"), pc.equal(labels.column("anomaly"), "late_version")
        ).to_pylist()
    )
    dup_pks = set(
        pc.filter(
            labels.column("pk"), pc.starts_with(labels.column("anomaly"), "duplicate")
        ).to_pylist()
    )
    updates, new = set(), set()
    for row in data.to_pylist():
        sid, ts = row["supplier_id"], row["source_timestamp"]
        ts_us = int(ts.timestamp() * 1_000_000)
        if sid in late:
            old = first[sid]["source_timestamp"]
            assert ts < old and (old - ts).days <= 30
        elif sid in first:
            if sid not in dup_pks:
                assert as_of2 - DAY <= ts_us < as_of2 or ts_us > as_of2  # future dirt is labelled
            assert row != first[sid]
            updates.add(sid)
        else:
            new.add(sid)
    m = round(S * 0.10)
    assert len(late) == round(m * 0.1)
    assert len(new) == m - round(m * 0.6) - round(m * 0.1)
    assert len(updates) == round(m * 0.6)


def test_new_keys_do_not_repeat_across_batches(batches) -> None:  # type: ignore[no-untyped-def]
    seen = set(batches[("parts", 1)][0].column("part_id").to_pylist())
    new2 = set(batches[("parts", 2)][0].column("part_id").to_pylist()) - seen
    new3 = set(batches[("parts", 3)][0].column("part_id").to_pylist()) - seen
    assert new2 and new3 and not new2 & new3


def test_change_batch_labels_are_exact(batches) -> None:  # type: ignore[no-untyped-def]
    for entity, contract in (("suppliers", SUPPLIERS), ("parts", PARTS)):
        data, labels = batches[(entity, 2)]
        ok = clean_mask(data, contract, U.as_of_us(2))
        row_codes = {r.code for r in contract.row_rules}
        pairs = zip(
            labels.column("position").to_pylist(), labels.column("codes").to_pylist(), strict=True
        )
        flagged = {p for p, c in pairs if set(c) & row_codes}
        assert flagged, f"{entity}: batch 2 has no row-rule anomaly, so nothing is compared"
        assert {i for i in range(data.num_rows) if not ok[i]} == flagged


def test_late_parents_resolve_with_next_batch_suppliers(batches) -> None:  # type: ignore[no-untyped-def]
    parts, labels = batches[("parts", 2)]
    pos = pc.filter(labels.column("position"), pc.equal(labels.column("anomaly"), "late_parent"))
    assert len(pos) == round(round(P * 0.10) * 0.05)
    late = parts.take(pos)
    lp_labels = labels.filter(pc.equal(labels.column("anomaly"), "late_parent"))
    fk_codes = [r.code for r in PARTS.fk_rules]
    assert all(c == fk_codes for c in lp_labels.column("codes").to_pylist())
    known = set()
    for b in (1, 2):
        sup, _ = batches[("suppliers", b)]
        known |= set(sup.column("supplier_id").to_pylist())
    nxt, nxt_labels = batches[("suppliers", 3)]
    dirty3 = set(nxt_labels.column("pk").to_pylist())
    arriving = set(nxt.column("supplier_id").to_pylist()) - known - dirty3
    for row in late.to_pylist():
        refs = {row["default_supplier_id"], *row["qualified_supplier_ids"]}
        assert refs <= arriving
        assert not refs & known


def test_clean_batch2_parts_reference_suppliers_known_by_batch2(batches) -> None:  # type: ignore[no-untyped-def]
    clean_ids: set[str] = set()
    for b in (1, 2):
        sup, lab = batches[("suppliers", b)]
        dirty = set(lab.column("pk").to_pylist())
        clean_ids |= set(sup.column("supplier_id").to_pylist()) - dirty
    parts, labels = batches[("parts", 2)]
    labelled = set(labels.column("position").to_pylist())
    clean = [row for i, row in enumerate(parts.to_pylist()) if i not in labelled]
    assert clean_ids and clean, "no clean suppliers or no clean parts: nothing is checked"
    for row in clean:
        assert {row["default_supplier_id"], *row["qualified_supplier_ids"]} <= clean_ids
