"""What the loop thread tells the others: one small object behind one lock.

The loop writes (a reconcile started or finished, the leader flag, the manifests it loaded);
HTTP threads (``/healthz``, ``/readyz``, ``/status``, the webhook) and the source watcher read.
Each read takes the lock and returns a value that is never changed afterwards, so a reader
sees one moment, never half of an update.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from slotkeeper.model import DesiredState, timestamp

#: how long the loop may go without a tick (between reconciles) before /healthz fails
STALL_AFTER = 120.0
#: how long one reconcile may run before /healthz calls the loop stuck
RECONCILE_STUCK_AFTER = 3600.0


@dataclass(frozen=True)
class LastReconcile:
    """One reconcile, as ``/status`` shows it: running (``result`` "running") or finished.
    Published whole and never changed: a finished one is a new value."""

    id: str
    reason: str
    started_at: datetime
    finished_at: datetime | None = None
    revision: str | None = None
    result: str = "running"
    duration_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    blocked: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason,
            "started_at": timestamp(self.started_at),
            "finished_at": timestamp(self.finished_at) if self.finished_at else None,
            "revision": self.revision,
            "result": self.result,
            "duration_seconds": round(self.duration_seconds, 3),
            "counts": self.counts,
            "blocked": self.blocked,
            "error": self.error,
        }


class DaemonStatus:
    """The daemon's state shared between threads. ``monotonic`` is the clock of liveness."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: LastReconcile | None = None
        self._busy_since: float | None = None
        self._last_tick = monotonic()
        self._ready = False
        self._leader = False
        self._stopping = False
        self._desired: DesiredState | None = None
        self._fetched: str | None = None

    # -- written by the loop ----------------------------------------------------------------

    def tick(self) -> None:
        """The loop went round (it waits at most a second between two ticks)."""
        with self._lock:
            self._last_tick = self._monotonic()

    def started(self, last: LastReconcile) -> None:
        """A reconcile began: it is the last one, and the loop is busy."""
        with self._lock:
            self._last = last
            self._busy_since = self._monotonic()

    def revision_known(self, revision: str | None) -> None:
        """The running reconcile fetched its revision."""
        with self._lock:
            if self._last is not None:
                self._last = replace(self._last, revision=revision)

    def finished(self, last: LastReconcile) -> None:
        """The reconcile ended as ``last`` says: the loop ticks again, and serves as ready."""
        with self._lock:
            self._last = last
            self._busy_since = None
            self._last_tick = self._monotonic()
            self._ready = True

    def set_ready(self) -> None:
        with self._lock:
            self._ready = True

    def set_leader(self, leading: bool) -> None:
        with self._lock:
            self._leader = leading

    def set_desired(self, desired: DesiredState) -> None:
        with self._lock:
            self._desired = desired

    def set_fetched(self, version: str | None) -> None:
        """The version of the source the last reconcile fetched (the poller compares)."""
        with self._lock:
            self._fetched = version

    def stop(self) -> None:
        """Shutting down: no longer alive."""
        with self._lock:
            self._stopping = True

    # -- read from any thread ---------------------------------------------------------------

    def alive(self) -> bool:
        """The loop is waiting and ticking, or in a reconcile that has not run for too long
        (a long apply — rate-limit waits, Unkey polling — is not a dead loop)."""
        with self._lock:
            if self._stopping:
                return False
            now = self._monotonic()
            if self._busy_since is not None:
                return now - self._busy_since < RECONCILE_STUCK_AFTER
            return now - self._last_tick < STALL_AFTER

    def ready(self) -> bool:
        with self._lock:
            return self._ready

    def leader(self) -> bool:
        with self._lock:
            return self._leader

    def last(self) -> LastReconcile | None:
        with self._lock:
            return self._last

    def last_document(self) -> dict[str, Any] | None:
        last = self.last()
        return last.document() if last is not None else None

    def desired(self) -> DesiredState | None:
        """The manifests of the last reconcile, for what only they say (suspend, freeze)."""
        with self._lock:
            return self._desired

    def fetched(self) -> str | None:
        with self._lock:
            return self._fetched
