"""The package's exception hierarchy. Messages say what was found, where, and how to fix it."""

from __future__ import annotations

from cdf_pipeline.exit_codes import EXIT_SIGNAL_BASE


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


class LostTableError(CdfError):
    """A catalog table's current metadata file is missing: the table cannot be loaded until
    ``cdf maintain --repair`` re-registers (or drops) it. Not a configuration error: no setting
    brings the file back."""

    def __init__(self, message: str, *, table: str, missing: str) -> None:
        super().__init__(message)
        self.table = table
        self.missing = missing


class TenantBusy(CdfError):
    """Another live run (or maintenance) holds the tenant's lease."""

    def __init__(self, message: str, *, owner: str, purpose: str, expires_in: float) -> None:
        super().__init__(message)
        self.owner = owner
        self.purpose = purpose
        self.expires_in = expires_in


class LeaseLost(CdfError):
    """The run's lease expired or was taken over before it published: it must not publish."""


class RunFailed(CdfError):
    """A tenant run failed after it started; ``summary`` is its (recorded) run summary."""

    def __init__(self, message: str, summary: object) -> None:
        super().__init__(message)
        self.summary = summary


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, as schedulers send first, or SIGINT):
    the run records itself and releases its lease on the way out."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process a signal ended."""
        return EXIT_SIGNAL_BASE + self.signum
