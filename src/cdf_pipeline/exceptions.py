"""The package's exception hierarchy. Messages say what was found, where, and how to fix it."""

from __future__ import annotations


class CdfError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(CdfError):
    """A configuration file, key, value or environment variable is wrong."""


class InvalidTenantError(ConfigError):
    """A tenant id is not a lowercase identifier (or could escape a path)."""


class ContractError(CdfError, ValueError):
    """A data contract is declared wrong (found when the contracts are imported)."""


class InputError(CdfError):
    """An input file or destination cannot be read or written."""
