"""Sending one message to one notifier: a webhook or a Slack incoming webhook, over HTTP.

Each send answers with a :class:`Sent` saying what to do next — done, try again later (and
when), or stop: the endpoint is gone (Slack's ``no_service``, ``channel_is_archived``) or
refuses what it is sent. The reasons are fixed words: a Slack webhook's URL is a credential, so
neither a URL nor an exception's text (which may quote it) reaches a log or the ledger.

Connections go where the operator's egress policy allows (checked after DNS, as for targets),
and only while this process is the ledger's writer: a leader that lost its lease sends nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import httpx

from slotkeeper.credentials import resolve_secret
from slotkeeper.errors import SlotkeeperError
from slotkeeper.notify.message import (
    CLOUDEVENTS_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    Message,
    cloudevent_body,
    slack_body,
    webhook_body,
)
from slotkeeper.notify.spec import NotifierSpec, SlackNotifierSpec, WebhookNotifierSpec
from slotkeeper.targets.egress import guarded_transport
from slotkeeper.targets.http import fenced

#: the header a signed webhook body carries: ``sha256=<hex HMAC-SHA256 of the body>``
SIGNATURE_HEADER = "X-Slotkeeper-Signature"
#: the CloudEvents ``source`` of every message
SOURCE = "urn:slotkeeper"


class Next(StrEnum):
    """What to do with a message after one try."""

    SENT = "sent"
    #: try again later: a 5xx, a timeout, a connection refused (``retry_after`` when told)
    RETRY = "retry"
    #: a rate limit: wait ``retry_after`` without counting a try
    WAIT = "wait"
    #: the endpoint is gone (revoked, archived): stop sending to it
    GONE = "gone"
    #: this message is refused (a 4xx): sending it again would not help
    REFUSED = "refused"


@dataclass(frozen=True)
class Sent:
    next: Next
    #: in fixed words, e.g. ``HTTP 503``, ``timeout``, ``HTTP 410: channel_is_archived``
    reason: str = ""
    retry_after: float | None = None


class Channel(Protocol):
    """One notifier's way of sending a message."""

    def send(self, message: Message) -> Sent: ...

    def close(self) -> None: ...


#: what a Slack webhook answers when it will never accept anything again
_SLACK_GONE = frozenset({"no_service", "channel_is_archived", "channel_not_found", "no_team"})


class _HttpChannel:
    def __init__(self, url: str, timeout: float, may_write: Callable[[], bool] | None) -> None:
        self._url = url
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=fenced(guarded_transport(url), may_write),
            follow_redirects=False,  # a redirect is not followed with a signed body or a secret
        )

    def close(self) -> None:
        self.client.close()

    def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response | Sent:
        try:
            return self.client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Sent(Next.RETRY, "timeout")
        except (httpx.HTTPError, SlotkeeperError) as exc:
            # fixed words only: an exception's text may quote the URL, a credential for Slack
            refused = isinstance(exc, SlotkeeperError)
            return Sent(Next.RETRY, "refused by slotkeeper" if refused else "unreachable")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _by_status(response: httpx.Response, body_word: str = "") -> Sent:
    status = response.status_code
    said = f": {body_word}" if body_word else ""
    if 200 <= status < 300:
        return Sent(Next.SENT)
    if status == 429:
        return Sent(Next.WAIT, f"HTTP 429{said}", _retry_after(response) or 1.0)
    if status >= 500 or status == 408:
        return Sent(Next.RETRY, f"HTTP {status}{said}", _retry_after(response))
    if status in (404, 410):
        return Sent(Next.GONE, f"HTTP {status}{said}")
    return Sent(Next.REFUSED, f"HTTP {status}{said}")


class WebhookChannel(_HttpChannel):
    """A JSON POST (or a CloudEvent in structured mode), signed when a secret is set."""

    def __init__(
        self, spec: WebhookNotifierSpec, *, owner: str, may_write: Callable[[], bool] | None
    ) -> None:
        super().__init__(spec.url, spec.timeout_seconds, may_write)
        self._spec = spec
        self._key = resolve_secret(spec.secret, owner=owner).encode() if spec.secret else None

    def send(self, message: Message) -> Sent:
        if self._spec.format == "cloudevents":
            body = cloudevent_body(message, source=SOURCE)
            headers = {"Content-Type": CLOUDEVENTS_CONTENT_TYPE}
        else:
            body = webhook_body(message)
            headers = {"Content-Type": JSON_CONTENT_TYPE}
        # the same on every try of this message: a receiver deduplicates on it (a sender that
        # crashed between its request and the answer sends it again)
        headers["Idempotency-Key"] = message.id
        if self._key is not None:
            digest = hmac.new(self._key, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        answer = self._post(body, headers)
        return answer if isinstance(answer, Sent) else _by_status(answer)


class SlackChannel(_HttpChannel):
    """A Slack incoming webhook: answers ``ok``; 429 with Retry-After past about one message
    a second; 404/410 with ``no_service``/``channel_is_archived`` once revoked."""

    def __init__(
        self, spec: SlackNotifierSpec, *, owner: str, may_write: Callable[[], bool] | None
    ) -> None:
        super().__init__(resolve_secret(spec.url, owner=owner), spec.timeout_seconds, may_write)

    def send(self, message: Message) -> Sent:
        answer = self._post(slack_body(message), {"Content-Type": JSON_CONTENT_TYPE})
        if isinstance(answer, Sent):
            return answer
        word = answer.text.strip()[:40] if answer.status_code != 200 else ""
        known = word if word.replace("_", "").isalnum() else ""  # Slack's words, nothing else
        sent = _by_status(answer, known)
        if sent.next is Next.REFUSED and known in _SLACK_GONE:
            return Sent(Next.GONE, sent.reason)
        return sent


def open_channel(
    name: str, spec: NotifierSpec, *, may_write: Callable[[], bool] | None = None
) -> Channel:
    """The channel of notifier ``name``; its credentials are read now (a missing one is a
    ``ConfigError`` naming the notifier, never the value)."""
    owner = f"notifier {name!r}"
    if isinstance(spec, SlackNotifierSpec):
        return SlackChannel(spec, owner=owner, may_write=may_write)
    return WebhookChannel(spec, owner=owner, may_write=may_write)
