"""The planner as a pure function: diffs, guards, key schedules, ids and ordering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotkeeper.actions import Action, ActionType, slot_of
from slotkeeper.model import (
    Artifact,
    ArtifactKind,
    BrokenFile,
    DesiredState,
    EnvironmentRecord,
    EnvironmentSpec,
    KeyRecord,
    KeyStatus,
    Record,
    RecordedState,
    RecordStatus,
    SyncSubject,
)
from slotkeeper.plan import PlanOptions, action_order, diff, recheck
from tests.helpers import DIGEST_A, deploy_key, image, synced_record

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LINEAGE = "00000000-0000-0000-0000-000000000001"


def desired(**environments: dict[str, Any]) -> DesiredState:
    """Desired state from ``name=spec`` pairs, with slots given as slot -> artifact."""
    specs = {}
    for name, spec in environments.items():
        body = dict(spec)
        body["slots"] = {
            s: a if "artifact" in a else {"artifact": a} for s, a in body.get("slots", {}).items()
        }
        specs[name.replace("_", "-")] = EnvironmentSpec.model_validate(body)
    return DesiredState(environments=specs, targets={})


def record(
    record_id: int, environment: str, slot: str, artifact: dict[str, Any], **extra: Any
) -> Record:
    return Record(
        id=record_id,
        environment=environment,
        slot=slot,
        artifact=Artifact.model_validate(artifact),
        status=RecordStatus.DEPLOYED,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        last_seen_at=NOW - timedelta(days=1),
        action_id="x",
        **extra,
    )


def key_record(key_id: int, title: str, *, age: timedelta, **extra: Any) -> KeyRecord:
    values: dict[str, Any] = {
        "id": key_id,
        "environment": "production",
        "repository": "acme/web",
        "title": title,
        "fingerprint": f"SHA256:fp{key_id}",
        "public_key": "ssh-ed25519 AAAA",
        "read_only": True,
        "secret_file": title,
        "rotate_after": "30d",
        "status": KeyStatus.ACTIVE,
        "created_at": NOW - age,
        "updated_at": NOW - age,
    }
    values.update(extra)
    return KeyRecord(**values)


def recorded(
    *records: Record,
    keys: tuple[KeyRecord, ...] = (),
    environments: tuple[EnvironmentRecord, ...] = (),
    serial: int = 3,
) -> RecordedState:
    return RecordedState(
        lineage=LINEAGE,
        serial=serial,
        deployed={(r.environment, r.slot): r for r in records},
        keys={(k.repository, k.title): k for k in keys},
        environments={e.name: e for e in environments},
    )


def only(actions: tuple[Action, ...]) -> Action:
    assert len(actions) == 1, actions
    return actions[0]


def test_new_slot_is_deployed_without_supersedes() -> None:
    """A slot the ledger has never seen becomes one deploy action superseding nothing."""
    result = diff(
        desired(production={"slots": {"api": image()}}), recorded(), now=NOW, options=PlanOptions()
    )
    action = only(result.actions)
    assert (action.type, action.environment, action.slot) == (
        ActionType.DEPLOY,
        "production",
        "api",
    )
    assert action.supersedes is None and action.previous is None
    assert action.artifact == Artifact.model_validate(image())
    assert action.reason == "new slot"


def test_changed_artifact_supersedes_the_deployed_record() -> None:
    """A new version in a slot deploys it and names the record it supersedes."""
    result = diff(
        desired(production={"slots": {"api": image(version="v2")}}),
        recorded(record(7, "production", "api", image(version="v1"))),
        now=NOW,
        options=PlanOptions(),
    )
    action = only(result.actions)
    assert action.type is ActionType.DEPLOY
    assert action.supersedes == 7
    assert action.previous == Artifact.model_validate(image(version="v1"))
    assert action.reason == "v1 -> v2"


def test_digest_change_alone_is_a_new_deployment() -> None:
    """Same version, different digest: the artifact changed, so it is redeployed."""
    result = diff(
        desired(production={"slots": {"api": image(digest=DIGEST_A)}}),
        recorded(record(1, "production", "api", image())),
        now=NOW,
        options=PlanOptions(),
    )
    assert only(result.actions).supersedes == 1


def test_unchanged_slot_has_no_action_and_is_touched() -> None:
    """An unchanged slot produces no action; its record is listed to move last_seen_at."""
    result = diff(
        desired(production={"slots": {"api": image()}}),
        recorded(record(4, "production", "api", image())),
        now=NOW,
        options=PlanOptions(),
    )
    assert result.actions == ()
    assert result.unchanged == (4,)
    assert not result.has_changes


@pytest.mark.parametrize(
    ("manifests", "reason"),
    [
        ({"production": {"slots": {"web": image(name="web")}}}, "slot removed from manifests"),
        ({}, "environment removed from manifests"),
    ],
)
def test_removed_slot_or_environment_is_decommissioned(
    manifests: dict[str, Any], reason: str
) -> None:
    """A slot or environment that left the manifests decommissions its DEPLOYED record."""
    staging = {"slots": {s: image() for s in ("x", "y", "z")}}
    result = diff(
        desired(**manifests, staging=staging),
        recorded(
            record(9, "production", "api", image()),
            *(record(10 + i, "staging", s, image()) for i, s in enumerate(("x", "y", "z"))),
        ),
        now=NOW,
        options=PlanOptions(),
    )
    decommission = only(tuple(a for a in result.actions if a.type is ActionType.DECOMMISSION))
    assert (decommission.environment, decommission.slot, decommission.record) == (
        "production",
        "api",
        9,
    )
    assert decommission.reason == reason
    assert decommission.blocked is None


def test_protected_environment_blocks_decommission_unless_allowed() -> None:
    """Decommissioning in a protected environment is blocked, with a reason, until allowed."""
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "production", "web", image(name="web")),
        record(3, "staging", "a", image()),
        record(4, "staging", "b", image()),
    )
    manifests = desired(
        production={"protected": True, "slots": {"api": image()}},
        staging={"slots": {"a": image(), "b": image()}},
    )
    blocked = only(diff(manifests, state, now=NOW, options=PlanOptions()).actions)
    assert blocked.type is ActionType.DECOMMISSION
    assert blocked.blocked is not None and "protected" in blocked.blocked
    assert "--allow-decommission" in blocked.blocked
    allowed = only(
        diff(manifests, state, now=NOW, options=PlanOptions(allow_decommission=True)).actions
    )
    assert allowed.blocked is None


def test_protection_of_a_removed_environment_comes_from_the_ledger() -> None:
    """A protected environment deleted from the manifests stays protected by what was recorded."""
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "staging", "a", image()),
        record(3, "staging", "b", image()),
        environments=(
            EnvironmentRecord(name="production", protected=True, production=True, repository=None),
        ),
    )
    manifests = desired(staging={"slots": {"a": image(), "b": image()}})
    action = only(diff(manifests, state, now=NOW, options=PlanOptions()).actions)
    assert action.blocked is not None and "protected" in action.blocked


def test_mass_decommission_is_blocked_unless_allowed() -> None:
    """Removing more than half of all deployed slots (and more than one) blocks every removal."""
    state = recorded(*(record(i, "staging", f"s{i}", image()) for i in range(1, 5)))
    manifests = desired(staging={"slots": {"s1": image()}})
    result = diff(manifests, state, now=NOW, options=PlanOptions())
    assert result.summary["decommission"] == 3
    assert result.summary["blocked"] == 3
    assert all(a.blocked and "3 of 4" in a.blocked for a in result.actions)
    allowed = diff(manifests, state, now=NOW, options=PlanOptions(allow_mass_decommission=True))
    assert allowed.blocked == ()


@pytest.mark.parametrize(
    ("deployed", "kept", "blocked"),
    [
        (4, 2, False),  # exactly half: allowed
        (1, 0, True),  # the only slot: all of what exists, however small
        (2, 0, True),  # both of two
        (3, 1, True),  # two of three
        (3, 2, False),  # one of three
        (1000, 499, True),  # 501 of 1000
        (1000, 500, False),  # 500 of 1000
    ],
)
def test_mass_decommission_threshold(deployed: int, kept: int, blocked: bool) -> None:
    """The mass guard trips above half of what exists, whatever its size."""
    state = recorded(*(record(i, "staging", f"s{i}", image()) for i in range(deployed)))
    manifests = desired(staging={"slots": {f"s{i}": image() for i in range(kept)}})
    result = diff(manifests, state, now=NOW, options=PlanOptions())
    assert bool(result.blocked) is blocked


def test_empty_manifests_block_everything_destructive() -> None:
    """An empty checkout plans decommissions and revocations, and all of them are blocked."""
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "staging", "api", image()),
        keys=(key_record(1, "deployer", age=timedelta(days=1)),),
    )
    result = diff(desired(), state, now=NOW, options=PlanOptions())
    assert {a.type for a in result.actions} == {ActionType.DECOMMISSION, ActionType.REVOKE_KEY}
    assert result.applicable == ()


def test_key_is_created_when_declared_and_missing() -> None:
    """A declared deploy key with no active ledger key is created."""
    manifests = desired(production={"deployKeys": [deploy_key("deployer", rotateAfter="30d")]})
    action = only(diff(manifests, recorded(), now=NOW, options=PlanOptions()).actions)
    assert action.type is ActionType.CREATE_KEY
    assert action.key is not None and action.key.name == "acme/web/deployer"
    assert action.key.secret_file == "deployer"


@pytest.mark.parametrize(
    ("age", "rotates"),
    [(timedelta(days=29, hours=23), False), (timedelta(days=30), True), (timedelta(days=90), True)],
)
def test_key_rotates_when_older_than_rotate_after(age: timedelta, rotates: bool) -> None:
    """A key is rotated once its age reaches rotateAfter, not before."""
    manifests = desired(production={"deployKeys": [deploy_key("deployer", rotateAfter="30d")]})
    state = recorded(keys=(key_record(5, "deployer", age=age),))
    result = diff(manifests, state, now=NOW, options=PlanOptions())
    if rotates:
        action = only(result.actions)
        assert action.type is ActionType.ROTATE_KEY
        assert action.key is not None and action.key.previous_id == 5
        assert "older than rotateAfter 30d" in action.reason
    else:
        assert result.actions == ()


def test_planning_at_a_later_time_shows_what_rotates_then() -> None:
    """`now` is an argument: the same state planned a month later shows the due rotation."""
    manifests = desired(production={"deployKeys": [deploy_key("deployer", rotateAfter="30d")]})
    state = recorded(keys=(key_record(5, "deployer", age=timedelta(days=1)),))
    assert diff(manifests, state, now=NOW, options=PlanOptions()).actions == ()
    later = diff(manifests, state, now=NOW + timedelta(days=30), options=PlanOptions())
    assert only(later.actions).type is ActionType.ROTATE_KEY


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"readOnly": False}, "readOnly changed"), ({"secret": {"file": "other"}}, "secret file")],
)
def test_key_rotates_when_what_it_is_changes(change: dict[str, Any], reason: str) -> None:
    """Keys are immutable remotely: a new read-only flag or secret location means a new key."""
    manifests = desired(production={"deployKeys": [deploy_key("deployer", **change)]})
    state = recorded(keys=(key_record(5, "deployer", age=timedelta(days=1), rotate_after=None),))
    action = only(diff(manifests, state, now=NOW, options=PlanOptions()).actions)
    assert action.type is ActionType.ROTATE_KEY
    assert reason in action.reason


def test_rotation_on_demand() -> None:
    """A key named in the rotate option is rotated whatever its age."""
    manifests = desired(production={"deployKeys": [deploy_key("deployer")]})
    state = recorded(keys=(key_record(5, "deployer", age=timedelta(0), rotate_after=None),))
    options = PlanOptions(rotate=frozenset({"acme/web/deployer"}))
    assert only(diff(manifests, state, now=NOW, options=options).actions).reason == (
        "rotation requested"
    )


def test_removed_key_is_revoked() -> None:
    """A ledger key that left the manifests is revoked."""
    manifests = desired(production={"slots": {"api": image()}, "deployKeys": []})
    state = recorded(
        record(1, "production", "api", image()),
        keys=(key_record(5, "deployer", age=timedelta(days=1)),),
    )
    action = only(diff(manifests, state, now=NOW, options=PlanOptions()).actions)
    assert action.type is ActionType.REVOKE_KEY
    assert action.key is not None and action.key.previous_id == 5


def test_plan_is_deterministic_and_ids_are_stable() -> None:
    """The same inputs give the same plan, ids included; a new serial gives new ids."""
    manifests = desired(
        production={"slots": {"api": image(), "web": image(name="web")}},
        staging={"slots": {"api": image()}, "deployKeys": [deploy_key("k")]},
    )
    first = diff(manifests, recorded(), now=NOW, options=PlanOptions())
    second = diff(manifests, recorded(), now=NOW, options=PlanOptions())
    assert first.model_dump_json() == second.model_dump_json()
    assert len({a.id for a in first.actions}) == len(first.actions)
    moved = diff(manifests, recorded(serial=4), now=NOW, options=PlanOptions())
    assert {a.id for a in moved.actions}.isdisjoint({a.id for a in first.actions})


def test_actions_are_ordered_by_type_then_environment_then_slot() -> None:
    """Keys are created before deploys, deploys before decommissions, revocations last."""
    manifests = desired(
        b_env={"slots": {"z": image(), "a": image()}, "deployKeys": [deploy_key("new")]},
        a_env={"slots": {"m": image()}},
    )
    state = recorded(
        record(1, "gone", "x", image()),
        keys=(key_record(9, "old", age=timedelta(0)),),
    )
    result = diff(manifests, state, now=NOW, options=PlanOptions(allow_mass_decommission=True))
    order = [(a.type.value, a.environment, slot_of(a)) for a in result.actions]
    assert order == [
        ("create_key", "b-env", None),
        ("deploy", "a-env", "m"),
        ("deploy", "b-env", "a"),
        ("deploy", "b-env", "z"),
        ("decommission", "gone", "x"),
        ("revoke_key", "production", None),
    ]
    assert list(result.actions) == sorted(result.actions, key=action_order)


def test_summary_counts_every_type_and_the_blocked() -> None:
    """The summary has a count per action type and a count of blocked actions."""
    manifests = desired(production={"protected": True, "slots": {"api": image(version="v2")}})
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "production", "old", image()),
        record(3, "production", "c", image()),
        record(4, "production", "d", image()),
        record(5, "production", "e", image()),
    )
    result = diff(manifests, state, now=NOW, options=PlanOptions(allow_mass_decommission=True))
    assert result.summary == {
        "create_key": 0,
        "rotate_key": 0,
        "deploy": 1,
        "decommission": 4,
        "revoke_key": 0,
        "sync": 0,
        "blocked": 4,
    }


def with_targets(state: DesiredState, **specs: dict[str, Any]) -> DesiredState:
    """``state`` with Target specs added by name."""
    from pydantic import TypeAdapter

    from slotkeeper.model import TargetSpec

    adapter: TypeAdapter[Any] = TypeAdapter(TargetSpec)
    return state.model_copy(
        update={"targets": {name: adapter.validate_python(spec) for name, spec in specs.items()}}
    )


CHAINLOOP = {"type": "chainloop", "baseUrl": "https://c", "token": {"env": "T"}}
UNKEY = {"type": "unkey", "rootKey": {"env": "T"}, "project": "acme", "app": "default"}


def test_unkey_never_gets_helm_charts_and_the_plan_says_so() -> None:
    """A Helm chart is deployed to the ledger and other targets; the plan notes Unkey's refusal."""
    chart = {"kind": "HELM_CHART", "name": "oci://c/web", "version": "1.0.0"}
    manifests = with_targets(
        desired(
            production={"targets": ["unkey", "chainloop"], "slots": {"web": chart, "api": image()}}
        ),
        unkey=UNKEY,
        chainloop=CHAINLOOP,
    )
    result = diff(manifests, recorded(), now=NOW, options=PlanOptions())
    by_slot = {a.slot: a for a in result.actions}
    assert by_slot["web"].targets == ("chainloop",)
    assert by_slot["web"].notes == ("unkey: a HELM_CHART is not deployable on unkey, not sent",)
    assert by_slot["api"].targets == ("chainloop", "unkey")
    assert by_slot["api"].notes == ()


