"""The HTTP client's policy as tables: one logical call, its answers, what comes out.

Each row gives a call (method, idempotent or not), the answers the server gives in turn (the last
one repeats) and what ``ApiClient.send`` must make of them: the answer it returns or the error it
raises (class, status code, the pause asked for, the fixed public reason), and how many requests
it sent. Together the rows state the rules: 5xx and transport errors are retried on idempotent
calls only; a write whose answer was lost is an unknown outcome; rate limits (429, or 403 with
rate-limit signals) are waited out up to the longest wait and otherwise left pending with their
pause; other 4xx are permanent at once; nothing is sent outside the base URL. httpx's
MockTransport stands in for the network; stamina's test mode removes the sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import stamina

from slotkeeper.errors import (
    PermanentTargetError,
    TargetError,
    TargetUnreachable,
    TemporaryTargetError,
    UnknownOutcome,
    public_reason,
    retry_delay,
)
from slotkeeper.targets.http import ApiClient, HttpSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "https://api.example.com/v3"
ATTEMPTS = 4
MAX_WAIT = 60.0


@pytest.fixture(autouse=True)
def no_sleeping() -> Iterator[None]:
    """Backoffs off; the client's own number of attempts applies."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class Script:
    """A transport answering from a list (the last answer repeats), recording requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, *, not_done: bool = False) -> ApiClient:
    return ApiClient(
        name="t",
        settings=HttpSettings(
            base_url=BASE,
            headers={},
            attempts=ATTEMPTS,
            max_rate_wait=MAX_WAIT,
            five_hundred_means_not_done=not_done,
        ),
        clock=lambda: NOW,
        transport=httpx.MockTransport(script),
    )


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"message": f"said {status}"})


def limited(status: int, seconds: float) -> httpx.Response:
    return answer(status, **{"retry-after": str(seconds)})


def reset_in(seconds: float) -> httpx.Response:
    """GitHub's primary limit: a 403 with no requests left until an epoch."""
    reset = str(NOW.timestamp() + seconds)
    return answer(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})


READ_TIMEOUT = httpx.ReadTimeout("slow")
CONNECT_ERROR = httpx.ConnectError("refused")
PROTOCOL_ERROR = httpx.RemoteProtocolError("peer closed")


@dataclass(frozen=True)
class Case:
    """A call, the answers, and what must come of them."""

    method: str
    idempotent: bool
    answers: tuple[httpx.Response | Exception, ...]
    #: the status returned, or the error class raised
    outcome: int | type[TargetError]
    calls: int
    status: int | None = None  # the error's http_status
    pause: float | None = None  # the error's retry_delay
    reason: str | None = None  # the error's public_reason
    not_done: bool = False  # the API says a 5xx to a write did nothing


