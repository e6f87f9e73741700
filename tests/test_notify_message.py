"""The notification message contract: the models, their wire forms and the committed schema.

``docs/schemas/notification.schema.json`` is ``message_schema()`` written out (two-space indent,
trailing newline). After changing the models, regenerate it from the repository's root with::

    .venv/bin/python -c "import json; from slotkeeper.notify.message import message_schema as s; print(json.dumps(s(), indent=2))" > docs/schemas/notification.schema.json

Every example message (one per event, and a digest) validates against the committed file as a
receiver would validate it (``jsonschema``'s Draft202012Validator with its format checker).
"""  # noqa: E501

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from slotkeeper.notify.message import (
    CLOUDEVENTS_CONTENT_TYPE,
    EVENTS,
    SCHEMA_ID,
    SLACK_TEXT_LIMIT,
    ArtifactRef,
    EventName,
    Message,
    Notification,
    NotificationDigest,
    cloudevent_body,
    message_schema,
    slack_body,
    webhook_body,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "schemas" / "notification.schema.json"
REGENERATE = (
    '.venv/bin/python -c "import json; from slotkeeper.notify.message import message_schema as '
    's; print(json.dumps(s(), indent=2))" > docs/schemas/notification.schema.json'
)
AT = datetime(2026, 11, 30, 9, 45, 34, tzinfo=UTC)
API = ArtifactRef(kind="CONTAINER_IMAGE", name="ghcr.io/acme/api", version="v1.5.0")
PREVIOUS = ArtifactRef(
    kind="CONTAINER_IMAGE", name="ghcr.io/acme/api", version="v1.4.2", digest="sha256:" + "a" * 64
)

#: what each event's notification carries besides id, event, at and summary
FIELDS: dict[str, dict[str, Any]] = {
    "deployed": {
        "environment": "production",
        "slot": "api",
        "artifact": API,
        "previous": PREVIOUS,
        "revision": "fa9bce58bac99d1186f00d90881dd7b1e7a3acfd",
        "actor": "ci",
        "action": "a1b2c3",
    },
    "superseded": {"environment": "production", "slot": "api", "artifact": PREVIOUS},
    "decommissioned": {"environment": "staging", "slot": "web", "previous": API},
    "blocked": {
        "environment": "production",
        "slot": "db",
        "reason": "protected: removing it needs --allow-decommission",
        "action": "d4e5f6",
    },
    "awaiting-approval": {
        "environment": "production",
        "slot": "api",
        "artifact": API,
        "command": "slotkeeper approve 1a2b3c4d5e6f",
    },
    "failed": {"target": "github", "reason": "503 Service Unavailable, 5 attempts"},
    "recovered": {"target": "github"},
    "frozen": {"environment": "production", "reason": "frozen until 2027-01-04 00:00:00Z"},
    "key-rotated": {"key": "acme/api/deploy", "actor": "slotkeeper"},
    "manifests-invalid": {
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "reason": "environments/production.yaml:4: unknown field 'slotz'",
    },
    "manifests-fixed": {"revision": "89abcdef0123456789abcdef0123456789abcdef"},
}


def notification(event: EventName, **fields: Any) -> Notification:
    """An example notification of ``event`` with the fields that event carries."""
    values: dict[str, Any] = {
        "id": f"n-{event}-0001",
        "event": event,
        "at": AT,
        "summary": f"production/api {event}",
        **FIELDS[event],
        **fields,
    }
    return Notification(**values)


def digest(count: int = 3) -> NotificationDigest:
    """A digest of ``count`` notifications (events in turn) in production."""
    items = tuple(
        notification(EVENTS[i % len(EVENTS)], id=f"n-{i:04d}", summary=f"change {i}")
        for i in range(count)
    )
    return NotificationDigest(
        id="d-0001",
        at=AT + timedelta(minutes=5),
        environment="production",
        summary=f"production: {count} changes",
        notifications=items,
    )


EXAMPLES: list[Message] = [*(notification(event) for event in EVENTS), digest()]


def example_id(message: Message) -> str:
    """A test id: the event, or ``digest``."""
    return message.event if isinstance(message, Notification) else "digest"


@pytest.fixture(scope="module")
def committed() -> Draft202012Validator:
    """The committed schema as a receiver validates with it: draft 2020-12, formats checked."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(validator: Draft202012Validator, value: Any) -> list[str]:
    """The validator's complaints about ``value``, one line each."""
    return [error.message for error in validator.iter_errors(value)]


# -- the schema ------------------------------------------------------------------------------


def test_the_committed_schema_is_message_schema() -> None:
    """docs/schemas/notification.schema.json is message_schema() as pretty JSON (2-space
    indent, trailing newline); the failure says how to regenerate it."""
    expected = json.dumps(message_schema(), indent=2) + "\n"

    assert SCHEMA_FILE.read_text(encoding="utf-8") == expected, (
        f"the committed schema is stale; regenerate it from the repository root: {REGENERATE}"
    )
    assert REGENERATE in " ".join((__doc__ or "").split())


def test_the_schema_is_a_2020_12_schema_of_either_message() -> None:
    """The schema is valid draft 2020-12 with its $id, oneOf Notification and
    NotificationDigest by wire name, every key required and no other allowed."""
    schema = message_schema()
    Draft202012Validator.check_schema(schema)

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID == "https://slotkeeper.dev/schemas/notification.schema.json"
    assert schema["oneOf"] == [
        {"$ref": "#/$defs/Notification"},
        {"$ref": "#/$defs/NotificationDigest"},
    ]
    for name in ("Notification", "NotificationDigest", "ArtifactRef"):
        definition = schema["$defs"][name]
        assert definition["additionalProperties"] is False
        assert set(definition["required"]) == set(definition["properties"]), name
    assert "apiVersion" in schema["$defs"]["Notification"]["properties"]
    assert "api_version" not in json.dumps(schema)


def test_every_property_is_described() -> None:
    """Each property of each definition has a description (and no title made up from its
    Python name); so do the schema and each definition."""
    schema = message_schema()
    assert schema["description"]
    for name, definition in schema["$defs"].items():
        assert definition["description"], name
        for key, prop in definition["properties"].items():
            assert prop.get("description"), f"{name}.{key} has no description"
            assert "title" not in prop, f"{name}.{key}"


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_every_example_validates_against_the_committed_schema(
    committed: Draft202012Validator, message: Message
) -> None:
    """One notification per event, and a digest: each webhook body is valid."""
    assert errors(committed, json.loads(webhook_body(message))) == []


def test_the_examples_cover_every_event() -> None:
    """EVENTS lists the eleven events of EventName, and there is an example of each."""
    assert len(EVENTS) == 11
    assert {m.event for m in EXAMPLES if isinstance(m, Notification)} == set(EVENTS)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda b: b.pop("reason"), "'reason' is a required property"),
        (lambda b: b.update(extra=1), "Additional properties are not allowed"),
        (lambda b: b.update(at="yesterday"), "is not a 'date-time'"),
        (lambda b: b.update(event="exploded"), "is not one of"),
        (lambda b: b.update(apiVersion="slotkeeper/v2"), "was expected"),
        (lambda b: b.update(id="has spaces"), "does not match"),
        (lambda b: b.update(summary=""), "should be non-empty"),
    ],
)
def test_the_schema_refuses_a_broken_body(
    committed: Draft202012Validator, change: Any, complaint: str
) -> None:
    """A key left out, an unknown key, a time that is not RFC 3339, an unknown event, another
    apiVersion, an id with spaces, an empty summary: each body is invalid."""
    body = json.loads(webhook_body(notification("blocked")))
    change(body)

    found = [
        str(sub.message)
        for error in committed.iter_errors(body)
        for sub in [error, *(error.context or [])]
    ]
    assert any(complaint in line for line in found), found


