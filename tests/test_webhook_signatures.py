"""Webhook signatures through a `slotkeeper run` subprocess: every forged, truncated or
misplaced signature, and any signature at all when no secret is configured, is answered 401 and
reconciles nothing; a correct one is answered 202 and reconciles once.

"Reconciles nothing" is shown by an event, not by waiting: the daemon takes its triggers (a
webhook, SIGHUP) from one queue in order and names a reconcile after the first trigger it took.
After each refused delivery the test sends SIGHUP; the next reconcile must be the only one and
be named ``reload``. Had the delivery queued a trigger, the reconcile would be named ``webhook``
(coalesced) or there would be two.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_support import SECRET, Running, wait_for
from tests.helpers import environment, image, write_manifests_and_targets

BODY = json.dumps({"ref": "refs/heads/main", "after": "c" * 40}).encode()


def sha256_signature(body: bytes, key: bytes = SECRET.encode()) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def sha1_signature(body: bytes, key: bytes = SECRET.encode()) -> str:
    return "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()


#: (id, headers for BODY): each one a delivery GitHub (holding SECRET) never sent
FORGED: list[tuple[str, dict[str, str]]] = [
    ("wrong-secret", {"X-Hub-Signature-256": sha256_signature(BODY, b"not-the-secret")}),
    ("truncated", {"X-Hub-Signature-256": sha256_signature(BODY)[:-1]}),
    ("half", {"X-Hub-Signature-256": sha256_signature(BODY)[: len("sha256=") + 32]}),
    ("prefix-only", {"X-Hub-Signature-256": "sha256="}),
    ("sha1-prefix", {"X-Hub-Signature-256": sha1_signature(BODY)}),
    ("sha1-header-only", {"X-Hub-Signature": sha1_signature(BODY)}),
    ("other-body", {"X-Hub-Signature-256": sha256_signature(b'{"ref": "refs/heads/main"}')}),
    ("empty-key", {"X-Hub-Signature-256": sha256_signature(BODY, b"")}),
    ("bare-digest", {"X-Hub-Signature-256": sha256_signature(BODY).removeprefix("sha256=")}),
    ("no-signature", {}),
]


def deliver(daemon: Running, headers: dict[str, str], delivery: str) -> httpx.Response:
    sent = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, **headers}
    return httpx.post(daemon.url + "/hooks/github", content=BODY, headers=sent, timeout=5)


def last_reconcile(daemon: Running) -> dict[str, Any]:
    return dict(daemon.status()["last_reconcile"] or {})


def reconcile_named(daemon: Running, reason: str, *, after: str | None) -> dict[str, Any]:
    """Wait until a reconcile other than ``after`` (an id) finished, named ``reason``."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(last_reconcile(daemon))
        return found.get("id") != after and found.get("finished_at") is not None

    wait_for(finished, what=f"a reconcile after {after}")
    assert found["reason"] == reason, found
    return found


def assert_triggered_nothing(daemon: Running, before: float) -> float:
    """SIGHUP, then the next reconcile is the only one and is SIGHUP's: the refused delivery
    queued no trigger. Returns the reconcile count after it."""
    previous = last_reconcile(daemon).get("id")
    daemon.process.send_signal(signal.SIGHUP)
    reconcile_named(daemon, "reload", after=previous)
    assert daemon.reconciles() == before + 1
    return before + 1


def log_events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def webhook_events(err: str) -> list[dict[str, Any]]:
    """The daemon's webhook.* log events: name, reason and level."""
    return [
        {"event": e["event"], "reason": e.get("reason"), "level": e["level"]}
        for e in log_events(err)
        if e["event"].startswith("webhook.")
    ]


@pytest.fixture
def manifests(workdir: Path) -> Path:
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    return workdir / "m"


def test_forged_signatures_are_refused_and_reconcile_nothing(
    manifests: Path, running: Callable[..., Running]
) -> None:
    """Another key, a cut or bare digest, sha1 (either header), a signature of another body, of
    the empty key, or none: each is 401 and queues no reconcile; then a correct one is 202 and
    reconciles exactly once."""
    daemon = running("-m", "m", "--resync-interval", "1h")
    count = daemon.reconciles()
    for number, (case, headers) in enumerate(FORGED):
        answer = deliver(daemon, headers, f"forged-{number}")
        assert (answer.status_code, answer.json()) == (401, {"error": "bad signature"}), case
        count = assert_triggered_nothing(daemon, count)

    previous = last_reconcile(daemon)["id"]
    good = deliver(daemon, {"X-Hub-Signature-256": sha256_signature(BODY)}, "good-1")
    assert (good.status_code, good.json()) == (202, {"accepted": True, "event": "push"})
    reconcile_named(daemon, "webhook", after=previous)
    assert daemon.reconciles() == count + 1
    code, err = daemon.terminate()
    assert code == 0
    refused = {"event": "webhook.refused", "reason": "bad or missing signature", "level": "warning"}
    accepted = {"event": "webhook.accepted", "reason": None, "level": "info"}
    assert webhook_events(err) == [refused] * len(FORGED) + [accepted]


def test_without_a_secret_every_delivery_is_refused(
    manifests: Path, running: Callable[..., Running]
) -> None:
    """A daemon started with no webhook secret says webhook.disabled when it starts and
    answers 401 to every delivery, one signed with the empty key or with any secret
    included, and none of them reconciles."""
    daemon = running(
        "-m", "m", "--resync-interval", "1h", environ={"SLOTKEEPER_WEBHOOK_SECRET": None}
    )
    count = daemon.reconciles()
    attempts = [
        {"X-Hub-Signature-256": sha256_signature(BODY, b"")},
        {"X-Hub-Signature-256": sha256_signature(BODY)},
        {"X-Hub-Signature-256": sha256_signature(BODY, b"anything")},
        {},
    ]
    for number, headers in enumerate(attempts):
        answer = deliver(daemon, headers, f"unkeyed-{number}")
        assert (answer.status_code, answer.json()) == (401, {"error": "bad signature"}), headers
        count = assert_triggered_nothing(daemon, count)
    code, err = daemon.terminate()
    assert code == 0
    events = log_events(err)
    [disabled] = [e for e in events if e["event"] == "webhook.disabled"]
    assert disabled["level"] == "warning" and "401" in disabled["message"]
    started = [e["event"] for e in events].index("daemon.started")
    assert [e["event"] for e in events].index("webhook.disabled") == started + 1
    assert [e["event"] for e in events if e["event"].startswith("webhook.")] == [
        "webhook.disabled",
        *["webhook.refused"] * len(attempts),
    ]
