"""The HTTP client's retry and error paths, at its seam (httpx's MockTransport): where a
credential may be sent, what is retried and how often, and which error every failing answer
becomes (issue 15: the mutants these tests kill). Retries run in stamina's test mode: no sleep."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import httpx
import pytest
import stamina
import structlog
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks
from structlog.testing import capture_logs

from slotkeeper.errors import (
    BudgetDeferred,
    PermanentTargetError,
    TargetUnreachable,
    TemporaryTargetError,
    UnknownOutcome,
)
from slotkeeper.observability import configure_logging
from slotkeeper.targets.egress import EgressRefused
from slotkeeper.targets.http import ApiClient, HttpSettings, base_of, origin_of, within
from slotkeeper.targets.pacing import Window, WriteBudget

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "https://api.example.com/v3"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_sleeping() -> Iterator[None]:
    """Backoffs off; each client keeps its own number of attempts."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class Recorder:
    """A transport answering from a list of replies (the last one repeats), counting calls."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply


def client(
    transport: Handler,
    *,
    attempts: int = 5,
    max_rate_wait: float = 60.0,
    five_hundred_means_not_done: bool = False,
    budget: WriteBudget | None = None,
) -> ApiClient:
    return ApiClient(
        name="t",
        settings=HttpSettings(
            base_url=BASE,
            headers={},
            attempts=attempts,
            max_rate_wait=max_rate_wait,
            five_hundred_means_not_done=five_hundred_means_not_done,
        ),
        budget=budget,
        clock=lambda: NOW,
        transport=httpx.MockTransport(transport),
    )


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"message": f"answer {status}"})


@pytest.mark.parametrize(
    ("url", "base", "origin"),
    [
        (
            "HTTPS://API.Example.com:443/v3/",
            "https://api.example.com/v3",
            "https://api.example.com",
        ),
        ("http://h.example:80/", "http://h.example", "http://h.example"),
        ("http://h.example:8080/x", "http://h.example:8080/x", "http://h.example:8080"),
        ("https://h.example:80/x?q=1", "https://h.example:80/x", "https://h.example:80"),
    ],
)
def test_base_and_origin_drop_default_ports_and_trailing_slashes(
    url: str, base: str, origin: str
) -> None:
    """One spelling per base URL: the scheme's default port and a trailing slash go."""
    assert (base_of(url), origin_of(url)) == (base, origin)


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        (f"{BASE}/repos/a/b", True),
        (BASE, True),
        (f"{BASE}/", True),
        ("https://api.example.com/v3x/repos", False),
        ("https://api.example.com/v4/repos", False),
        (f"{BASE}/repos/%2e%2e/%2e%2e/admin", False),
        ("http://api.example.com/v3/repos", False),
        ("https://api.example.com:8443/v3/repos", False),
        ("https://evil.example.com/v3/repos", False),
    ],
)
def test_within_the_base_url(url: str, inside: bool) -> None:
    """Same origin and under the base path, with no dot segment, even encoded."""
    assert within(BASE, url) is inside


def test_a_url_outside_the_base_is_never_requested() -> None:
    """The credential goes to the base URL only: elsewhere is refused before anything is sent,
    naming the other origin (and the path when the origin is the same)."""
    transport = Recorder(answer(200))
    api = client(transport)
    with pytest.raises(PermanentTargetError) as elsewhere:
        api.send("GET", "https://evil.example.com/x?token=1")
    assert str(elsewhere.value) == (
        "t: refused to send GET to https://evil.example.com: it is outside this target's base "
        "URL https://api.example.com/v3, the only place its credential is sent"
    )
    with pytest.raises(PermanentTargetError, match=r"to https://api\.example\.com/admin: it is"):
        api.send("GET", "https://api.example.com/admin")
    assert transport.requests == []