def test_chainloop_records_get_a_heartbeat_when_due() -> None:
    """A DEPLOYED record last recorded on Chainloop longer ago than heartbeatInterval is
    re-recorded; a fresh one is not."""
    from slotkeeper.model import SyncSubject

    manifests = with_targets(
        desired(production={"targets": ["chainloop"], "slots": {"api": image()}}),
        chainloop={**CHAINLOOP, "heartbeatInterval": "1h"},
    )

    def synced(age: timedelta) -> RecordedState:
        sync = synced_record("chainloop", 1, remote_id="r1", at=NOW - age)
        state = recorded(record(1, "production", "api", image()))
        return state.model_copy(update={"syncs": {("chainloop", SyncSubject.RECORD, 1): sync}})

    assert (
        diff(manifests, synced(timedelta(minutes=59)), now=NOW, options=PlanOptions()).actions == ()
    )
    beat = only(
        diff(manifests, synced(timedelta(minutes=61)), now=NOW, options=PlanOptions()).actions
    )
    assert beat.type is ActionType.SYNC and beat.target == "chainloop"
    assert beat.reason.startswith("heartbeat")


GITHUB = {"type": "github", "token": {"env": "T"}}


def test_a_failure_a_target_reports_is_recorded_even_for_a_deployment_being_replaced() -> None:
    """GitHub reports the deployed record failed while the manifests already replace it: the
    plan deploys the new artifact and records the report (a sync that sends nothing), and
    never plans a `success` over it; a report the ledger holds already plans nothing."""
    from slotkeeper.model import Drift, SyncSubject

    failed = Drift(
        target="github",
        subject=SyncSubject.RECORD,
        subject_id=1,
        observed="failure",
        remote_id="77",
        failure=True,
        updated_at="2026-11-23T11:00:00Z",
    )
    manifests = with_targets(
        desired(production={"targets": ["github"], "slots": {"api": image(version="2.0.0")}}),
        github=GITHUB,
    )
    state = recorded(record(1, "production", "api", image())).model_copy(
        update={
            "syncs": {
                ("github", SyncSubject.RECORD, 1): synced_record(
                    "github", 1, remote_id="77", at=NOW
                )
            }
        }
    )
    actions = diff(manifests, state, now=NOW, options=PlanOptions(), drift=[failed]).actions
    by_type = {a.type: a for a in actions}
    assert set(by_type) == {ActionType.DEPLOY, ActionType.SYNC}
    report = by_type[ActionType.SYNC]
    assert report.reported is not None and report.reported.state == "failure"
    assert report.reported.at == "2026-11-23T11:00:00Z" and report.subject_id == 1

    unchanged = with_targets(
        desired(production={"targets": ["github"], "slots": {"api": image()}}), github=GITHUB
    )
    [alone] = diff(unchanged, state, now=NOW, options=PlanOptions(), drift=[failed]).actions
    assert alone.type is ActionType.SYNC and alone.reported is not None
    held = state.model_copy(
        update={
            "syncs": {
                ("github", SyncSubject.RECORD, 1): synced_record(
                    "github", 1, remote_id="77", at=NOW, remote_detail={"status": "failure"}
                )
            }
        }
    )
    assert diff(unchanged, held, now=NOW, options=PlanOptions(), drift=[failed]).actions == ()


