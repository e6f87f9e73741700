"""The planner's guards on target syncs: a sync to a target that is no longer configured is
blocked, and an orphan key (a deletion the ledger did not decide) is not deleted while a broken
manifest file leaves the keys unknown (issue 15: the mutants these tests kill)."""

from __future__ import annotations

from datetime import timedelta

from slotkeeper.actions import Action, ActionType
from slotkeeper.model import (
    DesiredState,
    Drift,
    GithubTargetSpec,
    KeyStatus,
    RecordedState,
    RemoteState,
    SyncSubject,
)
from slotkeeper.plan import PlanOptions, diff
from tests.helpers import deploy_key, image, synced_record
from tests.test_plan import NOW, broken, desired, key_record, record, recorded

GITHUB = GithubTargetSpec.model_validate({"type": "github", "token": {"env": "GITHUB_TOKEN"}})
UNCONFIGURED = "target 'github' holds a copy but is not configured"
BROKEN = "manifest file m/staging.yaml is invalid"


def manifests(*, configured: bool) -> DesiredState:
    state = desired(
        production={
            "slots": {"api": image()},
            "deployKeys": [deploy_key("deployer")],
            "repository": "acme/web",
            "targets": ["github"] if configured else [],
        }
    )
    return state.model_copy(update={"targets": {"github": GITHUB} if configured else {}})


def with_retired_key(state: RecordedState) -> RecordedState:
    """A rotated key that github still holds (its deletion not told yet)."""
    old = key_record(4, "deployer", age=timedelta(days=40), status=KeyStatus.ROTATED)
    sync = synced_record(
        "github",
        4,
        remote_id="44",
        at=NOW,
        subject=SyncSubject.KEY,
        wanted=RemoteState.PRESENT,
        remote_state=RemoteState.PRESENT,
    )
    return state.model_copy(
        update={"retired_keys": {4: old}, "syncs": {("github", SyncSubject.KEY, 4): sync}}
    )


def syncs(
    desired_state: DesiredState, state: RecordedState, drift: tuple[Drift, ...] = ()
) -> list[Action]:
    result = diff(desired_state, state, now=NOW, options=PlanOptions(), drift=drift)
    return [a for a in result.actions if a.type is ActionType.SYNC]


def deletions(
    desired_state: DesiredState, state: RecordedState, drift: tuple[Drift, ...] = ()
) -> dict[int | None, str | None]:
    """The key deletions planned, by key id (None for an orphan): why each is blocked, if it is."""
    return {
        a.subject_id: a.blocked
        for a in syncs(desired_state, state, drift)
        if a.want is RemoteState.ABSENT
    }


def current() -> RecordedState:
    return recorded(keys=(key_record(5, "deployer", age=timedelta(days=1)),))


ORPHAN = Drift(
    target="github",
    subject=SyncSubject.KEY,
    subject_id=None,
    observed="orphan",
    remote_id="99",
    repository="acme/web",
    detail="managed key 'slotkeeper:deployer:2026-01-01' is not in the ledger",
)


def test_a_retired_key_on_an_unconfigured_target_is_blocked() -> None:
    """Its deletion cannot be sent: blocked, naming the target; a configured one is not."""
    blocked = deletions(manifests(configured=False), with_retired_key(current()))
    assert list(blocked) == [4] and UNCONFIGURED in (blocked[4] or "")
    assert deletions(manifests(configured=True), with_retired_key(current())) == {4: None}


def test_an_orphan_key_is_not_deleted_while_a_file_is_broken() -> None:
    """An orphan's deletion waits for the broken file; a retired key the ledger decided to
    delete does not."""
    state = with_retired_key(current())
    assert deletions(manifests(configured=True), state, (ORPHAN,)) == {4: None, None: None}
    blocked = deletions(broken(manifests(configured=True)), state, (ORPHAN,))
    assert blocked[4] is None and BROKEN in (blocked[None] or "")


def test_a_sync_that_adds_is_never_blocked_by_a_broken_file() -> None:
    """A record or key that is wanted present goes out whatever else is broken."""
    state = recorded(
        record(1, "production", "api", image()),
        keys=(key_record(5, "deployer", age=timedelta(days=1)),),
    )
    wanted = syncs(broken(manifests(configured=True)), state)
    assert wanted and all(a.want is not RemoteState.ABSENT for a in wanted)
    assert all(a.blocked is None for a in wanted)
