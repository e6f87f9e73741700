"""The notification fakes, exercised over real HTTP with httpx: the webhook receiver and Slack.

``FakeWebhook`` checks each body against the committed notification schema (plain JSON, or the
``data`` of a structured-mode CloudEvent) and, with a secret, its signature; ``FakeSlack``
answers as Slack's incoming webhooks do (``ok``, ``invalid_payload``, ``no_text``,
``invalid_blocks``, ``no_service``, ``channel_is_archived``, ``rate_limited``). The ``webhook``
and ``slack`` fixtures fail a test that leaves a violation behind, so a test that sends a bad
body on purpose checks ``violations`` and clears it.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from slotkeeper.notify.message import (
    CLOUDEVENTS_CONTENT_TYPE,
    EVENTS,
    JSON_CONTENT_TYPE,
    Message,
    Notification,
    NotificationDigest,
    cloudevent_body,
    slack_body,
    webhook_body,
)
from tests.fakes.server import Incoming, Reply
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import SIGNATURE_HEADER, FakeWebhook, signature

AT = datetime(2026, 11, 30, 9, 45, 34, tzinfo=UTC)
JSON_HEADERS = {"content-type": JSON_CONTENT_TYPE}
CE_HEADERS = {"content-type": CLOUDEVENTS_CONTENT_TYPE}
SOURCE = "https://slotkeeper.example/acme"


def note(id_: str = "n-0001", event: str = "deployed", **fields: Any) -> Notification:
    """A notification of ``event`` in production/api."""
    values: dict[str, Any] = {
        "id": id_,
        "event": event,
        "at": AT,
        "summary": f"production/api {event}",
        "environment": "production",
        "slot": "api",
        **fields,
    }
    return Notification(**values)


def digest(*items: Notification, id_: str = "d-0001") -> NotificationDigest:
    """A digest of ``items`` in production."""
    return NotificationDigest(
        id=id_, at=AT, environment="production", summary="production: changes", notifications=items
    )


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A plain httpx client (the fakes take whole URLs)."""
    with httpx.Client(timeout=5) as http:
        yield http


def send(client: httpx.Client, hook: FakeWebhook, message: Message) -> httpx.Response:
    """POST the message's webhook body as application/json."""
    return client.post(hook.url, content=webhook_body(message), headers=JSON_HEADERS)


# -- the webhook: bodies -----------------------------------------------------------------------


def test_a_valid_message_is_accepted_and_kept(client: httpx.Client, webhook: FakeWebhook) -> None:
    """A webhook body answers 200 {"ok": true}; messages() and messages_raw() hold it, ids()
    its id."""
    response = send(client, webhook, note())

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert webhook.messages() == webhook.messages_raw() == [json.loads(webhook_body(note()))]
    assert webhook.ids() == ["n-0001"]
    assert webhook.duplicates() == {}
    assert webhook.url == f"{webhook.base_url}/hook"


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_is_accepted(client: httpx.Client, webhook: FakeWebhook, event: str) -> None:
    """The fake accepts a notification of each event, plain and as a CloudEvent."""
    message = note(event=event)
    plain = send(client, webhook, message)
    wrapped = client.post(
        webhook.url, content=cloudevent_body(message, source=SOURCE), headers=CE_HEADERS
    )

    assert plain.status_code == wrapped.status_code == 200
    assert webhook.messages()[0] == webhook.messages()[1]


@pytest.mark.parametrize("status", [202, 204])
def test_the_answer_status_is_configurable(
    client: httpx.Client, webhook: FakeWebhook, status: int
) -> None:
    """status_code 202 answers {"ok": true} with it, 204 answers with no body; both deliver."""
    webhook.status_code = status
    response = send(client, webhook, note())

    assert response.status_code == status
    assert response.content == (b"" if status == 204 else b'{"ok": true}')
    assert webhook.ids() == ["n-0001"]


def body_of(message: Message) -> dict[str, Any]:
    """The message's webhook body as a JSON object."""
    parsed: dict[str, Any] = json.loads(webhook_body(message))
    return parsed


