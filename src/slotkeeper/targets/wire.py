"""The direct transport: HTTP/1.1 exchanges over the standard library's :mod:`http.client`.

httpx's own transport parses every message with h11, in pure Python, header by header; on the
latency-bound apply (4,000 requests, 16 in flight, issue 22) that was the largest share of the
interpreter's time, and the interpreter's time is what holds such an apply above its latency
floor. :mod:`http.client` reads a response with the C-buffered reader and writes a request in
one ``send``, in about half the time. This module only adapts it to httpx's transport contract:

- httpx requests in, httpx responses out (the body read whole: a target reads every answer
  whole anyway), errors as httpx names them — :class:`httpx.ConnectError` or
  :class:`httpx.ConnectTimeout` only when no byte of the request was sent (the client retries
  a write only then), :class:`httpx.RemoteProtocolError` for a malformed or cut answer (or
  one with more than 100 header lines, http.client's limit; an API sends a few dozen);
- connections are made by the caller's ``connect`` (the egress guard: resolved once, checked,
  then connected, see :mod:`slotkeeper.targets.egress`), one lent per request in flight by a
  :class:`PoolLender`, and every write to a socket runs the write fence first
  (:func:`slotkeeper.targets.fence.check_write`);
- an idle connection the server closed, or wrote to unasked, is dropped before it is used again
  (as httpcore does), as is one whose answer said ``Connection: close`` (http.client closed
  it).

Proxies and the options only httpcore has (HTTP/2, connect retries, a local address, socket
options) keep httpcore's transport (:meth:`EgressPolicy.transport`).
"""

from __future__ import annotations

import http.client
import select
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from slotkeeper.targets.fence import check_write
from slotkeeper.targets.pools import PoolLender

#: opens a connected socket (TLS started for ``https``) to ``host``:``port``, within a timeout
Connect = Callable[[str, str, int, float | None], socket.socket]

#: the port a URL without one means
DEFAULT_PORTS = {"http": 80, "https": 443}


class _Connection(http.client.HTTPConnection):
    """An :class:`http.client.HTTPConnection` whose socket comes from ``opened`` and whose every
    write runs the write fence."""

    def __init__(self, host: str, port: int, opened: socket.socket) -> None:
        super().__init__(host, port)
        self.sock = opened

    def connect(self) -> None:  # pragma: no cover - the socket is given, never reopened here
        raise http.client.NotConnected("the connection was closed")

    def send(self, data: Any) -> None:
        check_write()
        super().send(data)


class _Slot:
    """One request's place in the transport: the connection it holds, and that connection's
    origin (None until its first request)."""

    def __init__(self) -> None:
        self.connection: _Connection | None = None
        self.origin: tuple[str, str, int] | None = None

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


class DirectTransport(httpx.BaseTransport):
    """httpx's transport contract over :mod:`http.client` connections made by ``connect``."""

    def __init__(self, connect: Connect, *, limits: httpx.Limits) -> None:
        self._connect = connect
        self._slots = PoolLender(
            _Slot,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        try:
            slot = self._slots.borrow(timeouts.get("pool"))
        except httpcore.PoolTimeout as exc:
            raise httpx.PoolTimeout(str(exc)) from exc
        try:
            response = self._exchange(slot, request, timeouts)
        except BaseException:
            slot.close()  # cut in the middle of an exchange: what it holds is unusable
            self._slots.give_back(slot)
            raise
        self._slots.give_back(slot)
        return response

    def close(self) -> None:
        self._slots.close()

    def _exchange(
        self, slot: _Slot, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0))
        if slot.connection is not None and (slot.origin != origin or _dropped(slot.connection)):
            slot.close()
        connection = slot.connection
        if connection is None:
            with _errors(httpx.ConnectTimeout, httpx.ConnectError):
                opened = self._connect(*origin, timeouts.get("connect"))
            connection = slot.connection = _Connection(origin[1], origin[2], opened)
            slot.origin = origin
        sock = connection.sock
        write_timeout = timeouts.get("write")
        if sock.gettimeout() != write_timeout:
            sock.settimeout(write_timeout)
        body = request.read()
        with _errors(httpx.WriteTimeout, httpx.WriteError):
            try:
                connection.putrequest(
                    request.method,
                    url.raw_path.decode("ascii"),
                    skip_host=True,  # httpx's request carries Host and Accept-Encoding
                    skip_accept_encoding=True,
                )
                for name, value in request.headers.raw:
                    connection.putheader(name, value)
            except ValueError:  # its message quotes the value (a header may hold a credential)
                invalid = "a request line or header is not valid HTTP"
                raise httpx.LocalProtocolError(invalid) from None
            connection.endheaders(body or None)
        read_timeout = timeouts.get("read")
        if read_timeout != write_timeout:
            sock.settimeout(read_timeout)
        with _errors(httpx.ReadTimeout, httpx.ReadError):
            answer = connection.getresponse()  # closes the connection if the answer ends it
            content = answer.read()
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=httpx.ByteStream(content),
            extensions={
                "http_version": b"HTTP/1.1" if answer.version == 11 else b"HTTP/1.0",
                "reason_phrase": answer.reason.encode("ascii", "replace"),
            },
        )


@contextmanager
def _errors(
    timeout: type[httpx.TimeoutException], failure: type[httpx.TransportError]
) -> Iterator[None]:
    """The standard library's errors in one phase of an exchange, as httpx names them: a
    timeout, an answer that is not HTTP (or was cut short), or another socket failure."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out") from exc
    except http.client.HTTPException as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise failure(str(exc) or type(exc).__name__) from exc


def _dropped(connection: _Connection) -> bool:
    """Whether an idle connection can no longer carry a request: the server closed it (or sent
    something nobody asked for), which shows as the socket being readable."""
    sock = connection.sock
    if sock is None or sock.fileno() < 0:
        return True
    if not hasattr(select, "poll"):  # pragma: no cover - every POSIX system has poll
        return bool(select.select([sock], [], [], 0)[0])
    poller = select.poll()  # unlike select(), not limited to descriptors below 1024
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
