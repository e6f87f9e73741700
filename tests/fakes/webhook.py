"""A generic webhook receiver on loopback: where a ``type: webhook`` notifier's messages land.

``FakeWebhook`` accepts POSTs on one path (``/hook`` unless told otherwise; ``url`` is the
whole URL) over real HTTP on loopback (see ``server.py``) and checks every body against the
message contract, by its content type:

- ``application/json``: the webhook body, validated against
  ``docs/schemas/notification.schema.json`` (the committed file, read from the repository;
  JSON Schema 2020-12 with its formats checked);
- ``application/cloudevents+json``: a CloudEvents 1.0 event in structured content mode (the
  CloudEvents spec and its JSON format): ``specversion`` "1.0"; ``id``, ``source`` and ``type``
  non-empty strings; ``subject`` non-empty and ``time`` RFC 3339 when present;
  ``datacontenttype`` JSON when present; attribute names of lower-case letters and digits; the
  event in ``data`` (not ``data_base64``), validated against the same schema. slotkeeper's own
  rules come on top: the event's ``id`` is the message's, its ``type`` is
  ``dev.slotkeeper.<event>`` (``dev.slotkeeper.digest`` for a digest).

A charset other than UTF-8, another content type, a body that is not JSON or breaks a rule
answers 400 ``{"ok": false, "error": ...}`` and is appended to ``violations``. There is no
bearer token; when ``secret`` is set, every POST must carry ``X-Slotkeeper-Signature:
sha256=<hex HMAC-SHA256 of the raw body with the secret>`` (``signature``), else 401, which is
a violation too. Other paths are 404 and other methods on the path 405, neither a violation
(a wrong URL shows in the status). An accepted body answers ``status_code`` (200
``{"ok": true}`` unless set; 204 has no body).

Knobs beyond ``server.py``'s (whose error, drop, stall and latency knobs keep working; the
error knob answers 500, 502 or 503): ``fail_next(n, status)`` and ``retry_after_next(n,
seconds)`` queue answers for the next POSTs, in order: refused before the body is looked at,
so nothing of them is delivered.

Observation: ``messages()`` (the accepted webhook objects; of a CloudEvent its ``data``),
``messages_raw()`` (the accepted bodies as sent: a CloudEvent with its envelope), ``ids()``,
``duplicates()`` (ids accepted more than once: a retry after a lost answer) and
``by_event(event)`` (notifications of one event, digests flattened).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from collections import Counter, deque
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tests.fakes.server import FakeServer, Incoming, JsonObject, Refusal, Reply

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "schemas" / "notification.schema.json"
SIGNATURE_HEADER = "X-Slotkeeper-Signature"
JSON = "application/json"
CLOUDEVENTS = "application/cloudevents+json"
#: the ``type`` of slotkeeper's CloudEvents: this and the event, or ``digest``
TYPE_PREFIX = "dev.slotkeeper."
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
#: members of a structured-mode event that are not attributes
_NOT_ATTRIBUTES = frozenset({"data", "data_base64"})


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@cache
def schema_validator() -> Draft202012Validator:
    """The committed notification schema as a validator that checks formats (``date-time``)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(body: Any, where: str = "body") -> list[str]:
    """Why ``body`` is not a webhook body, one line per fault by its path; [] when valid.

    The schema is one of two messages: the faults reported are those of the one its ``kind``
    names (not that it is not the other); a body of neither kind is told so.
    """
    lines: set[str] = set()
    for error in schema_validator().iter_errors(body):
        if error.validator != "oneOf" or not error.context:
            lines.add(f"{where}{_path(error)}: {error.message}")
            continue
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        chosen = [
            subs
            for subs in branches.values()
            if not any(list(sub.relative_path) == ["kind"] for sub in subs)
        ]
        if len(chosen) == 1:
            lines.update(f"{where}{_path(sub)}: {sub.message}" for sub in chosen[0])
        elif isinstance(error.instance, dict):
            kind = error.instance.get("kind")
            lines.add(f"{where}.kind: {kind!r} is neither 'Notification' nor 'NotificationDigest'")
        else:
            lines.add(f"{where}{_path(error)}: {error.instance!r} is not of type 'object'")
    return sorted(lines)


