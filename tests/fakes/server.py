"""What every fake in this package shares: a loopback HTTP/1.1 server, recording and fault knobs.

A fake subclasses ``FakeServer`` and implements ``_route`` (answer one request) and the three
error bodies of its API (``_unauthorized``, ``_server_error``, ``_internal_error``). The base
class serves real HTTP/1.1 with keep-alive on ``127.0.0.1:<free port>`` from a daemon thread, so
the adapter under test goes through httpx, sockets, timeouts and connection pools as in
production. Each request runs through one pipeline (``_serve``):

1. read the request, sleep ``latency`` (the fake's own work comes on top: a test that stops a
   client in the middle of a request has this long to do it before anything is handled);
2. ``_admit``: refusals before any processing (routing, auth, rate limits); the default checks
   ``Authorization: Bearer <token>``;
3. the fault knobs, drawn from ``random.Random(seed)``: ``error_rate`` answers a 5xx without
   processing, ``drop_rate`` processes and then hangs up without answering, ``stall_rate``
   processes and answers ``stall_seconds`` late; they only hit the methods in ``knob_methods``;
4. ``_route``: the answer; it may raise ``Refusal`` to answer with an error. Any other exception
   is a bug in the fake: the client gets a 500, and leaving the ``with`` block raises
   ``AssertionError`` chained to the first such exception, so the test fails.

Every request is recorded as a ``RecordedRequest`` (``requests``, ``writes()``, ``reset_log()``),
which is what the spec checkers in ``spec.py`` and ``iftrue_schema.py`` walk at teardown.

``round_trip`` is the benchmarks' latency: the request is handled at once and its answer held
back until ``round_trip`` seconds after the request arrived, so every exchange takes that long
whatever the fake's own work took (as a remote API's answer time does not grow with the load on
the client's machine), the time a latency floor assumes. An answer leaves in one write, headers
and body together, as a production server sends a small response.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

JsonObject = dict[str, Any]

ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received and what it answered (``status`` is None when dropped)."""

    method: str
    path: str
    url: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    status: int | None
    response_headers: dict[str, str]
    response_body: bytes
    dropped: bool
    processed: bool
    arrived_at: float = 0.0  # when it was read, by the fake's clock (``FakeServer._now``)

    def response_json(self) -> Any:
        """The parsed response body (None when empty)."""
        return json.loads(self.response_body) if self.response_body else None


@dataclass
class Reply:
    """An answer: status, a JSON-serialisable body (None means empty, bytes are sent as they
    are) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Refusal(Exception):
    """Raised inside a route to answer with an error instead of a result."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass(frozen=True)
class Incoming:
    """A received request: method, path, query (last value wins), lower-cased headers, body."""

    method: str
    target: str  # path and query as sent
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The parsed body; ``ValueError`` when it is not JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Decision:
    """What the pipeline decided for one request before answering it."""

    reply: Reply
    processed: bool = False  # the route ran (state may have changed)
    drop: bool = False
    stall: bool = False


class SlidingWindow:
    """A sliding-log limiter: at most ``most`` admitted events in any ``window`` seconds.

    The limit is passed on each call, so a fake's ``rate_limit`` knob may change while it runs;
    a new limit starts with an empty window.
    """

    def __init__(self) -> None:
        self._events: deque[float] = deque()
        self._limit: tuple[int, float] | None = None

    def admit(self, limit: tuple[int, float], now: float) -> bool:
        """Record an event and return True, or return False when the window is full."""
        self._expire(limit, now)
        if len(self._events) >= limit[0]:
            return False
        self._events.append(now)
        return True

    def remaining(self, limit: tuple[int, float], now: float) -> int:
        self._expire(limit, now)
        return max(limit[0] - len(self._events), 0)

    def reset_after(self, limit: tuple[int, float], now: float) -> int:
        """Whole seconds until the oldest event leaves the window (at least 1 when full)."""
        most, window = limit
        self._expire(limit, now)
        if not self._events:
            return 0
        wait = math.ceil(self._events[0] + window - now)
        return max(wait, 1) if len(self._events) >= most else max(wait, 0)

    def _expire(self, limit: tuple[int, float], now: float) -> None:
        if limit != self._limit:
            self._limit = limit
            self._events.clear()
        window = limit[1]
        while self._events and self._events[0] <= now - window:
            self._events.popleft()


