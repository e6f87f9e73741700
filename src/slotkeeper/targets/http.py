"""The HTTP client every target adapter shares: timeouts, retries, rate limits, error types.

One logical call goes through :meth:`ApiClient.send`:

- writes first take a slot from the target's write budget (when it has one);
- answers that prove nothing happened are retried with exponential backoff and jitter
  (stamina): 5xx on idempotent calls, transport errors on idempotent calls, and rate-limit
  refusals whose ``retry-after`` (or reset time) is at most ``max_rate_wait`` seconds;
- a non-idempotent write whose answer was lost (timeout or dropped connection after sending,
  and — unless the API says a 5xx means "not done" — a 5xx) raises :class:`UnknownOutcome`, so
  the adapter can look for what it may have created before creating again;
- a longer rate limit raises :class:`TemporaryTargetError` (the work stays pending), a 401/403
  without rate-limit signals :class:`PermanentTargetError` (permission), other 4xx likewise;
- a URL outside the target's base URL (another scheme, host or port, or a path that leaves the
  base path), such as a ``Link: rel="next"`` a server or a proxy made up, is never requested: the
  credential goes to the base URL only (:class:`PermanentTargetError`, naming both origins);
- no answer at all after the retries is :class:`TargetUnreachable`.

Messages name the target, method and path, never a credential or a query string. Every error
raised because of an answer carries its status code (``http_status``): what public pages show
(:func:`slotkeeper.errors.public_reason`), where the message's quote of the answer is not.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina

from slotkeeper import metrics
from slotkeeper import observability as obs
from slotkeeper.errors import (
    FencedError,
    PermanentTargetError,
    TargetUnreachable,
    TemporaryTargetError,
    UnknownOutcome,
)
from slotkeeper.targets.egress import EgressRefused, guarded_transport
from slotkeeper.targets.fence import WRITE_FENCE
from slotkeeper.targets.pacing import WriteBudget
from slotkeeper.targets.wire import DEFAULT_PORTS


@dataclass(frozen=True)
class HttpSettings:
    base_url: str
    headers: dict[str, str]
    timeout: float = 10.0
    attempts: int = 5
    #: longest wait for a rate limit's retry-after before leaving the work pending
    max_rate_wait: float = 60.0
    #: whether a 5xx answer to a write means the write did not happen (API-specific)
    five_hundred_means_not_done: bool = False


class _Retry(Exception):
    """Internal: a retryable answer (its status code; None when none came), with the server's
    delay hint."""

    def __init__(self, message: str, delay: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        self.status = status


def _backoff_hook(exc: Exception) -> bool | float:
    if isinstance(exc, _Retry):
        return exc.delay if exc.delay is not None else True
    return False


def default_message(response: httpx.Response) -> str:
    """The human part of a JSON error body, whatever envelope the API uses."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    error = body.get("error")
    if isinstance(error, dict):  # RFC 7807 style envelopes (Unkey)
        parts = [str(error.get(k)) for k in ("title", "detail") if error.get(k)]
        details = [
            str(e["message"])
            for e in error.get("errors") or []
            if isinstance(e, dict) and "message" in e
        ]
        return "; ".join(parts + details)[:300] or response.reason_phrase
    if isinstance(body.get("message"), str):  # GitHub, grpc-gateway rpcStatus, iftrue
        message = str(body["message"])
        details = [
            str(e["message"])
            for e in body.get("errors") or []
            if isinstance(e, dict) and isinstance(e.get("message"), str)
        ]
        if details:
            message += ": " + "; ".join(details)
        return message[:300]
    return response.reason_phrase