def _path(error: ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def cloudevent_errors(event: Any) -> list[str]:
    """Why ``event`` is not a CloudEvent slotkeeper sends in structured mode; [] when valid."""
    if not isinstance(event, dict):
        return ["a structured-mode CloudEvent is a JSON object"]
    problems: list[str] = []
    if event.get("specversion") != "1.0":
        problems.append(f"specversion: {event.get('specversion')!r} is not '1.0'")
    for name in ("id", "source", "type"):
        value = event.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"{name}: required, a non-empty string")
    for name in sorted(set(event) - _NOT_ATTRIBUTES):
        if not _ATTRIBUTE_NAME.fullmatch(name):
            problems.append(f"{name!r} is not an attribute name (lower-case letters, digits)")
    for name in ("subject", "dataschema"):
        if name in event and (not isinstance(event[name], str) or not event[name]):
            problems.append(f"{name}: when present, a non-empty string")
    moment = event.get("time")
    if "time" in event and not (
        isinstance(moment, str)
        and Draft202012Validator.FORMAT_CHECKER.conforms(moment, "date-time")
    ):
        problems.append(f"time: {moment!r} is not an RFC 3339 timestamp")
    content_type = event.get("datacontenttype", JSON)
    if not isinstance(content_type, str) or _media_type(content_type) != JSON:
        problems.append(f"datacontenttype: {content_type!r} is not {JSON}")
    if "data_base64" in event:
        problems.append("data_base64: slotkeeper sends its JSON object as data")
    if "data" not in event:
        return [*problems, "data: required, the notification"]
    data = event["data"]
    found = schema_errors(data, "data")
    problems += found
    if not found:
        if event.get("id") != data["id"]:
            problems.append(f"id: {event.get('id')!r} is not the message's id {data['id']!r}")
        expected = TYPE_PREFIX + data.get("event", "digest")
        if event.get("type") != expected:
            problems.append(f"type: {event.get('type')!r} is not {expected!r}")
    return problems


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _refusal(status: int, error: str) -> Reply:
    return Reply(status, {"ok": False, "error": error})