def _encode(body: Any) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def bearer_token(authorization: str) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header, else None."""
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def iso_millis(epoch_ms: int) -> str:
    """``2024-05-01T12:00:00.123Z``: RFC 3339 in UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``, so seeded fakes hand out repeatable ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class ClientGone(Exception):
    """The client closed the connection before its request's body had all come."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections close eventually
    #: an answer is buffered and leaves in one write when the request is done (the server
    #: flushes after each request), not as headers and body in two
    wbufsize = 64 * 1024
    server: _Server

    def setup(self) -> None:
        super().setup()
        # A write the buffer cannot hold goes out in parts; without this, Nagle's algorithm
        # and delayed ACKs add ~40 ms to such an exchange.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        return self.server.fake.server_software

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, by the fake's clock (a client may correct its skew with it)."""
        return super().date_time_string(self.server.fake._now() if timestamp is None else timestamp)

    def _dispatch(self) -> None:
        try:
            self.server.fake._serve(self)
        except Exception as exc:  # a bug in the fake: hang up, fail the test at exit
            self.server.fake.internal_errors.append(exc)
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


#: where a request outside the API's path prefix is routed: nowhere (a 404)
OUTSIDE_PREFIX = "/outside-the-api-prefix"


class FakeServer:
    """The lifecycle, request log and fault knobs of a fake; subclasses supply the API."""

    server_software: ClassVar[str] = "fake"
    content_type: ClassVar[str] = "application/json"

    def __init__(self, token: str, *, seed: int = 0, prefix: str = "") -> None:
        self.token = token
        #: the path the API is served under (GitHub Enterprise Server's ``/api/v3``): requests
        #: outside it are not routed (404), as on such a server
        self.prefix = prefix.rstrip("/")
        # Knobs: read on every request, so tests may change them while the server runs.
        self.latency: float = 0.0
        self.round_trip: float = 0.0
        self.error_rate: float = 0.0
        self.drop_rate: float = 0.0
        self.stall_rate: float = 0.0
        self.stall_seconds: float = 0.0
        self.knob_methods: set[str] = set(ALL_METHODS)

        self.internal_errors: list[BaseException] = []
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._log: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None and self.internal_errors:
            raise AssertionError("the fake itself failed") from self.internal_errors[0]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` and the prefix: the fake's stand-in for the API's base
        URL."""
        return f"{self.origin}{self.prefix}"

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``: the server, without the API's path prefix."""
        if self._server is None:
            name = type(self).__name__
            raise RuntimeError(f"{name} is not running; call start() or use `with`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- observation -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def writes(self) -> list[RecordedRequest]:
        """Non-GET requests that were processed (dropped ones included, refused ones not)."""
        return [r for r in self.requests if r.processed and r.method not in ("GET", "HEAD")]

    def reset_log(self) -> None:
        """Forget the recorded requests (state is kept)."""
        with self._lock:
            self._log.clear()

    # -- what a fake supplies ----------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        """Answer one admitted request (may raise ``Refusal``); runs under the lock."""
        raise NotImplementedError

    def _unauthorized(self, incoming: Incoming) -> Reply:
        """The API's answer to a missing or wrong credential."""
        raise NotImplementedError

    def _server_error(self) -> Reply:
        """The API's answer when the ``error_rate`` knob fires."""
        raise NotImplementedError

    def _internal_error(self, exc: Exception) -> Reply:
        """The answer when the fake itself raised (the test fails at exit anyway)."""
        raise NotImplementedError

    def _admit(self, incoming: Incoming) -> Reply | None:
        """A refusal before any processing, or None to go on; by default the bearer check."""
        if not self._authorized(incoming.headers.get("authorization", "")):
            return self._unauthorized(incoming)
        return None

    def _authorized(self, authorization: str) -> bool:
        return bearer_token(authorization) == self.token

    def _now(self) -> float:
        """The fake's clock, for the ``Date`` header and ``arrived_at``: the wall clock unless a
        fake has a clock of its own."""
        return time.time()

    def _headers(self, reply: Reply, body: bytes, incoming: Incoming) -> dict[str, str]:
        """The response headers; by default JSON content type and length, then the reply's."""
        headers: dict[str, str] = {}
        if reply.status not in (204, 304):
            headers["content-type"] = self.content_type
            headers["content-length"] = str(len(body))
        headers.update(reply.headers)
        return headers

    # -- the request pipeline ----------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        try:
            self._serve_whole(handler)
        except ClientGone:
            handler.close_connection = True  # half a request: nothing to answer, nothing done

    def _serve_whole(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        path = parts.path
        if self.prefix:
            inside = path.startswith(self.prefix + "/")
            path = path.removeprefix(self.prefix) if inside else OUTSIDE_PREFIX + path
        arrived_at = self._now()
        answer_at = time.monotonic() + self.round_trip
        incoming = Incoming(
            method=handler.command,
            target=handler.path,
            path=path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=self._read_body(handler, headers),
        )
        if self.latency > 0:
            time.sleep(self.latency)

        with self._lock:  # so headers that describe state (rate limits) match this request
            decision = self._decide(incoming)
            reply = decision.reply
            reply_bytes = _encode(reply.body)
            reply_headers = self._headers(reply, reply_bytes, incoming)
        try:
            parsed: Any = incoming.json() if incoming.body else None
        except ValueError:
            parsed = None
        drop = decision.drop
        with self._lock:
            self._log.append(
                RecordedRequest(
                    method=incoming.method,
                    path=incoming.path,
                    url=f"{self.origin}{incoming.target}",
                    query=incoming.query,
                    headers=headers,
                    json=parsed,
                    body=incoming.body,
                    status=None if drop else reply.status,
                    response_headers={} if drop else reply_headers,
                    response_body=b"" if drop else reply_bytes,
                    dropped=drop,
                    processed=decision.processed,
                    arrived_at=arrived_at,
                )
            )
        held = answer_at - time.monotonic()
        if held > 0:
            time.sleep(held)
        if drop:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if decision.stall:
            time.sleep(self.stall_seconds)
        try:
            handler.send_response(reply.status)
            for name, value in reply_headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if reply_bytes and incoming.method != "HEAD":
                handler.wfile.write(reply_bytes)
        except OSError:  # the client gave up (e.g. its timeout fired during a stall)
            handler.close_connection = True

    @staticmethod
    def _read_body(handler: _Handler, headers: dict[str, str]) -> bytes:
        """The request's body; ``ClientGone`` when the connection ends before all of it came
        (a client killed mid-request): like any HTTP server, the fake never handles a request
        it did not receive whole."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                line = handler.rfile.readline()
                if not line:
                    raise ClientGone
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunk = handler.rfile.read(size)
                if len(chunk) < size:
                    raise ClientGone
                chunks.append(chunk)
                handler.rfile.readline()
        length = int(headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        if len(body) < length:
            raise ClientGone
        return body

    def _decide(self, incoming: Incoming) -> Decision:
        """Admission, then the knobs, then the route. Callers hold the lock."""
        refusal = self._admit(incoming)
        if refusal is not None:
            return Decision(refusal)
        knobbed = incoming.method in {m.upper() for m in self.knob_methods}
        if knobbed and self._rng.random() < self.error_rate:
            return Decision(self._server_error())
        drop = knobbed and self._rng.random() < self.drop_rate
        stall = not drop and knobbed and self._rng.random() < self.stall_rate
        try:
            reply = self._route(incoming)
        except Refusal as refusal_:
            reply = refusal_.reply
        except Exception as exc:  # a bug in the fake: answer 500, fail the test at exit
            self.internal_errors.append(exc)
            reply = self._internal_error(exc)
        return Decision(reply, processed=True, drop=drop, stall=stall)
