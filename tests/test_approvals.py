"""Approvals, one action at a time: `slotkeeper approve` and `reject` through the real CLI, on an
SQLite file and a PostgreSQL schema alike.

A protected decommission, a mass removal and a deploy in a freeze window are held and await a
person; an approval names the held action's content, lets exactly it through once (and is an
audit event when granted and when used), expires, does not cover the action once its content
changed, and never lifts what a broken or empty checkout holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from slotkeeper.ledger import open_ledger
from slotkeeper.model import Decision
from tests.daemon_support import Running, wait_for
from tests.helpers import Run, environment, image, write_manifests

THREE = {"api": image(), "web": image("ghcr.io/acme/web"), "db": image("ghcr.io/acme/db")}
#: removing two of these is not a mass removal (not more than half)
FOUR = {**THREE, "jobs": image("ghcr.io/acme/jobs")}


def held(sk: Callable[..., Run], ledger_url: str) -> dict[str, dict[str, Any]]:
    """The held actions ``status --json`` shows, by slot."""
    shown = sk("status", "--json", "--state", ledger_url)
    assert shown.code == 0, shown.err
    return {row["slot"]: row["pending"] for row in shown.json()["slots"] if row["pending"]}


def events(sk: Callable[..., Run], ledger_url: str, *types: str) -> list[dict[str, Any]]:
    flags = [flag for kind in types for flag in ("--type", kind)]
    listed = sk("events", "--json", "--state", ledger_url, *flags)
    assert listed.code == 0, listed.err
    return list(listed.json())


def protected_production(sk: Callable[..., Run], workdir: Path, ledger_url: str) -> None:
    """Apply four slots to a protected production, then drop web and db from the manifests."""
    write_manifests(workdir / "m", environment("production", FOUR, protected=True))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    kept = {"api": FOUR["api"], "jobs": FOUR["jobs"]}
    write_manifests(workdir / "m", environment("production", kept, protected=True))


def test_an_approval_lets_exactly_one_protected_decommission_through_once(
    sk: Callable[..., Run], workdir: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both removals are held awaiting approval, with the command to run; approving web by
    ENV/SLOT lets web through at the next apply and db stays held; the approval is recorded
    (who, why), used once, and named on the decommission's audit event."""
    protected_production(sk, workdir, ledger_url)
    first = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert first.code == 3, first.out
    assert (
        "blocked  decommission production/web: awaiting approval: slotkeeper approve" in first.out
    )
    pending = held(sk, ledger_url)
    assert set(pending) == {"web", "db"}
    assert pending["web"]["approval"] == "awaiting"
    assert pending["web"]["command"] == f"slotkeeper approve {pending['web']['action_id']}"
    assert "is protected" in pending["web"]["blocked"]

    monkeypatch.setenv("SLOTKEEPER_ACTOR", "alice")
    approved = sk("approve", "production/web", "--reason", "web retired", "--state", ledger_url)
    assert approved.code == 0, approved.err
    assert "approval #1 by alice" in approved.out
    plan = sk("plan", "--json", "-m", "m", "--state", ledger_url).json()
    states = {
        a["slot"]: (a["blocked"] is None, (a.get("approval") or {}).get("state"))
        for a in plan["actions"]
    }
    assert states == {"web": (True, "approved"), "db": (False, "awaiting")}

    monkeypatch.setenv("SLOTKEEPER_ACTOR", "ci-bot")
    second = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert second.code == 3, second.out  # applied, and db is still held
    shown = sk("status", "--json", "--state", ledger_url).json()["slots"]
    assert {row["slot"]: row["status"] for row in shown} == {
        "api": "DEPLOYED",
        "web": "DECOMMISSIONED",
        "db": "DEPLOYED",
        "jobs": "DEPLOYED",
    }
    assert set(held(sk, ledger_url)) == {"db"}

    granted = events(sk, ledger_url, "approval.granted")
    assert [(e["actor"], e["slot"], e["detail"]["reason"]) for e in granted] == [
        ("alice", "web", "web retired")
    ]
    [used] = events(sk, ledger_url, "approval.used")
    assert used["slot"] == "web" and used["detail"]["approved_by"] == "alice"
    [gone] = events(sk, ledger_url, "record.decommissioned")
    assert gone["actor"] == "ci-bot" and gone["detail"]["approval"]["by"] == "alice"
    assert gone["detail"]["approval"]["guards"] == ["protected"]

    # used up: the next apply lets nothing else through, and nothing is approved any more
    third = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert third.code == 3 and len(events(sk, ledger_url, "record.decommissioned")) == 1


