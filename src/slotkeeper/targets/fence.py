"""The last check before a write request's bytes leave: the socket layer's half of the fence.

:class:`slotkeeper.targets.http.FencedTransport` refuses a write request once this process no
longer holds the ledger's writer lease, but between that check and the moment the request's
bytes are handed to the socket, the connection pool is asked for a connection and the request
is serialised: a process frozen there (SIGSTOP, a paused VM) and woken after it lost the lease
would send the request anyway. So the transport also puts its check in :data:`WRITE_FENCE` for
the duration of a write request, and every connection runs it again immediately before each
write to the socket (:func:`check_write`: :class:`FencedStream` in httpcore's connections, the
direct transport's connections in :mod:`slotkeeper.targets.wire`). What remains is the time
between that check and the system call itself.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import httpcore

from slotkeeper import metrics
from slotkeeper.errors import FencedError

#: the writer check of the write request this thread is sending (None: a read, or no lease)
WRITE_FENCE: ContextVar[Callable[[], bool] | None] = ContextVar("write_fence", default=None)


def check_write() -> None:
    """Run the write fence of the request this thread is sending: :class:`FencedError` when
    this process no longer holds the ledger's writer lock. A connection calls it immediately
    before each write to its socket."""
    check = WRITE_FENCE.get()
    if check is not None and not check():
        metrics.FENCED_WRITES.labels(by="remote").inc()
        raise FencedError(
            "a write request was not sent: this process no longer holds the ledger's writer lock"
        )


class FencedStream(httpcore.NetworkStream):
    """A connection's stream that runs :data:`WRITE_FENCE` before every write."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        check_write()
        self._inner.write(buffer, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return FencedStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
