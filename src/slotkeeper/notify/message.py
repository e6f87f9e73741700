"""The notification message contract: the models, their three wire forms and their JSON Schema.

A ``Notification`` says one thing happened (an event, in ``EVENTS``) at one place; a
``NotificationDigest`` gathers several for one message. Both are frozen pydantic models that
refuse unknown fields. Each is sent in one of three forms:

- ``webhook_body``: the message itself as compact UTF-8 JSON, by wire name (``apiVersion``),
  with every key present (null when unknown), so a receiver never has to guess whether a key
  was left out. ``message_schema()`` is its JSON Schema, committed as
  ``docs/schemas/notification.schema.json``.
- ``cloudevent_body``: the same object as the ``data`` of a CloudEvents 1.0 event in structured
  content mode (sent as ``CLOUDEVENTS_CONTENT_TYPE``).
- ``slack_body``: a Slack incoming-webhook message (a fallback ``text`` and Block Kit
  ``blocks``), escaped and cut to Slack's limits.

A message's ``id`` is unique per transition and the same on every retry of it: receivers
deduplicate on it. Times are RFC 3339 in UTC with ``Z``, as in every JSON document slotkeeper
writes (``slotkeeper.model.timestamp``). Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import models_json_schema

from slotkeeper.model import timestamp

EventName = Literal[
    "deployed",
    "superseded",
    "decommissioned",
    "blocked",
    "awaiting-approval",
    "failed",
    "recovered",
    "frozen",
    "key-rotated",
    "manifests-invalid",
    "manifests-fixed",
]
#: every event a ``Notification`` may report, in the order the reference lists them
EVENTS: tuple[EventName, ...] = get_args(EventName)

SCHEMA_ID = "https://slotkeeper.dev/schemas/notification.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: the content type of ``webhook_body`` and ``slack_body``
JSON_CONTENT_TYPE = "application/json"
#: the content type of ``cloudevent_body`` (CloudEvents' JSON format, structured content mode)
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
#: the ``type`` of a CloudEvent is this prefix and the event (``digest`` for a digest)
CLOUDEVENTS_TYPE_PREFIX = "dev.slotkeeper."

#: Slack's limit on a text object in a block (a section's text, a context element)
SLACK_TEXT_LIMIT = 3000
#: at most this many notifications of a digest are listed in its Slack message
SLACK_DIGEST_LINES = 20
ELLIPSIS = "…"

#: a message id: an opaque token (no spaces, nothing Slack or a URL would have to escape)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+=~-]{0,199}$"


def _utc(moment: datetime) -> datetime:
    """The same moment in UTC; a naive time is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: a time in UTC, written in JSON as ``timestamp`` writes it
UtcTime = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(timestamp, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
MessageId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1)]


def _every_key_present(schema: dict[str, Any]) -> None:
    """A body has every key (null when unknown): its schema names no default, and its
    properties go by their wire names, not by titles made up from them."""
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        prop.pop("default", None)


class _Message(BaseModel):
    """Frozen, unknown fields refused; in the schema every key is required (none is ever left
    out of a body)."""

    model_config = ConfigDict(
        defer_build=True,
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_every_key_present,
    )


class ArtifactRef(_Message):
    """An artifact as a notification names it."""

    kind: str = Field(description="`CONTAINER_IMAGE` or `HELM_CHART`.")
    name: str = Field(
        description="The image or chart without version or digest, e.g. `ghcr.io/acme/api`."
    )
    version: str | None = Field(None, description="Its version, or null when it has none.")
    digest: str | None = Field(
        None, description="Its content digest (`sha256:` and 64 hex digits), or null."
    )


class Notification(_Message):
    """One thing that happened: an event at one place, at one time."""

    api_version: Literal["slotkeeper/v1"] = Field(
        "slotkeeper/v1", alias="apiVersion", description="The message format: `slotkeeper/v1`."
    )
    kind: Literal["Notification"] = Field(
        "Notification", description="`Notification`: one event (a digest is `NotificationDigest`)."
    )
    id: MessageId = Field(
        description="Unique per transition and the same on every retry of it: receivers "
        "deduplicate on it."
    )
    event: EventName = Field(description="What happened.")
    at: UtcTime = Field(description="When it happened: RFC 3339 in UTC, ending in `Z`.")
    summary: Text = Field(
        description="One human line, e.g. `production/api deployed ghcr.io/acme/api v1.5.0`."
    )
    environment: str | None = Field(None, description="The environment concerned, or null.")
    slot: str | None = Field(
        None, description="The slot concerned, in `environment`, or null (a whole environment)."
    )
    key: str | None = Field(
        None, description="The deploy key concerned, `owner/repo/title`, or null."
    )
    target: str | None = Field(
        None, description="For `failed` and `recovered`: the target's name; otherwise null."
    )
    reason: str | None = Field(
        None, description="Why, in words (what blocked or failed, what is invalid), or null."
    )
    artifact: ArtifactRef | None = Field(
        None, description="The artifact the event is about (what was deployed), or null."
    )
    previous: ArtifactRef | None = Field(
        None, description="The artifact that was in the slot before, or null."
    )
    revision: str | None = Field(
        None, description="The commit sha of the manifests the change comes from, or null."
    )
    actor: str | None = Field(None, description="Who or what made the change, or null.")
    action: str | None = Field(None, description="The plan action's id, or null.")
    command: str | None = Field(
        None,
        description="What to run about it, e.g. `slotkeeper approve 1a2b3c4d5e6f`, or null.",
    )


