"""What every answer of slotkeeper's HTTP port carries, and which ``Host`` names it answers.

Both are one ASGI middleware (``Guard``) around the whole route table, so the daemon and
``slotkeeper ui`` cannot disagree again: a request for a name that is not allowed is refused
before any route sees it, and every answer, a 404 or a 405 included, carries the same headers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: sent with every answer: no page of ours runs a script but our own file (the matrix's
#: in-place refresh, which asks only this origin), is framed, sniffed as another type, kept in
#: a cache (a shared proxy or the browser's disk: the pages show what is deployed where), sends
#: a form anywhere but here (the matrix's filter) or tells another site where its reader came
#: from
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ENCODED_HEADERS = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
]

#: the names a local dashboard answers to unless told others (DNS rebinding: a page of any
#: site whose name resolves to 127.0.0.1 would otherwise read it)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

UNKNOWN_HOST = b'{"error": "unknown host: start slotkeeper with --allowed-host for this name"}'


def host_name(header: str | None) -> str:
    """The host of a ``Host`` header, without its port, lower case (``[::1]:80`` is ``::1``)."""
    value = (header or "").strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def host_allowed(header: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a request with this ``Host`` header is served (``allowed`` None: any host)."""
    return allowed is None or host_name(header) in allowed


class Guard:
    """ASGI middleware: 403 for a ``Host`` outside ``allowed_hosts`` (None: any), and the
    security headers added to every answer that passes through."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: frozenset[str] | None) -> None:
        self._app = app
        self._allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: nothing to guard
            await self._app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *ENCODED_HEADERS]}
            await send(message)

        if host_allowed(_first_host(scope), self._allowed):
            await self._app(scope, receive, secured)
            return
        await secured(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNKNOWN_HOST)).encode()),
                ],
            }
        )
        await secured({"type": "http.response.body", "body": UNKNOWN_HOST})


def _first_host(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return bytes(value).decode("latin-1")
    return None