def test_suspended_environment_or_slot_changes_nothing_but_says_so() -> None:
    """Suspension blocks every change in that environment or slot, with the reason."""
    state = recorded(
        record(1, "production", "api", image()), record(2, "production", "web", image())
    )
    manifests = desired(
        production={
            "slots": {
                "api": image(version="v2"),
                "web": {"artifact": image(version="v9"), "suspend": True},
            }
        }
    )
    result = diff(manifests, state, now=NOW, options=PlanOptions())
    by_slot = {a.slot: a for a in result.actions}
    assert by_slot["api"].blocked is None
    assert by_slot["web"].blocked == "slot production/web is suspended"
    env_suspended = desired(production={"suspend": True, "slots": {"api": image(version="v2")}})
    [action] = diff(
        env_suspended, state, now=NOW, options=PlanOptions(allow_mass_decommission=True)
    ).actions[:1]
    assert action.blocked == "environment 'production' is suspended"


@pytest.mark.parametrize(
    ("window", "now", "until"),
    [
        (
            {"start": "2026-11-23T00:00:00Z", "end": "2026-11-24T00:00:00Z"},
            NOW,
            "2026-11-24 00:00:00Z",
        ),
        ({"start": "2026-11-24T00:00:00Z", "end": "2026-11-25T00:00:00Z"}, NOW, None),
        # Fridays 18:00 UTC for 64h: 2026-11-20 (Fri) 18:00 + 64h = Mon 2026-11-23 10:00.
        (
            {"cron": "0 18 * * 5", "duration": "64h"},
            NOW - timedelta(hours=3),
            "2026-11-23 10:00:00Z",
        ),
        ({"cron": "0 18 * * 5", "duration": "64h"}, NOW, None),
    ],
)
def test_freeze_windows_block_deploys_until_they_end(
    window: dict[str, Any], now: datetime, until: str | None
) -> None:
    """Inside a fixed or recurring freeze window deploys are blocked 'frozen until …';
    key rotations are not."""
    manifests = desired(
        production={
            "freeze": [window],
            "slots": {"api": image()},
            "deployKeys": [deploy_key("k", rotateAfter="1d")],
        }
    )
    state = recorded(keys=(key_record(9, "k", age=timedelta(days=2)),))
    result = diff(manifests, state, now=now, options=PlanOptions())
    deploy = next(a for a in result.actions if a.type is ActionType.DEPLOY)
    rotate = next(a for a in result.actions if a.type is ActionType.ROTATE_KEY)
    assert rotate.blocked is None
    if until is None:
        assert deploy.blocked is None
    else:
        assert deploy.blocked == f"frozen until {until}"


