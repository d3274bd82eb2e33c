"""Landing naming rules (entity of a path, tenant of an object) and the manifest's documentation."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from cdf_pipeline.config import load_settings
from cdf_pipeline.exceptions import ConfigError
from cdf_pipeline.lakehouse.landed import LandedObject, columns_sql
from cdf_pipeline.landing.routing import entity_of, entity_patterns, tenant_of

REPO = Path(__file__).resolve().parents[2]
DEFAULT = entity_patterns({})


@pytest.mark.parametrize(
    ("path", "entity"),
    [
        ("suppliers/2026-11-27.csv", "suppliers"),
        ("suppliers.csv", "suppliers"),
        ("export/Suppliers-0001.PARQUET", "suppliers"),
        ("parts/p.parquet", "parts"),
        ("out/parts_2026.csv", "parts"),
        ("2026/11/parts.parquet", "parts"),
    ],
)
def test_the_entity_name_as_a_folder_or_file_name_prefix_matches(path: str, entity: str) -> None:
    assert entity_of(path, DEFAULT) == (entity, "")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("spare_parts.csv", "matches no entity"),
        ("suppliersx.csv", "matches no entity"),
        ("parts/suppliers.csv", "more than one entity (suppliers, parts)"),
        ("suppliers/notes.txt", "not a csv or parquet file"),
        ("suppliers/data.csv.gz", "not a csv or parquet file"),
    ],
)
def test_other_paths_are_unmatched_with_the_reason(path: str, why: str) -> None:
    entity, reason = entity_of(path, DEFAULT)
    assert entity is None and why in reason


def test_a_configured_pattern_replaces_the_default_for_its_entity_only() -> None:
    patterns = entity_patterns({"parts": r"(^|/)articles[/_.-]"})
    assert entity_of("articles/a.csv", patterns) == ("parts", "")
    assert entity_of("parts/p.csv", patterns)[0] is None
    assert entity_of("suppliers/s.csv", patterns) == ("suppliers", "")


def test_a_pattern_for_an_unknown_entity_or_a_broken_one_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="unknown entities"):
        entity_patterns({"customers": "x"})
    with pytest.raises(ConfigError, match="not a regular expression"):
        load_settings("local", overrides={"landing": {"entity_patterns": {"parts": "("}}})


@pytest.mark.parametrize(
    ("uri", "tenant"),
    [
        ("s3://lake/base/landing/acme/suppliers/s.csv", "acme"),
        ("s3://lake/base/landing/globex_eu/x/y/parts.parquet", "globex_eu"),
        ("s3://lake/base/landing/Acme/suppliers/s.csv", None),  # not a tenant id
        ("s3://lake/elsewhere/acme/s.csv", None),
        ("s3://other/base/landing/acme/s.csv", None),
    ],
)
def test_the_tenant_is_the_segment_where_the_template_says_tenant(
    uri: str, tenant: str | None
) -> None:
    settings = load_settings("local", overrides={"root": "s3://lake/base"})
    assert tenant_of(uri, settings) == tenant


def test_a_landing_uri_with_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings("local", overrides={"landing": {"uri": "postgresql://u:hunter2@h/db"}})
    assert "hunter2" not in str(err.value)


def test_the_manifest_columns_are_the_record_fields_and_all_are_documented() -> None:
    fields = [f.name for f in dataclasses.fields(LandedObject)]
    assert re.findall(r"`(\w+)`", columns_sql()) == fields
    doc = (REPO / "docs" / "landing.md").read_text()
    table = doc.split("## The landing manifest", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE) == fields
