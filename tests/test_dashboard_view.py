"""The dashboard's documents and pages, in-process over a real SQLite ledger."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slotkeeper.dashboard.pages import Dashboard, _ago, _refresh
from slotkeeper.dashboard.view import last_apply
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.manifests import load_manifests
from slotkeeper.web.app import answer
from tests.conftest import postgres_schema_url
from tests.helpers import Run, deploy_key, environment, image, write_manifests

Sk = Callable[..., Run]


@pytest.fixture
def ledger(sk: Sk, workdir: Path) -> Iterator[Ledger]:
    write_manifests(
        workdir / "m",
        environment(
            "production",
            {"api": image(version="v1")},
            deployKeys=[deploy_key("deployer", rotateAfter="1w")],
        ),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    write_manifests(workdir / "m", environment("production", {"api": image(version="v2")}))
    assert sk("apply", "--yes", "-m", "m", "--allow-decommission").code == 0
    opened = open_ledger("sqlite:///.slotkeeper/state.db", now=datetime.now(UTC))
    yield opened
    opened.close()


def test_status_and_pages_agree(ledger: Ledger, workdir: Path) -> None:
    """/status, the pages and a slot's history tell the same state; unknown paths are 404."""
    dashboard = Dashboard(ledger, clock=lambda: datetime.now(UTC))
    status = json.loads(answer(dashboard, "/status").body)
    [row] = status["matrix"]["rows"]
    [cell] = row["cells"]
    assert (cell["version"], cell["state"], cell["confirmed"]) == ("v2", "deployed", True)
    assert status["states"]["deployed"] == 1
    assert status["keys"] == []  # the key was revoked with its declaration
    page = answer(dashboard, "/")
    assert page.status == 200 and 'data-version="v2"' in page.body.decode()
    slot = json.loads(answer(dashboard, "/status/slots/production/api").body)
    assert [r["status"] for r in slot["records"]] == ["DEPLOYED", "SUPERSEDED"]
    assert answer(dashboard, "/nope").status == 404
    assert answer(dashboard, "/slots/production/nope").status == 404
    assert answer(dashboard, "/static/dashboard.css").content_type.startswith("text/css")


def test_keys_show_age_against_rotate_after(sk: Sk, workdir: Path) -> None:
    """A key past its rotateAfter shows overdue, with its age, in /status and on the keys page."""
    write_manifests(
        workdir / "k",
        environment("production", {}, deployKeys=[deploy_key("deployer", rotateAfter="1w")]),
    )
    assert sk("apply", "--yes", "-m", "k").code == 0
    ledger = open_ledger("sqlite:///.slotkeeper/state.db", now=datetime.now(UTC))
    try:
        later = datetime.now(UTC) + timedelta(days=8)
        dashboard = Dashboard(ledger, clock=lambda: later)
        [key] = dashboard.status()["keys"]
        assert key["overdue"] is True and key["used"] > 1
        assert key["age_days"] >= 8
        page = answer(dashboard, "/keys").body.decode()
        assert "due" in page and key["fingerprint"] in page
    finally:
        ledger.close()


def test_frozen_and_suspended_come_from_the_manifests(ledger: Ledger, workdir: Path) -> None:
    """A frozen or suspended environment's cells say so, from the manifests, not the ledger."""
    now = datetime.now(UTC)
    frozen = environment(
        "production",
        {"api": image(version="v3")},
        freeze=[
            {
                "start": (now - timedelta(hours=1)).isoformat(),
                "end": (now + timedelta(hours=2)).isoformat(),
            }
        ],
    )
    write_manifests(workdir / "f", frozen)
    desired = load_manifests(workdir / "f")
    dashboard = Dashboard(ledger, clock=lambda: now, desired=lambda: desired)
    [row] = dashboard.status()["matrix"]["rows"]
    assert row["cells"][0]["state"] == "frozen" and row["cells"][0]["hold"].startswith("frozen")
    frozen["spec"]["suspend"] = True
    write_manifests(workdir / "f", frozen)
    desired = load_manifests(workdir / "f")
    [row] = dashboard.status()["matrix"]["rows"]
    assert row["cells"][0]["state"] == "suspended"


def test_a_broken_ledger_read_is_an_answer_not_a_crash(ledger: Ledger) -> None:
    """A ledger that cannot be read makes the page answer an error status, never a traceback."""
    dashboard = Dashboard(ledger, clock=lambda: datetime.now(UTC))
    ledger.close()
    broken = answer(dashboard, "/")
    assert broken.status in (500, 503)
    assert b"Traceback" not in broken.body


def test_small_helpers() -> None:
    """Ages read as s/m/h/d ago; the refresh parameter is defaulted and clamped; no apply: None."""
    assert [_ago(s) for s in (5, 90, 7200, 3 * 86400)] == ["5s ago", "1m ago", "2h ago", "3d ago"]
    assert _refresh("") == 10 and _refresh("refresh=0") == 0 and _refresh("refresh=99999") == 3600
    assert _refresh("refresh=soon") == 10
    assert last_apply([]) is None


def test_a_ledger_password_is_never_shown(sk: Sk, workdir: Path) -> None:
    """`slotkeeper ui` over PostgreSQL: the URL in the footer has no password (trust auth
    ignores the one given here)."""
    for url in postgres_schema_url():
        secret_url = url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3t-pw@")
        write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
        assert sk("apply", "--yes", "-m", "m", "--state", secret_url).code == 0
        ledger = open_ledger(secret_url, now=datetime.now(UTC))
        try:
            dashboard = Dashboard(ledger, clock=lambda: datetime.now(UTC))
            for path in ("/", "/keys", "/slots/production/api", "/status"):
                body = answer(dashboard, path).body.decode()
                assert "s3cr3t-pw" not in body, path
            assert "postgresql://postgres:***@" in answer(dashboard, "/").body.decode()
        finally:
            ledger.close()


def test_a_hold_does_not_hide_a_slot_that_is_gone(sk: Sk, workdir: Path) -> None:
    """In a frozen environment, a kept slot shows frozen; a decommissioned one shows gone."""
    write_manifests(workdir / "g", environment("staging", {"a": image(), "b": image()}))
    assert sk("apply", "--yes", "-m", "g").code == 0
    write_manifests(workdir / "g", environment("staging", {"a": image()}))
    assert sk("apply", "--yes", "-m", "g").code == 0
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    write_manifests(workdir / "g", environment("staging", {"a": image()}, freeze=[window]))
    desired = load_manifests(workdir / "g")
    ledger = open_ledger("sqlite:///.slotkeeper/state.db", now=now)
    try:
        dashboard = Dashboard(ledger, clock=lambda: now, desired=lambda: desired)
        states = {
            row["slot"]: row["cells"][0]["state"] for row in dashboard.status()["matrix"]["rows"]
        }
        assert states == {"a": "frozen", "b": "decommissioned"}
    finally:
        ledger.close()
