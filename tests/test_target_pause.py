"""A target that asks for a pause is given it: the error tree's ``retry_after`` drives behaviour.

A temporary failure whose answer names a pause (a rate limit's retry-after or reset) is journaled
as "not before" on the sync row; every plan until then holds the sync (blocked, saying until
when), so no reconcile calls the target earlier, and ``status`` shows it waiting. The pieces:
:func:`errors.retry_delay` (which failures carry a pause), the planner's hold, the ledger's new
column (migration 9, on SQLite and PostgreSQL), and the whole through the CLI against the fake
GitHub's primary rate limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stamina

from slotkeeper.actions import ActionType
from slotkeeper.errors import (
    BudgetDeferred,
    PermanentTargetError,
    TargetUnreachable,
    TargetUnusable,
    TemporaryTargetError,
    UnknownOutcome,
    retry_delay,
)
from slotkeeper.ledger import open_ledger
from slotkeeper.model import (
    Artifact,
    DesiredState,
    EnvironmentSpec,
    GithubTargetSpec,
    Record,
    RecordedState,
    RecordStatus,
    RemoteState,
    SyncStatus,
    SyncSubject,
    TargetSync,
)
from slotkeeper.plan import PlanOptions, diff
from tests.fakes.github import FakeGitHub
from tests.helpers import Run, age_ledger, environment, image, write_manifests_and_targets
from tests.test_github_target import repo  # noqa: F401  (the fixture)
from tests.test_ledger import run_sql

Sk = Callable[..., Run]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- which failures carry a pause ---------------------------------------------------------------


def caused(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "pause"),
    [
        (TemporaryTargetError("limited", retry_after=90.0), 90.0),
        (TemporaryTargetError("5xx after retries", http_status=502), None),
        (TargetUnreachable("no answer"), None),
        (UnknownOutcome("lost", retry_after=5.0), 5.0),
        (PermanentTargetError("denied", http_status=403), None),
        (BudgetDeferred("budget spent", retry_after=3600.0), None),
        (caused(TargetUnusable("unreachable"), TemporaryTargetError("r", retry_after=7.0)), 7.0),
        (caused(TargetUnusable("no credential"), ValueError("not a target error")), None),
        (caused(TargetUnusable("spent"), BudgetDeferred("b", retry_after=9.0)), None),
        (caused(TemporaryTargetError("outer", retry_after=1.0), TargetUnusable("inner")), 1.0),
    ],
    ids=[
        "rate-limited",
        "5xx",
        "unreachable",
        "unknown-with-hint",
        "permanent",
        "budget",
        "unusable-by-rate-limit",
        "unusable-by-other",
        "unusable-by-budget",
        "nearest-first",
    ],
)
def test_the_pause_a_failure_asks_for(error: Exception, pause: float | None) -> None:
    """The retry_after of the first temporary error in the chain; none for a spent write
    budget (slotkeeper's own limit) nor for anything else."""
    assert retry_delay(error) == pause


def test_a_cause_loop_ends_the_search() -> None:
    """Errors whose causes lead back to themselves do not loop forever."""
    first, second = TargetUnusable("a"), TargetUnusable("b")
    first.__cause__, second.__cause__ = second, first
    assert retry_delay(first) is None


# -- the planner holds a paused sync ------------------------------------------------------------


def paused_state(not_before: datetime | None, **environment: Any) -> tuple[DesiredState, Any]:
    """Record #1 of production/api, whose sync on ``gh`` failed with the given pause."""
    spec = EnvironmentSpec.model_validate(
        {"targets": ["gh"], "slots": {"api": {"artifact": image()}}, **environment}
    )
    github = GithubTargetSpec.model_validate({"type": "github", "token": {"env": "T"}})
    desired = DesiredState(environments={"production": spec}, targets={"gh": github})
    record = Record(
        id=1,
        environment="production",
        slot="api",
        artifact=Artifact.model_validate(image()),
        status=RecordStatus.DEPLOYED,
        created_at=NOW,
        updated_at=NOW,
        last_seen_at=NOW,
        action_id="a",
    )
    sync = TargetSync(
        target="gh",
        subject=SyncSubject.RECORD,
        subject_id=1,
        wanted=RemoteState.ACTIVE,
        status=SyncStatus.FAILED,
        attempts=1,
        last_error="gh: POST repos/acme/web/deployments: rate limited; retry in 3600s",
        error_reason="HTTP 403: rate limited",
        updated_at=NOW,
        not_before=not_before,
    )
    recorded = RecordedState(
        lineage="l",
        serial=1,
        deployed={("production", "api"): record},
        syncs={("gh", SyncSubject.RECORD, 1): sync},
    )
    return desired, recorded


def the_sync(desired: DesiredState, recorded: Any, now: datetime) -> Any:
    [action] = diff(desired, recorded, now=now, options=PlanOptions()).actions
    assert action.type is ActionType.SYNC
    return action


def test_a_sync_is_held_until_its_pause_has_passed() -> None:
    """Before the time the target asked for, the sync is planned blocked, saying until when;
    from that time on it is planned to run."""
    until = NOW + timedelta(hours=1)
    desired, recorded = paused_state(until)
    held = the_sync(desired, recorded, NOW)
    assert held.blocked == "gh asked for a pause: not tried again before 2026-03-01 13:00:00Z"
    assert held.reason == "failed on gh, should be active: HTTP 403: rate limited"
    assert the_sync(desired, recorded, until - timedelta(microseconds=1)).blocked is not None
    assert the_sync(desired, recorded, until).blocked is None
    assert the_sync(desired, recorded, until + timedelta(seconds=1)).blocked is None


def test_a_sync_without_a_pause_is_tried_again_at_once() -> None:
    """A failure that asked for no pause (permanent, or temporary without a hint) is planned
    again by the next reconcile, as it always was."""
    desired, recorded = paused_state(None)
    assert the_sync(desired, recorded, NOW).blocked is None


def test_a_pause_and_an_operators_hold_are_both_said() -> None:
    """A paused sync in a suspended environment gives both reasons, the pause first."""
    desired, recorded = paused_state(NOW + timedelta(minutes=5), suspend=True)
    assert the_sync(desired, recorded, NOW).blocked == (
        "gh asked for a pause: not tried again before 2026-03-01 12:05:00Z; "
        "environment 'production' is suspended"
    )


# -- the ledger keeps it (migration 9) ----------------------------------------------------------


def test_the_pause_is_stored_and_an_older_ledger_gains_the_column(ledger_url: str) -> None:
    """On SQLite and PostgreSQL a sync's "not before" is written and read back exactly; a
    ledger from before migration 9 opens, gains the column, and its rows have no pause."""
    ledger = open_ledger(ledger_url, now=NOW)
    assert ledger.try_lead()  # state is written by the writer
    sync = paused_state(NOW + timedelta(seconds=90))[1].syncs["gh", SyncSubject.RECORD, 1]
    with ledger.transaction() as tx:
        tx.upsert_sync(sync)
    assert ledger.syncs_for(SyncSubject.RECORD, 1)[0].not_before == NOW + timedelta(seconds=90)
    ledger.close()

    run_sql(ledger_url, "ALTER TABLE target_syncs DROP COLUMN not_before")
    run_sql(ledger_url, "DELETE FROM schema_migrations WHERE version = 9")
    upgraded = open_ledger(ledger_url, now=NOW)
    [kept] = upgraded.syncs_for(SyncSubject.RECORD, 1)
    assert kept.not_before is None and kept.last_error == sync.last_error
    assert upgraded.read_state().syncs["gh", SyncSubject.RECORD, 1].not_before is None
    upgraded.close()
    assert (9,) in run_sql(ledger_url, "SELECT version FROM schema_migrations")


# -- end to end: the CLI against the fake GitHub's primary rate limit ---------------------------


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=5):
        yield