def test_an_approval_names_the_content_a_changed_action_needs_a_new_one(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """A deploy in a freeze window waits for an approval that overrides the freeze: one that
    does not override it leaves it held and says so; one that does covers v2 only; once the
    manifests ask for v3, the approval of v2 covers nothing and v3 awaits a new one."""
    freeze = [{"start": "2000-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"}]
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    write_manifests(
        workdir / "m", environment("production", {"api": image(version="v2")}, freeze=freeze)
    )
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    pending = held(sk, ledger_url)["api"]
    assert pending["command"].endswith("--override-freeze")

    assert sk("approve", pending["action_id"], "--state", ledger_url).code == 0
    still = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert still.code == 3
    assert "does not override the freeze" in held(sk, ledger_url)["api"]["blocked"]

    assert sk("approve", "production/api", "--override-freeze", "--state", ledger_url).code == 0
    write_manifests(
        workdir / "m", environment("production", {"api": image(version="v3")}, freeze=freeze)
    )
    changed = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert changed.code == 3, changed.out
    assert held(sk, ledger_url)["api"]["approval"] == "awaiting"
    [record] = sk("status", "--json", "--state", ledger_url).json()["slots"]
    assert record["artifact"]["version"] == "v1"

    write_manifests(
        workdir / "m", environment("production", {"api": image(version="v2")}, freeze=freeze)
    )
    through = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert through.code == 2, through.out
    [record] = sk("status", "--json", "--state", ledger_url).json()["slots"]
    assert record["artifact"]["version"] == "v2"


def expire_approvals(ledger_url: str) -> None:
    """Time passing for the approvals: every one of them expired a minute ago."""
    ledger = open_ledger(ledger_url, now=datetime.now(UTC), create=False)
    try:
        for approval in ledger.approvals():
            pending = [p for p in ledger.pending() if p.digest == approval.digest]
            assert pending, "the approved action is still held"
            ledger.decide(
                pending[0],
                Decision.APPROVED,
                actor=approval.actor,
                reason=approval.reason,
                at=datetime.now(UTC) - timedelta(hours=25),
                expires_at=datetime.now(UTC) - timedelta(minutes=1),
            )
    finally:
        ledger.close()


def test_an_expired_approval_is_refused(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """An approval past its expiry lets nothing through: the removal stays held, awaiting a
    new approval, and the reason says which approval expired when; --expires-in takes a
    duration and refuses anything else with exit 1."""
    protected_production(sk, workdir, ledger_url)
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    bad = sk("approve", "production/web", "--expires-in", "tomorrow", "--state", ledger_url)
    assert bad.code == 1 and "--expires-in" in bad.err and "Traceback" not in bad.err
    assert sk("approve", "production/web", "--expires-in", "2h", "--state", ledger_url).code == 0
    expire_approvals(ledger_url)
    again = sk("apply", "--yes", "--detailed-exitcode", "-m", "m", "--state", ledger_url)
    assert again.code == 3
    web = held(sk, ledger_url)["web"]
    assert web["approval"] == "awaiting" and "expired at" in web["blocked"]
    assert events(sk, ledger_url, "record.decommissioned") == []


def test_a_rejection_keeps_the_action_held_and_a_later_approval_wins(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """`reject` records a refusal: the removal stays held and is no longer awaiting approval;
    an approval after it lets the removal through."""
    protected_production(sk, workdir, ledger_url)
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    refused = sk("reject", "production/db", "--reason", "db stays", "--state", ledger_url)
    assert refused.code == 0, refused.err
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    db = held(sk, ledger_url)["db"]
    assert db["approval"] == "rejected" and "db stays" in db["blocked"]
    assert [e["detail"]["reason"] for e in events(sk, ledger_url, "approval.rejected")] == [
        "db stays"
    ]
    assert sk("approve", "production/db", "--state", ledger_url).code == 0
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    assert "db" not in held(sk, ledger_url)


def test_what_no_approval_lifts_and_what_is_not_held_are_clear_errors(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """An unknown id or slot is exit 1 naming what awaits approval; a removal held because the
    manifests declare nothing at all (an empty checkout) cannot be approved away."""
    protected_production(sk, workdir, ledger_url)
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    unknown = sk("approve", "production/nope", "--state", ledger_url)
    assert unknown.code == 1 and "no held action 'production/nope'" in unknown.err
    assert "awaiting approval now" in unknown.err and "production/web" in unknown.err
    (workdir / "m" / "envs.yaml").unlink()  # an empty checkout: no environment at all
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    empty = sk("approve", "production/web", "--state", ledger_url)
    assert empty.code == 1 and "no approval lifts" in empty.err
    assert "declare no environment" in empty.err


def test_a_mass_removal_is_approved_one_action_at_a_time(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """Removing two of three slots trips the mass guard (not protected here): each removal
    awaits approval, and approving one lets only that one through."""
    write_manifests(workdir / "m", environment("staging", THREE))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    write_manifests(workdir / "m", environment("staging", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    pending = held(sk, ledger_url)
    assert set(pending) == {"web", "db"} and "would remove 2 of 3" in pending["web"]["blocked"]
    assert sk("approve", pending["web"]["action_id"], "--state", ledger_url).code == 0
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    assert set(held(sk, ledger_url)) == {"db"}
    [gone] = events(sk, ledger_url, "record.decommissioned")
    assert gone["slot"] == "web" and gone["detail"]["approval"]["guards"] == ["mass"]


def test_an_approval_from_a_laptop_lets_one_removal_through_under_a_running_daemon(
    sk: Callable[..., Run],
    workdir: Path,
    ledger_url: str,
    running: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon holds two protected removals; /status lists them awaiting approval with the
    command; `approve` run from another process against the daemon's ledger (no exec into a
    pod, no restart) is picked up within seconds: exactly that removal goes, recorded with the
    approver, and the other stays held."""
    write_manifests(workdir / "m", environment("production", FOUR, protected=True))
    daemon = running("-m", "m", "--state", ledger_url, "--resync-interval", "10m")

    def statuses() -> dict[str, str]:
        return {row["slot"]: row["status"] for row in daemon.status()["slots"]}

    wait_for(lambda: len(statuses()) == 4, what="the first apply")
    kept = {"api": FOUR["api"], "jobs": FOUR["jobs"]}
    write_manifests(workdir / "m", environment("production", kept, protected=True))
    wait_for(lambda: len(daemon.status()["awaiting_approval"]) == 2, what="the held removals")
    web = next(a for a in daemon.status()["awaiting_approval"] if a["subject"] == "web")
    assert web["command"] == f"slotkeeper approve {web['action_id']}"

    monkeypatch.setenv("SLOTKEEPER_ACTOR", "alice")
    assert sk("approve", web["action_id"], "--state", ledger_url).code == 0
    wait_for(lambda: statuses()["web"] == "DECOMMISSIONED", what="the approved removal")
    assert statuses() == {
        "api": "DEPLOYED",
        "db": "DEPLOYED",
        "jobs": "DEPLOYED",
        "web": "DECOMMISSIONED",
    }
    assert [a["subject"] for a in daemon.status()["awaiting_approval"]] == ["db"]
    [gone] = events(sk, ledger_url, "record.decommissioned")
    assert gone["detail"]["approval"]["by"] == "alice"
    assert len(events(sk, ledger_url, "approval.used")) == 1


def test_a_saved_plan_relies_on_its_approval_only_while_it_stands(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """A plan saved after an approval carries it; withdrawn by a rejection before the apply,
    the saved plan holds that removal and says why; a plan saved under a standing approval
    applies it."""
    protected_production(sk, workdir, ledger_url)
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    assert sk("approve", "production/web", "--state", ledger_url).code == 0
    assert sk("plan", "--out", "first.plan", "-m", "m", "--state", ledger_url).code == 0
    assert sk("reject", "production/web", "--state", ledger_url).code == 0
    withdrawn = sk("apply", "first.plan", "--yes", "-m", "m", "--state", ledger_url)
    assert withdrawn.code == 0, withdrawn.err
    assert "is no longer valid" in withdrawn.out
    assert events(sk, ledger_url, "record.decommissioned") == []

    assert sk("approve", "production/web", "--state", ledger_url).code == 0
    assert sk("plan", "--out", "second.plan", "-m", "m", "--state", ledger_url).code == 0
    applied = sk("apply", "second.plan", "--yes", "-m", "m", "--state", ledger_url)
    assert applied.code == 0, applied.err
    assert [e["slot"] for e in events(sk, ledger_url, "record.decommissioned")] == ["web"]