@pytest.mark.parametrize(
    ("slots", "keys", "kept_slots", "kept_keys", "blocked"),
    [
        (1, 2, 1, 0, True),  # two revocations of three things
        (2, 1, 2, 0, False),  # one revocation of three
        (0, 1, 0, 0, True),  # the only key
        (1, 1, 0, 0, True),  # everything
    ],
)
def test_revocations_count_in_the_mass_guard(
    slots: int, keys: int, kept_slots: int, kept_keys: int, blocked: bool
) -> None:
    """Key revocations count as removals against slots plus active keys."""
    state = recorded(
        *(record(i, "production", f"s{i}", image()) for i in range(slots)),
        keys=tuple(key_record(i + 1, f"k{i}", age=timedelta(days=1)) for i in range(keys)),
    )
    manifests = desired(
        production={
            "slots": {f"s{i}": image() for i in range(kept_slots)},
            "deployKeys": [deploy_key(f"k{i}") for i in range(kept_keys)],
        }
    )
    result = diff(manifests, state, now=NOW, options=PlanOptions())
    removals = [
        a for a in result.actions if a.type in (ActionType.DECOMMISSION, ActionType.REVOKE_KEY)
    ]
    assert removals
    assert all((a.blocked is not None) is blocked for a in removals)
    allowed = diff(manifests, state, now=NOW, options=PlanOptions(allow_mass_decommission=True))
    assert allowed.blocked == ()


