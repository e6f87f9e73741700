"""The error tree of slotkeeper.

Every error slotkeeper raises on purpose derives from :class:`SlotkeeperError`; the CLI prints
those as one clear message and exits 1, never with a traceback. Anything else is a bug.

::

    SlotkeeperError
    ├── ManifestError            one problem in a manifest: file, line, field path, message
    ├── ManifestErrors           all problems found in one load, reported together
    ├── ConfigError              a bad command-line or environment setting (--state URL, ...)
    ├── PlanFileError            a saved plan that cannot be read or is not ours
    ├── SecretError              a secret sink refused a write (e.g. a path escaping its root)
    ├── TargetError              a target (GitHub, ...) did not do what was asked
    │   ├── PermanentTargetError it will not work by retrying: permission, validation, 4xx
    │   └── TemporaryTargetError retrying later may work: 5xx, timeouts, rate limits
    │       ├── UnknownOutcome   a write was sent but its answer was lost: look before retrying
    │       └── BudgetDeferred   the write budget is spent: left pending for the next reconcile
    └── LedgerError              the recorded state cannot be read or written
        ├── NoLedgerError        nothing was ever applied where --state points (readers create none)
        ├── LedgerLockedError    another writer holds the ledger past the wait bound
        ├── StalePlanError       a saved plan's lineage or serial no longer matches the ledger
        └── SchemaVersionError   the ledger was written by a newer slotkeeper

Third-party exceptions are translated at the edge that calls the library and chained with
``raise ... from``. Messages never contain a secret value: they name where a secret is
referenced, not what it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class SlotkeeperError(Exception):
    """Base of every error slotkeeper raises deliberately."""


@dataclass(frozen=True)
class ManifestError(SlotkeeperError):
    """One problem in one manifest file, located as precisely as the input allows."""

    file: Path
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ManifestErrors(SlotkeeperError):
    """Every manifest problem of one load, sorted by file and line."""

    def __init__(self, errors: Iterable[ManifestError]) -> None:
        self.errors = sorted(errors, key=lambda e: (str(e.file), e.line or 0, e.field or ""))
        super().__init__(self.__str__())

    def __str__(self) -> str:
        count = len(self.errors)
        lines = [f"{count} manifest error{'s' if count != 1 else ''}:"]
        lines.extend(f"  {error}" for error in self.errors)
        return "\n".join(lines)


class ConfigError(SlotkeeperError):
    """A setting given on the command line or in the environment is unusable."""


class PlanFileError(SlotkeeperError):
    """A saved plan file cannot be read, or was not written by a compatible slotkeeper."""


class SecretError(SlotkeeperError):
    """A secret could not be stored where it was asked to go."""


class TargetError(SlotkeeperError):
    """A target call failed; the message names the target and what failed, never a credential.

    ``remote_id`` and ``detail`` carry what the target did make, if anything (e.g. an Unkey
    deployment that then failed), so the ledger can keep it.
    """

    def __init__(
        self, message: str, *, remote_id: str | None = None, detail: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.remote_id = remote_id
        self.detail = detail or {}


class PermanentTargetError(TargetError):
    """Retrying will not help (permission denied, validation failed, not found)."""


class TemporaryTargetError(TargetError):
    """Retrying later may help; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        remote_id: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, remote_id=remote_id, detail=detail)
        self.retry_after = retry_after


class UnknownOutcome(TemporaryTargetError):
    """A write may or may not have happened (timeout or dropped connection after sending)."""


class BudgetDeferred(TemporaryTargetError):
    """The write budget does not allow this write now; it stays pending for the next run."""


class LedgerError(SlotkeeperError):
    """The ledger cannot be opened, read or written."""


class NoLedgerError(LedgerError):
    """There is no ledger at the state URL; only writers (apply, run, keys rotate) create one."""


class LedgerLockedError(LedgerError):
    """Another process holds the ledger's writer lock longer than we were willing to wait."""


class StalePlanError(LedgerError):
    """The ledger moved on since a saved plan was made; applying it would act on old facts."""


class SchemaVersionError(LedgerError):
    """The ledger's schema is newer than this slotkeeper understands."""