class NotificationDigest(_Message):
    """Several notifications sent as one message."""

    api_version: Literal["slotkeeper/v1"] = Field(
        "slotkeeper/v1", alias="apiVersion", description="The message format: `slotkeeper/v1`."
    )
    kind: Literal["NotificationDigest"] = Field(
        "NotificationDigest", description="`NotificationDigest`: several events in one message."
    )
    id: MessageId = Field(
        description="The digest's own id, unique and the same on every retry of it (each "
        "notification keeps its own)."
    )
    at: UtcTime = Field(description="When the digest was made: RFC 3339 in UTC, ending in `Z`.")
    environment: str | None = Field(
        None, description="The environment all its notifications concern, or null."
    )
    summary: Text = Field(description="One human line, e.g. `production: 3 deployed, 1 blocked`.")
    notifications: tuple[Notification, ...] = Field(
        min_length=1, description="The notifications, oldest first."
    )


#: what a webhook receives
Message = Notification | NotificationDigest


# -- the webhook body and its schema ---------------------------------------------------------


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _wire(message: Message) -> dict[str, Any]:
    """The webhook body as a JSON object: by wire name, every key present."""
    return message.model_dump(mode="json", by_alias=True, exclude_none=False)


def webhook_body(message: Message) -> bytes:
    """The message as a webhook sends it: compact UTF-8 JSON by wire name, every key present
    (null when unknown). It validates against ``message_schema()``."""
    return _compact(_wire(message))


def message_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a webhook body: one of Notification and
    NotificationDigest, by wire name, every key required, every property described."""
    refs, definitions = models_json_schema(
        [(Notification, "serialization"), (NotificationDigest, "serialization")],
        by_alias=True,
    )
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "slotkeeper notification",
        "description": "The body slotkeeper POSTs to a webhook (application/json), and the "
        "`data` of its CloudEvents: one Notification, or a NotificationDigest of several. "
        "Every key is present, null when unknown. Receivers deduplicate on `id`.",
        "oneOf": [
            refs[(Notification, "serialization")],
            refs[(NotificationDigest, "serialization")],
        ],
        "$defs": definitions["$defs"],
    }


# -- CloudEvents -----------------------------------------------------------------------------


def _subject(message: Message) -> str | None:
    """``ENV/SLOT``, ``ENV`` or the deploy key: where it happened, if anywhere."""
    if isinstance(message, NotificationDigest):
        return message.environment
    if message.environment is not None:
        if message.slot is not None:
            return f"{message.environment}/{message.slot}"
        return message.environment
    return message.key


def cloudevent_type(message: Message) -> str:
    """``dev.slotkeeper.<event>``, or ``dev.slotkeeper.digest`` for a digest."""
    event = "digest" if isinstance(message, NotificationDigest) else message.event
    return CLOUDEVENTS_TYPE_PREFIX + event


def cloudevent_body(message: Message, *, source: str) -> bytes:
    """The message as a CloudEvents 1.0 event in structured content mode (send it as
    ``CLOUDEVENTS_CONTENT_TYPE``): ``id`` the message's, ``source`` the given URI reference,
    ``type`` from ``cloudevent_type``, ``subject`` where it happened (left out when nowhere),
    ``time`` the message's and ``data`` the webhook body's object."""
    if not source:
        raise ValueError("a CloudEvent needs a non-empty source")
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": message.id,
        "source": source,
        "type": cloudevent_type(message),
    }
    subject = _subject(message)
    if subject:
        envelope["subject"] = subject
    envelope["time"] = timestamp(message.at)
    envelope["datacontenttype"] = JSON_CONTENT_TYPE
    envelope["data"] = _wire(message)
    return _compact(envelope)


# -- Slack -----------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack requires them in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """``text`` (escaped) cut to at most ``limit`` characters, ending in "…" when cut; an escape
    such as ``&amp;`` is never cut in half."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]*$", "", text[: limit - len(ELLIPSIS)]) + ELLIPSIS


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _notification_text(message: Notification) -> str:
    """Summary, reason and command: the reason gets whatever room the other two leave."""
    summary = _clip(slack_escape(message.summary), 1000)
    command = f"*Run:* `{_clip(slack_escape(message.command), 500)}`" if message.command else None
    lines = [summary]
    if message.reason:
        room = SLACK_TEXT_LIMIT - len(summary) - (len(command) + 1 if command else 0) - 1
        label = "*Reason:* "
        lines.append(label + _clip(slack_escape(message.reason), room - len(label)))
    if command:
        lines.append(command)
    return "\n".join(lines)


def _digest_text(message: NotificationDigest) -> str:
    """The summary, then one line per notification (at most ``SLACK_DIGEST_LINES``)."""
    lines = [_clip(slack_escape(message.summary), 400)]
    shown = message.notifications[:SLACK_DIGEST_LINES]
    lines += [f"• {_clip(slack_escape(item.summary), 120)}" for item in shown]
    hidden = len(message.notifications) - len(shown)
    if hidden:
        lines.append(f"and {hidden} more")
    return "\n".join(lines)


def slack_body(message: Message) -> bytes:
    """The message as a Slack incoming webhook posts it: the summary as the fallback
    ``text``, then a ``section`` (summary, reason, command; a digest's summaries) and a
    ``context`` whose first element reads ``slotkeeper · <id>``. Every text is escaped and
    within Slack's 3,000-character limit."""
    if isinstance(message, NotificationDigest):
        section = _digest_text(message)
        about = f"digest of {len(message.notifications)} · {_when(message.at)}"
    else:
        section = _notification_text(message)
        about = f"{message.event} · {_when(message.at)}"
    payload = {
        "text": _clip(slack_escape(message.summary), SLACK_TEXT_LIMIT),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(section, SLACK_TEXT_LIMIT)},
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"slotkeeper · {message.id}"},
                    {"type": "mrkdwn", "text": about},
                ],
            },
        ],
    }
    return _compact(payload)