def base_of(url: str) -> str:
    """A base URL as stored and compared: lower-case scheme and host, the port only when it is
    not the scheme's default, the path without its trailing slash."""
    parsed = httpx.URL(url)
    return f"{_origin(parsed)}{parsed.path.rstrip('/')}"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what may be named in a message (no path, no query)."""
    return _origin(httpx.URL(url))


def _origin(parsed: httpx.URL) -> str:
    port = f":{parsed.port}" if parsed.port not in (None, DEFAULT_PORTS.get(parsed.scheme)) else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def within(base_url: str, url: str) -> bool:
    """Whether ``url`` is on the origin of ``base_url`` and under its path (no dot segments)."""
    return _Base.of(base_url).holds(httpx.URL(url))


@dataclass(frozen=True)
class _Base:
    """A target's base URL taken apart once, for checking every request's URL against it."""

    origin: str
    prefix: str  # the path without its trailing slash
    stored: str  # :func:`base_of`'s form

    @classmethod
    def of(cls, url: str) -> _Base:
        parsed = httpx.URL(url)
        origin = _origin(parsed)
        prefix = parsed.path.rstrip("/")
        return cls(origin=origin, prefix=prefix, stored=f"{origin}{prefix}")

    def holds(self, url: httpx.URL) -> bool:
        """Whether ``url`` is on this origin and under this path (no dot segments)."""
        if _origin(url) != self.origin:
            return False
        path = url.path  # percent-decoded: an encoded ``..`` is seen as one
        if any(segment in (".", "..") for segment in path.split("/")):
            return False
        return path == self.prefix or path.startswith(self.prefix + "/")


def _shown_path(url: str, request: httpx.Request) -> str:
    """The ``url`` a request was built from without scheme, host or query, for messages and
    logs: a relative one as given, an absolute one's path (parsed once, in the request)."""
    return request.url.path if "://" in url else url.split("?")[0]


#: the longest a call's attempts and the waits between them may take, the first one included
RETRY_SECONDS = 120.0

#: how many absolute URLs a client remembers (see ``ApiClient._located``)
URLS_KEPT = 256

#: a relative URL that joins its base as text does (no scheme, fragment, space or other
#: character whose meaning a URL parser decides): one parse of the joined text, not two
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/?=&%+,;@!$'()*-]*")


