"""Pacing of content-creating requests under a target's documented write budget.

GitHub documents secondary limits of about 80 content-creating requests a minute and 500 an
hour. :class:`WriteBudget` keeps a sliding-window log of writes (seeded from the ledger, so
separate CLI runs share one budget) and, before each write, either waits the short time until it
fits or, when the wait would be long, raises :class:`BudgetDeferred` so the write stays pending
for the next reconcile instead of tripping the limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from slotkeeper.errors import BudgetDeferred


@dataclass(frozen=True)
class Window:
    limit: int
    span: timedelta


class WriteBudget:
    """A thread-safe write pacer over several sliding windows (e.g. per minute and per hour)."""

    def __init__(
        self,
        *,
        target: str,
        windows: Iterable[Window],
        max_wait: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        history: Iterable[datetime] = (),
        on_write: Callable[[datetime], None] | None = None,
    ) -> None:
        self._target = target
        self._windows = [w for w in windows if w.limit > 0]
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._on_write = on_write
        self._log: deque[datetime] = deque(sorted(history))
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Return when one more write fits every window; raise BudgetDeferred if that is far."""
        with self._lock:
            now = self._clock()
            wait = self._wait_for(now)
            if wait > self._max_wait:
                raise BudgetDeferred(
                    f"{self._target}: write budget spent; next write fits in {wait:.0f}s, "
                    "left pending for the next reconcile",
                    retry_after=wait,
                )
            if wait > 0:
                # Sleeping under the lock is deliberate: writes queue up in order behind it.
                self._sleep(wait)
                now = self._clock()
            self._log.append(now)
            if self._on_write is not None:
                self._on_write(now)

    def _wait_for(self, now: datetime) -> float:
        longest = max((w.span for w in self._windows), default=timedelta(0))
        while self._log and now - self._log[0] >= longest:
            self._log.popleft()
        wait = 0.0
        for window in self._windows:
            inside = [t for t in self._log if now - t < window.span]
            if len(inside) >= window.limit:
                # The oldest write that must leave the window for one more to fit.
                oldest = inside[len(inside) - window.limit]
                wait = max(wait, (oldest + window.span - now).total_seconds())
        return wait
