"""uvicorn's h11 connection, with the two things it leaves out: a deadline for a request to
arrive, and our own answer to a request h11 refuses.

uvicorn closes a connection that stays idle between two requests (``timeout_keep_alive``), but
not one that sends part of a request and then nothing: a first request line cut in the middle,
or a head that is never finished, or a body that trickles in, would hold its connection open
for as long as the client likes. Here each request must arrive whole (head and body) within
``request_timeout`` of the moment the connection started to wait for it, or the connection is
closed. A half-sent request costs a few KB until then, so thousands of them fit (the concurrency
cap and the open-files limit bound how many), and ``/healthz`` keeps answering meanwhile.

A request h11 cannot take (a head over the size limit, a ``Content-Length`` that is not a
number, a malformed line) is answered with a JSON error and the security headers, like every
other answer of ours, and with the status h11 suggests: 431 for a head too large, 400 else.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from slotkeeper.web.security import ENCODED_HEADERS

#: h11's default limit for a request head (its ``max_incomplete_event_size``), in bytes
DEFAULT_HEAD_LIMIT = 16 * 1024


class _Connection(h11.Connection):
    """An h11 connection that keeps the error it refused a request with (uvicorn only says
    that one happened), for the answer to name the status and the reason."""

    refusal: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = exc
            raise


class DeadlineH11Protocol(H11Protocol):
    """One connection: uvicorn's h11 protocol with a request deadline and JSON refusals."""

    #: seconds a request has to arrive whole; a subclass per server sets it (``with_deadline``)
    request_timeout: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
        self._h11 = self.conn = _Connection(h11.SERVER, max_incomplete_event_size=limit)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_deadline()  # the next request on this connection has its own

    def _start_deadline(self) -> None:
        self._stop_deadline()
        self._deadline = self.loop.call_later(self.request_timeout, self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        """Close the connection if its request has not arrived whole (h11 still waits for the
        head, IDLE, or for the rest of the body, SEND_BODY)."""
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Answer a request h11 refused (uvicorn calls this with a fixed message), then close."""
        refusal = self._h11.refusal
        status = refusal.error_status_hint if refusal is not None else 400
        if status == 431:
            reason = "request head too large"
        elif refusal is not None and "Content-Length" in str(refusal):
            reason = "bad body size"
        else:
            reason = "bad request"
        body = json.dumps({"error": reason}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *ENCODED_HEADERS,
        ]
        response = h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES[status])
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def with_deadline(request_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class for one server, whose requests must arrive within
    ``request_timeout`` seconds."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout": request_timeout})
