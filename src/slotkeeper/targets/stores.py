"""What targets keep in the ledger between runs: conditional-request bodies and the write log.

Both belong to one target (by name) and live in the ledger, so separate runs, and the replicas of
a daemon, share them: a steady state is answered with 304s whoever asks, and every writer spends
from one write budget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from slotkeeper.ledger import HttpCacheStore, WriteLog

Clock = Callable[[], datetime]


class TargetsLedger(HttpCacheStore, WriteLog, Protocol):
    """What the targets keep in the ledger: their HTTP cache and their write budget's log."""


class LedgerHttpCache:
    """Conditional-request cache of one target, kept in the ledger."""

    def __init__(self, ledger: HttpCacheStore, target: str, credential: str, clock: Clock) -> None:
        self._ledger = ledger
        self._target = target
        self._credential = credential
        self._clock = clock

    def get(self, url: str) -> tuple[str, str] | None:
        return self._ledger.cache_get(self._target, self._credential, url)

    def put(self, url: str, etag: str, body: str) -> None:
        self._ledger.cache_put(self._target, self._credential, url, etag, body, at=self._clock())


class LedgerWriteLog:
    """The write budget's log of one target, kept in the ledger so that separate runs share one
    budget. Writes are noted in memory and stored at most a second later (and when the targets
    are closed), in one transaction, rather than with a commit per request: a crash forgets at
    most the last second of them."""

    def __init__(self, ledger: WriteLog, target: str, clock: Clock, every: float = 1.0) -> None:
        self._ledger = ledger
        self._target = target
        self._clock = clock
        self._every = timedelta(seconds=every)
        self._pending: list[datetime] = []
        self._stored_at = clock()
        self._lock = threading.Lock()

    def note(self, at: datetime) -> None:
        with self._lock:
            self._pending.append(at)
            if at - self._stored_at < self._every:
                return
            self._store()

    def flush(self) -> None:
        with self._lock:
            self._store()

    def _store(self) -> None:
        if self._pending:
            self._ledger.record_writes(self._target, self._pending)
            self._pending.clear()
        self._stored_at = self._clock()