def test_empty_manifests_need_allow_empty_even_with_the_mass_guard_off() -> None:
    """No environment at all over a ledger that has some: removals wait for --allow-empty."""
    state = recorded(record(1, "production", "api", image()), record(2, "dev", "api", image()))
    options = PlanOptions(allow_mass_decommission=True)
    blocked = diff(desired(), state, now=NOW, options=options)
    assert len(blocked.blocked) == 2
    assert all("--allow-empty" in (a.blocked or "") for a in blocked.actions)
    allowed = diff(
        desired(), state, now=NOW, options=options.model_copy(update={"allow_empty": True})
    )
    assert allowed.blocked == () and len(allowed.applicable) == 2


def broken(desired_state: DesiredState, *stand_ins: str) -> DesiredState:
    """``desired_state`` as a tolerant load leaves it: one file broken."""
    return desired_state.model_copy(
        update={
            "broken": (BrokenFile(file="m/staging.yaml", errors=("m/staging.yaml:3: bad",)),),
            "stand_ins": frozenset(stand_ins),
        }
    )


def test_a_broken_file_blocks_removals_outside_valid_environments() -> None:
    """While a file is broken, environments no valid file declares are not decommissioned, and
    no key is revoked; removals inside valid environments go on."""
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "production", "old", image()),
        record(3, "staging", "api", image()),
        record(4, "staging", "web", image()),
        keys=(key_record(1, "deployer", age=timedelta(days=1)),),
    )
    manifests = broken(desired(production={"slots": {"api": image()}}))
    result = diff(manifests, state, now=NOW, options=PlanOptions(allow_mass_decommission=True))
    blocked = {(a.type, a.environment, slot_of(a)): a.blocked for a in result.actions}
    assert blocked[ActionType.DECOMMISSION, "production", "old"] is None
    for where in (("staging", "api"), ("staging", "web")):
        assert "m/staging.yaml is invalid" in (blocked[(ActionType.DECOMMISSION, *where)] or "")
    assert "m/staging.yaml is invalid" in (blocked[ActionType.REVOKE_KEY, "production", None] or "")