@pytest.mark.parametrize(
    "base",
    ["https://api.example.com/v3", "https://ghe.example.com/api/v3/", "http://127.0.0.1:8123"],
)
@pytest.mark.parametrize(
    "path",
    [
        "v1/deployments",
        "/v1/deployments",
        "repos/a b/x",
        "repos/o/r/pulls?state=open&head=o:b&base=main",
        "repos/ü/ñ",
        "x/%2e%2e/y",
        "a/./b/../c",
        "../up",
        "//other.example/x",
        "(a)*b;c@d!$'+,~",
        "",
        "?q=1",
        "a#frag",
        "https://other.example/x?a=1",
    ],
)
@pytest.mark.parametrize(
    "params", [None, {}, {"per_page": "100"}, {"environment_name": "a b&c", "x": "ü/+"}]
)
def test_url_is_the_url_httpx_builds_for_the_request(
    base: str, path: str, params: dict[str, str] | None
) -> None:
    """``url`` joins and encodes exactly as a request httpx builds would (the conditional-read
    cache is keyed by it), without building the request."""
    api = ApiClient(name="t", settings=HttpSettings(base_url=base, headers={}))
    built = api.client.build_request("GET", path, params=params or {}).url
    assert api.url(path, params) == str(built)


def test_a_retry_sends_a_request_built_again_with_the_same_content() -> None:
    """Each attempt is a request of its own, with the same method, URL, headers and body."""
    transport = Recorder(answer(503), answer(503), answer(201))
    api = client(transport)
    api.send("POST", "repos/a/b?x=1", json={"k": "v"}, headers={"If-None-Match": '"e"'})
    first, *others = transport.requests
    assert len(others) == 2 and all(other is not first for other in others)
    for other in others:
        assert (other.method, other.url, other.headers.raw, other.content) == (
            first.method,
            first.url,
            first.headers.raw,
            first.content,
        )
    assert first.url == "https://api.example.com/v3/repos/a/b?x=1"
    assert first.content == b'{"k":"v"}' and first.headers["if-none-match"] == '"e"'


def test_an_idempotent_call_is_retried_through_5xx_and_transport_errors() -> None:
    """A GET answered 503, then not at all, then 200 returns the 200 after three calls."""
    transport = Recorder(answer(503), httpx.ReadTimeout("slow"), answer(200))
    assert client(transport).send("GET", "repos").status_code == 200
    assert len(transport.requests) == 3


def test_a_5xx_that_lasts_is_temporary_with_its_status_after_every_attempt() -> None:
    """Five 502s in a row: a TemporaryTargetError carrying 502, after exactly five calls."""
    transport = Recorder(answer(502))
    with pytest.raises(TemporaryTargetError) as caught:
        client(transport).send("GET", "repos")
    assert type(caught.value) is TemporaryTargetError
    assert caught.value.http_status == 502
    assert str(caught.value) == "t: GET repos: 502 answer 502 (gave up after retries)"
    assert len(transport.requests) == 5


def test_no_answer_at_all_is_unreachable() -> None:
    """Connection failures on every attempt: TargetUnreachable, without a status."""
    transport = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(TargetUnreachable) as caught:
        client(transport, attempts=3).send("GET", "repos")
    assert caught.value.http_status is None
    assert str(caught.value) == "t: GET repos: ConnectError (gave up after retries)"
    assert len(transport.requests) == 3


def test_a_write_never_sent_is_retried_and_one_whose_answer_was_lost_is_unknown() -> None:
    """A refused connection proves nothing was written (retried); a read timeout after sending
    does not (UnknownOutcome at once)."""
    refused = Recorder(httpx.ConnectTimeout("no"), answer(201))
    assert client(refused).send("POST", "repos", idempotent=False).status_code == 201
    assert len(refused.requests) == 2
    lost = Recorder(httpx.ReadTimeout("lost"), answer(201))
    with pytest.raises(UnknownOutcome, match="no answer \\(ReadTimeout\\); the write may have"):
        client(lost).send("POST", "repos", idempotent=False)
    assert len(lost.requests) == 1


def test_a_5xx_to_a_write_is_unknown_unless_the_api_says_not_done() -> None:
    """A 500 to a non-idempotent write may have written: UnknownOutcome with 500, one call;
    where a 5xx means 'not done' it is retried like a read."""
    once = Recorder(answer(500), answer(201))
    with pytest.raises(UnknownOutcome) as caught:
        client(once).send("POST", "repos", idempotent=False)
    assert caught.value.http_status == 500 and len(once.requests) == 1
    again = Recorder(answer(500), answer(201))
    api = client(again, five_hundred_means_not_done=True)
    assert api.send("POST", "repos", idempotent=False).status_code == 201
    assert len(again.requests) == 2