def without(key: str) -> dict[str, Any]:
    """A notification body with ``key`` left out."""
    body = body_of(note())
    del body[key]
    return body


@pytest.mark.parametrize(
    ("content", "content_type", "complaint"),
    [
        (json.dumps(without("reason")).encode(), JSON_CONTENT_TYPE, "'reason' is a required"),
        (json.dumps({**body_of(note()), "channel": "#x"}).encode(), JSON_CONTENT_TYPE, "channel"),
        (json.dumps({**body_of(note()), "at": "today"}).encode(), JSON_CONTENT_TYPE, "date-time"),
        (json.dumps({**body_of(note()), "event": "x"}).encode(), JSON_CONTENT_TYPE, "'x'"),
        (b"{not json", JSON_CONTENT_TYPE, "not UTF-8 JSON"),
        (webhook_body(note()), "text/plain", "content-type"),
        (webhook_body(note()), "application/json; charset=latin-1", "charset"),
        (json.dumps([1, 2]).encode(), JSON_CONTENT_TYPE, "body"),
        (json.dumps({**body_of(note()), "kind": "Alert"}).encode(), JSON_CONTENT_TYPE, "neither"),
    ],
    ids=[
        "missing-key",
        "unknown-key",
        "bad-time",
        "bad-event",
        "not-json",
        "text",
        "latin-1",
        "list",
        "unknown-kind",
    ],
)
def test_an_invalid_body_is_400_and_a_violation(
    client: httpx.Client,
    webhook: FakeWebhook,
    content: bytes,
    content_type: str,
    complaint: str,
) -> None:
    """A body the schema refuses, not JSON, another content type or charset: 400 naming the
    fault, appended to violations, nothing delivered."""
    response = client.post(webhook.url, content=content, headers={"content-type": content_type})

    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert complaint in response.json()["error"]
    [violation] = webhook.violations
    assert complaint in violation
    assert webhook.messages() == []
    webhook.violations.clear()


