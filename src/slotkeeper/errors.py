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
    │   ├── PermanentTargetError retrying now will not help: permission, validation, 4xx
    │   │   ├── TargetFailed     the target took the call but failed it or answered oddly
    │   │   └── TargetUnusable   the target could not be set up (or reached) for this run
    │   └── TemporaryTargetError retrying later may work: 5xx, timeouts, rate limits; with
    │       │                    retry_after, not before that pause has passed
    │       ├── TargetUnreachable no answer at all (connection refused, timed out)
    │       ├── UnknownOutcome   a write was sent but its answer was lost: look before retrying
    │       └── BudgetDeferred   the write budget is spent: left pending for the next reconcile
    └── LedgerError              the recorded state cannot be read or written
        ├── NoLedgerError        nothing was ever applied where --state points (readers create none)
        ├── LedgerLockedError    another writer holds the ledger past the wait bound
        ├── StalePlanError       a saved plan's lineage or serial no longer matches the ledger
        └── SchemaVersionError   the ledger was written by a newer slotkeeper

What the target branch decides (the classes, not their messages, drive it):

- a ``TemporaryTargetError`` is retried where it happens, when retrying is safe (the HTTP client
  retries 5xx, timeouts and short rate limits with backoff); one that outlasts those retries
  fails the sync, and when the target's answer named a pause (``retry_after``: a rate limit's
  retry-after or reset) the sync is journaled "not before" then (:func:`retry_delay`) and the
  planner blocks it until that time, so no reconcile calls the target earlier;
- a ``PermanentTargetError`` is never retried within the run (the call is not repeated, the
  HTTP client gives up at once); the next reconcile tries again, level-triggered, because what
  fixes it (a permission granted, a repository created, another target's deployment, a
  credential set) happens where slotkeeper cannot see it; the daemon's back-off spaces those
  tries. Adapters that must not repeat a write whose outcome is unknown (iftrue, Unkey) refuse
  it themselves, permanently, until the operator looks;
- a ``BudgetDeferred`` leaves the sync pending, not failed, with no pause journaled: the write
  budget is slotkeeper's own, kept in the ledger and checked again for free at the next try;
- a target whose refresh failed with a ``TemporaryTargetError`` is not written to in that run
  (its writes fail at once as ``TargetUnusable``, caused by that error, and carry its pause).

Third-party exceptions are translated at the edge that calls the library and chained with
``raise ... from``. Messages never contain a secret value: they name where a secret is
referenced, not what it is.

A target error's message may quote the target's answer (up to 300 characters of it), which
whoever runs the target, or answers in its place, chooses. The ledger keeps that message for
operators (``slotkeeper status``); what pages anyone can read show is :func:`public_reason`:
the HTTP status code and a fixed phrase chosen here, never the target's words, a path or a host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final


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


class DeliveryIncomplete(SlotkeeperError):
    """A new deploy key is registered and recorded but some place its consumers read it from
    did not take it: the key it replaces stays registered, and the rotation is retried."""


class SinkRefused(SlotkeeperError):
    """A deploy key may not be written to a place: a Secret or Actions secret slotkeeper does
    not own, or a namespace the service account may not write. Permanent until someone changes
    the manifests or the place."""


class TargetError(SlotkeeperError):
    """A target call failed; the message names the target and what failed, never a credential.

    ``http_status`` is the status code of the answer that made the call fail, when an answer
    did. ``remote_id`` and ``detail`` carry what the target did make, if anything (e.g. an Unkey
    deployment that then failed), so the ledger can keep it.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        remote_id: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.remote_id = remote_id
        self.detail = detail or {}


class PermanentTargetError(TargetError):
    """Retrying now will not help (permission denied, validation failed, not found): the call
    is not repeated in this run; the next reconcile tries again, since what fixes it (a grant,
    a repository, a credential) happens outside slotkeeper's sight."""


class TargetFailed(PermanentTargetError):
    """The target took the call but reports that the work failed (an Unkey deployment ended
    FAILED), or answered in a way that does not show it done (no id, not listed)."""


class TargetUnusable(PermanentTargetError):
    """The target could not be set up (its credential is missing, ...) or could not even be read
    this run: every call to it fails with this, its cause (if any) being why."""


