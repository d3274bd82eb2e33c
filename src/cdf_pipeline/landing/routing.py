"""Naming rules: which entity a landing file holds, and which tenant an S3 object belongs to.

Entity: each entity has a regular expression searched in the file's path below the tenant's
landing URI. The default matches the entity's name as a folder or as the start of a file name
(``suppliers/2026-11-27.csv``, ``export/parts_0001.parquet``, ``suppliers.csv``) but not inside a
word (``spare_parts.csv``). A file that matches no entity, or more than one, is UNMATCHED.

Tenant: the landing URI template (``landing.uri``, default ``{root}/landing/{tenant}``) has one
prefix per tenant, so the path segment where ``{tenant}`` stands names the tenant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cdf_pipeline.config import Settings
from cdf_pipeline.contracts import ENTITIES
from cdf_pipeline.exceptions import ConfigError, InvalidTenantError
from cdf_pipeline.storage import canonical
from cdf_pipeline.tenants import validate_tenant_id

#: What lands: the raw zone's formats. Anything else is reported as UNMATCHED.
LANDABLE = (".csv", ".parquet")
TENANT = "{tenant}"


def default_pattern(entity: str) -> str:
    return rf"(?:^|/){re.escape(entity)}(?:[/_.-]|$)"


def entity_patterns(configured: Mapping[str, str]) -> dict[str, re.Pattern[str]]:
    """Every entity's compiled rule: configured ones over the defaults."""
    unknown = sorted(set(configured) - set(ENTITIES))
    if unknown:
        raise ConfigError(
            f"landing.entity_patterns names unknown entities {unknown}; known: {sorted(ENTITIES)}"
        )
    return {
        name: re.compile(configured.get(name, default_pattern(name)), re.IGNORECASE)
        for name in ENTITIES
    }


def entity_of(relative: str, patterns: Mapping[str, re.Pattern[str]]) -> tuple[str | None, str]:
    """(the entity, "") or (None, why it is unmatched) for a path below the landing URI."""
    if not relative.lower().endswith(LANDABLE):
        return None, f"not a {' or '.join(s[1:] for s in LANDABLE)} file"
    hits = [name for name, rx in patterns.items() if rx.search(relative)]
    if len(hits) == 1:
        return hits[0], ""
    if not hits:
        return None, "matches no entity's naming rule (landing.entity_patterns)"
    return None, f"matches more than one entity ({', '.join(hits)})"


def relative_to(uri: str, base: str) -> str:
    """``uri``'s path below ``base`` (both canonical)."""
    base = canonical(base).rstrip("/") + "/"
    return canonical(uri)[len(base) :] if canonical(uri).startswith(base) else canonical(uri)


def tenant_of(uri: str, settings: Settings) -> str | None:
    """The tenant whose landing prefix holds ``uri`` (by the ``{tenant}`` segment), or None."""
    template = settings.path(settings.landing.uri)
    if TENANT not in template:
        return None
    before = canonical(template.split(TENANT, 1)[0]).rstrip("/") + "/"
    target = canonical(uri)
    if not target.startswith(before):
        return None
    segment = target[len(before) :].split("/", 1)[0]
    try:
        return validate_tenant_id(segment)
    except InvalidTenantError:
        return None
