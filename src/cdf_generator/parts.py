"""Clean part columns (seed 002 distributions) and their supplier references."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cdf_generator import pools as P
from cdf_generator import ulid
from cdf_generator.arrow_util import (
    const_str,
    decimal_from_micros,
    flag_lists,
    int32,
    int_str,
    join,
    lists,
    take,
    timestamps,
)
from cdf_generator.hashing import bits, choice, normal, randint, uniform
from cdf_generator.plan import DAY_US
from cdf_generator.refs import Refs
from cdf_generator.rows import Rows
from cdf_pipeline.contracts import SCHEMA_VERSION

MAX_COST_MICROS = 10**12 - 1  # below decimal(18, 6)'s limit


def build(rows: Rows, refs: Refs) -> dict[str, pa.Array]:
    """Every contract column of part rows, with supplier slots already decided in ``refs``."""
    b, n = rows.base, rows.n
    category = choice(b, "category", P.CATEGORY_WEIGHTS)
    uom_sizes = np.array([len(t) for t in P.UOM_BY_CATEGORY])
    uom_starts = np.concatenate([[0], np.cumsum(uom_sizes)[:-1]])
    uom_flat = tuple(u for t in P.UOM_BY_CATEGORY for u in t)
    uom = uom_starts[category] + np.floor(uniform(b, "uom") * uom_sizes[category]).astype(np.int64)

    mean_lead = np.asarray(P.CATEGORY_LEAD_DAYS)[category]
    lead_avg = np.clip(
        np.rint(mean_lead * np.exp(normal(b, "lead_time_days_avg", 0.0, 0.35))), 1, 300
    )
    lead_p95 = lead_avg + np.ceil(lead_avg * (0.1 + 0.7 * uniform(b, "lead_time_days_p95")))
    cost = np.exp(normal(b, "unit_cost", 2.5, 1.3))
    cost_micros = np.minimum(np.rint(cost * 1e6), MAX_COST_MICROS).astype(np.int64)

    n_bom = choice(b, "bom_compatibility", (0.3, 0.4, 0.2, 0.1))
    total = int(n_bom.sum())
    starts = np.repeat(np.cumsum(n_bom) - n_bom, n_bom)
    rank = np.arange(total, dtype=np.int64) - starts
    bom_nums = (randint(np.repeat(b, n_bom), "bom_no", 0, 100_000) + rank * 7919) % 100_000
    as_of_days = rows.as_of_us // DAY_US
    return {
        "part_id": rows.ids,
        "tenant_id": const_str(rows.ctx.tenant, n),
        "part_number": join("PN-", int_str(rows.keys, 9)),
        "description": join(
            take(P.PART_ADJECTIVES, randint(b, "desc_adj", 0, len(P.PART_ADJECTIVES))),
            " ",
            take(P.PART_NOUNS, randint(b, "desc_noun", 0, len(P.PART_NOUNS))),
            " ",
            int_str(randint(b, "desc_size", 1, 500)),
            "mm",
        ),
        "category": take(P.CATEGORIES, category),
        "lifecycle_status": take(P.LIFECYCLES, choice(b, "lifecycle_status", P.LIFECYCLE_WEIGHTS)),
        "uom": take(uom_flat, uom),
        "spec_hash": ulid.hex_strings(bits(b, "spec_hash")),
        "bom_compatibility": lists(n_bom, join("BOM-", int_str(bom_nums, 5))),
        "default_supplier_id": refs.default_ids(),
        "qualified_supplier_ids": refs.qualified_ids(),
        "unit_cost": decimal_from_micros(cost_micros),
        "moq": int32(np.asarray(P.MOQS)[randint(b, "moq", 0, len(P.MOQS))]),
        "lead_time_days_avg": int32(lead_avg),
        "lead_time_days_p95": int32(lead_p95),
        "quality_grade": take(P.QUALITY_GRADES, choice(b, "quality_grade", P.QUALITY_WEIGHTS)),
        "compliance_flags": flag_lists(
            tuple(c for c, _ in P.COMPLIANCE_FLAGS),
            [uniform(b, "compliance_flags", i) < s for i, (_, s) in enumerate(P.COMPLIANCE_FLAGS)],
        ),
        "hazard_class": take(
            P.HAZARD_CLASSES,
            randint(b, "hazard_class", 0, len(P.HAZARD_CLASSES)),
            nulls=uniform(b, "hazardous") >= 0.12,
        ),
        "last_price_change": pa.array(
            (as_of_days - randint(b, "last_price_change", 1, 731)).astype(np.int32)
        ).view(pa.date32()),
        "data_source": take(P.DATA_SOURCES, randint(b, "data_source", 0, len(P.DATA_SOURCES))),
        "source_timestamp": timestamps(rows.source_ts),
        "ingestion_timestamp": timestamps(rows.ingestion_ts),
        "schema_version": const_str(SCHEMA_VERSION, n),
    }