class TemporaryTargetError(TargetError):
    """Retrying later may help; ``retry_after`` is the server's hint in seconds, if any: the
    sync is not tried again before it has passed (see :func:`retry_delay`)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = None,
        remote_id: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, remote_id=remote_id, detail=detail)
        self.retry_after = retry_after


class TargetUnreachable(TemporaryTargetError):
    """No answer came at all (connection refused or reset, timed out), retries included."""


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


class FencedError(LedgerError):
    """A write by a process that is not (or no longer) the ledger's writer: its lease expired,
    was released or was taken by another replica. Refused inside the transaction: nothing of
    it is written."""


class StalePlanError(LedgerError):
    """The ledger moved on since a saved plan was made; applying it would act on old facts."""


class SchemaVersionError(LedgerError):
    """The ledger's schema is newer than this slotkeeper understands."""


#: what an answer's status code says happened, for :func:`public_reason` (4xx not listed:
#: "rejected by the target"; 5xx: "target unavailable"; anything else: "unexpected answer")
_BY_STATUS: Final[dict[int, str]] = {
    401: "permission denied",
    403: "permission denied",
    404: "not found",
    409: "conflict",
    410: "not found",
    429: "rate limited",
}

#: what happened, by the class of an error that carries no status code (most specific first)
_BY_CLASS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (BudgetDeferred, "write budget spent: left for the next reconcile"),
    (UnknownOutcome, "no answer (the write may have happened)"),
    (TargetUnreachable, "unreachable"),
    (TargetUnusable, "target not usable: configuration error"),
    (TargetFailed, "failed on the target"),
    (TemporaryTargetError, "not done yet: tried again at the next reconcile"),
    (PermanentTargetError, "refused by slotkeeper"),
    (TargetError, "target call failed"),
    (ConfigError, "configuration error"),
    (ManifestError, "manifest error"),
    (ManifestErrors, "manifest error"),
    (PlanFileError, "plan file error"),
    (SecretError, "secret not stored"),
    (LedgerError, "ledger error"),
    (SlotkeeperError, "failed"),
)


def _status_phrase(error: TargetError, code: int) -> str:
    if isinstance(error, TemporaryTargetError) and code == 403:
        return "rate limited"  # a 403 is temporary only when it carries rate-limit signals
    if code in _BY_STATUS:
        return _BY_STATUS[code]
    if 400 <= code < 500:
        return "rejected by the target"
    if 500 <= code < 600:
        return "target unavailable"
    return "unexpected answer"


def public_reason(error: BaseException) -> str:
    """What happened, in a short fixed text that pages anyone may read can show: the HTTP
    status code when an answer made the call fail, and a phrase chosen by the error's class or
    code, e.g. ``HTTP 422: rejected by the target``. Never the target's own words, a path or a
    host: the full message stays in the ledger for ``slotkeeper status``.

    An error without a code that was raised from a target error (re-raised with more context,
    or a target left unusable by an earlier failure) tells what happened by that cause."""
    seen: set[int] = set()
    while isinstance(error, TargetError) and id(error) not in seen:
        seen.add(id(error))
        code = error.http_status
        if code is not None:
            reason = f"HTTP {code}: {_status_phrase(error, code)}"
            if isinstance(error, UnknownOutcome):
                reason += "; the write may have happened"
            return reason
        if not isinstance(error.__cause__, TargetError):
            break
        error = error.__cause__
    return next((text for kind, text in _BY_CLASS if isinstance(error, kind)), "internal error")


def retry_delay(error: BaseException) -> float | None:
    """How long, in seconds, the target asked not to be called again after ``error``: the
    ``retry_after`` of the first temporary error in its chain (a target left unusable by a
    rate-limited read carries that error as its cause). None when no answer asked for a pause,
    and for a spent write budget (``BudgetDeferred``): that limit is slotkeeper's own, checked
    again for free at the next try."""
    seen: set[int] = set()
    current: BaseException | None = error
    while isinstance(current, TargetError) and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BudgetDeferred):
            return None
        if isinstance(current, TemporaryTargetError) and current.retry_after is not None:
            return current.retry_after
        current = current.__cause__
    return None