def test_a_stand_in_environment_is_not_trusted_for_removals() -> None:
    """An environment declared only by a broken file's last good version removes nothing."""
    state = recorded(record(1, "staging", "api", image()), record(2, "staging", "gone", image()))
    manifests = broken(desired(staging={"slots": {"api": image()}}), "staging")
    result = diff(manifests, state, now=NOW, options=PlanOptions(allow_mass_decommission=True))
    action = only(result.actions)
    assert action.type is ActionType.DECOMMISSION and "is invalid" in (action.blocked or "")


def test_a_missing_or_foreign_private_key_file_rotates_the_key() -> None:
    """A key whose private half is missing or holds another key is rotated, with the reason."""
    manifests = desired(production={"deployKeys": [deploy_key("deployer")]})
    state = recorded(keys=(key_record(5, "deployer", age=timedelta(days=1)),))
    assert diff(manifests, state, now=NOW, options=PlanOptions()).actions == ()
    problem = "private key file 'deployer' is missing"
    result = diff(manifests, state, now=NOW, options=PlanOptions(), key_files={5: problem})
    action = only(result.actions)
    assert (action.type, action.reason, action.blocked) == (ActionType.ROTATE_KEY, problem, None)


def test_secret_paths_are_compared_normalised() -> None:
    """`./deployer` names the same file as `deployer`: no rotation for a respelling."""
    manifests = desired(
        production={"deployKeys": [deploy_key("deployer", secret={"file": "./deployer"})]}
    )
    state = recorded(keys=(key_record(5, "deployer", age=timedelta(days=1)),))
    assert diff(manifests, state, now=NOW, options=PlanOptions()).actions == ()


