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


def serve(dashboard: Dashboard, host: str, port: int) -> ThreadingHTTPServer:
    """A threaded HTTP server answering GETs from ``dashboard``; the caller runs it."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "slotkeeper"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            found = answer(dashboard, self.path)
            self.send_response(found.status)
            self.send_header("Content-Type", found.content_type)
            self.send_header("Content-Length", str(len(found.body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(found.body)

        def do_POST(self) -> None:
            self.send_response(405)
            self.send_header("Allow", "GET")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return bind(host, port, Handler)