class ApiClient:
    """An httpx client with the retry, rate-limit and error rules above."""

    def __init__(
        self,
        *,
        name: str,
        settings: HttpSettings,
        budget: WriteBudget | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        message: Callable[[httpx.Response], str] = default_message,
        transport: httpx.BaseTransport | None = None,
        may_write: Callable[[], bool] | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._budget = budget
        self._clock = clock
        self._message = message
        self._log = obs.get_logger().bind(target=name)
        #: a credential set per request (a GitHub App's installation token)
        self._auth = auth
        # only where the operator's egress policy allows, checked after DNS; writes only while
        # this process is the ledger's writer
        self._transport = fenced(transport or guarded_transport(settings.base_url), may_write)
        #: builds the requests (base URL, default headers, timeouts) and owns the transport
        self.client = httpx.Client(
            base_url=settings.base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(settings.timeout),
            headers=settings.headers,
            transport=self._transport,
        )
        #: the base URL taken apart once: every call's URL is checked against it
        self._base = _Base.of(settings.base_url)
        self._urls: dict[str, httpx.URL] = {}
        #: what ``client.build_request`` would give every request: the client's headers (httpx's
        #: defaults, then the settings') and its timeouts
        self._headers = self.client.headers
        self._timeout = self.client.timeout.as_dict()
        self._joined = str(self.client.base_url)  # ends with a slash

    def close(self) -> None:
        self.client.close()

    @property
    def base_url(self) -> str:
        """This target's base URL in the form :func:`base_of` gives (stored with each sync)."""
        return self._base.stored

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        """The absolute URL a request for ``path`` (and ``params``) goes to: the URL of
        ``client.build_request("GET", path, params=params or {})``, without building the rest
        of a request (headers, cookies) only to read its URL."""
        located = httpx.URL(self._merged(path), params=params or {})
        text = str(located)
        self._remember(text, located)  # the call that follows sends to it: parsed once
        return text

    def _merged(self, url: str) -> httpx.URL:
        """``url`` on the client's base URL, joined as httpx joins a request's: a relative URL
        is appended to the base path (which ends with a slash), an absolute one is kept."""
        if _PLAIN_PATH.fullmatch(url) and not url.startswith("//"):  # joined as text
            return httpx.URL(self._joined + url.lstrip("/"))
        given = httpx.URL(url)
        if not given.is_relative_url:
            return given
        base = self.client.base_url
        return base.copy_with(raw_path=base.raw_path + given.raw_path.lstrip(b"/"))

    def send(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        write: bool = False,
        idempotent: bool = True,
        accept: tuple[int, ...] = (200, 201, 202, 204),
    ) -> httpx.Response:
        """One logical call: paced if a write, retried when safe, errors translated.

        The request is built once and its URL checked before anything is sent; a retry sends
        a request built again (as ``client.request`` would)."""
        built = self._request(method, url, json, headers)
        resolved = built.url
        if not self._base.holds(resolved):
            there = _origin(resolved)
            if there == self._base.origin:
                there += resolved.path
            raise PermanentTargetError(
                f"{self.name}: refused to send {method} to {there}: it is outside this target's "
                f"base URL {self.base_url}, the only place its credential is sent"
            )
        budget = self._budget if write else None

        def sent(request: httpx.Request) -> httpx.Response:
            with budget.write() if budget is not None else nullcontext():
                return self._send_once(method, url, request, accept=accept, idempotent=idempotent)

        # The first attempt runs without the retry machinery (a twentieth of a request's
        # interpreter time): nearly every call ends with it. A retryable answer is handed to
        # the machinery as its first attempt's, so the waits and the attempts left are the same.
        started = time.monotonic()
        first: _Retry | None = None
        try:
            return sent(built)
        except _Retry as failed:
            first = failed
        try:
            for attempt in stamina.retry_context(
                on=_backoff_hook,
                attempts=self._settings.attempts,
                timeout=max(RETRY_SECONDS - (time.monotonic() - started), 0.001),
                wait_initial=0.5,
                wait_max=10,
            ):
                with attempt:
                    if first is not None:
                        answered, first = first, None
                        raise answered
                    return sent(self._request(method, url, json, headers))
        except _Retry as exc:
            if exc.status is None:
                raise TargetUnreachable(f"{exc} (gave up after retries)") from exc
            raise TemporaryTargetError(
                f"{exc} (gave up after retries)", retry_after=exc.delay, http_status=exc.status
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(
        self,
        method: str,
        url: str,
        json: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> httpx.Request:
        """What ``client.build_request(method, url, json=json, headers=headers)`` gives, built
        without that method's merging of cookies and parameters (a client here has neither)
        and of a URL it was given already joined."""
        merged = self._headers
        if headers:  # a call's own headers replace the client's of the same name
            merged = httpx.Headers(self._headers)
            merged.update(headers)
        return httpx.Request(
            method,
            self._located(url),
            headers=merged,
            json=json,
            extensions={"timeout": self._timeout},
        )

    def _located(self, url: str) -> httpx.URL:
        """:meth:`_merged`, remembered for the URLs a target calls again and again (its
        collections: every deployment is created at the same one): parsing the URL and
        joining it to the base took a tenth of a request's time."""
        found = self._urls.get(url)
        if found is None:
            found = self._merged(url)
            self._remember(url, found)
        return found

    def _remember(self, url: str, located: httpx.URL) -> None:
        if len(self._urls) >= URLS_KEPT:  # one-off URLs (a query, an id) come and go
            self._urls.clear()
        self._urls[url] = located

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send a built request to the transport and read the answer, through the auth flow
        when there is one: the part of ``httpx.Client.send`` a target call uses. The rest is
        what no call here wants — redirects (never followed), cookies (an API's credential is
        its token; nothing a server sets is kept or sent back), event hooks — and cost a quarter
        of the interpreter's time per request (issue 22: the latency-bound apply)."""
        if self.client.is_closed:
            raise RuntimeError(f"{self.name}: the client was closed")
        if self._auth is None:
            return self._answer(request)
        flow = self._auth.sync_auth_flow(request)
        try:
            request = next(flow)
            while True:
                response = self._answer(request)
                try:
                    request = flow.send(response)
                except StopIteration:
                    return response
        finally:
            flow.close()

    def _answer(self, request: httpx.Request) -> httpx.Response:
        """One request through the transport, its body read (the connection goes back then)."""
        response = self._transport.handle_request(request)
        response.request = request
        try:
            response.read()
        except BaseException:
            response.close()
            raise
        return response

    def _send_once(
        self,
        method: str,
        url: str,
        request: httpx.Request,
        *,
        accept: tuple[int, ...],
        idempotent: bool,
    ) -> httpx.Response:
        path = _shown_path(url, request)
        where = f"{self.name}: {method} {path}"
        started = self._clock()
        try:
            response = self._exchange(request)
        except EgressRefused as exc:  # never sent: the address is not one the operator allows
            metrics.TARGET_REQUESTS.labels(target=self.name, code="0").inc()
            raise PermanentTargetError(f"{where}: {exc}") from exc
        except httpx.TransportError as exc:
            metrics.TARGET_REQUESTS.labels(target=self.name, code="0").inc()
            self._log.warning(
                obs.TARGET_REQUEST_FAILED, method=method, path=path, error=type(exc).__name__
            )
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            if not idempotent and not never_sent:
                raise UnknownOutcome(
                    f"{where}: no answer ({type(exc).__name__}); the write may have happened"
                ) from exc
            raise _Retry(f"{where}: {type(exc).__name__}") from exc
        elapsed = (self._clock() - started).total_seconds() * 1000
        metrics.TARGET_REQUESTS.labels(target=self.name, code=str(response.status_code)).inc()
        self._log.debug(
            obs.TARGET_REQUEST,
            method=method,
            path=path,
            status=response.status_code,
            duration_ms=round(elapsed, 1),
            request_id=_request_id(response),
        )
        code = response.status_code
        if code in accept:
            return response
        if code == 429 or (code == 403 and _rate_limited(response, self._message(response))):
            delay = _rate_limit_delay(response, self._clock())
            if delay <= self._settings.max_rate_wait:
                raise _Retry(f"{where}: rate limited", delay, code)
            raise TemporaryTargetError(
                f"{where}: rate limited; retry in {delay:.0f}s, left pending",
                retry_after=delay,
                http_status=code,
            )
        if code >= 500:
            if not idempotent and not self._settings.five_hundred_means_not_done:
                raise UnknownOutcome(f"{where}: {code} {self._message(response)}", http_status=code)
            raise _Retry(f"{where}: {code} {self._message(response)}", status=code)
        if code in (401, 403):
            raise PermanentTargetError(
                f"{where}: permission denied: {self._message(response)}", http_status=code
            )
        raise PermanentTargetError(f"{where}: {code} {self._message(response)}", http_status=code)


#: the methods that change nothing at a target
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class FencedTransport(httpx.BaseTransport):
    """Refuses every write request once ``may_write`` turns false: the last check before the
    bytes leave, so a process that stopped being the ledger's writer (frozen past its renew
    deadline, then woken) sends nothing more to any target, even a request that was already
    prepared when it froze, or the second request of a call whose first was answered."""

    def __init__(self, inner: httpx.BaseTransport, may_write: Callable[[], bool]) -> None:
        self._inner = inner
        self._may_write = may_write

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in READ_METHODS and not self._may_write():
            metrics.FENCED_WRITES.labels(by="remote").inc()
            obs.get_logger().warning(
                "target.write_fenced", method=request.method, path=request.url.path
            )
            raise FencedError(
                f"{request.method} {request.url.path} not sent: this process no longer holds "
                "the ledger's writer lock"
            )
        if request.method in READ_METHODS:
            return self._inner.handle_request(request)
        # checked again by the connection just before the bytes go (see targets.fence)
        token = WRITE_FENCE.set(self._may_write)
        try:
            return self._inner.handle_request(request)
        finally:
            WRITE_FENCE.reset(token)

    def close(self) -> None:
        self._inner.close()


def fenced(
    transport: httpx.BaseTransport, may_write: Callable[[], bool] | None
) -> httpx.BaseTransport:
    """``transport``, refusing writes once ``may_write`` turns false (as is without one)."""
    return transport if may_write is None else FencedTransport(transport, may_write)


def _request_id(response: httpx.Response) -> str | None:
    found = response.headers.get("x-github-request-id") or response.headers.get("x-request-id")
    return str(found) if found else None


def _rate_limited(response: httpx.Response, message: str) -> bool:
    headers = response.headers
    return (
        "retry-after" in headers
        or headers.get("x-ratelimit-remaining") == "0"
        or headers.get("ratelimit-remaining") == "0"
        or "rate limit" in message.lower()
    )


def _rate_limit_delay(response: httpx.Response, now: datetime) -> float:
    headers = response.headers
    try:
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now.timestamp())  # epoch
        if headers.get("ratelimit-remaining") == "0" and "ratelimit-reset" in headers:
            return max(0.0, float(headers["ratelimit-reset"]))  # seconds from now
    except ValueError:
        return 60.0
    return 60.0  # GitHub: "wait at least one minute" without other signals


def bearer_api(
    name: str,
    base_url: str,
    token: str,
    *,
    timeout: float,
    max_rate_wait: float,
    clock: Callable[[], datetime],
    five_hundred_means_not_done: bool = False,
    budget: WriteBudget | None = None,
    may_write: Callable[[], bool] | None = None,
) -> ApiClient:
    """A JSON API client authenticated with ``Authorization: Bearer <token>``."""
    return ApiClient(
        name=name,
        settings=HttpSettings(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "slotkeeper",
            },
            timeout=timeout,
            max_rate_wait=max_rate_wait,
            five_hundred_means_not_done=five_hundred_means_not_done,
        ),
        budget=budget,
        clock=clock,
        may_write=may_write,
    )
