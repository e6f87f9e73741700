"""A TCP proxy on loopback that fails the network on demand, for the PostgreSQL tests: a
partition is tested, not assumed.

- ``blackhole()`` stops forwarding in both directions without closing anything (a partition the
  endpoints cannot see: every byte sent is accepted and dropped); ``heal()`` forwards again.
- ``reset()`` ends every connection at once with a TCP reset (what a database restart, a
  crashed proxy or a NAT that forgot the flow does to a session); new connections are refused
  while ``refusing`` (``refuse()`` / ``heal()``), as while a server restarts.
- ``delay(seconds)`` holds every chunk of data that long before forwarding it (a slow or
  congested network); ``delay(0)`` forwards at once again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType


class TcpProxy:
    """Forwards every connection made to ``(host, port)`` of the proxy to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._refusing = False
        self._delay = 0.0
        self._guard = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept)

    def blackhole(self) -> None:
        """Stop forwarding: what either side sends is read and dropped, nothing is closed."""
        self._forwarding.clear()

    def heal(self) -> None:
        """Forward again, and accept new connections again."""
        self._refusing = False
        self._forwarding.set()

    def refuse(self) -> None:
        """Refuse new connections (they are reset as soon as accepted) until ``heal()``."""
        self._refusing = True

    def reset(self, *, refuse: bool = False) -> int:
        """End every open connection with a reset, both sides; with ``refuse``, refuse new ones
        until ``heal()``. Returns how many connections were reset."""
        if refuse:
            self.refuse()
        with self._guard:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _abort(sock)
        return len(sockets) // 2

    def delay(self, seconds: float) -> None:
        """Hold every chunk this long before forwarding it (0: at once)."""
        self._delay = seconds

    def close(self) -> None:
        """Stop: every thread of the proxy is woken and ends before this returns. (A socket
        closed under a thread blocked on it is not enough: its descriptor number is reused by
        the next socket the process opens, and a system call restarted after a signal would
        then accept or read on that other socket.)"""
        with self._guard:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        _wake(self._listener)
        for sock in sockets:
            _wake(sock)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                return
            if self._refusing:
                _abort(client)
                continue
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._guard:
                if self._closed:  # closed while this one was being accepted
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                self._start(self._pump, source, sink)

    def _start(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data or self._closed:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if self._delay:
                time.sleep(self._delay)
            if self._forwarding.is_set():
                try:
                    sink.sendall(data)
                except OSError:
                    return


def _wake(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (accept or recv returns) before it is closed."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _abort(sock: socket.socket) -> None:
    """Close with a TCP reset (linger on, timeout 0) rather than an orderly close; the pump
    blocked on it is woken first (shutting down reading sends nothing)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