def test_a_digest_with_no_notification_is_refused(committed: Draft202012Validator) -> None:
    """A digest holds at least one notification, in the model and in the schema."""
    with pytest.raises(ValidationError, match="at least 1 item"):
        NotificationDigest(id="d", at=AT, summary="nothing", notifications=())
    body = json.loads(webhook_body(digest(1)))
    body["notifications"] = []

    assert errors(committed, body) != []


# -- the models ------------------------------------------------------------------------------


def test_the_models_are_frozen_and_refuse_unknown_fields() -> None:
    """A notification cannot be changed once made, and an unknown field is an error."""
    message = notification("deployed")
    with pytest.raises(ValidationError, match="frozen"):
        message.summary = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        notification("deployed", channel="#deploys")
    with pytest.raises(ValidationError, match="event"):
        Notification(id="n-1", event="exploded", at=AT, summary="?")  # type: ignore[arg-type]


def test_times_are_utc_and_written_with_z() -> None:
    """An aware time in another zone is the same moment in UTC; a naive one is taken as UTC;
    both are written RFC 3339 with Z."""
    paris = timezone(timedelta(hours=1))
    shifted = notification("deployed", at=datetime(2026, 11, 30, 10, 45, 34, tzinfo=paris))
    naive = notification("deployed", at=datetime(2026, 11, 30, 9, 45, 34))

    assert shifted.at == naive.at == AT
    assert shifted.at.tzinfo is UTC
    assert json.loads(webhook_body(shifted))["at"] == "2026-11-30T09:45:34.000000Z"


