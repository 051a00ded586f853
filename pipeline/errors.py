"""The errors kokeilu reports to its users in one line."""

from __future__ import annotations


class KokeiluError(Exception):
    """A failure the user can act on; its message is one line."""

    exit_code: int = 2


class InputError(KokeiluError):
    """An input file or directory is unusable."""


class DatabaseBusyError(KokeiluError):
    """The results database is in use by another run."""


class RunFailedError(KokeiluError):
    """An evaluation run failed; the database is left at its last good state."""

    exit_code = 1


class ContractViolationError(KokeiluError):
    """A delivery breaks its contract (``kokeilu validate`` exit code 1)."""

    exit_code = 1
