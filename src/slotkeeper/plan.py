"""The planner: what must change so that the ledger matches the manifests.

:func:`plan` is a pure function of (desired state, recorded state, now, options, revision): it does
no I/O, reads no clock and draws no random number, so the same input always gives the same
:class:`Plan`, byte for byte. The executor carries the plan out; the CLI and the daemon render it.

Guards do not drop actions: an action a guard refuses stays in the plan with ``blocked`` set to
the reason, so every surface can say what is being held back and why.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from slotkeeper.model import (
    Artifact,
    DeployKeySpec,
    DesiredState,
    EnvironmentRecord,
    KeyRecord,
    RecordedState,
    Revision,
    parse_duration,
)

PLAN_FORMAT_VERSION = 1


class ActionType(StrEnum):
    CREATE_KEY = "create_key"
    ROTATE_KEY = "rotate_key"
    DEPLOY = "deploy"
    DECOMMISSION = "decommission"
    REVOKE_KEY = "revoke_key"


#: Execution order of action types: a key exists before anything might use it, new artifacts
#: land before old ones are retired, and access is revoked last.
TYPE_ORDER: dict[ActionType, int] = {
    ActionType.CREATE_KEY: 0,
    ActionType.ROTATE_KEY: 1,
    ActionType.DEPLOY: 2,
    ActionType.DECOMMISSION: 3,
    ActionType.REVOKE_KEY: 4,
}


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KeyAction(_Value):
    """The deploy key an action concerns; ``previous_id`` names the ledger key it replaces."""

    repository: str
    title: str
    read_only: bool
    rotate_after: str | None
    secret_file: str
    previous_id: int | None = None
    previous_fingerprint: str | None = None
    previous_secret_file: str | None = None

    @property
    def name(self) -> str:
        return f"{self.repository}/{self.title}"


class Action(_Value):
    """One step of a plan: small, immutable, with a stable id and a human reason."""

    id: str
    type: ActionType
    environment: str
    slot: str | None = None
    key: KeyAction | None = None
    artifact: Artifact | None = None
    ref: str | None = None
    previous: Artifact | None = None
    supersedes: int | None = None
    record: int | None = None
    reason: str
    blocked: str | None = None

    @property
    def target(self) -> str:
        """``environment/slot`` or ``environment/key:repo/title``, for display and sorting."""
        if self.key is not None:
            return f"{self.environment}/key:{self.key.name}"
        return f"{self.environment}/{self.slot}"


class PlanOptions(_Value):
    allow_decommission: bool = False
    allow_mass_decommission: bool = False
    rotate: frozenset[str] = Field(default_factory=frozenset)


class Plan(_Value):
    """The ordered actions that converge the ledger, and what they were computed against."""

    format_version: int = PLAN_FORMAT_VERSION
    lineage: str
    base_serial: int
    created_at: datetime
    revision: Revision | None
    options: PlanOptions
    actions: tuple[Action, ...]
    unchanged: tuple[int, ...] = ()
    environments: tuple[EnvironmentRecord, ...] = ()
    summary: dict[str, int]

    @property
    def applicable(self) -> tuple[Action, ...]:
        return tuple(action for action in self.actions if action.blocked is None)

    @property
    def blocked(self) -> tuple[Action, ...]:
        return tuple(action for action in self.actions if action.blocked is not None)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)


def action_order(action: Action) -> tuple[int, str, str, str]:
    """The one sort key of plan actions: type (see TYPE_ORDER), environment, slot or key."""
    name = action.slot if action.slot is not None else f"~{action.key.name if action.key else ''}"
    return (TYPE_ORDER[action.type], action.environment, name, action.id)


def plan(
    desired: DesiredState,
    recorded: RecordedState,
    *,
    now: datetime,
    options: PlanOptions,
    revision: Revision | None = None,
) -> Plan:
    """Diff ``desired`` against ``recorded`` and return the plan that converges them.

    Pure: no I/O, no clock (``now`` is an argument), no randomness.
    """
    ids = _ActionIds(recorded.lineage, recorded.serial)
    drafts: list[Action] = []
    unchanged: list[int] = []

    for env_name in sorted(desired.environments):
        spec = desired.environments[env_name]
        for slot_name in sorted(spec.slots):
            slot = spec.slots[slot_name]
            current = recorded.deployed.get((env_name, slot_name))
            if current is not None and current.artifact == slot.artifact:
                unchanged.append(current.id)
                continue
            drafts.append(
                Action(
                    id=ids.make(ActionType.DEPLOY, env_name, slot_name, slot.artifact),
                    type=ActionType.DEPLOY,
                    environment=env_name,
                    slot=slot_name,
                    artifact=slot.artifact,
                    ref=slot.ref,
                    previous=current.artifact if current else None,
                    supersedes=current.id if current else None,
                    reason=(
                        f"{_version(current.artifact)} -> {_version(slot.artifact)}"
                        if current
                        else "new slot"
                    ),
                )
            )

    for (env_name, slot_name), record in sorted(recorded.deployed.items()):
        env_spec = desired.environments.get(env_name)
        if env_spec is not None and slot_name in env_spec.slots:
            continue
        drafts.append(
            Action(
                id=ids.make(ActionType.DECOMMISSION, env_name, slot_name, record.id),
                type=ActionType.DECOMMISSION,
                environment=env_name,
                slot=slot_name,
                artifact=record.artifact,
                previous=record.artifact,
                record=record.id,
                reason=(
                    "environment removed from manifests"
                    if env_spec is None
                    else "slot removed from manifests"
                ),
            )
        )

    drafts.extend(_key_actions(desired, recorded, now=now, options=options, ids=ids))
    actions = sorted(_guard(drafts, desired, recorded, options), key=action_order)
    return Plan(
        lineage=recorded.lineage,
        base_serial=recorded.serial,
        created_at=now,
        revision=revision,
        options=options,
        actions=tuple(actions),
        unchanged=tuple(sorted(unchanged)),
        environments=tuple(
            EnvironmentRecord(
                name=name,
                protected=spec.protected,
                production=spec.production,
                repository=spec.repository,
            )
            for name, spec in sorted(desired.environments.items())
        ),
        summary=summarize(actions),
    )


def summarize(actions: Iterable[Action]) -> dict[str, int]:
    """Counts of actions per type (blocked ones included) and of blocked actions."""
    listed = list(actions)
    counts = Counter(action.type.value for action in listed)
    summary = {kind.value: counts.get(kind.value, 0) for kind in ActionType}
    summary["blocked"] = sum(1 for action in listed if action.blocked is not None)
    return summary


def _key_actions(
    desired: DesiredState,
    recorded: RecordedState,
    *,
    now: datetime,
    options: PlanOptions,
    ids: _ActionIds,
) -> list[Action]:
    actions: list[Action] = []
    declared: set[tuple[str, str]] = set()
    for env_name in sorted(desired.environments):
        for spec in desired.environments[env_name].deploy_keys:
            identity = (spec.repository, spec.title)
            declared.add(identity)
            current = recorded.keys.get(identity)
            if current is None:
                actions.append(
                    Action(
                        id=ids.make(ActionType.CREATE_KEY, env_name, *identity),
                        type=ActionType.CREATE_KEY,
                        environment=env_name,
                        key=_key_action(spec),
                        reason="declared, not yet created",
                    )
                )
                continue
            why = _rotation_reason(spec, current, now=now, options=options)
            if why is not None:
                actions.append(
                    Action(
                        id=ids.make(ActionType.ROTATE_KEY, env_name, *identity, current.id),
                        type=ActionType.ROTATE_KEY,
                        environment=env_name,
                        key=_key_action(spec, current),
                        reason=why,
                    )
                )
    for identity, current in sorted(recorded.keys.items()):
        if identity in declared:
            continue
        actions.append(
            Action(
                id=ids.make(ActionType.REVOKE_KEY, current.environment, *identity, current.id),
                type=ActionType.REVOKE_KEY,
                environment=current.environment,
                key=KeyAction(
                    repository=current.repository,
                    title=current.title,
                    read_only=current.read_only,
                    rotate_after=current.rotate_after,
                    secret_file=current.secret_file,
                    previous_id=current.id,
                    previous_fingerprint=current.fingerprint,
                ),
                reason="removed from manifests",
            )
        )
    return actions


def _key_action(spec: DeployKeySpec, current: KeyRecord | None = None) -> KeyAction:
    return KeyAction(
        repository=spec.repository,
        title=spec.title,
        read_only=spec.read_only,
        rotate_after=spec.rotate_after,
        secret_file=spec.secret.file,
        previous_id=current.id if current else None,
        previous_fingerprint=current.fingerprint if current else None,
        previous_secret_file=current.secret_file if current else None,
    )


def _rotation_reason(
    spec: DeployKeySpec, current: KeyRecord, *, now: datetime, options: PlanOptions
) -> str | None:
    """Why the key must be replaced now, or None. Keys are immutable remotely: any change of
    what the key is (read-only flag, where its secret lives) means a new key."""
    if f"{spec.repository}/{spec.title}" in options.rotate:
        return "rotation requested"
    if spec.read_only != current.read_only:
        return f"readOnly changed to {str(spec.read_only).lower()}"
    if spec.secret.file != current.secret_file:
        return "secret file changed"
    if spec.rotate_after is not None:
        age = now - current.created_at
        if age >= parse_duration(spec.rotate_after):
            return f"older than rotateAfter {spec.rotate_after} (age {age.days}d)"
    return None


def _guard(
    actions: list[Action], desired: DesiredState, recorded: RecordedState, options: PlanOptions
) -> list[Action]:
    """Mark the actions a safety guard refuses as blocked, with the reason."""
    removing = (ActionType.DECOMMISSION, ActionType.REVOKE_KEY)
    decommissions = sum(1 for a in actions if a.type is ActionType.DECOMMISSION)
    deployed = len(recorded.deployed)
    mass = (
        not options.allow_mass_decommission and decommissions > 1 and decommissions * 2 > deployed
    )
    guarded: list[Action] = []
    for action in actions:
        reasons: list[str] = []
        if action.type in removing:
            if not options.allow_decommission and _protected(action.environment, desired, recorded):
                reasons.append(
                    f"environment {action.environment!r} is protected (pass --allow-decommission)"
                )
            if mass:
                reasons.append(
                    f"would decommission {decommissions} of {deployed} deployed slots "
                    "(pass --allow-mass-decommission if that is intended)"
                )
        guarded.append(
            action.model_copy(update={"blocked": "; ".join(reasons)}) if reasons else action
        )
    return guarded


def _protected(environment: str, desired: DesiredState, recorded: RecordedState) -> bool:
    """An environment still declared says so itself; a removed one is judged by the ledger."""
    spec = desired.environments.get(environment)
    if spec is not None:
        return spec.protected
    known = recorded.environments.get(environment)
    return known.protected if known is not None else False


def _version(artifact: Artifact) -> str:
    return artifact.version or (artifact.digest or "")[:19]


class _ActionIds:
    """Stable action ids: a digest of what the action does and of the ledger state it starts
    from, so a re-plan of the same inputs gives the same ids and no two applies share one."""

    def __init__(self, lineage: str, serial: int) -> None:
        self._base = [lineage, serial]

    def make(self, kind: ActionType, *parts: object) -> str:
        material = [
            *self._base,
            kind.value,
            *(p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts),
        ]
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return digest[:12]