def test_retirements_owed_to_an_unconfigured_target_are_blocked() -> None:
    """A record or key held by a target whose Target document is gone is not retired silently:
    the decommission and the revocation stay blocked, saying which target and what to do."""
    sync = synced_record("github", 1, remote_id="100", at=NOW)
    key_sync = sync.model_copy(update={"subject": SyncSubject.KEY, "remote_id": "7"})
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "production", "web", image()),
        record(3, "production", "db", image()),
        keys=(key_record(1, "deployer", age=timedelta(days=1)),),
    ).model_copy(
        update={
            "syncs": {
                ("github", SyncSubject.RECORD, 1): sync,
                ("github", SyncSubject.KEY, 1): key_sync,
            }
        }
    )
    manifests = desired(production={"slots": {"web": image(), "db": image()}})
    result = diff(manifests, state, now=NOW, options=PlanOptions())
    blocked = {a.type: a.blocked for a in result.actions}
    for kind in (ActionType.DECOMMISSION, ActionType.REVOKE_KEY):
        assert "target 'github' holds a copy but is not configured" in (blocked[kind] or "")
    assert result.targets == ()


def test_recheck_turns_newly_held_actions_into_blocked_ones() -> None:
    """A saved plan re-checked at apply time: a freeze or suspend committed since blocks it."""
    state = recorded(record(1, "production", "api", image()))
    saved = diff(
        desired(production={"slots": {"api": image(version="v2")}}),
        state,
        now=NOW,
        options=PlanOptions(),
    )
    assert saved.blocked == ()
    frozen = desired(
        production={
            "slots": {"api": image(version="v2")},
            "freeze": [{"start": "2026-11-23T00:00:00Z", "end": "2026-11-24T00:00:00Z"}],
        }
    )
    assert "frozen until" in (only(recheck(saved, frozen, now=NOW).actions).blocked or "")
    later = NOW + timedelta(days=2)
    assert recheck(saved, frozen, now=later).blocked == ()
    suspended = desired(production={"slots": {"api": image(version="v2")}, "suspend": True})
    assert "suspended" in (only(recheck(saved, suspended, now=later).actions).blocked or "")


