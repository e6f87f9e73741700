"""The web layer at its seam: the route table (``build_app``) on the real server
(``WebServer``, uvicorn on loopback) in this process, over a real SQLite ledger. What the
daemon's port and `slotkeeper ui`'s share: the same headers on every answer, 404 and 405 as
JSON everywhere, the limits, and a server that leaves signals alone."""

from __future__ import annotations

import hashlib
import hmac
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from slotkeeper.daemon.webhook import MAX_BODY, WebhookReceiver
from slotkeeper.dashboard.pages import Dashboard
from slotkeeper.errors import ConfigError
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.observability import configure_logging
from slotkeeper.web.app import ENDPOINTS, Site, build_app
from slotkeeper.web.security import SECURITY_HEADERS
from slotkeeper.web.server import Limits, WebServer, serve

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = b"s3cret"
DEFAULTS = Limits()
Serve = Callable[..., WebServer]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path}/state.db", now=NOW)
    yield opened
    opened.close()


def site(ledger: Ledger, *, daemon: bool, hosts: frozenset[str] | None = None) -> Site:
    """The daemon's site (metrics and the webhook too) or `slotkeeper ui`'s."""
    receiver = WebhookReceiver(
        secret=SECRET, branch="main", ledger=ledger, ask=lambda _: True, clock=lambda: NOW
    )
    return Site(
        dashboard=Dashboard(ledger, clock=lambda: NOW),
        alive=lambda: True,
        ready=lambda: daemon,  # the ui is ready at once; this daemon has not reconciled yet
        allowed_hosts=hosts,
        metrics=daemon,
        webhook=receiver if daemon else None,
    )


