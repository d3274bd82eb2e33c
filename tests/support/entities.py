"""Test-only contracts: what adding an entity looks like."""

from __future__ import annotations

from typing import Any


def _price_lists() -> Any:
    from cdf_pipeline.contracts import Entity, Field, ForeignKey, Format, Kind

    return Entity(
        name="price_lists",
        doc="Test-only: what a supplier charges for a part.",
        primary_key="price_id",
        fields=(
            Field("price_id", Kind.STRING, "Price key", required=True),
            Field("tenant_id", Kind.STRING, "Owning tenant", required=True, fmt=Format.TENANT),
            Field("part_id", Kind.STRING, "The part (FK to parts)", required=True),
            Field("supplier_id", Kind.STRING, "The supplier (FK to suppliers)", required=True),
            Field("unit_price", Kind.DECIMAL, "Price per unit", required=True, minimum=0),
            Field("currency", Kind.STRING, "ISO-4217 code", enum=("EUR", "USD")),
            Field(
                "source_timestamp", Kind.TIMESTAMP, "Last change", required=True, not_future=True
            ),
        ),
        foreign_keys=(ForeignKey("part_id", "parts"), ForeignKey("supplier_id", "suppliers")),
    )


#: A test-only third entity with keys into two parents (parts and suppliers): what adding an
#: entity looks like. Not registered anywhere; tests that need it in the run register it.
PRICE_LISTS = _price_lists()