def test_an_egress_refusal_is_permanent_and_never_retried() -> None:
    """A connection the operator's policy refuses fails at once, not after retries."""
    transport = Recorder(EgressRefused("db.internal", ip_address("10.0.0.5"), "private"))
    with pytest.raises(PermanentTargetError, match=r"^t: GET repos: refused to connect"):
        client(transport).send("GET", "repos")
    assert len(transport.requests) == 1


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_every_success_code_is_accepted_by_default(status: int) -> None:
    """200, 201, 202 and 204 are answers; anything else must be asked for."""
    assert client(Recorder(answer(status))).send("DELETE", "k").status_code == status


def test_a_code_asked_for_is_returned_and_others_are_permanent() -> None:
    """A 404 asked for is an answer; a 404 or 205 not asked for is a PermanentTargetError."""
    assert client(Recorder(answer(404))).send("GET", "k", accept=(404,)).status_code == 404
    with pytest.raises(PermanentTargetError) as caught:
        client(Recorder(answer(404))).send("GET", "k")
    assert str(caught.value) == "t: GET k: 404 answer 404" and caught.value.http_status == 404
    with pytest.raises(PermanentTargetError, match="205"):
        client(Recorder(answer(205))).send("GET", "k")


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_without_rate_limit_signals_are_permission_errors(status: int) -> None:
    """No retry: the credential lacks a permission, and the message says so."""
    transport = Recorder(answer(status))
    with pytest.raises(PermanentTargetError) as caught:
        client(transport).send("GET", "k")
    assert str(caught.value) == f"t: GET k: permission denied: answer {status}"
    assert caught.value.http_status == status and len(transport.requests) == 1


@pytest.mark.parametrize(
    ("status", "headers", "delay"),
    [
        (429, {"retry-after": "7"}, 7.0),
        (429, {"retry-after": "-5"}, 0.0),
        (429, {"retry-after": "soon"}, 60.0),
        (429, {}, 60.0),
        (403, {"retry-after": "9"}, 9.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW.timestamp() + 42)}, 42.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW.timestamp() - 5)}, 0.0),
        (403, {"x-ratelimit-remaining": "0"}, 60.0),
        (429, {"x-ratelimit-remaining": "3", "x-ratelimit-reset": "1"}, 60.0),
        (403, {"ratelimit-remaining": "0", "ratelimit-reset": "13"}, 13.0),
        (403, {"ratelimit-remaining": "0"}, 60.0),
        (429, {"ratelimit-reset": "13"}, 60.0),
        (429, {"ratelimit-remaining": "0", "ratelimit-reset": "-3"}, 0.0),
    ],
)
def test_the_rate_limit_delay_the_answer_asks_for(
    status: int, headers: dict[str, str], delay: float
) -> None:
    """retry-after, GitHub's reset epoch, the IETF draft's reset seconds, or a minute; never
    negative. A delay over the longest wait leaves the work pending, naming it."""
    transport = Recorder(answer(status, **headers))
    with pytest.raises(TemporaryTargetError) as caught:
        client(transport, max_rate_wait=-1).send("POST", "deployments", write=True)
    assert caught.value.retry_after == delay and caught.value.http_status == status
    assert (
        str(caught.value)
        == f"t: POST deployments: rate limited; retry in {delay:.0f}s, left pending"
    )
    assert len(transport.requests) == 1


def test_a_403_that_says_rate_limit_is_one() -> None:
    """GitHub's secondary limit may come as a bare 403 whose message says so."""
    limited = httpx.Response(403, json={"message": "You have exceeded a secondary Rate Limit."})
    with pytest.raises(TemporaryTargetError) as caught:
        client(Recorder(limited), max_rate_wait=-1).send("GET", "k")
    assert caught.value.retry_after == 60.0


