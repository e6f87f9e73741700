"""The HTTP server: uvicorn (asyncio and h11) in a background thread with its own event loop.

Why uvicorn: an asyncio server keeps an idle or half-sent connection for the cost of a few KB,
where a thread-pool server gives each one a worker thread until it times out (1,500 slowloris
connections would starve ``/healthz``). Handlers that read the ledger are plain functions that
Starlette runs in its thread pool; the loop itself only parses, routes and answers.

The socket is bound in the caller's thread before the server starts, so an address that cannot
be had is a ``ConfigError`` at once (and ``port`` is known, also for port 0). The server never
touches signals: the entry point owns them (``slotkeeper run`` stops after the action in
flight, ``ui`` at once) and calls ``stop``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from slotkeeper import observability as obs
from slotkeeper.errors import ConfigError
from slotkeeper.web.protocol import with_deadline


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server; every figure is set here, none left to defaults."""

    #: bytes of a request head (request line and headers) before it is refused with 431:
    #: GitHub's webhook heads and a browser's are a few KB (h11's default, uvicorn's too)
    head: int = 16 * 1024
    #: seconds a request has to arrive whole, head and body, once its connection waits for it
    #: (GitHub gives a webhook delivery 10 s in all; a browser sends its request at once)
    request_timeout: float = 30.0
    #: seconds an idle keep-alive connection is kept between two requests
    keep_alive: int = 5
    #: open connections (and running requests) at most; past it a request is answered 503 at
    #: once. Well above the 1,500 half-sent connections the abuse test holds, with room for
    #: probes, scrapes and webhooks; each costs a few KB (at most ``head`` buffered), so 8,192
    #: stay far under the daemon's memory. The open-files limit must allow it: the daemon
    #: raises its soft limit to the hard one at start-up.
    connections: int = 8192
    #: connections the kernel queues before they are accepted (Linux caps it at somaxconn)
    backlog: int = 2048
    #: seconds requests in flight get to finish when the server stops
    grace: int = 5


def listen(host: str, port: int, *, backlog: int = Limits.backlog) -> socket.socket:
    """A socket listening on host:port (IPv4 or IPv6, as the host resolves). An address that
    cannot be had (in use, not ours, unknown) is a ``ConfigError`` that says so."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family, backlog=backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason[:1].lower()}{reason[1:]}"
        ) from exc


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handler: the entry point owns SIGTERM, SIGINT and SIGHUP."""
        yield


class WebServer:
    """``app`` served on host:port from a background thread, once ``start`` is called."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, limits: Limits = Limits()) -> None:
        _route_server_logs()
        self._socket = listen(host, port, backlog=limits.backlog)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            loop="asyncio",
            http=with_deadline(limits.request_timeout),
            ws="none",
            lifespan="off",
            h11_max_incomplete_event_size=limits.head,
            timeout_keep_alive=limits.keep_alive,
            limit_concurrency=limits.connections,
            backlog=limits.backlog,
            timeout_graceful_shutdown=limits.grace,
            server_header=False,
            proxy_headers=False,  # no proxy is trusted to say who the client is
            access_log=False,  # our handlers log what matters, as structlog events
            log_config=None,  # and uvicorn configures no logging of its own
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._grace = limits.grace

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (``grace`` seconds at most), close."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=self._grace + 5)
        self._socket.close()


@contextlib.contextmanager
def serve(app: ASGIApp, host: str, port: int, *, limits: Limits = Limits()) -> Iterator[WebServer]:
    """``app`` served on host:port for the duration of the block."""
    server = WebServer(app, host, port, limits=limits)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _ToStructlog(logging.Handler):
    """uvicorn's own warnings and errors (a refused request, a failed handler) as structlog
    events, like every other line slotkeeper logs."""

    def emit(self, record: logging.LogRecord) -> None:
        log = obs.get_logger()
        event = log.error if record.levelno >= logging.ERROR else log.warning
        event("http.server", message=record.getMessage())


def _route_server_logs() -> None:
    """Send uvicorn's log records of WARNING and above to structlog (once per process); its
    INFO lines (started, shutting down) say nothing our own events do not."""
    logger = logging.getLogger("uvicorn")
    if not any(isinstance(handler, _ToStructlog) for handler in logger.handlers):
        logger.addHandler(_ToStructlog())
    logger.setLevel(logging.WARNING)
    logger.propagate = False