# -- the webhook body ------------------------------------------------------------------------


def test_no_none_key_is_missing_from_the_webhook_body() -> None:
    """Every field is in the body under its wire name, null when unknown, nested ones too."""
    message = notification("recovered", artifact=ArtifactRef(kind="HELM_CHART", name="c"))
    body = json.loads(webhook_body(message))

    assert list(body) == [field.alias or name for name, field in Notification.model_fields.items()]
    assert body["apiVersion"] == "slotkeeper/v1" and body["kind"] == "Notification"
    assert body["environment"] is None and body["previous"] is None and body["command"] is None
    assert body["artifact"] == {"kind": "HELM_CHART", "name": "c", "version": None, "digest": None}
    nested = json.loads(webhook_body(digest(2)))["notifications"][0]
    assert set(nested) == set(body)


def test_the_webhook_body_is_compact_utf8_and_reads_back() -> None:
    """Compact JSON (no spaces between tokens), UTF-8 as is (no \\u escapes), and the model
    reads its own body back unchanged."""
    message = notification("deployed", summary="production/api déployé → v1.5.0")
    raw = webhook_body(message)

    assert b'","' in raw and b'": ' not in raw and b", " not in raw
    assert "déployé → v1.5.0".encode() in raw
    assert Notification.model_validate_json(raw) == message
    assert NotificationDigest.model_validate_json(webhook_body(digest())) == digest()


# -- CloudEvents -----------------------------------------------------------------------------


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_the_cloudevent_has_the_required_attributes_and_valid_data(
    committed: Draft202012Validator, message: Message
) -> None:
    """Structured mode: specversion 1.0, the message's id, the source, dev.slotkeeper.<event>,
    the time, JSON data, and the data is the webhook body, valid against the schema."""
    event = json.loads(cloudevent_body(message, source="https://slotkeeper.example/acme"))
    kind = message.event if isinstance(message, Notification) else "digest"

    assert event["specversion"] == "1.0"
    assert event["id"] == message.id
    assert event["source"] == "https://slotkeeper.example/acme"
    assert event["type"] == f"dev.slotkeeper.{kind}"
    assert event["time"] == json.loads(webhook_body(message))["at"]
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == json.loads(webhook_body(message))
    assert errors(committed, event["data"]) == []
    assert set(event) <= {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    }
    assert CLOUDEVENTS_CONTENT_TYPE == "application/cloudevents+json; charset=utf-8"


@pytest.mark.parametrize(
    ("message", "subject"),
    [
        (notification("deployed"), "production/api"),
        (notification("frozen"), "production"),
        (notification("key-rotated"), "acme/api/deploy"),
        (notification("failed"), None),
        (digest(), "production"),
        (digest().model_copy(update={"environment": None}), None),
    ],
    ids=["env-slot", "env", "key", "none", "digest", "digest-everywhere"],
)
def test_the_cloudevent_subject_says_where(message: Message, subject: str | None) -> None:
    """subject is ENV/SLOT, ENV or the deploy key, and is left out when it happened nowhere in
    particular (a target, a digest across environments)."""
    event = json.loads(cloudevent_body(message, source="/slotkeeper"))

    assert event.get("subject") == subject
    assert ("subject" in event) == (subject is not None)