def test_a_rate_limit_within_the_longest_wait_is_waited_out() -> None:
    """A retry-after of exactly the longest wait is retried (and the call succeeds)."""
    transport = Recorder(answer(429, **{"retry-after": "30"}), answer(200))
    assert client(transport, max_rate_wait=30).send("GET", "k").status_code == 200
    assert len(transport.requests) == 2


def test_a_rate_limit_that_lasts_gives_up_with_its_status() -> None:
    """Short rate limits on every attempt: TemporaryTargetError with 429 and the last delay."""
    transport = Recorder(answer(429, **{"retry-after": "1"}))
    with pytest.raises(TemporaryTargetError) as caught:
        client(transport, attempts=2).send("GET", "k")
    assert (caught.value.http_status, caught.value.retry_after) == (429, 1.0)
    assert str(caught.value).endswith("rate limited (gave up after retries)")


def test_only_writes_take_from_the_write_budget() -> None:
    """Reads pass freely; a write beyond the budget is deferred, not sent."""
    budget = WriteBudget(
        target="t", windows=[Window(1, timedelta(minutes=1))], max_wait=0, clock=lambda: NOW
    )
    transport = Recorder(answer(200))
    api = client(transport, budget=budget)
    api.send("GET", "a")
    api.send("GET", "b")
    api.send("POST", "c", write=True)
    with pytest.raises(BudgetDeferred):
        api.send("POST", "d", write=True)
    assert [r.url.path for r in transport.requests] == ["/v3/a", "/v3/b", "/v3/c"]


def test_a_status_just_under_500_is_a_client_error() -> None:
    """499 is a 4xx: permanent at once, not retried as a server error."""
    transport = Recorder(answer(499))
    with pytest.raises(PermanentTargetError) as caught:
        client(transport).send("GET", "k")
    assert caught.value.http_status == 499 and len(transport.requests) == 1


@pytest.fixture
def debug_events() -> Iterator[None]:
    """Debug events pass, whatever level an earlier test (or the CLI) configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("debug_events")
def test_each_request_is_logged_with_its_duration_and_request_id() -> None:
    """One debug event per answer: method, path, status, milliseconds to a tenth, GitHub's
    request id."""
    moments = iter([NOW, NOW + timedelta(seconds=0.12345)])
    # debug events pass whatever level an earlier CLI test configured
    configure_logging(fmt="json", level="debug")
    api = ApiClient(
        name="t",
        settings=HttpSettings(base_url=BASE, headers={}),
        clock=lambda: next(moments),
        transport=httpx.MockTransport(
            Recorder(httpx.Response(200, headers={"x-github-request-id": "AB:12"}))
        ),
    )
    with capture_logs() as logs:
        api.send("GET", "repos?page=2")
    assert logs == [
        {
            "event": "target.request",
            "log_level": "debug",
            "target": "t",
            "method": "GET",
            "path": "repos",
            "status": 200,
            "duration_ms": 123.5,
            "request_id": "AB:12",
        }
    ]


def test_a_cookie_a_server_sets_is_never_sent_back() -> None:
    """A target's credential is its token: a ``Set-Cookie`` in one answer is not kept, so no
    later request carries a ``Cookie`` (issue 22: requests go to the transport without httpx's
    cookie jar)."""
    transport = Recorder(httpx.Response(200, headers={"set-cookie": "session=s3cr3t; Path=/"}))
    api = client(transport)
    api.send("GET", "a")
    api.send("POST", "b", json={"x": 1}, write=True)
    assert len(transport.requests) == 2
    assert all("cookie" not in request.headers for request in transport.requests)


def test_a_redirect_is_answered_not_followed() -> None:
    """A 301 is an answer like any other 3xx not asked for (permanent, one request): the
    credential is never sent where a ``Location`` points."""
    transport = Recorder(
        httpx.Response(301, headers={"location": "https://elsewhere.example/v3/a"})
    )
    with pytest.raises(PermanentTargetError) as caught:
        client(transport).send("GET", "a")
    assert caught.value.http_status == 301
    assert [str(r.url) for r in transport.requests] == [f"{BASE}/a"]


class RefreshingAuth(httpx.Auth):
    """Like a GitHub App's installation auth: a token per request, a 401 sends it once more
    with a fresh one."""

    def __init__(self) -> None:
        self.minted = 0

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        self.minted += 1
        request.headers["Authorization"] = f"Bearer token-{self.minted}"
        response = yield request
        if response.status_code == 401:
            self.minted += 1
            request.headers["Authorization"] = f"Bearer token-{self.minted}"
            yield request


def test_an_auth_flow_sets_each_requests_credential_and_may_send_it_again() -> None:
    """The client's auth flow runs for every request: a 401 answered by the flow with a new
    token is sent once more, and that second answer is the call's."""
    transport = Recorder(answer(401), answer(201), answer(200))
    sent: list[tuple[str, bytes]] = []  # as each left: the flow changes the same request

    def recorded(request: httpx.Request) -> httpx.Response:
        sent.append((request.headers["authorization"], request.content))
        return transport(request)

    api = ApiClient(
        name="t",
        settings=HttpSettings(base_url=BASE, headers={}),
        clock=lambda: NOW,
        transport=httpx.MockTransport(recorded),
        auth=RefreshingAuth(),
    )
    assert api.send("POST", "deployments", json={}, write=True).status_code == 201
    assert api.send("GET", "deployments").status_code == 200
    assert sent == [("Bearer token-1", b"{}"), ("Bearer token-2", b"{}"), ("Bearer token-3", b"")]


