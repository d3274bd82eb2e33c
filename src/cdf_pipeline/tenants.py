"""Tenant ids: the one check every path, table filter and config lookup goes through."""

from __future__ import annotations

import re

from cdf_pipeline.contracts.model import Format, python_pattern
from cdf_pipeline.exceptions import InvalidTenantError

_TENANT = re.compile(python_pattern(Format.TENANT))


def validate_tenant_id(tenant: str) -> str:
    """Return ``tenant`` unchanged if it is a safe tenant id, else raise.

    A tenant id is a lowercase identifier of 2 to 32 characters (``[a-z][a-z0-9_]{1,31}``). That
    excludes everything that could escape a path or a SQL literal: ``/``, ``..``, quotes, spaces.

    Raises:
        InvalidTenantError: with the offending value and the rule.
    """
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise InvalidTenantError(
            f"invalid tenant id {tenant!r}: use 2-32 characters, lowercase letters, digits and "
            "'_', starting with a letter (for example 'acme' or 'globex_eu')"
        )
    return tenant


def parse_tenant_list(text: str) -> list[str]:
    """Split ``"acme,globex"`` into validated, de-duplicated tenant ids (order kept)."""
    tenants = [t.strip() for t in text.split(",") if t.strip()]
    if not tenants:
        raise InvalidTenantError(
            "no tenant given: pass one or more ids, e.g. --tenants acme,globex"
        )
    return list(dict.fromkeys(validate_tenant_id(t) for t in tenants))