CASES = {
    # 5xx: retried on idempotent calls until an answer or the attempts run out
    "read-5xx-then-ok": Case("GET", True, (answer(503), answer(502), answer(200)), 200, 3),
    "idempotent-write-5xx-then-ok": Case("PUT", True, (answer(500), answer(200)), 200, 2),
    "read-5xx-lasts": Case(
        "GET",
        True,
        (answer(503),),
        TemporaryTargetError,
        ATTEMPTS,
        status=503,
        reason="HTTP 503: target unavailable",
    ),
    "write-5xx-unknown": Case(
        "POST",
        False,
        (answer(500), answer(201)),
        UnknownOutcome,
        1,
        status=500,
        reason="HTTP 500: target unavailable; the write may have happened",
    ),
    "write-5xx-not-done": Case("POST", False, (answer(503), answer(201)), 201, 2, not_done=True),
    # transport errors: retried when nothing can have happened
    "read-timeout-then-ok": Case("GET", True, (READ_TIMEOUT, answer(200)), 200, 2),
    "read-dropped-then-ok": Case("GET", True, (PROTOCOL_ERROR, answer(200)), 200, 2),
    "read-never-answered": Case(
        "GET", True, (READ_TIMEOUT,), TargetUnreachable, ATTEMPTS, reason="unreachable"
    ),
    "write-refused-connection-then-ok": Case("POST", False, (CONNECT_ERROR, answer(201)), 201, 2),
    "write-timeout-unknown": Case(
        "POST",
        False,
        (READ_TIMEOUT, answer(201)),
        UnknownOutcome,
        1,
        reason="no answer (the write may have happened)",
    ),
    "write-dropped-unknown": Case("POST", False, (PROTOCOL_ERROR,), UnknownOutcome, 1),
    "write-never-connected": Case("POST", False, (CONNECT_ERROR,), TargetUnreachable, ATTEMPTS),
    # rate limits: waited out up to the longest wait (a refusal proves nothing was written)
    "429-short-then-ok": Case("GET", True, (limited(429, 3), answer(200)), 200, 2),
    "429-at-longest-wait": Case("GET", True, (limited(429, MAX_WAIT), answer(200)), 200, 2),
    "write-429-then-ok": Case("POST", False, (limited(429, 1), answer(201)), 201, 2),
    "403-reset-soon-then-ok": Case("GET", True, (reset_in(10), answer(200)), 200, 2),
    "429-over-longest-wait": Case(
        "POST",
        False,
        (limited(429, MAX_WAIT + 1),),
        TemporaryTargetError,
        1,
        status=429,
        pause=MAX_WAIT + 1,
        reason="HTTP 429: rate limited",
    ),
    "403-reset-in-an-hour": Case(
        "GET",
        True,
        (reset_in(3600),),
        TemporaryTargetError,
        1,
        status=403,
        pause=3600.0,
        reason="HTTP 403: rate limited",
    ),
    "429-short-but-lasting": Case(
        "GET",
        True,
        (limited(429, 2),),
        TemporaryTargetError,
        ATTEMPTS,
        status=429,
        pause=2.0,
        reason="HTTP 429: rate limited",
    ),
    # other refusals: permanent at once, never retried
    "401": Case(
        "GET",
        True,
        (answer(401),),
        PermanentTargetError,
        1,
        status=401,
        reason="HTTP 401: permission denied",
    ),
    "403-plain": Case(
        "POST",
        False,
        (answer(403),),
        PermanentTargetError,
        1,
        status=403,
        reason="HTTP 403: permission denied",
    ),
    "404": Case(
        "GET",
        True,
        (answer(404),),
        PermanentTargetError,
        1,
        status=404,
        reason="HTTP 404: not found",
    ),
    "422": Case(
        "POST",
        False,
        (answer(422),),
        PermanentTargetError,
        1,
        status=422,
        reason="HTTP 422: rejected by the target",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_one_logical_call(case: Case) -> None:
    """What a call makes of its answers: the answer, or the error with its status, its pause
    and its public reason; and how many requests it took."""
    script = Script(*case.answers)
    api = client(script, not_done=case.not_done)
    write = case.method != "GET"
    if isinstance(case.outcome, int):
        sent = api.send(case.method, "things", write=write, idempotent=case.idempotent)
        assert sent.status_code == case.outcome
    else:
        with pytest.raises(case.outcome) as caught:
            api.send(case.method, "things", write=write, idempotent=case.idempotent)
        error = caught.value
        assert type(error) is case.outcome
        assert error.http_status == case.status
        assert retry_delay(error) == case.pause
        if case.reason is not None:
            assert public_reason(error) == case.reason
    assert len(script.requests) == case.calls


@pytest.mark.parametrize(
    ("url", "sent_to"),
    [
        ("repos/a/b", "https://api.example.com/v3/repos/a/b"),
        ("repos?page=2", "https://api.example.com/v3/repos?page=2"),
        ("https://api.example.com/v3/repos?page=3", "https://api.example.com/v3/repos?page=3"),
        ("https://API.example.com:443/v3/x", "https://api.example.com/v3/x"),
        ("https://api.example.com/v4/repos", None),
        ("https://api.example.com/v3/../admin", None),
        ("https://api.example.com/v3/%2e%2e/admin", None),
        ("http://api.example.com/v3/repos", None),
        ("https://api.example.com:8443/v3/repos", None),
        ("https://elsewhere.example.com/v3/repos?token=s3cret", None),
    ],
)
def test_only_the_base_url_is_ever_requested(url: str, sent_to: str | None) -> None:
    """Paths and links under the base URL are requested there; anything else (another scheme,
    host, port or path, dot segments even encoded) is refused before a request is sent, with a
    message that carries no query string."""
    script = Script(answer(200))
    api = client(script)
    if sent_to is not None:
        api.send("GET", url)
        assert [str(r.url) for r in script.requests] == [sent_to]
        return
    with pytest.raises(PermanentTargetError) as caught:
        api.send("GET", url)
    assert script.requests == []
    assert "outside this target's base URL" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "?" not in str(caught.value)


@pytest.mark.parametrize("status", [404, 500])
def test_a_failing_answers_message_names_the_path_not_the_query(status: int) -> None:
    """Messages name the target, method and path; a query string (which may carry a token)
    never appears in them."""
    script = Script(answer(status))
    with pytest.raises(TargetError) as caught:
        client(script).send("POST", "things?access_token=s3cret", write=True, idempotent=False)
    assert str(caught.value).startswith("t: POST things: ")
    assert "s3cret" not in str(caught.value)
