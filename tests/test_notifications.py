"""Notifications on transitions, through the real entry points: `Notifier` documents in the
operator's targets file, `slotkeeper apply` and the reconcile pipeline, sending to the loopback
fakes of a webhook (every body checked against the committed JSON Schema) and of Slack.

One message per transition: a deploy is one `deployed`, a held removal one `awaiting-approval`
however many applies see it held, a target failing for a day one `failed` and one `recovered`;
filters by environment and event; a digest per environment; a 429 waited out; a revoked Slack
webhook stops the sending and says so; no credential in any body or log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stamina

from slotkeeper.keys import SecretSink
from slotkeeper.ledger import open_ledger
from slotkeeper.notify.pipeline import Notifications
from slotkeeper.plan import PlanOptions
from slotkeeper.reconcile import RunOptions, reconcile, snapshot
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhook
from tests.helpers import (
    Run,
    environment,
    image,
    notifier_document,
    operator_targets,
    target_document,
    write_manifests,
    write_targets,
)

Sk = Callable[..., Run]
SIGNING_KEY = "whsec-notify-0123456789"


@pytest.fixture
def slack_url(slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Slack incoming webhook's URL in a credential file (the URL is the credential)."""
    path = tmp_path_factory.mktemp("creds") / "slack-url"
    path.write_text(slack.add_hook("deploys") + "\n")
    yield path


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WEBHOOK_SIGNING_KEY", SIGNING_KEY)
    return SIGNING_KEY


def both(webhook: FakeWebhook, slack_url: Path, **slack_spec: Any) -> list[dict[str, Any]]:
    """A JSON webhook for every event (signed when the fake checks signatures), and a Slack
    channel with ``slack_spec``."""
    signed = {"secret": {"env": "WEBHOOK_SIGNING_KEY"}} if webhook.secret else {}
    return [
        notifier_document("hooks", type="webhook", url=webhook.url, **signed),
        notifier_document("team", type="slack", url={"file": str(slack_url)}, **slack_spec),
    ]


def slack_events(slack: FakeSlack) -> list[str]:
    """The event each Slack message reports (its context line: ``<event> · <time>``)."""
    found = []
    for body in slack.messages():
        context = body["blocks"][-1]["elements"]
        found.append(context[1]["text"].split(" · ")[0])
    return found


def test_a_notifier_belongs_to_the_operator_and_is_checked(sk: Sk, workdir: Path) -> None:
    """A Notifier among the manifests is refused with its file and line; in the targets file, an
    inline Slack URL (a credential), an unknown event and an http:// webhook elsewhere than
    loopback are errors naming the field, exit 1."""
    write_manifests(
        workdir / "m",
        environment("production", {"api": image()}),
        notifier_document("team", type="webhook", url="https://hooks.example.com/x"),
    )
    inside = sk("validate", "-m", "m")
    assert inside.code == 1
    assert "envs.yaml:" in inside.err and "Notifier documents belong to the operator" in inside.err

    write_manifests(workdir / "m", environment("production", {"api": image()}))
    write_targets(
        notifier_document(
            "a", type="slack", url="https://hooks.slack.com/services/T/B/secretsecret"
        ),
        notifier_document(
            "b", type="webhook", url="https://hooks.example.com/x", events=["deploy"]
        ),
        notifier_document("c", type="webhook", url="http://hooks.example.com/x"),
    )
    bad = sk("validate", "-m", "m")
    assert bad.code == 1, bad.out
    assert "spec.url" in bad.err and "inline secrets are not allowed" in bad.err
    assert "spec.events[0]" in bad.err
    assert "plain http:// is only allowed to loopback" in bad.err
    assert "sec4et" not in bad.err + bad.out