def waiting_until(text: str) -> datetime:
    """The time a "not tried again before" in ``text`` names."""
    found = re.search(r"github asked for a pause: not tried again before (\S+ \S+Z)", text)
    assert found is not None, text
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.usefixtures("repo")
def test_a_rate_limited_github_is_not_called_again_before_its_reset(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """GitHub's primary limit is spent until its reset (an hour away): the apply fails the sync
    and journals the reset; later applies send nothing and say the sync waits until then (plan,
    status); once that time has come the sync runs and converges."""
    write_manifests_and_targets(
        workdir / "m",
        environment("production", {"api": image()}, repository="acme/web", targets=["github"]),
        {
            "apiVersion": "slotkeeper/v1",
            "kind": "Target",
            "metadata": {"name": "github"},
            "spec": {"type": "github", "baseUrl": gh.base_url, "token": {"env": "GITHUB_TOKEN"}},
        },
    )
    gh.rate_limit_remaining = 0
    failed = sk("apply", "--yes", "-m", "m")
    assert failed.code == 1 and "rate limited" in failed.out
    reset = datetime.fromtimestamp(gh.rate_limit_reset, UTC)

    planned = sk("plan", "-m", "m")
    assert abs(waiting_until(planned.out) - reset) <= timedelta(seconds=2)
    assert "asked for a pause" not in sk("plan", "-m", "m", "--at", "+2h").out

    gh.reset_log()
    held = sk("apply", "--yes", "-m", "m")
    assert held.code == 0, held.out + held.err
    assert gh.requests == []  # not even a read: the pause is the target's
    row = sk("status", "--json").json()["slots"][0]
    assert row["targets"]["github"]["status"] == "failed"
    assert row["pending"]["action"] == "sync"
    assert abs(waiting_until(row["pending"]["blocked"]) - reset) <= timedelta(seconds=2)
    assert "pending sync: github asked for a pause" in sk("status").out

    gh.rate_limit_remaining = gh.rate_limit  # GitHub's reset...
    age_ledger(state, "target_syncs", "not_before", timedelta(hours=1, minutes=1))  # ...has come
    assert sk("apply", "--yes", "-m", "m").code == 0
    [deployment] = gh.deployments("acme", "web")
    assert deployment["environment"] == "production"
    assert sk("status", "--json").json()["slots"][0]["targets"]["github"]["status"] == "synced"
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
