"""The GitHub webhook receiver: which deliveries may ask for a reconcile.

Whoever can reach the port can send one, so a delivery is judged in this order, each step
before anything costlier: its size; its HMAC (``X-Hub-Signature-256`` over the exact body, with
the operator's secret; none configured refuses all); whether the delivery (by id, and by a
digest of its body) was seen in the replay window; the body's JSON and how deep it nests; and
for a push, whether it is to the followed branch. Only then is a reconcile asked for.

``receive(headers, body) -> (status, document)`` knows no HTTP server: the web layer streams the
body (stopping past ``max_body``) and sends back what it returns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from slotkeeper import observability as obs
from slotkeeper.errors import SlotkeeperError
from slotkeeper.ledger import ReconcileRequests

#: the largest body read, in bytes (GitHub caps its payloads at 25 MB but a push of one branch
#: stays far under a megabyte; a larger body is refused unread)
MAX_BODY = 1024 * 1024
#: how deep a webhook body may nest (GitHub's push payloads stay under 10 levels)
MAX_JSON_DEPTH = 32
#: how long a signed webhook delivery is remembered (GitHub redelivers within days at most
#: when asked; a replay after that finds nothing new to reconcile anyway)
REPLAY_WINDOW = timedelta(days=3)


class WebhookReceiver:
    """Judges deliveries; an accepted one calls ``ask("webhook")``, which asks for a reconcile
    and says whether this replica leads (for the log). Called from HTTP threads."""

    max_body = MAX_BODY

    def __init__(
        self,
        *,
        secret: bytes | None,
        branch: str,
        ledger: ReconcileRequests,
        ask: Callable[[str], bool],
        clock: Callable[[], datetime],
    ) -> None:
        self._secret = secret
        self._branch = branch
        self._ledger = ledger
        self._ask = ask
        self._clock = clock
        # HTTP threads check-and-remember deliveries one at a time (the ledger keeps them, so a
        # restart or a failover forgets nothing).
        self._deliveries_lock = threading.Lock()
        self._log = obs.get_logger()

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        """The status and JSON document answering one delivery."""
        named = _header_names_lowered(headers)
        if len(body) > self.max_body:
            return 413, {"error": "bad body size"}
        signature = named.get("x-hub-signature-256") or ""
        expected = "sha256=" + hmac.new(self._secret or b"", body, hashlib.sha256).hexdigest()
        # bytes: compare_digest refuses a str with non-ASCII characters (a header may hold any)
        if self._secret is None or not hmac.compare_digest(signature.encode(), expected.encode()):
            self._log.warning("webhook.refused", reason="bad or missing signature")
            return 401, {"error": "bad signature"}
        delivery = named.get("x-github-delivery") or ""
        if not self._first_delivery(delivery, body):
            self._log.warning("webhook.refused", reason="replayed delivery or body")
            return 200, {"accepted": False, "reason": "duplicate delivery"}
        event = named.get("x-github-event") or ""
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            return 400, {"error": "body is not JSON"}
        if _depth(payload) > MAX_JSON_DEPTH:
            return 400, {"error": f"body is nested deeper than {MAX_JSON_DEPTH}"}
        if event == "ping":
            return 200, {"accepted": True, "event": "ping"}
        ignored = self._other_branch(event, payload)
        if ignored is not None:
            self._log.info("webhook.ignored", github_event=event, delivery=delivery, reason=ignored)
            return 200, {"accepted": False, "event": event, "reason": ignored}
        leading = self._ask("webhook")
        self._log.info("webhook.accepted", github_event=event, delivery=delivery, leader=leading)
        return 202, {"accepted": True, "event": event}

    def _first_delivery(self, delivery: str, body: bytes) -> bool:
        keys = delivery_keys(delivery, body)
        with self._deliveries_lock:
            try:
                return self._ledger.first_delivery(keys, at=self._clock(), window=REPLAY_WINDOW)
            except SlotkeeperError as exc:
                self._log.warning("webhook.replay_check_failed", error=str(exc))
                return False  # unsure: refuse; the resync interval reconciles anyway

    def _other_branch(self, event: str, payload: Any) -> str | None:
        """Why a push is not for the followed branch (None when it is, or not a push): a push
        to another branch or a tag changes nothing that is followed, so it reconciles nothing."""
        if event != "push":
            return None
        wanted = f"refs/heads/{self._branch}"
        ref = payload.get("ref") if isinstance(payload, dict) else None
        if ref == wanted:
            return None
        if not isinstance(ref, str):
            return f"a push without a ref; following {wanted}"
        return f"a push to {ref[:200]}, not to the followed {wanted}"


def _header_names_lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lower-case name; of a repeated header, the first."""
    named: dict[str, str] = {}
    for name, value in headers.items():
        named.setdefault(name.lower(), value)
    return named


def _depth(document: Any) -> int:
    """How deeply ``document`` nests lists and objects, counted without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


def delivery_keys(delivery: str, body: bytes) -> list[str]:
    """What a delivery is remembered by: its id, and a digest of its body (a captured body
    re-sent under a new or missing id is a replay too)."""
    keys = [f"body:{hashlib.sha256(body).hexdigest()}"]
    if delivery:
        keys.append(f"delivery:{delivery[:200]}")
    return keys
