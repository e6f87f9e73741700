"""The webhook receiver at its seam: ``receive(headers, body)`` called directly (no HTTP), with a
real SQLite ledger keeping the deliveries. One table of deliveries, each with the answer it must
get and whether it may ask for a reconcile."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers
from structlog.testing import capture_logs

from slotkeeper.daemon.webhook import (
    MAX_BODY,
    MAX_JSON_DEPTH,
    REPLAY_WINDOW,
    WebhookReceiver,
    delivery_keys,
)
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.observability import configure_logging

SECRET = b"webhook-s3cret"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PUSH = json.dumps({"ref": "refs/heads/main", "after": "c" * 40}).encode()


def sign(body: bytes, key: bytes = SECRET, algorithm: str = "sha256") -> str:
    return f"{algorithm}=" + hmac.new(key, body, algorithm).hexdigest()


def nested(levels: int) -> bytes:
    return b'{"ref": "refs/heads/main", "x": ' + b"[" * levels + b"]" * levels + b"}"


class Asked:
    """The reconcile requests the receiver made, and whether it says this replica leads."""

    def __init__(self, *, leading: bool = True) -> None:
        self.reasons: list[str] = []
        self.leading = leading

    def __call__(self, reason: str) -> bool:
        self.reasons.append(reason)
        return self.leading


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path}/state.db", now=NOW)
    yield opened
    opened.close()


def receiver(
    ledger: Ledger, asked: Asked, *, secret: bytes | None = SECRET, at: list[datetime] | None = None
) -> WebhookReceiver:
    moment = at or [NOW]
    return WebhookReceiver(
        secret=secret, branch="main", ledger=ledger, ask=asked, clock=lambda: moment[0]
    )


@dataclass(frozen=True)
class Delivery:
    body: bytes = PUSH
    signature: str | None = field(default_factory=lambda: sign(PUSH))
    event: str = "push"
    delivery: str = "d-1"

    def headers(self) -> dict[str, str]:
        found = {"X-GitHub-Event": self.event, "X-GitHub-Delivery": self.delivery}
        if self.signature is not None:
            found["X-Hub-Signature-256"] = self.signature
        return found


BAD_SIGNATURE = (401, {"error": "bad signature"})
ACCEPTED = (202, {"accepted": True, "event": "push"})
TOO_BIG = b'{"ref": "refs/heads/main"}' + b" " * MAX_BODY
AT_LIMIT = (b'{"ref": "refs/heads/main"}' + b" " * MAX_BODY)[:MAX_BODY]

#: (id, the delivery, the secret the receiver holds, its answer, whether a reconcile is asked)
TABLE: list[tuple[str, Delivery, bytes | None, tuple[int, Any], bool]] = [
    ("good signature", Delivery(), SECRET, ACCEPTED, True),
    ("wrong secret", Delivery(signature=sign(PUSH, b"guess")), SECRET, BAD_SIGNATURE, False),
    ("truncated", Delivery(signature=sign(PUSH)[:-1]), SECRET, BAD_SIGNATURE, False),
    ("prefix only", Delivery(signature="sha256="), SECRET, BAD_SIGNATURE, False),
    ("bare digest", Delivery(signature=sign(PUSH)[7:]), SECRET, BAD_SIGNATURE, False),
    ("sha1=", Delivery(signature=sign(PUSH, algorithm="sha1")), SECRET, BAD_SIGNATURE, False),
    ("no signature", Delivery(signature=None), SECRET, BAD_SIGNATURE, False),
    (
        "right signature, another body",
        Delivery(signature=sign(b'{"ref": "refs/heads/main"}')),
        SECRET,
        BAD_SIGNATURE,
        False,
    ),
    ("not ASCII", Delivery(signature="sha256=é" + "0" * 63), SECRET, BAD_SIGNATURE, False),
    ("no secret configured", Delivery(signature=sign(PUSH, b"")), None, BAD_SIGNATURE, False),
    ("no secret, any key", Delivery(), None, BAD_SIGNATURE, False),
    ("too big", Delivery(TOO_BIG, sign(TOO_BIG)), SECRET, (413, {"error": "bad body size"}), False),
    (
        "at the size limit",
        Delivery(AT_LIMIT, sign(AT_LIMIT)),
        SECRET,
        (202, {"accepted": True, "event": "push"}),
        True,
    ),
    (
        "too deep",
        Delivery(nested(MAX_JSON_DEPTH + 1), sign(nested(MAX_JSON_DEPTH + 1))),
        SECRET,
        (400, {"error": f"body is nested deeper than {MAX_JSON_DEPTH}"}),
        False,
    ),
    (
        "deep, within the limit",
        Delivery(nested(MAX_JSON_DEPTH), sign(nested(MAX_JSON_DEPTH))),
        SECRET,
        ACCEPTED,
        True,
    ),
    (
        "not JSON",
        Delivery(b"[1, 2", sign(b"[1, 2")),
        SECRET,
        (400, {"error": "body is not JSON"}),
        False,
    ),
    (
        "other branch",
        Delivery(b'{"ref": "refs/heads/dev"}', sign(b'{"ref": "refs/heads/dev"}')),
        SECRET,
        (
            200,
            {
                "accepted": False,
                "event": "push",
                "reason": "a push to refs/heads/dev, not to the followed refs/heads/main",
            },
        ),
        False,
    ),
    (
        "a tag",
        Delivery(b'{"ref": "refs/tags/main"}', sign(b'{"ref": "refs/tags/main"}')),
        SECRET,
        (
            200,
            {
                "accepted": False,
                "event": "push",
                "reason": "a push to refs/tags/main, not to the followed refs/heads/main",
            },
        ),
        False,
    ),
    (
        "a push without a ref",
        Delivery(b"", sign(b"")),
        SECRET,
        (
            200,
            {
                "accepted": False,
                "event": "push",
                "reason": "a push without a ref; following refs/heads/main",
            },
        ),
        False,
    ),
    ("ping", Delivery(event="ping"), SECRET, (200, {"accepted": True, "event": "ping"}), False),
    (
        "another event",
        Delivery(event="release"),
        SECRET,
        (202, {"accepted": True, "event": "release"}),
        True,
    ),
]


@pytest.mark.parametrize(
    ("delivery", "secret", "answer", "asks"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_each_delivery_gets_its_answer(
    ledger: Ledger, delivery: Delivery, secret: bytes | None, answer: tuple[int, Any], asks: bool
) -> None:
    """Signature, size, depth, JSON, event and branch decide the answer; only an accepted
    delivery asks for a reconcile, named "webhook"."""
    asked = Asked()
    assert receiver(ledger, asked, secret=secret).receive(delivery.headers(), delivery.body) == (
        answer
    )
    assert asked.reasons == (["webhook"] if asks else [])


def test_a_duplicate_delivery_is_answered_and_asks_nothing(ledger: Ledger) -> None:
    """The same delivery id with another body, or the same body under a new or no id, is a
    duplicate: 200, accepted false, no reconcile; a new one is accepted."""
    asked = Asked()
    hook = receiver(ledger, asked)
    duplicate = (200, {"accepted": False, "reason": "duplicate delivery"})
    assert hook.receive(Delivery().headers(), PUSH) == ACCEPTED
    other = b'{"ref": "refs/heads/main", "n": 1}'
    assert hook.receive(Delivery(other, sign(other)).headers(), other) == duplicate
    assert hook.receive(Delivery(delivery="d-2").headers(), PUSH) == duplicate
    assert hook.receive(Delivery(delivery="").headers(), PUSH) == duplicate
    fresh = b'{"ref": "refs/heads/main", "n": 2}'
    assert hook.receive(Delivery(fresh, sign(fresh), delivery="d-3").headers(), fresh) == ACCEPTED
    assert asked.reasons == ["webhook", "webhook"]


def test_a_delivery_is_remembered_for_the_replay_window_only(ledger: Ledger) -> None:
    """A replay within the window is a duplicate (also to a new receiver on the same ledger:
    a restart); once the window has passed, the same delivery is new again."""
    at = [NOW]
    assert receiver(ledger, Asked(), at=at).receive(Delivery().headers(), PUSH) == ACCEPTED
    at[0] = NOW + REPLAY_WINDOW
    again = receiver(ledger, Asked(), at=at).receive(Delivery().headers(), PUSH)
    assert again == (200, {"accepted": False, "reason": "duplicate delivery"})
    at[0] = NOW + REPLAY_WINDOW + timedelta(seconds=1)
    assert receiver(ledger, Asked(), at=at).receive(Delivery().headers(), PUSH) == ACCEPTED


def test_header_names_are_case_insensitive_and_the_first_of_a_repeat_counts(
    ledger: Ledger,
) -> None:
    """Header names in any case are found; a signature header given twice is judged by its
    first value (the web layer hands Starlette's headers over, repeats included)."""
    lower = {"x-github-event": "push", "x-hub-signature-256": sign(PUSH)}
    assert receiver(ledger, Asked()).receive(lower, PUSH) == ACCEPTED
    repeated = Headers(
        raw=[
            (b"x-hub-signature-256", b"sha256=forged"),
            (b"x-hub-signature-256", sign(PUSH).encode()),
        ]
    )
    assert receiver(ledger, Asked()).receive(repeated, PUSH) == BAD_SIGNATURE
    other = b'{"ref": "refs/heads/main", "n": 1}'
    repeated = Headers(
        raw=[(b"x-hub-signature-256", sign(other).encode()), (b"x-hub-signature-256", b"x")]
    )
    assert receiver(ledger, Asked()).receive(repeated, other) == (
        202,
        {"accepted": True, "event": ""},
    )


def test_the_log_says_what_was_refused_accepted_or_ignored(ledger: Ledger) -> None:
    """Whole events: a bad signature and a replay are warnings, a push elsewhere and an
    accepted one are info (the latter with whether this replica leads)."""
    configure_logging(fmt="json", level="debug")
    hook = receiver(ledger, Asked(leading=False))
    elsewhere = b'{"ref": "refs/heads/dev"}'
    with capture_logs() as logs:
        hook.receive(Delivery(signature=None).headers(), PUSH)
        hook.receive(Delivery(elsewhere, sign(elsewhere), delivery="d-0").headers(), elsewhere)
        hook.receive(Delivery().headers(), PUSH)
        hook.receive(Delivery().headers(), PUSH)
    assert logs == [
        {
            "event": "webhook.refused",
            "log_level": "warning",
            "reason": "bad or missing signature",
        },
        {
            "event": "webhook.ignored",
            "log_level": "info",
            "github_event": "push",
            "delivery": "d-0",
            "reason": "a push to refs/heads/dev, not to the followed refs/heads/main",
        },
        {
            "event": "webhook.accepted",
            "log_level": "info",
            "github_event": "push",
            "delivery": "d-1",
            "leader": False,
        },
        {
            "event": "webhook.refused",
            "log_level": "warning",
            "reason": "replayed delivery or body",
        },
    ]


@pytest.mark.parametrize(
    ("delivery", "body", "keys"),
    [
        ("", b"x", [f"body:{hashlib.sha256(b'x').hexdigest()}"]),
        ("d-1", b"x", [f"body:{hashlib.sha256(b'x').hexdigest()}", "delivery:d-1"]),
        ("i" * 300, b"", [f"body:{hashlib.sha256(b'').hexdigest()}", f"delivery:{'i' * 200}"]),
    ],
)
def test_a_delivery_is_remembered_by_its_body_and_its_id(
    delivery: str, body: bytes, keys: list[str]
) -> None:
    """The body's digest always, the delivery id (its first 200 characters) when it has one."""
    assert delivery_keys(delivery, body) == keys