@pytest.mark.parametrize("fmt", ["json", "cloudevents"])
def test_apply_tells_each_notifier_what_it_asked_for_once(
    sk: Sk,
    workdir: Path,
    webhook: FakeWebhook,
    slack: FakeSlack,
    slack_url: Path,
    signing_key: str,
    fmt: str,
) -> None:
    """The first apply with notifiers tells the deploys it makes (signed, schema-valid bodies,
    plain or CloudEvents); an apply that changes nothing sends nothing; a new version is one
    `superseded` and one `deployed`; Slack, filtered to production deploys, hears only those;
    the Slack URL is in no output."""
    webhook.secret = signing_key
    documents = both(webhook, slack_url, environments=["production"], events=["deployed"])
    documents[0]["spec"]["format"] = fmt
    write_targets(*documents)
    write_manifests(
        workdir / "m",
        environment("production", {"api": image()}),
        environment("staging", {"api": image()}),
    )
    first = sk("apply", "--yes", "-m", "m")
    assert first.code == 0, first.err
    assert sorted(m["environment"] for m in webhook.by_event("deployed")) == [
        "production",
        "staging",
    ]
    assert slack_events(slack) == ["deployed"]
    assert "production/api deployed ghcr.io/acme/api v1" in slack.messages()[0]["text"]

    assert sk("apply", "--yes", "-m", "m").code == 0
    assert len(webhook.ids()) == 2 and len(slack.messages()) == 1

    write_manifests(
        workdir / "m",
        environment("production", {"api": image(version="v2")}),
        environment("staging", {"api": image()}),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    superseded = webhook.by_event("superseded")
    assert [(m["slot"], m["previous"]["version"]) for m in superseded] == [("api", "v1")]
    assert len(webhook.by_event("deployed")) == 3
    assert slack_events(slack) == ["deployed", "deployed"]
    assert webhook.duplicates() == {} and slack.duplicates() == {}
    hook_secret = slack_url.read_text().strip().rsplit("/", 1)[-1]
    for run in (first,):
        assert hook_secret not in run.out + run.err


def test_a_held_removal_is_one_awaiting_approval_message_with_the_command(
    sk: Sk, workdir: Path, webhook: FakeWebhook, slack: FakeSlack, slack_url: Path
) -> None:
    """A protected removal held at three applies is one `awaiting-approval` message carrying
    the approve command; approving it is one `decommissioned` naming the approver."""
    write_targets(*both(webhook, slack_url))
    two = {"api": image(), "web": image("ghcr.io/acme/web"), "db": image("ghcr.io/acme/db")}
    write_manifests(workdir / "m", environment("production", two, protected=True))
    assert sk("apply", "--yes", "-m", "m").code == 0
    write_manifests(
        workdir / "m", environment("production", {"api": image(), "db": two["db"]}, protected=True)
    )
    for _ in range(3):
        held = sk("apply", "--yes", "-m", "m")
        assert held.code == 0, held.err
    [waiting] = webhook.by_event("awaiting-approval")
    assert waiting["slot"] == "web" and waiting["command"].startswith("slotkeeper approve ")
    assert "slotkeeper approve" in slack.messages()[-1]["blocks"][0]["text"]["text"]

    assert sk("approve", "production/web").code == 0
    assert sk("apply", "--yes", "-m", "m").code == 0
    [gone] = webhook.by_event("decommissioned")
    assert gone["slot"] == "web" and "approved by" in gone["summary"]
    assert len(webhook.by_event("awaiting-approval")) == 1


class HandClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_a_day_of_a_target_failing_every_five_minutes_is_one_failed_and_one_recovered(
    workdir: Path,
    gh: FakeGitHub,
    webhook: FakeWebhook,
    slack: FakeSlack,
    slack_url: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """24 simulated hours of reconciles every 5 minutes (a test clock) while GitHub answers
    every write with a 5xx, then one after it works again: each channel hears exactly one
    `failed` and one `recovered` (Flux's notification-controller#445 was one per retry)."""
    monkeypatch.setenv("GITHUB_TOKEN", gh.token)
    write_targets(
        target_document(
            "github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"}
        ),
        *both(webhook, slack_url, events=["failed", "recovered"]),
    )
    slots = {"api": {"artifact": image(), "ref": "main"}}
    document = environment("production", {}, repository="acme/web", targets=["github"])
    document["spec"]["slots"] = slots
    write_manifests(workdir / "m", document)
    clock = HandClock(datetime(2026, 11, 30, 0, 0, tzinfo=UTC))
    ledger = open_ledger(f"sqlite:///{workdir / 'ledger.db'}", now=clock())
    operator = operator_targets()
    notifications = Notifications(ledger, operator.notifiers, clock=clock)
    gh.error_rate = 1.0
    gh.knob_methods = {"POST", "PATCH", "PUT", "DELETE"}

    def once() -> None:
        reconcile(
            snapshot(workdir / "m", operator),
            ledger,
            options=PlanOptions(),
            clock=clock,
            actor="test",
            sink=SecretSink(workdir / "secrets"),
            run=RunOptions(),
            notifications=notifications,
        )
        clock.now += timedelta(minutes=5)

    with stamina.set_testing(True, attempts=2):
        for _ in range(24 * 12):
            once()
        gh.error_rate = 0.0
        once()
        once()
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while ledger.due_messages(now=clock(), limit=10) and datetime.now(UTC) < deadline:
        notifications.drain()  # Slack's pacing (one a second) is in real time
    ledger.close()
    notifications.close()
    told = [m["event"] for m in webhook.messages()]
    assert told.count("failed") == 1 and told.count("recovered") == 1
    assert told.index("failed") < told.index("recovered")
    [failed] = webhook.by_event("failed")
    assert failed["target"] == "github" and failed["environment"] == "production"
    assert slack_events(slack) == ["failed", "recovered"]


def test_a_digest_gathers_an_environment_into_one_message(
    sk: Sk, workdir: Path, webhook: FakeWebhook
) -> None:
    """With `digest: 5m`, three deploys of one apply are one NotificationDigest once the
    window has passed (nothing before), listing all three."""
    write_targets(notifier_document("hooks", type="webhook", url=webhook.url, digest="5m"))
    write_manifests(
        workdir / "m",
        environment("production", {n: image(f"ghcr.io/acme/{n}") for n in ("a", "b", "c")}),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert webhook.messages() == []
    state = f"sqlite:///{workdir / '.slotkeeper' / 'state.db'}"
    later = datetime.now(UTC) + timedelta(minutes=6)
    ledger = open_ledger(state, now=later)
    notifications = Notifications(ledger, operator_targets().notifiers, clock=lambda: later)
    assert notifications.drain() == 3
    notifications.close()
    ledger.close()
    [digest] = webhook.messages()
    assert digest["kind"] == "NotificationDigest"
    assert sorted(n["slot"] for n in digest["notifications"]) == ["a", "b", "c"]


def test_a_rate_limit_is_waited_out_and_a_revoked_slack_webhook_stops_the_sending(
    sk: Sk,
    workdir: Path,
    webhook: FakeWebhook,
    slack: FakeSlack,
    slack_url: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A webhook answering 429 with Retry-After gets the message again after the wait, once;
    a Slack webhook revoked (404 no_service) is sent nothing more, its messages are given up
    with the reason, and the log says so without the URL."""
    write_targets(*both(webhook, slack_url))
    webhook.retry_after_next(1, seconds=1)
    slack.revoke(slack_url.read_text().strip(), "no_service")
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    applied = sk("apply", "--yes", "-m", "m")
    assert applied.code == 0
    # the apply waited out the Retry-After (within its few seconds) and sent it once more
    assert [request.status for request in webhook.requests] == [429, 200]
    assert [m["event"] for m in webhook.messages()] == ["deployed"]
    ledger = open_ledger(f"sqlite:///{workdir / '.slotkeeper' / 'state.db'}", now=datetime.now(UTC))
    outbox = {m.notifier: m for m in ledger.outbox()}
    ledger.close()
    assert outbox["hooks"].sent_at is not None
    assert outbox["team"].failed_at is not None
    assert "no_service" in (outbox["team"].last_error or "")
    logged = capsys.readouterr()
    hook_secret = slack_url.read_text().strip().rsplit("/", 1)[-1]
    assert "notify.gone" in applied.err + applied.out + logged.err + logged.out
    assert hook_secret not in applied.err + applied.out + logged.err + logged.out


def test_without_notifiers_nothing_is_written(sk: Sk, workdir: Path) -> None:
    """No Notifier configured: applies write no notification state and no outbox row."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    ledger = open_ledger(f"sqlite:///{workdir / '.slotkeeper' / 'state.db'}", now=datetime.now(UTC))
    assert ledger.notify_state() is None and ledger.outbox() == []
    ledger.close()


def test_a_webhook_is_reached_only_where_the_operator_allows(
    sk: Sk, workdir: Path, webhook: FakeWebhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With loopback no longer allowed (the egress policy), the webhook on loopback is never
    connected to: the message waits in the outbox, its error in fixed words."""
    monkeypatch.delenv("SLOTKEEPER_EGRESS_ALLOW")
    write_targets(notifier_document("hooks", type="webhook", url=webhook.url))
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert webhook.requests == []
    ledger = open_ledger(f"sqlite:///{workdir / '.slotkeeper' / 'state.db'}", now=datetime.now(UTC))
    [queued] = ledger.outbox()
    ledger.close()
    assert queued.sent_at is None and queued.last_error == "refused by slotkeeper"
