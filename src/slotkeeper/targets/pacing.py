"""Pacing of content-creating requests under a target's documented write budget.

GitHub documents secondary limits of about 80 content-creating requests a minute and 500 an
hour. :class:`WriteBudget` keeps a sliding-window log of writes (seeded from the ledger, so
separate CLI runs share one budget) and, before each write, either waits the short time until it
fits or, when the wait would be long, raises :class:`BudgetDeferred` so the write stays pending
for the next reconcile instead of tripping the limit.

Writes run concurrently, so a write is counted from the moment it is let through until it is
answered (*in flight*: inside every window), and logged at the time of its answer, which is never
earlier than the time the server counted it. Any span of a window's length then holds at most
the window's limit of writes as the server sees them, however the requests overtake each other
on the way.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from slotkeeper.errors import BudgetDeferred

#: the longest one wait for in-flight writes to be answered (then the windows are looked at again)
_IN_FLIGHT_POLL = 1.0


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
        self._log: list[datetime] = sorted(history)  # answer times, oldest first
        self._in_flight = 0
        # Writers queue in order on _turn (sleeping while they hold it); _state guards the log.
        self._turn = threading.Lock()
        self._state = threading.Condition()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold one write's place in the budget while the request is sent and answered."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        """Return when one more write fits every window; raise BudgetDeferred if that is far.
        Every acquire must be followed by one ``release`` when the request is answered."""
        with self._turn:
            while True:
                with self._state:
                    wait = self._wait_for(self._clock())
                    if wait is None:  # only writes still in flight stand in the way
                        self._state.wait(_IN_FLIGHT_POLL)
                        continue
                    if wait > self._max_wait:
                        raise BudgetDeferred(
                            f"{self._target}: write budget spent; next write fits in "
                            f"{wait:.0f}s, left pending for the next reconcile",
                            retry_after=wait,
                        )
                    if wait <= 0:
                        self._in_flight += 1
                        return
                # Sleeping while holding the turn is deliberate: writes go out in order.
                self._sleep(wait)

    def release(self) -> None:
        """The write was answered (or failed): log it at this time and let waiters look again."""
        with self._state:
            now = self._clock()
            self._in_flight -= 1
            insort(self._log, now)  # answers may come back out of order
            self._state.notify_all()
        if self._on_write is not None:
            self._on_write(now)

    def _wait_for(self, now: datetime) -> float | None:
        """Seconds until one more write fits; None when only in-flight writes are in the way."""
        longest = max((w.span for w in self._windows), default=timedelta(0))
        del self._log[: bisect_right(self._log, now - longest)]
        wait = 0.0
        for window in self._windows:
            first = bisect_right(self._log, now - window.span)  # the first write inside
            inside = len(self._log) - first
            excess = inside + self._in_flight - window.limit
            if excess < 0:
                continue
            if excess >= inside:
                return None
            # The logged write that must leave the window for one more to fit.
            oldest = self._log[first + excess]
            wait = max(wait, (oldest + window.span - now).total_seconds())
        return wait