def test_a_cloudevent_needs_a_source() -> None:
    """An empty source is refused: CloudEvents requires a non-empty one."""
    with pytest.raises(ValueError, match="source"):
        cloudevent_body(notification("deployed"), source="")


# -- Slack -----------------------------------------------------------------------------------


def slack(message: Message) -> tuple[str, str, list[str]]:
    """The fallback text, the section's text and the context's texts of a Slack body."""
    body = json.loads(slack_body(message))
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert context["type"] == "context"
    return body["text"], section["text"]["text"], [e["text"] for e in context["elements"]]


def test_the_slack_body_has_summary_reason_command_and_id() -> None:
    """The fallback text is the summary; the section says summary, reason and the command in
    backticks; the context reads "slotkeeper · <id>"."""
    message = notification("awaiting-approval", reason="a protected slot")
    text, section, context = slack(message)

    assert text == "production/api awaiting-approval"
    assert section.splitlines() == [
        "production/api awaiting-approval",
        "*Reason:* a protected slot",
        "*Run:* `slotkeeper approve 1a2b3c4d5e6f`",
    ]
    assert context[0] == "slotkeeper · n-awaiting-approval-0001"
    assert "awaiting-approval" in context[1] and "2026-11-30 09:45:34 UTC" in context[1]


def test_the_slack_body_escapes_what_slack_requires() -> None:
    """&, < and > are escaped everywhere: <script> reaches Slack as &lt;script&gt;."""
    message = notification(
        "blocked", summary="<script>alert(1)</script> & more", reason="a > b", command="x <y>"
    )
    raw = slack_body(message).decode()
    text, section, _ = slack(message)

    assert "<script>" not in raw and "<y>" not in raw
    assert text == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"
    assert "*Reason:* a &gt; b" in section
    assert "`x &lt;y&gt;`" in section


def test_a_long_reason_is_cut_to_slacks_limit_keeping_the_command() -> None:
    """A 5,000-character reason is cut with "…" so the section stays within 3,000 characters,
    and the command after it is kept whole."""
    message = notification("awaiting-approval", reason="r" * 5000)
    _, section, _ = slack(message)

    assert len(section) <= SLACK_TEXT_LIMIT
    reason_line = section.splitlines()[1]
    assert reason_line.endswith("r…") and len(reason_line) > 2500
    assert section.endswith("*Run:* `slotkeeper approve 1a2b3c4d5e6f`")


def test_cutting_never_splits_an_escape() -> None:
    """A reason of ampersands is cut between two &amp; escapes, never inside one."""
    _, section, _ = slack(notification("blocked", reason="&" * 5000))
    reason = section.splitlines()[1].removeprefix("*Reason:* ")

    assert reason.endswith("&amp;…")
    assert reason.removesuffix("…") == "&amp;" * (len(reason) // 5)


def test_a_long_summary_fits_every_slack_limit() -> None:
    """Whatever the lengths, the fallback text and every text object stay within 3,000."""
    message = notification("blocked", summary="s" * 9000, reason="r" * 9000, command="c" * 9000)
    text, section, context = slack(message)

    assert all(len(t) <= SLACK_TEXT_LIMIT for t in (text, section, *context))
    assert text.endswith("…")


def test_a_digest_lists_at_most_twenty_summaries() -> None:
    """A digest's section is its summary, one line per notification up to 20, then
    "and N more"; its context names the digest's own id."""
    _, section, context = slack(digest(25))
    lines = section.splitlines()

    assert lines[0] == "production: 25 changes"
    assert lines[1:21] == [f"• change {i}" for i in range(20)]
    assert lines[21:] == ["and 5 more"]
    assert context[0] == "slotkeeper · d-0001"
    _, short, _ = slack(digest(2))
    assert short.splitlines() == ["production: 2 changes", "• change 0", "• change 1"]
