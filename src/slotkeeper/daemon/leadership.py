"""Leader election through the ledger's writer lock: only its holder reconciles.

A follower stays ready (it serves the dashboard and its probes) and tries to take the lock
every election interval (the lease's retry period). A leader that lost the lock (on PostgreSQL:
its lease was not renewed within the renew deadline, or was taken) stops at once, even between
two actions of an apply, and stands aside for a few election intervals so that a healthy
replica can take over; its later writes are refused by fencing anyway. A webhook that reaches a
follower is left in the ledger as a reconcile request, which the leader picks up within a
second. Every election is logged with its epoch, whom it was taken from and how long the
ledger went without a writer; the epoch is bound to every log line of the leader's loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from slotkeeper import observability as obs
from slotkeeper.daemon import gauges
from slotkeeper.daemon.status import DaemonStatus
from slotkeeper.errors import SlotkeeperError
from slotkeeper.ledger import ReconcileRequests, Takeover, WriterLock
from slotkeeper.model import timestamp


class LeadershipLedger(WriterLock, ReconcileRequests, Protocol):
    """What the election uses: the writer lock, and the reconcile requests a follower leaves."""


#: election intervals a replica that lost the lock waits before it tries again
STAND_ASIDE = 3


class Leadership:
    """This replica's part in the election. ``trigger`` queues a reconcile on this replica's
    loop; the leader flag lives in ``status`` (HTTP threads read it)."""

    def __init__(
        self,
        ledger: LeadershipLedger,
        *,
        status: DaemonStatus,
        trigger: Callable[[str], None],
        interval: float,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._status = status
        self._trigger = trigger
        self._interval = interval
        self._clock = clock
        self._monotonic = monotonic
        self._stand_after = 0.0
        self._seen_request: int | None = None
        self._log = obs.get_logger()

    def elect(self) -> bool:
        """Whether this replica leads now: keep the lock, notice its loss, or try to take it
        (a new leader reconciles at once)."""
        leading = self._status.leader()
        if leading and not self._ledger.leading():
            leading = False
            self._status.set_leader(False)
            # Stand aside a while so a healthy replica can take over.
            self._stand_after = self._monotonic() + STAND_ASIDE * self._interval
            self._log.error("leader.lost", message="lost the ledger's writer lock: not writing")
            structlog.contextvars.unbind_contextvars("epoch")
        if not leading and self._monotonic() >= self._stand_after:
            try:
                won = self._ledger.try_lead()
            except SlotkeeperError as exc:
                self._log.warning("leader.election_failed", error=str(exc))
                won = False
            if won:
                leading = True
                self._status.set_leader(True)
                self._elected(self._ledger.takeover())
                self._trigger("elected")
        if not leading:
            self._status.set_ready()  # a follower is ready: it serves, and stands by
        return leading

    def _elected(self, takeover: Takeover | None) -> None:
        """Say who leads now, from which epoch, and after how long without a writer."""
        if takeover is None:  # a file lock: one writer by construction, no epochs
            self._log.info("leader.elected")
            return
        gauges.elected(takeover)
        structlog.contextvars.bind_contextvars(epoch=takeover.epoch)
        self._log.info(
            "leader.elected",
            previous_holder=takeover.previous_holder,
            without_writer_seconds=(
                round(takeover.gap_seconds, 3) if takeover.gap_seconds is not None else None
            ),
        )

    def document(self) -> dict[str, Any] | None:
        """Who holds the writer lease and since when, for ``/status`` (None for a file lock)."""
        lease = self._ledger.lease()
        if lease is None:
            return None
        return {
            "holder": lease.holder,
            "epoch": lease.epoch,
            "since": timestamp(lease.acquired_at),
            "renewed_at": timestamp(lease.renewed_at),
            "expires_at": timestamp(lease.expires_at),
            "expired": lease.expired,
            "this_replica": self.leading(),
        }

    def leading(self) -> bool:
        """Whether this replica leads, as ``/status`` and ``slotkeeper_leader`` say it: elected,
        and still holding the lock by its own clock. A leader that lost its lease says so at
        once, even while its loop is still held up by a database that does not answer."""
        return self._status.leader() and self._ledger.leading()

    def lost_mid_apply(self) -> bool:
        """Between two actions: whether this leader has lost the lock (then it stops at once)."""
        if self._status.leader() and not self._ledger.leading():
            self._log.error("leader.lost", message="lost the ledger's writer lock mid-apply")
            return True
        return False

    def pick_up_forwarded(self) -> None:
        """Reconcile once for the requests other replicas left in the ledger since the last
        look (webhooks that reached them); the first look only notes where the log stands."""
        try:
            latest = self._ledger.latest_request()
        except SlotkeeperError as exc:
            self._log.warning("ledger.read_failed", error=str(exc))
            return
        if self._seen_request is None:
            self._seen_request = latest
        elif latest > self._seen_request:
            self._seen_request = latest
            self._trigger("forwarded")

    def ask(self, reason: str) -> bool:
        """Ask for a reconcile (from any thread): queued here when this replica leads, else
        left in the ledger for the leader. Returns whether this replica leads."""
        leading = self._status.leader()
        if leading:
            self._trigger(reason)
        else:
            self._ledger.request_reconcile(reason, at=self._clock())
        return leading

    def resign(self) -> None:
        """Let the lock go when stopping, so that another replica takes over at once."""
        if self._status.leader():
            self._ledger.resign()