@pytest.mark.parametrize(
    ("method", "path", "json", "headers"),
    [
        ("GET", "repos/o/r/deployments?per_page=100", None, None),
        ("POST", "/v1/deployments", {"ref": "main", "ü": [1, None]}, None),
        ("GET", "a", None, {"If-None-Match": '"abc"', "ACCEPT": "application/vnd.x+json"}),
    ],
)
def test_a_sent_request_is_the_request_httpx_builds(
    method: str, path: str, json: dict[str, Any] | None, headers: dict[str, str] | None
) -> None:
    """A call's request is built without ``client.build_request`` and is the request it builds:
    the same URL, headers (a call's own replacing the client's of the same name, whatever their
    case), body and timeouts."""
    sent: list[httpx.Request] = []

    def recorded(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(200)

    api = ApiClient(
        name="t",
        settings=HttpSettings(
            base_url=BASE, headers={"Accept": "application/json", "User-Agent": "slotkeeper"}
        ),
        clock=lambda: NOW,
        transport=httpx.MockTransport(recorded),
    )
    api.send(method, path, json=json, headers=headers)
    built = api.client.build_request(method, path, json=json, headers=headers)
    assert sent[0].url == built.url
    assert sent[0].headers.multi_items() == built.headers.multi_items()
    assert sent[0].content == built.content
    assert sent[0].extensions["timeout"] == built.extensions["timeout"]


def test_a_closed_client_sends_nothing() -> None:
    """Once closed (a reconcile's targets are closed at its end), a call fails and no request
    leaves."""
    transport = Recorder(answer(200))
    api = client(transport)
    api.close()
    with pytest.raises(RuntimeError, match="closed"):
        api.send("GET", "a")
    assert transport.requests == []


def test_a_retry_after_the_first_answer_keeps_its_schedule() -> None:
    """The first attempt runs outside the retry machinery, and its retryable answer is handed
    to it as the first attempt's: the retry is the first one (numbered 1), waits what that
    answer asked for, and the attempts left are the same (a call of three attempts sends three
    requests)."""
    seen: list[tuple[int, float]] = []

    def hook(details: RetryDetails) -> None:
        seen.append((details.retry_num, details.wait_for))

    saved = get_on_retry_hooks()
    set_on_retry_hooks([hook])
    try:
        with stamina.set_testing(False):  # the real wait (a second), as scheduled
            transport = Recorder(answer(429, **{"retry-after": "1"}), answer(200))
            assert client(transport).send("GET", "a").status_code == 200
        assert len(transport.requests) == 2 and seen == [(1, 1.0)]
        seen.clear()
        transport = Recorder(answer(503))
        with pytest.raises(TemporaryTargetError):
            client(transport, attempts=3).send("GET", "b")
        assert len(transport.requests) == 3 and [n for n, _ in seen] == [1, 2]
    finally:
        set_on_retry_hooks(saved)
