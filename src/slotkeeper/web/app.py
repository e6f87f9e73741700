"""The route table of slotkeeper's one HTTP port, built from what the caller serves.

``slotkeeper run`` serves all of it; ``slotkeeper ui`` the dashboard and the health pages::

    GET  /healthz  /readyz                 health (async: answered even when the pool is busy)
    GET  /metrics                          Prometheus (the daemon)
    GET  /  /keys  /dora  /promotion  /slots/ENV/SLOT  the dashboard's pages
    GET  /status  /status/dora  /status/promotion  /status/slots/ENV/SLOT   their JSON twins
    GET  /static/dashboard.css             the stylesheet
    POST /hooks/github                     the signed webhook (the daemon)

Handlers that read the ledger are plain functions: Starlette runs them in its thread pool.
Every answer passes through ``security.Guard`` (Host allow-list, security headers). A path that
is not in the table is 404 and a method a path does not take is 405, everywhere, as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from slotkeeper import metrics
from slotkeeper import observability as obs
from slotkeeper.dashboard.pages import JSON, Answer, Dashboard
from slotkeeper.errors import SlotkeeperError
from slotkeeper.web.security import Guard

#: the daemon's fixed paths (the slot pages add /slots/ENV/SLOT and /status/slots/ENV/SLOT)
ENDPOINTS = frozenset({"/", "/keys", "/healthz", "/readyz", "/metrics", "/status", "/hooks/github"})
DASHBOARD_PATHS = (
    "/",
    "/keys",
    "/dora",
    "/promotion",
    "/status",
    "/status/dora",
    "/status/promotion",
    "/status/slots/{environment}/{slot}",
    "/slots/{environment}/{slot}",
    "/static/dashboard.css",
    "/static/refresh.js",
)


class Receiver(Protocol):
    """What takes a webhook delivery: the body size it accepts, and its answer to one."""

    @property
    def max_body(self) -> int: ...

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]: ...


@dataclass(frozen=True)
class Site:
    """What one port serves. ``alive`` and ``ready`` answer the probes (from any thread);
    without ``metrics`` or ``webhook`` their paths are not in the table."""

    dashboard: Dashboard
    alive: Callable[[], bool]
    ready: Callable[[], bool]
    #: the ``Host`` names answered (None: any, e.g. kubelet probes by pod IP)
    allowed_hosts: frozenset[str] | None
    metrics: bool = False
    webhook: Receiver | None = None


def build_app(site: Site) -> ASGIApp:
    """The ASGI application serving ``site``."""
    routes: list[BaseRoute] = [
        Route("/healthz", _probe("alive", site.alive), methods=["GET"]),
        Route("/readyz", _probe("ready", site.ready), methods=["GET"]),
        *(Route(path, _pages(site.dashboard), methods=["GET"]) for path in DASHBOARD_PATHS),
    ]
    if site.metrics:
        routes.append(Route("/metrics", _metrics, methods=["GET"]))
    if site.webhook is not None:
        routes.append(Route("/hooks/github", _hook(site.webhook), methods=["POST"]))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _refused})
    app.router.redirect_slashes = False  # /keys/ is not /keys: no redirect to guess it
    return Guard(app, allowed_hosts=site.allowed_hosts)


def json_response(status: int, document: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``document`` as JSON, serialised as ``json.dumps`` does (the bytes the tests pin)."""
    return Response(json.dumps(document).encode(), status, headers=headers, media_type=JSON)


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


def _probe(name: str, check: Callable[[], bool]) -> Callable[[Request], Any]:
    async def probe(request: Request) -> Response:
        ok = check()
        return json_response(200 if ok else 503, {name: ok})

    return probe


def _pages(dashboard: Dashboard) -> Callable[[Request], Response]:
    def page(request: Request) -> Response:
        # The raw path: the dashboard decodes each segment itself (an encoded "/" stays in it).
        target = request.scope["raw_path"].decode("latin-1")
        if query := request.scope["query_string"].decode("latin-1"):
            target += f"?{query}"
        found = answer(dashboard, target)
        return Response(found.body, found.status, media_type=found.content_type)

    return page


def _metrics(request: Request) -> Response:
    return Response(generate_latest(metrics.REGISTRY), 200, media_type=CONTENT_TYPE_LATEST)


#: an oversized body is never read: the connection is closed after the answer, so what is left
#: of the body can never be taken for the next request on it
_TOO_LARGE = {"error": "bad body size"}
_CLOSE = {"Connection": "close"}


def _hook(receiver: Receiver) -> Callable[[Request], Any]:
    async def hook(request: Request) -> Response:
        declared = request.headers.get("content-length")
        # h11 let only digits through: a declared size over the limit is refused unread
        if declared is not None and int(declared) > receiver.max_body:
            return json_response(413, _TOO_LARGE, _CLOSE)
        try:
            body = await _read_body(request, receiver.max_body)
        except ClientDisconnect:
            return json_response(400, {"error": "body not received"}, _CLOSE)
        if body is None:
            return json_response(413, _TOO_LARGE, _CLOSE)
        status, document = await run_in_threadpool(receiver.receive, request.headers, body)
        return json_response(status, document)

    return hook


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as more than ``limit`` bytes came (a chunked body declares
    no size): the rest is never read, so no more than ``limit`` bytes and a chunk are held."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _refused(request: Request, exc: Exception) -> Response:
    """404 and 405 (Starlette's routing raises them) as JSON."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return json_response(500, {"error": "internal error"})
    reason = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return json_response(exc.status_code, {"error": reason}, exc.headers)