class FakeWebhook(FakeServer):
    """A webhook endpoint that checks every message against the contract and keeps it."""

    server_software: ClassVar[str] = "FakeWebhook"

    def __init__(
        self,
        *,
        secret: str | None = None,
        path: str = "/hook",
        status_code: int = 200,
        seed: int = 0,
    ) -> None:
        super().__init__("", seed=seed)
        self.secret = secret
        self.path = path
        #: the answer to an accepted message (200, 202, 204...)
        self.status_code = status_code
        #: what was wrong with each refused message, one line each; the fixture demands none
        self.violations: list[str] = []
        self._queued: deque[Reply] = deque()
        self._accepted: list[tuple[JsonObject, JsonObject]] = []  # (as sent, the message)

    @property
    def url(self) -> str:
        """The hook's whole URL: ``http://127.0.0.1:<port>/hook``."""
        return f"{self.base_url}{self.path}"

    # -- knobs -------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` POSTs with ``status``, delivering nothing."""
        with self._lock:
            self._queued.extend(_refusal(status, HTTPStatus(status).phrase) for _ in range(n))

    def retry_after_next(self, n: int = 1, seconds: int = 1) -> None:
        """Answer the next ``n`` POSTs 429 with ``Retry-After: seconds``, delivering nothing."""
        with self._lock:
            self._queued.extend(
                Reply(429, {"ok": False, "error": "rate limited"}, {"Retry-After": str(seconds)})
                for _ in range(n)
            )

    # -- observation -------------------------------------------------------------------------

    def messages(self) -> list[JsonObject]:
        """The accepted messages, oldest first: webhook objects (a CloudEvent's ``data``)."""
        with self._lock:
            return [copy.deepcopy(message) for _, message in self._accepted]

    def messages_raw(self) -> list[JsonObject]:
        """The accepted bodies as they were sent, oldest first (CloudEvents with envelope)."""
        with self._lock:
            return [copy.deepcopy(sent) for sent, _ in self._accepted]

    def ids(self) -> list[str]:
        """The ``id`` of every accepted message, oldest first (a digest's own id)."""
        return [str(message["id"]) for message in self.messages()]

    def duplicates(self) -> dict[str, int]:
        """Each id accepted more than once, with how many times."""
        return {id_: count for id_, count in Counter(self.ids()).items() if count > 1}

    def by_event(self, event: str) -> list[JsonObject]:
        """The accepted notifications of ``event``, oldest first, those in digests included."""
        found: list[JsonObject] = []
        for message in self.messages():
            digest = message["kind"] == "NotificationDigest"
            items = message["notifications"] if digest else [message]
            found += [item for item in items if item["event"] == event]
        return found

    # -- admission and errors ----------------------------------------------------------------

    def _admit(self, incoming: Incoming) -> Reply | None:
        """Path (404), method (405), signature (401), then the queued failures."""
        if incoming.path != self.path:
            return _refusal(404, "Not Found")
        if incoming.method != "POST":
            return _refusal(405, "Method Not Allowed")
        if self.secret is not None:
            sent = incoming.headers.get(SIGNATURE_HEADER.lower())
            if sent is None or not hmac.compare_digest(
                sent.encode(), signature(incoming.body, self.secret).encode()
            ):
                return self._unauthorized(incoming)
        if self._queued:
            return self._queued.popleft()
        return None

    def _unauthorized(self, incoming: Incoming) -> Reply:
        sent = incoming.headers.get(SIGNATURE_HEADER.lower())
        problem = f"no {SIGNATURE_HEADER} header" if sent is None else f"wrong {SIGNATURE_HEADER}"
        self.violations.append(f"POST {incoming.path}: {problem}")
        return _refusal(401, problem)

    def _server_error(self) -> Reply:
        status = self._rng.choice((500, 502, 503))
        return _refusal(status, HTTPStatus(status).phrase)

    def _internal_error(self, exc: Exception) -> Reply:
        return _refusal(500, f"fake internal error: {exc!r}")

    # -- the route ---------------------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        sent, message = self._check(incoming)
        self._accepted.append((sent, message))
        if self.status_code == 204:
            return Reply(204)
        return Reply(self.status_code, {"ok": True})

    def _check(self, incoming: Incoming) -> tuple[JsonObject, JsonObject]:
        """The body as sent and the message in it; ``Refusal`` (400, a violation) if invalid."""
        content_type = incoming.headers.get("content-type", "")
        media_type = _media_type(content_type)
        problems: list[str] = []
        body: Any = None
        charset = _charset(content_type)
        if media_type not in (JSON, CLOUDEVENTS):
            problems.append(f"content-type {content_type!r} is neither {JSON} nor {CLOUDEVENTS}")
        elif charset not in (None, "utf-8"):
            problems.append(f"charset {charset!r}: the body must be UTF-8")
        else:
            try:
                body = json.loads(incoming.body.decode("utf-8"))
            except ValueError:
                problems.append("the body is not UTF-8 JSON")
            else:
                if media_type == CLOUDEVENTS:
                    problems = cloudevent_errors(body)
                else:
                    problems = schema_errors(body)
        if problems:
            self.violations += [f"POST {incoming.path} ({media_type}): {p}" for p in problems]
            raise Refusal(_refusal(400, "; ".join(problems)))
        message = body["data"] if media_type == CLOUDEVENTS else body
        return copy.deepcopy(body), copy.deepcopy(message)
