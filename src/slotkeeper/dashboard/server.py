"""``slotkeeper ui``: the dashboard alone, over any ledger, on its own port (GET only)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slotkeeper import observability as obs
from slotkeeper.dashboard.pages import JSON, Answer, Dashboard
from slotkeeper.errors import ConfigError, SlotkeeperError


def answer(dashboard: Dashboard, target: str) -> Answer:
    """The answer to ``GET target`` (path and query): a page, 404, or 503 when the ledger
    cannot be read."""
    path, _, query = target.partition("?")
    try:
        found = dashboard.get(path, query)
    except SlotkeeperError as exc:  # e.g. the ledger is unreachable for a moment
        obs.get_logger().warning("dashboard.unavailable", path=path, error=str(exc))
        return Answer(503, b'{"error": "the ledger cannot be read now"}', JSON)
    except Exception as exc:  # a bug: answer it, say so in the log, keep serving
        obs.get_logger().error("dashboard.failed", path=path, error=repr(exc))
        return Answer(500, b'{"error": "internal error"}', JSON)
    return found or Answer(404, b'{"error": "not found"}', JSON)


#: sent with every answer of the dashboard and the daemon: no page of ours runs a script, is
#: framed, sniffed as another type or tells another site where its reader came from
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: the names a local dashboard answers to unless told others (DNS rebinding: a page of any
#: site whose name resolves to 127.0.0.1 would otherwise read it)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str | None) -> str:
    """The host of a ``Host`` header, without its port, lower case (``[::1]:80`` is ``::1``)."""
    value = (header or "").strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def refuse_host(handler: BaseHTTPRequestHandler, allowed: frozenset[str] | None) -> bool:
    """Answer 403 and return True when the request's ``Host`` is not one of ``allowed``
    (None: any host is served)."""
    if allowed is None or host_name(handler.headers.get("Host")) in allowed:
        return False
    body = b'{"error": "unknown host: start slotkeeper with --allowed-host for this name"}'
    handler.send_response(403)
    send_headers(handler, JSON, len(body))
    handler.wfile.write(body)
    return True


def send_headers(handler: BaseHTTPRequestHandler, content_type: str, length: int) -> None:
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(length))
    for name, value in SECURITY_HEADERS.items():
        handler.send_header(name, value)
    handler.end_headers()


def bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threaded HTTP server listening on host:port (not serving yet). An address that cannot
    be had (in use, not ours, unknown) is a ``ConfigError`` that says so, never a traceback."""
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason[:1].lower()}{reason[1:]}"
        ) from exc
    server.daemon_threads = True
    return server


def serve(
    dashboard: Dashboard, host: str, port: int, *, allowed_hosts: frozenset[str] | None
) -> ThreadingHTTPServer:
    """A threaded HTTP server answering GETs from ``dashboard`` for ``allowed_hosts`` (None:
    any); the caller runs it."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "slotkeeper"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if refuse_host(self, allowed_hosts):
                return
            found = answer(dashboard, self.path)
            self.send_response(found.status)
            send_headers(self, found.content_type, len(found.body))
            self.wfile.write(found.body)

        def do_POST(self) -> None:
            self.send_response(405)
            self.send_header("Allow", "GET")
            send_headers(self, JSON, 0)

    return bind(host, port, Handler)