@pytest.fixture
def served(ledger: Ledger) -> Iterator[Serve]:
    servers: list[WebServer] = []

    def start(
        *, daemon: bool = True, limits: Limits = DEFAULTS, hosts: frozenset[str] | None = None
    ) -> WebServer:
        app = build_app(site(ledger, daemon=daemon, hosts=hosts))
        server = WebServer(app, "127.0.0.1", 0, limits=limits)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def url(server: WebServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def assert_secured(answer: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value, (answer.request.url, name)
    assert "server" not in answer.headers


@pytest.mark.parametrize("daemon", [True, False], ids=["daemon", "ui"])
def test_every_answer_carries_the_same_headers_and_wrong_methods_are_405(
    served: Serve, daemon: bool
) -> None:
    """Pages, probes, 404s and 405s alike carry CSP, nosniff, no framing, no referrer and
    no-store, and no server name; a method a path does not take is a 405 JSON error naming
    the methods it takes."""
    server = served(daemon=daemon)
    for path in ("/", "/keys", "/status", "/healthz", "/readyz", "/static/dashboard.css"):
        answer = httpx.get(url(server, path), timeout=5)
        assert answer.status_code == (503 if path == "/readyz" and not daemon else 200), path
        assert_secured(answer)
        refused = httpx.post(url(server, path), timeout=5)
        assert (refused.status_code, refused.json()) == (405, {"error": "method not allowed"})
        assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD"}
        assert_secured(refused)
    missing = httpx.get(url(server, "/nowhere"), timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    assert_secured(missing)
    assert httpx.post(url(server, "/nowhere"), timeout=5).status_code == 404


def test_the_daemon_serves_metrics_and_the_hook_and_the_ui_does_not(served: Serve) -> None:
    """/metrics and POST /hooks/github are the daemon's alone; GET on the hook is 405."""
    daemon, ui = served(daemon=True), served(daemon=False)
    metrics = httpx.get(url(daemon, "/metrics"), timeout=5)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    hook = httpx.get(url(daemon, "/hooks/github"), timeout=5)
    assert (hook.status_code, hook.headers["allow"]) == (405, "POST")
    assert httpx.post(url(daemon, "/hooks/github"), timeout=5).status_code == 401
    assert httpx.get(url(ui, "/metrics"), timeout=5).status_code == 404
    assert httpx.post(url(ui, "/hooks/github"), timeout=5).status_code == 404
    fixed = {"/", "/keys", "/healthz", "/readyz", "/metrics", "/status"}
    assert fixed | {"/hooks/github"} == ENDPOINTS
    assert all(httpx.get(url(daemon, path), timeout=5).status_code != 404 for path in fixed)


def test_other_hosts_are_refused_before_any_route(served: Serve) -> None:
    """With an allow-list, any other Host is 403 (with the headers), on every path and method,
    the hook included; the allowed names are served with or without a port."""
    server = served(hosts=frozenset({"127.0.0.1", "sk.internal"}))
    for method, path in [("GET", "/status"), ("POST", "/hooks/github"), ("GET", "/nowhere")]:
        refused = httpx.request(method, url(server, path), headers={"Host": "evil"}, timeout=5)
        assert refused.status_code == 403, path
        assert refused.json() == {
            "error": "unknown host: start slotkeeper with --allowed-host for this name"
        }
        assert_secured(refused)
    for host in ("sk.internal", "SK.internal:8080", "127.0.0.1"):
        assert httpx.get(url(server, "/healthz"), headers={"Host": host}, timeout=5).is_success


def raw_exchange(server: WebServer, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; everything received until the server closes it."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as raw:
        raw.sendall(data)
        while chunk := raw.recv(65536):
            received += chunk
    return received


def test_a_request_h11_refuses_is_a_json_error_with_the_headers(served: Serve) -> None:
    """A Content-Length that is no number is 400 "bad body size"; a malformed request line is
    400 "bad request"; a head over the limit is 431; each with the headers, then closed."""
    server = served(limits=Limits(head=4096))
    cases = [
        (b"POST /hooks/github HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400, b"bad body"),
        (b"GET / HTTP/1.1 junk\r\nHost: h\r\n\r\n", 400, b'{"error": "bad request"}'),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 5000, 431, b"request head too large"),
    ]
    for request, status, body in cases:
        answer = raw_exchange(server, request)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
        assert b"x-frame-options: DENY\r\n" in answer and b"connection: close\r\n" in answer
        assert body in answer


def test_a_request_that_does_not_arrive_in_time_is_closed(served: Serve) -> None:
    """A half-sent head, and a head whose body stops coming, are closed once the request
    timeout has passed; a request sent in time on the same kind of connection is served."""
    server = served(limits=Limits(request_timeout=0.5))
    started = time.monotonic()
    assert raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Half: s") == b""
    slow_body = b"POST /hooks/github HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345"
    assert raw_exchange(server, slow_body) == b""
    assert time.monotonic() - started < 9  # closed by the timeout, not by raw_exchange's wait
    healthz = b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    assert raw_exchange(server, healthz).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_body_over_the_limit_is_refused_as_it_streams(served: Serve) -> None:
    """A chunked body (no size declared) is cut off once it passes MAX_BODY: 413, connection
    closed, the rest never read; a declared size over it is refused before any byte of it."""
    server = served()

    def chunks(size: int) -> Iterator[bytes]:
        """``size`` bytes in chunks of 64 KiB at most, sent chunked (no Content-Length)."""
        while size > 0:
            yield b" " * min(size, 65536)
            size -= 65536

    for size in (MAX_BODY + 1, 3 * MAX_BODY):
        streamed = httpx.post(url(server, "/hooks/github"), content=chunks(size), timeout=10)
        assert (streamed.status_code, streamed.json()) == (413, {"error": "bad body size"})
        assert streamed.headers["connection"] == "close"  # cut off here, not by the receiver
    at_limit = httpx.post(url(server, "/hooks/github"), content=chunks(MAX_BODY), timeout=10)
    assert (at_limit.status_code, at_limit.json()) == (401, {"error": "bad signature"})
    declared = f"POST /hooks/github HTTP/1.1\r\nHost: h\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    assert raw_exchange(server, declared.encode()).startswith(
        b"HTTP/1.1 413 Request Entity Too Large\r\n"
    )
    body = b'{"ref": "refs/heads/main"}'
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    signed = httpx.post(
        url(server, "/hooks/github"),
        content=iter([body[:5], body[5:]]),
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature},
        timeout=10,
    )
    assert (signed.status_code, signed.json()) == (202, {"accepted": True, "event": "push"})


def test_a_client_that_hangs_up_mid_body_is_no_error(served: Serve) -> None:
    """A webhook whose client goes away (or is cut off at the deadline) before its body came
    is dropped quietly: no error event, and the server goes on serving."""
    server = served(limits=Limits(request_timeout=0.5))
    configure_logging(fmt="json", level="debug")
    with capture_logs() as logs:
        cut = b"POST /hooks/github HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(cut)
        assert raw_exchange(server, cut) == b""  # closed at the deadline
        assert httpx.get(url(server, "/healthz"), timeout=5).status_code == 200
        server.stop()  # waits for every request in flight to end
    assert [log for log in logs if log["log_level"] == "error"] == []


def test_past_the_connection_cap_a_request_is_answered_503(served: Serve) -> None:
    """With every allowed connection taken by idle ones, the next request gets a 503 at once."""
    server = served(limits=Limits(connections=8))
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(8)]
    try:
        time.sleep(0.3)  # accepted by the server
        assert httpx.get(url(server, "/healthz"), timeout=5).status_code == 503
    finally:
        for connection in idle:
            connection.close()


def test_the_server_binds_at_once_and_leaves_signals_alone(served: Serve, ledger: Ledger) -> None:
    """The port is known (and taken) before the server starts: a second server on it is a
    ConfigError naming the address; a running server has installed no signal handler."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = served()
    assert httpx.get(url(server, "/healthz"), timeout=5).json() == {"alive": True}
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    with (
        pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{server.port}: address"),
        serve(build_app(site(ledger, daemon=False)), "127.0.0.1", server.port),
    ):
        pass