def test_only_rotations_keeps_the_named_rotations_and_every_blocked_action() -> None:
    """`keys rotate` narrows the plan to the rotations of the named keys: other changes, other
    keys' rotations, the unchanged slots and the environment metadata go; blocked actions stay
    (status keeps showing them), and a blocked rotation is still a rotation of its key."""
    manifests = desired(
        production={
            "protected": True,
            "slots": {"api": image(version="v2"), "web": image()},
            "deployKeys": [deploy_key("a"), deploy_key("b"), deploy_key("c")],
        },
        staging={"suspend": True, "deployKeys": [deploy_key("s")]},
    )
    day = timedelta(days=1)
    state = recorded(
        record(1, "production", "api", image()),
        record(2, "production", "old", image()),
        record(3, "production", "web", image()),
        keys=(
            key_record(5, "a", age=day),
            key_record(6, "b", age=day),
            key_record(7, "c", age=day),
            key_record(8, "s", age=day, environment="staging"),
        ),
    )
    rotate = frozenset({"acme/web/a", "acme/web/b", "acme/web/s"})
    full = diff(manifests, state, now=NOW, options=PlanOptions(rotate=rotate))
    assert full.rotated_keys == rotate
    assert full.unchanged == (3,) and full.environments

    narrowed = full.only_rotations({"acme/web/a"})
    assert [(a.type, a.label, a.blocked is None) for a in narrowed.actions] == [
        (ActionType.ROTATE_KEY, "production/key:acme/web/a", True),
        (ActionType.ROTATE_KEY, "staging/key:acme/web/s", False),
        (ActionType.DECOMMISSION, "production/old", False),
    ]
    assert narrowed.summary == {
        "create_key": 0,
        "rotate_key": 2,
        "deploy": 0,
        "decommission": 1,
        "revoke_key": 0,
        "sync": 0,
        "blocked": 2,
    }
    assert (narrowed.unchanged, narrowed.environments) == ((), ())
    assert (narrowed.lineage, narrowed.base_serial) == (full.lineage, full.base_serial)
    assert full.only_rotations(set()).actions == full.blocked


@pytest.mark.parametrize(
    "artifact",
    [
        Artifact(kind=ArtifactKind.CONTAINER_IMAGE, name="ghcr.io/acme/api", version="v1"),
        Artifact(
            kind=ArtifactKind.HELM_CHART,
            name="oci://x/chart",
            version=None,
            digest="sha256:" + "a" * 64,
        ),
    ],
)
def test_an_artifact_in_an_action_id_is_its_json(artifact: Artifact) -> None:
    """The id of a deploy digests the artifact's JSON: written out field by field for speed, it
    must be exactly pydantic's, or every id (and every saved plan's) would change."""
    from slotkeeper.plan import _material

    assert _material(artifact) == artifact.model_dump(mode="json")
