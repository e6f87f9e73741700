"""One connection (pool) per request in flight: a target's connections without a shared scan.

httpcore's :class:`httpcore.ConnectionPool` looks at every connection it holds each time a
request starts and each time a response is closed: whether it was closed, whether it expired (a
``poll`` of each idle socket), how many are idle (counted again for each idle one), all under
the one lock every worker thread waits for. With 16 requests in flight to a target that is 16
connections per look: about 170 µs of the interpreter's time per look on a 2-core machine,
twice per request, against 20 ms of waiting on the network.

A :class:`PoolLender` lends each request a pool of its own, which therefore holds one
connection at most, and takes it back when the response is closed. Idle pools are kept newest
first, so the connection a request gets is the one used last (kept alive, its TLS session
done). The direct transport (:mod:`slotkeeper.targets.wire`) lends its connections the same way:
whatever is lent only needs a ``close``. The limits mean what they mean for httpcore's pool:

- at most ``max_connections`` requests are in flight at once; one more waits for a pool to come
  back, as long as the request's pool timeout, then fails with :class:`httpcore.PoolTimeout`;
- at most ``max_keepalive_connections`` idle pools are kept, the rest closed when given back;
- an idle pool unused for ``keepalive_expiry`` seconds is closed when it is next looked at (the
  next request, or a pool given back): its connection had expired anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import httpcore


class Closeable(Protocol):
    def close(self) -> None: ...


Lent = TypeVar("Lent", bound=Closeable)


class PoolLender(Generic[Lent]):
    """Lends single-connection pools (or connections) made by ``make``, one per request in
    flight."""

    def __init__(
        self,
        make: Callable[[], Lent],
        *,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self._max_idle = max_keepalive_connections
        self._expiry = keepalive_expiry
        self._clock = clock
        self._lock = threading.Lock()
        #: idle pools with the time each was given back, oldest first
        self._idle: deque[tuple[Lent, float]] = deque()
        self._slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        self._closed = False

    def borrow(self, timeout: float | None) -> Lent:
        """The idle pool used last, or a new one; waits for one while ``max_connections``
        requests are in flight (at most ``timeout`` seconds, None: as long as it takes)."""
        if self._slots is not None and not self._slots.acquire(timeout=timeout):
            raise httpcore.PoolTimeout("no connection came free in time")
        try:
            with self._lock:
                expired = self._expired()
                lent = self._idle.pop()[0] if self._idle else None
            _close(expired)
            return lent if lent is not None else self._make()
        except BaseException:  # nothing was lent: the request's place is free again
            if self._slots is not None:
                self._slots.release()
            raise

    def give_back(self, pool: Lent) -> None:
        """Take a pool back once its request is done (its response closed, or it failed)."""
        with self._lock:
            expired = self._expired()
            kept = not self._closed and (self._max_idle is None or len(self._idle) < self._max_idle)
            if kept:
                self._idle.append((pool, self._clock()))
        _close([*expired, *([] if kept else [pool])])
        if self._slots is not None:
            self._slots.release()

    def close(self) -> None:
        """Close every idle pool; a pool lent out now is closed when it is given back."""
        with self._lock:
            self._closed = True
            idle = [pool for pool, _ in self._idle]
            self._idle.clear()
        _close(idle)

    def _expired(self) -> list[Lent]:
        """Take out the idle pools unused for longer than the keep-alive expiry (the lock is
        held)."""
        if self._expiry is None:
            return []
        horizon = self._clock() - self._expiry
        expired = []
        while self._idle and self._idle[0][1] < horizon:
            expired.append(self._idle.popleft()[0])
        return expired


def _close(pools: list[Lent]) -> None:
    for pool in pools:
        pool.close()
