"""The webhook receiver of `slotkeeper run` at its edges, through the real daemon: the path, the
body size to the byte, signatures, replays by delivery id and by body, the nesting limit to the
level, and what a push names (issue 15: the mutants these tests kill)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from slotkeeper.daemon import MAX_BODY, MAX_JSON_DEPTH, Daemon, DaemonSettings
from slotkeeper.errors import LedgerError
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import open_ledger
from slotkeeper.plan import PlanOptions
from slotkeeper.reconcile import RunOptions
from slotkeeper.sources import DirectorySource
from tests.daemon_support import SECRET, Running
from tests.helpers import environment, image, write_manifests_and_targets


def send(
    daemon: Running,
    body: bytes,
    *,
    event: str = "push",
    delivery: str = "",
    path: str = "/hooks/github",
    sign: bool = True,
    length: str | None = None,
) -> tuple[int, Any]:
    """POST ``body`` with the Content-Length given (or the body's), signed with the secret."""
    headers = {"X-GitHub-Event": event, "Content-Length": length or str(len(body))}
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    if sign:
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if length is None:
            connection.send(body)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def answers_on_one_connection(daemon: Running, data: bytes) -> list[bytes]:
    """The status lines the daemon sends back for ``data`` before it closes the connection
    (a connection still open after a second wait counts as not closed: [])."""
    received = b""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=3) as raw:
        raw.sendall(data)
        try:
            while chunk := raw.recv(65536):
                received += chunk
        except TimeoutError:
            return []
    # a body is not followed by a line break: find each status line wherever it starts
    return re.findall(rb"HTTP/1\.[01] \d{3} [^\r]*", received)


def push(ref: object, **extra: object) -> bytes:
    return json.dumps({"ref": ref, **extra}).encode()


def nested(levels: int) -> bytes:
    """A push body whose deepest value sits ``levels`` levels down."""
    return b'{"ref": "refs/heads/main", "x": ' + b"[" * levels + b"]" * levels + b"}"


def test_the_webhook_receiver_at_its_edges(workdir: Path, running: Callable[..., Running]) -> None:
    """One daemon, every edge of /hooks/github: what is refused says why with its status code,
    what is accepted is answered 202 and names its event."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    daemon = running("-m", "m", "--resync-interval", "1h")

    # the path: only /hooks/github, with or without a query string
    assert send(daemon, push("refs/heads/main"), path="/hooks/gitlab") == (
        404,
        {"error": "not found"},
    )
    assert send(daemon, b"{}", event="ping", path="/hooks/github?from=test") == (
        200,
        {"accepted": True, "event": "ping"},
    )

    # the size: a length that is not a number or negative is 400, one byte over the limit 413
    assert send(daemon, b"", length="many") == (400, {"error": "bad body size"})
    assert send(daemon, b"", length="-1") == (400, {"error": "bad body size"})
    assert send(daemon, b"", length=str(MAX_BODY + 1)) == (413, {"error": "bad body size"})
    padded = push("refs/heads/elsewhere")
    padded += b" " * (MAX_BODY - len(padded))  # exactly at the limit: read and judged
    status, answer = send(daemon, padded, delivery="d-size")
    assert status == 200 and answer["accepted"] is False

    # the signature: missing, or over another body, is 401
    assert send(daemon, push("refs/heads/main"), sign=False) == (401, {"error": "bad signature"})

    # an empty signed body is an empty object: a push without a ref
    assert send(daemon, b"", delivery="d-empty") == (
        200,
        {
            "accepted": False,
            "event": "push",
            "reason": "a push without a ref; following refs/heads/main",
        },
    )

    # the nesting limit, to the level
    assert send(daemon, nested(MAX_JSON_DEPTH), event="ping", delivery="d-deep-ok")[0] == 200
    assert send(daemon, nested(MAX_JSON_DEPTH + 1), event="ping", delivery="d-deep") == (
        400,
        {"error": f"body is nested deeper than {MAX_JSON_DEPTH}"},
    )
    assert send(daemon, b"[1, 2", delivery="d-broken") == (400, {"error": "body is not JSON"})

    # what a push names: another branch or a tag is answered and ignored; a long ref is cut
    long_ref = "refs/heads/" + "b" * 300
    assert send(daemon, push(long_ref), delivery="d-long") == (
        200,
        {
            "accepted": False,
            "event": "push",
            "reason": f"a push to {long_ref[:200]}, not to the followed refs/heads/main",
        },
    )
    assert send(daemon, push(7), delivery="d-number")[1]["reason"] == (
        "a push without a ref; following refs/heads/main"
    )
    assert send(daemon, b'["refs/heads/main"]', delivery="d-list")[1]["reason"] == (
        "a push without a ref; following refs/heads/main"
    )
    assert send(daemon, push("refs/heads/main"), delivery="d-main") == (
        202,
        {"accepted": True, "event": "push"},
    )
    # an event other than a push reconciles too (a release, a workflow run)
    assert send(daemon, push("refs/tags/v1"), event="release", delivery="d-release") == (
        202,
        {"accepted": True, "event": "release"},
    )

    # replays: the same delivery id with another body, the same body under another id
    replay = (200, {"accepted": False, "reason": "duplicate delivery"})
    assert send(daemon, push("refs/heads/main", n=1), delivery="d-main") == replay
    assert send(daemon, push("refs/heads/main"), delivery="d-other") == replay
    # a delivery id is remembered by its first 200 characters
    first = "i" * 199
    elsewhere = {
        "accepted": False,
        "event": "push",
        "reason": "a push to refs/heads/x, not to the followed refs/heads/main",
    }
    assert send(daemon, push("refs/heads/x", n=2), delivery=first + "a" + "1") == (200, elsewhere)
    assert send(daemon, push("refs/heads/x", n=3), delivery=first + "a" + "2") == replay
    assert send(daemon, push("refs/heads/x", n=4), delivery=first + "b") == (200, elsewhere)

    # a body too large is not read: the connection is closed, so its bytes are never taken
    # for a next request on the same connection
    smuggled = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    oversized = (
        f"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    assert answers_on_one_connection(daemon, oversized + smuggled) == [
        b"HTTP/1.1 413 Request Entity Too Large"
    ]
    code, err = daemon.terminate()
    assert code == 0 and "Traceback" not in err


def test_a_replay_check_that_fails_refuses_the_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the ledger cannot say whether a delivery is new, the webhook is refused as a
    duplicate (the resync interval reconciles anyway) and nothing is triggered."""
    ledger = open_ledger(f"sqlite:///{tmp_path}/state.db", now=datetime.now(UTC))

    def failing(*_args: object, **_kwargs: object) -> bool:
        raise LedgerError("ledger write failed: disk I/O error")

    monkeypatch.setattr(ledger, "first_delivery", failing)
    settings = DaemonSettings(
        source=DirectorySource(tmp_path),
        options=PlanOptions(),
        run=RunOptions(),
        sink=SecretSink(tmp_path / "secrets"),
        actor="test",
        listen=("127.0.0.1", 0),
        webhook_secret=SECRET.encode(),
    )
    daemon = Daemon(settings, ledger)
    server = daemon.serve_http()
    try:
        body = push("refs/heads/main")
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = httpx.post(
            f"http://127.0.0.1:{server.port}/hooks/github",
            content=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"},
            timeout=5,
        )
    finally:
        server.stop()
        ledger.close()
    assert (answer.status_code, answer.json()) == (
        200,
        {"accepted": False, "reason": "duplicate delivery"},
    )
    assert daemon.triggers.empty()