def test_a_cloudevent_is_checked_and_its_data_kept(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """A structured-mode CloudEvent is accepted; messages() is its data, messages_raw() the
    whole event."""
    sent = cloudevent_body(note(), source=SOURCE)
    response = client.post(webhook.url, content=sent, headers=CE_HEADERS)

    assert response.status_code == 200
    assert webhook.messages() == [body_of(note())]
    [raw] = webhook.messages_raw()
    assert raw == json.loads(sent)
    assert (raw["specversion"], raw["type"], raw["subject"]) == (
        "1.0",
        "dev.slotkeeper.deployed",
        "production/api",
    )
    assert webhook.ids() == ["n-0001"]


def event(**changes: Any) -> dict[str, Any]:
    """A valid CloudEvent of a notification, with ``changes`` (None removes an attribute)."""
    envelope: dict[str, Any] = json.loads(cloudevent_body(note(), source=SOURCE))
    for name, value in changes.items():
        if value is None:
            envelope.pop(name, None)
        else:
            envelope[name] = value
    return envelope


@pytest.mark.parametrize(
    ("envelope", "complaint"),
    [
        (event(specversion="0.3"), "specversion"),
        (event(source=None), "source: required"),
        (event(id=""), "id: required"),
        (event(type=None), "type: required"),
        (event(time="30/11/2026"), "RFC 3339"),
        (event(subject=""), "subject"),
        (event(datacontenttype="text/plain"), "datacontenttype"),
        (event(traceParent="00-abc"), "attribute name"),
        (event(data=None), "data: required"),
        (event(data=None, data_base64="e30="), "data_base64"),
        (event(data=without("at")), "'at' is a required"),
        (event(id="n-other"), "is not the message's id"),
        (event(type="dev.slotkeeper.failed"), "'dev.slotkeeper.deployed'"),
        ([event()], "JSON object"),
    ],
    ids=[
        "specversion",
        "no-source",
        "empty-id",
        "no-type",
        "time",
        "empty-subject",
        "datacontenttype",
        "attribute-name",
        "no-data",
        "data-base64",
        "invalid-data",
        "other-id",
        "other-type",
        "batch",
    ],
)
def test_an_invalid_cloudevent_is_400_and_a_violation(
    client: httpx.Client, webhook: FakeWebhook, envelope: Any, complaint: str
) -> None:
    """Each broken CloudEvents rule (or slotkeeper's: id and type from the message) answers
    400 naming it and is a violation; nothing is delivered."""
    response = client.post(webhook.url, content=json.dumps(envelope), headers=CE_HEADERS)

    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert any(complaint in violation for violation in webhook.violations)
    assert webhook.messages() == []
    webhook.violations.clear()


def test_a_cloudevent_without_optional_attributes_is_accepted(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """time, subject and datacontenttype may be left out (JSON is then assumed)."""
    envelope = event(time=None, subject=None, datacontenttype=None)
    response = client.post(webhook.url, content=json.dumps(envelope), headers=CE_HEADERS)

    assert response.status_code == 200


# -- the webhook: signature, routes, knobs ---------------------------------------------------


def test_with_a_secret_every_post_must_be_signed(client: httpx.Client) -> None:
    """With a secret, the HMAC-SHA256 of the raw body is required: missing, wrong or of
    another body is 401 and a violation; the right one is accepted. No bearer token is
    needed."""
    secret = "s3cret"
    raw = webhook_body(note())
    with FakeWebhook(secret=secret) as hook:
        good = client.post(
            hook.url,
            content=raw,
            headers={**JSON_HEADERS, SIGNATURE_HEADER: signature(raw, secret)},
        )
        missing = client.post(hook.url, content=raw, headers=JSON_HEADERS)
        wrong = client.post(
            hook.url, content=raw, headers={**JSON_HEADERS, SIGNATURE_HEADER: signature(raw, "x")}
        )
        other = webhook_body(note("n-0002"))
        replayed = client.post(
            hook.url,
            content=other,
            headers={**JSON_HEADERS, SIGNATURE_HEADER: signature(raw, secret)},
        )

        assert good.status_code == 200
        assert missing.status_code == wrong.status_code == replayed.status_code == 401
        assert missing.json() == {"ok": False, "error": f"no {SIGNATURE_HEADER} header"}
        assert len(hook.violations) == 3
        assert hook.ids() == ["n-0001"]
    assert signature(raw, secret).startswith("sha256=") and len(signature(raw, secret)) == 71


def test_other_paths_and_methods_are_404_and_405(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """Only POST on the hook's path: elsewhere 404, another method 405, neither a violation;
    the path is configurable."""
    assert client.post(f"{webhook.base_url}/other", json={}).status_code == 404
    assert client.get(webhook.url).status_code == 405
    with FakeWebhook(path="/notify/slotkeeper") as hook:
        assert hook.url.endswith("/notify/slotkeeper")
        assert send(client, hook, note()).status_code == 200
        assert client.post(f"{hook.base_url}/hook", json={}).status_code == 404
    assert webhook.violations == []


def test_fail_next_answers_errors_then_delivers(client: httpx.Client, webhook: FakeWebhook) -> None:
    """fail_next(2) answers 503 twice without delivering, fail_next(1, 500) once more, then
    the message goes through."""
    webhook.fail_next(2)
    webhook.fail_next(1, status=500)
    answers = [send(client, webhook, note()).status_code for _ in range(4)]

    assert answers == [503, 503, 500, 200]
    assert webhook.ids() == ["n-0001"]
    assert webhook.duplicates() == {}


def test_retry_after_next_answers_429_with_retry_after(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """retry_after_next(1, 7) answers 429 with Retry-After: 7, delivering nothing, once."""
    webhook.retry_after_next(1, 7)
    limited = send(client, webhook, note())
    accepted = send(client, webhook, note())

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert accepted.status_code == 200
    assert webhook.ids() == ["n-0001"]


def test_a_dropped_answer_makes_a_retry_a_duplicate(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """drop_rate 1.0: the message is delivered but the sender sees a transport error; its
    retry is delivered again, which duplicates() counts."""
    webhook.drop_rate = 1.0
    with pytest.raises(httpx.TransportError):
        send(client, webhook, note())
    webhook.drop_rate = 0.0
    send(client, webhook, note())
    send(client, webhook, note("n-0002"))

    assert webhook.ids() == ["n-0001", "n-0001", "n-0002"]
    assert webhook.duplicates() == {"n-0001": 2}


def test_the_error_knob_answers_5xx_and_delivers_nothing(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """error_rate 1.0 answers 500, 502 or 503 before the body is looked at."""
    webhook.error_rate = 1.0
    answers = {send(client, webhook, note()).status_code for _ in range(10)}

    assert answers <= {500, 502, 503} and len(answers) > 1
    assert webhook.messages() == []


def test_by_event_flattens_digests_and_ids_are_the_digests(
    client: httpx.Client, webhook: FakeWebhook
) -> None:
    """by_event finds a notification alone or inside a digest; ids() has the digest's own
    id, not those of its notifications."""
    send(client, webhook, note("n-1", "blocked", reason="protected"))
    send(client, webhook, digest(note("n-2"), note("n-3", "blocked", reason="frozen")))

    assert webhook.ids() == ["n-1", "d-0001"]
    assert [n["id"] for n in webhook.by_event("blocked")] == ["n-1", "n-3"]
    assert [n["id"] for n in webhook.by_event("deployed")] == ["n-2"]
    assert webhook.by_event("failed") == []


def test_a_bug_in_the_webhook_fake_answers_500_and_fails_on_exit(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the route is a 500 for the sender and an AssertionError at exit."""
    fake = FakeWebhook()

    def broken(incoming: Incoming) -> Reply:
        raise KeyError("oops")

    monkeypatch.setattr(fake, "_route", broken)
    with pytest.raises(AssertionError, match="the fake itself failed"), fake:
        response = send(client, fake, note())
        assert response.status_code == 500
        assert "KeyError" in response.json()["error"]


# -- Slack: hooks and bodies -----------------------------------------------------------------

HOOK_URL = re.compile(r"http://127\.0\.0\.1:\d+/services/T0001/B0001/[A-Za-z0-9]{24}")


def post_slack(client: httpx.Client, url: str, message: Message) -> httpx.Response:
    """POST the message's Slack body to a hook."""
    return client.post(url, content=slack_body(message), headers=JSON_HEADERS)


def test_hooks_are_full_urls_with_a_secret_each(slack: FakeSlack) -> None:
    """add_hook returns base_url/services/T0001/B0001/<24 random characters>, another each
    time, and remembers its name."""
    deploys, alerts = slack.add_hook("#deploys"), slack.add_hook("#alerts")

    assert HOOK_URL.fullmatch(deploys) and HOOK_URL.fullmatch(alerts)
    assert deploys.startswith(slack.base_url) and deploys != alerts
    assert slack.hook_name(deploys) == "#deploys"


def test_a_message_is_delivered_to_its_hook(client: httpx.Client, slack: FakeSlack) -> None:
    """A slotkeeper Slack body answers 200 "ok" in plain text; messages(url) are per hook;
    ids() reads the context block."""
    deploys, alerts = slack.add_hook("#deploys"), slack.add_hook("#alerts")
    response = post_slack(client, deploys, note())
    post_slack(client, alerts, note("n-0002", "failed", target="github"))

    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")
    assert slack.messages(deploys) == [json.loads(slack_body(note()))]
    assert len(slack.messages()) == 2
    assert slack.ids() == ["n-0001", "n-0002"]
    assert slack.ids(alerts) == ["n-0002"]


def test_every_event_and_a_long_reason_fit_slacks_limits(
    client: httpx.Client, slack: FakeSlack
) -> None:
    """slack_body of each event, and of a 5,000-character reason, is accepted as valid
    blocks (with room in the rate limit)."""
    slack.burst = 100
    url = slack.add_hook("#deploys")
    messages = [note(f"n-{i}", event) for i, event in enumerate(EVENTS)]
    messages.append(note("n-long", "blocked", reason="<" * 5000, command="slotkeeper approve x"))
    answers = {post_slack(client, url, message).status_code for message in messages}

    assert answers == {200}
    assert slack.ids() == [m.id for m in messages]


def test_a_digest_counts_its_own_id(client: httpx.Client, slack: FakeSlack) -> None:
    """The id of a digest's Slack message is the digest's, whatever it holds."""
    url = slack.add_hook("#deploys")
    post_slack(client, url, digest(note("n-1"), note("n-2"), note("n-3"), id_="d-42"))

    assert slack.ids() == ["d-42"]


def test_the_same_message_twice_is_a_duplicate(client: httpx.Client, slack: FakeSlack) -> None:
    """Slack does not deduplicate: a message sent twice is delivered twice, which
    duplicates() counts."""
    url = slack.add_hook("#deploys")
    for message in (note(), note(), note("n-0002")):
        assert post_slack(client, url, message).status_code == 200

    assert slack.duplicates() == {"n-0001": 2}
    assert slack.duplicates(url) == {"n-0001": 2}


def test_a_plain_text_message_is_delivered(client: httpx.Client, slack: FakeSlack) -> None:
    """text alone is enough (no blocks); it carries no slotkeeper id."""
    url = slack.add_hook("#deploys")
    response = client.post(url, json={"text": "hello"})

    assert response.text == "ok"
    assert slack.messages() == [{"text": "hello"}]
    assert slack.ids() == []


SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}


@pytest.mark.parametrize(
    ("content", "word"),
    [
        (b"payload=text", "invalid_payload"),
        (b"[1, 2]", "invalid_payload"),
        (json.dumps({"text": 5}).encode(), "invalid_payload"),
        (b"{}", "no_text"),
        (json.dumps({"text": ""}).encode(), "no_text"),
        (json.dumps({"blocks": []}).encode(), "no_text"),
        (json.dumps({"text": "x", "blocks": "section"}).encode(), "invalid_blocks"),
        (json.dumps({"blocks": [{"text": "no type"}]}).encode(), "invalid_blocks"),
        (json.dumps({"blocks": ["section"]}).encode(), "invalid_blocks"),
        (json.dumps({"blocks": [{"type": "carousel"}]}).encode(), "invalid_blocks"),
        (
            json.dumps(
                {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
            ).encode(),
            "invalid_blocks",
        ),
        (json.dumps({"blocks": [{"type": "context", "elements": []}]}).encode(), "invalid_blocks"),
        (json.dumps({"blocks": [SECTION] * 51}).encode(), "invalid_blocks"),
    ],
    ids=[
        "form",
        "list",
        "text-number",
        "empty",
        "empty-text",
        "no-blocks",
        "blocks-string",
        "no-type",
        "block-string",
        "unknown-type",
        "long-section",
        "empty-context",
        "51-blocks",
    ],
)
def test_a_malformed_message_is_400_with_slacks_word(
    client: httpx.Client, slack: FakeSlack, content: bytes, word: str
) -> None:
    """Not JSON, no text, bad blocks: 400 with Slack's plain-text word, a violation, nothing
    delivered."""
    url = slack.add_hook("#deploys")
    slack.burst = 100
    response = client.post(url, content=content, headers=JSON_HEADERS)

    assert response.status_code == 400
    assert response.text == word
    [violation] = slack.violations
    assert word in violation
    assert slack.messages() == []
    slack.violations.clear()


# -- Slack: revoked hooks, methods, the rate limit -------------------------------------------


@pytest.mark.parametrize(("reason", "status"), [("no_service", 404), ("channel_is_archived", 410)])
def test_a_revoked_hook_answers_its_reason(
    client: httpx.Client, slack: FakeSlack, reason: str, status: int
) -> None:
    """After revoke(url, reason), POSTs answer 404 no_service or 410 channel_is_archived in
    plain text and are not delivered; other hooks still work."""
    url, other = slack.add_hook("#old"), slack.add_hook("#new")
    post_slack(client, url, note())
    slack.revoke(url, reason)
    response = post_slack(client, url, note("n-0002"))

    assert response.status_code == status
    assert response.text == reason
    assert post_slack(client, other, note("n-0003")).status_code == 200
    assert slack.ids() == ["n-0001", "n-0003"]
    with pytest.raises(ValueError, match="reason"):
        slack.revoke(url, "gone")


def test_an_unknown_hook_or_method(client: httpx.Client, slack: FakeSlack) -> None:
    """A hook never added is 404 no_service; GET on a hook is 405; neither is delivered."""
    url = slack.add_hook("#deploys")
    unknown = client.post(f"{slack.base_url}/services/T0001/B0001/{'x' * 24}", json={"text": "a"})

    assert (unknown.status_code, unknown.text) == (404, "no_service")
    assert client.get(url).status_code == 405
    assert slack.messages() == []


def test_after_the_burst_slack_answers_429_with_retry_after(
    client: httpx.Client, slack: FakeSlack
) -> None:
    """By the wall clock: three messages at once go through, the fourth is 429 rate_limited
    with Retry-After: 1 and is not delivered; another hook has a budget of its own."""
    url, other = slack.add_hook("#deploys"), slack.add_hook("#alerts")
    answers = [post_slack(client, url, note(f"n-{i}")) for i in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].text == "rate_limited"
    assert answers[3].headers["retry-after"] == "1"
    assert slack.rate_limited_count == 1
    assert slack.ids() == ["n-0", "n-1", "n-2"]
    assert post_slack(client, other, note("n-9")).status_code == 200


def test_the_window_slides_by_the_fakes_clock(client: httpx.Client) -> None:
    """With a clock the test moves: 3 (burst) within 3 s (burst / per_second) of each other,
    then a fourth only once the oldest is 3 s old; per_second and burst are knobs, and
    retry_after None tells the seconds until the window admits again."""
    now = [1000.0]
    with FakeSlack(clock=lambda: now[0]) as fake:
        url = fake.add_hook("#deploys")

        def at(moment: float, id_: str) -> int:
            now[0] = moment
            return post_slack(client, url, note(id_)).status_code

        assert [at(1000.0, "a"), at(1001.0, "b"), at(1002.0, "c")] == [200, 200, 200]
        assert at(1002.9, "d") == 429
        assert at(1003.0, "e") == 200  # "a" left the window
        assert at(1003.5, "f") == 429
        assert fake.ids() == ["a", "b", "c", "e"]
        assert fake.rate_limited_count == 2

        fake.retry_after = None
        now[0] = 1003.6
        response = post_slack(client, url, note("g"))
        assert response.headers["retry-after"] == "1"  # "b" leaves at 1004.0
        fake.per_second, fake.burst = 10.0, 5  # a new limit starts with an empty window
        assert [at(1003.7, str(i)) for i in range(6)] == [200] * 5 + [429]


def test_a_bug_in_the_slack_fake_answers_500_and_fails_on_exit(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the route is a 500 for the sender and an AssertionError at exit."""
    fake = FakeSlack()

    def broken(incoming: Incoming) -> Reply:
        raise KeyError("oops")

    monkeypatch.setattr(fake, "_route", broken)
    with pytest.raises(AssertionError, match="the fake itself failed"), fake:
        response = post_slack(client, fake.add_hook("#deploys"), note())
        assert response.status_code == 500
        assert "KeyError" in response.text


def test_a_request_cut_short_is_never_handled(client: httpx.Client) -> None:
    """A client killed mid-request (a daemon SIGKILLed while it sends): the fake, like any HTTP
    server, drops a request whose body did not all come: no message and no violation are
    recorded for it, and the next request is served as ever."""
    body = webhook_body(note())
    with FakeWebhook() as hook:
        host, port = hook.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(
                b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
        assert send(client, hook, note(id_="n-0002")).status_code == 200
        time.sleep(0.2)  # the cut connection's thread has read to its end by now
        assert hook.violations == []
        assert hook.ids() == ["n-0002"]
