"""The writer lease of a shared ledger: who may write, until when, and by which fencing epoch.

A PostgreSQL ledger is written by one process at a time, the holder of its lease: one row of
the ``lease`` table with the holder's name, an epoch that grows by one at every acquisition
(the fencing token), and when it was acquired, last renewed and expires. Every time in that row
is the database's clock (``now()``), never a replica's, so replicas whose clocks disagree still
agree on who leads.

The settings follow Kubernetes' client-go leader election:

- ``duration`` (15 s): how long a lease lasts past its last renewal. Another replica takes it
  only once it has expired (or was released on a clean stop).
- ``renew_deadline`` (10 s): how long the holder keeps writing without a successful renewal.
  Past it the holder stops, by its own monotonic clock, before its next action: even when the
  database does not answer at all. It is shorter than ``duration``, so a holder that cannot
  renew has stopped before anyone can take the lease.
- ``retry_period`` (2 s): how often the holder renews and a standby tries to acquire.

This module holds the part that needs no database: the settings, what the lease row says, and
:class:`LocalLease`, the holder's own count of its renew deadline. The SQL is the backend's
(``ledger.postgres``); the thread that renews is :class:`LeaseKeeper`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from slotkeeper.errors import ConfigError


@dataclass(frozen=True)
class LeaseSettings:
    """Lease duration, renew deadline and retry period, in seconds (client-go's defaults)."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.duration > self.renew_deadline > self.retry_period > 0:
            raise ConfigError(
                f"lease settings must satisfy --lease-duration ({self.duration:g}s) > "
                f"--renew-deadline ({self.renew_deadline:g}s) > --retry-period "
                f"({self.retry_period:g}s) > 0: a holder must stop before its lease can be "
                "taken, and try to renew more than once before it stops"
            )


@dataclass(frozen=True)
class LeaseInfo:
    """The lease row as the ledger holds it (times on the database's clock)."""

    holder: str
    epoch: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    #: whether it had expired (or was released) when read
    expired: bool


@dataclass(frozen=True)
class Takeover:
    """One acquisition: the new epoch, and whom it was taken from."""

    epoch: int
    #: the holder before (None for the ledger's first lease)
    previous_holder: str | None
    #: seconds from the previous holder's last renewal (or release) to this acquisition, on
    #: the database's clock: how long the ledger went without a live writer
    gap_seconds: float | None


def holder_name() -> str:
    """This process's name in the lease: host (the pod's name in a cluster), process id and a
    random part, so two processes never share one even across restarts."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Renewal(Enum):
    """What one renewal attempt found."""

    RENEWED = "renewed"
    #: the lease is no longer this holder's: taken by another, or expired
    LOST = "lost"
    #: no answer in time (the database or the network): tried again, until the deadline
    FAILED = "failed"


class LocalLease:
    """The holder's side of a lease: its epoch and when its last successful renewal was *sent*
    (a renewal counts from the moment it left, not from its answer, which may have waited in
    a frozen process). ``valid`` is a local check against the renew deadline and never asks
    the database; once it has been false, it stays false until the next acquisition."""

    def __init__(
        self, settings: LeaseSettings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._monotonic = monotonic
        self._guard = threading.Lock()
        self._epoch: int | None = None
        self._renewed_sent: float = 0.0
        self._lost = True

    @property
    def epoch(self) -> int | None:
        """The epoch of the last acquisition (kept after a loss: writes under it are fenced)."""
        return self._epoch

    def taken(self, epoch: int, *, sent: float) -> None:
        with self._guard:
            self._epoch = epoch
            self._renewed_sent = sent
            self._lost = False

    def renewed(self, *, sent: float) -> bool:
        """Count a renewal sent at ``sent`` (monotonic); False when the lease was already lost
        locally (a renewal that left after the deadline does not bring it back)."""
        with self._guard:
            if self._lost or sent - self._renewed_sent >= self._settings.renew_deadline:
                self._lost = True
                return False
            self._renewed_sent = max(self._renewed_sent, sent)
            return True

    def lose(self) -> None:
        with self._guard:
            self._lost = True

    def valid(self) -> bool:
        """Whether this holder may still write: acquired, not lost, and renewed within the
        renew deadline."""
        with self._guard:
            if not self._lost and (
                self._monotonic() - self._renewed_sent >= self._settings.renew_deadline
            ):
                self._lost = True
            return not self._lost


class LeaseKeeper:
    """Renews a lease every retry period on its own thread until stopped or lost.

    ``renew`` makes one attempt; its answer moves ``lease``. A LOST answer ends the keeper (the
    lease is someone else's now); FAILED ones are retried, and the renew deadline in ``lease``
    decides when the holder stops. ``on_renewal`` is told every attempt's outcome (metrics);
    ``on_lost`` is called once when the keeper ends on a loss (to break off a database call
    that may be waiting for an answer that will never come)."""

    def __init__(
        self,
        lease: LocalLease,
        settings: LeaseSettings,
        renew: Callable[[], Renewal],
        *,
        on_renewal: Callable[[Renewal], None] = lambda _: None,
        on_lost: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lease = lease
        self._settings = settings
        self._renew = renew
        self._on_renewal = on_renewal
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the caller releases the lease); waits for an attempt under way."""
        self._stopped.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._settings.retry_period):
            sent = self._monotonic()
            outcome = self._renew()
            if self._stopped.is_set():
                return
            if outcome is Renewal.RENEWED and not self._lease.renewed(sent=sent):
                outcome = Renewal.LOST  # it came back too late: the holder has stopped
            self._on_renewal(outcome)
            if outcome is Renewal.LOST:
                self._lease.lose()
            if not self._lease.valid():  # lost, or the renew deadline passed meanwhile
                self._on_lost()
                return


__all__ = [
    "LeaseInfo",
    "LeaseKeeper",
    "LeaseSettings",
    "LocalLease",
    "Renewal",
    "Takeover",
    "holder_name",
]
