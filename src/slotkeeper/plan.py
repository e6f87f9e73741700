"""The planner: what must change so that the ledger matches the manifests.

:func:`diff` is a pure function of (desired state, recorded state, now, options, revision): it
does no I/O, reads no clock and draws no random number, so the same input always gives the same
:class:`Plan`, byte for byte. The executor carries the plan out; the CLI and the daemon render it.

Guards do not drop actions: an action a guard (or an operator's hold: ``suspend``, a freeze
window) refuses stays in the plan with ``blocked`` set to the reason, so every surface can say
what is blocked and why.

Words, one per meaning: an action is *blocked* when the plan keeps it but it is not applied (a
guard refused it, an operator's hold stops it, or the daemon is *backing off* an environment
after failures); a *hold* is the operator's: ``suspend`` or a freeze window; a broken manifest
file's last good version *stands in* for it (``DesiredState.stand_ins``). User-visible text
keeps its wording (e.g. "held back" for a revision whose broken files stand in).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from slotkeeper.actions import (
    FREEZE,
    MASS,
    PROMOTION,
    PROTECTED,
    Action,
    ActionApproval,
    ActionType,
    ApprovalState,
    CreateKeyAction,
    DecommissionAction,
    DeployAction,
    KnownKey,
    PlannedKey,
    ReportedFailure,
    RevokeKeyAction,
    RotateKeyAction,
    SyncAction,
    content_digest,
    key_of,
    slot_of,
    targets_of,
)
from slotkeeper.model import (
    Approval,
    Artifact,
    ArtifactKind,
    Decision,
    DeployKeySpec,
    DesiredState,
    Drift,
    EnvironmentRecord,
    EnvironmentSpec,
    KeyRecord,
    KeySecret,
    KeyStatus,
    RecordedState,
    RemoteState,
    Revision,
    SinkFinding,
    SinkHolding,
    SyncStatus,
    SyncSubject,
    TargetSync,
    Timestamp,
    decide_ref,
    normalize_secret_path,
    parse_duration,
)
from slotkeeper.promotion import Facts, hold_reason, identity, rule_for

PLAN_FORMAT_VERSION = 2


#: Execution order of action types: a key exists before anything might use it, new artifacts
#: land before old ones are retired, access is revoked last among ledger changes, and target
#: syncs of records the ledger already holds come after.
TYPE_ORDER: dict[ActionType, int] = {
    ActionType.CREATE_KEY: 0,
    ActionType.ROTATE_KEY: 1,
    ActionType.DEPLOY: 2,
    ActionType.DECOMMISSION: 3,
    ActionType.REVOKE_KEY: 4,
    ActionType.SYNC: 5,
}


class _Value(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


class PlanOptions(_Value):
    allow_decommission: bool = False
    allow_mass_decommission: bool = False
    #: allow a manifest set that declares no environment to remove what the ledger holds
    allow_empty: bool = False
    rotate: frozenset[str] = Field(default_factory=frozenset)


class Plan(_Value):
    """The ordered actions that converge the ledger, and what they were computed against."""

    format_version: int = PLAN_FORMAT_VERSION
    lineage: str
    base_serial: int
    created_at: Timestamp
    revision: Revision | None
    options: PlanOptions
    actions: tuple[Action, ...]
    unchanged: tuple[int, ...] = ()
    environments: tuple[EnvironmentRecord, ...] = ()
    summary: dict[str, int]
    #: the targets the applicable actions need (names only, never credentials): applying a
    #: saved plan where one of them is not configured is refused
    targets: tuple[str, ...] = ()
    #: the manifests the plan was made from, where a saved plan re-reads holds and targets
    manifests: str | None = None
    #: what the plan could not take into account (e.g. a target that could not be refreshed)
    warnings: tuple[str, ...] = ()

    @property
    def applicable(self) -> tuple[Action, ...]:
        return tuple(action for action in self.actions if action.blocked is None)

    @property
    def blocked(self) -> tuple[Action, ...]:
        return tuple(action for action in self.actions if action.blocked is not None)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def rotated_keys(self) -> frozenset[str]:
        """The deploy keys (``repository/title``) this plan rotates, blocked or not."""
        return frozenset(a.key.name for a in self.actions if isinstance(a, RotateKeyAction))

    def only_rotations(self, keys: Collection[str]) -> Plan:
        """This plan narrowed to the rotations of ``keys`` (``repository/title``), for
        ``keys rotate``: nothing else is applied, no ``last_seen_at`` moves and no environment
        is written. Blocked actions stay: they are still blocked, and ``status`` keeps showing
        them."""
        kept = tuple(
            action
            for action in self.actions
            if (isinstance(action, RotateKeyAction) and action.key.name in keys)
            or action.blocked is not None
        )
        return self.model_copy(
            update={
                "actions": kept,
                "unchanged": (),
                "environments": (),
                "summary": summarize(kept),
            }
        )


def action_order(action: Action) -> tuple[int, str, str, str, str]:
    """The one sort key of plan actions: type (see TYPE_ORDER), environment, slot or key,
    then target."""
    slot, key = slot_of(action), key_of(action)
    name = slot if slot is not None else f"~{key.name if key else ''}"
    target = action.target if isinstance(action, SyncAction) else ""
    return (TYPE_ORDER[action.type], action.environment, name, target, action.id)


def diff(
    desired: DesiredState,
    recorded: RecordedState,
    *,
    now: datetime,
    options: PlanOptions,
    revision: Revision | None = None,
    drift: Sequence[Drift] = (),
    key_files: Mapping[int, str] | None = None,
    sinks: Mapping[tuple[str, str], Mapping[str, SinkFinding]] | None = None,
    promotion: Facts | None = None,
) -> Plan:
    """Diff ``desired`` against ``recorded`` (and what targets reported in ``drift``) and return
    the plan that converges them. ``key_files`` says, by key id, what is wrong with the private
    half of an ACTIVE key in its secret sink (missing, another key): such a key is rotated.
    ``promotion`` is what the ledger knows of the artifacts deploys bring into environments
    promoted from another (see :mod:`slotkeeper.promotion`); read by the shell for exactly
    those (:func:`promotion_candidates`).

    Pure: no I/O, no clock (``now`` is an argument), no randomness.
    """
    ids = _ActionIds(recorded.lineage, recorded.serial)
    drafts: list[Action] = []
    unchanged: list[int] = []
    deploy_targets: dict[tuple[str, ArtifactKind], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    for env_name in sorted(desired.environments):
        spec = desired.environments[env_name]
        for slot_name in sorted(spec.slots):
            slot = spec.slots[slot_name]
            current = recorded.deployed.get((env_name, slot_name))
            if current is not None and current.artifact == slot.artifact:
                unchanged.append(current.id)
                continue
            kind = slot.artifact.kind
            if (env_name, kind) not in deploy_targets:
                deploy_targets[env_name, kind] = _deploy_targets(spec, desired, kind)
            targets, notes = deploy_targets[env_name, kind]
            drafts.append(
                DeployAction(
                    id=ids.make(ActionType.DEPLOY, env_name, slot_name, slot.artifact),
                    environment=env_name,
                    slot=slot_name,
                    artifact=slot.artifact,
                    # decided here, so the record holds exactly the ref GitHub is sent
                    ref=decide_ref(slot, spec, revision).ref,
                    previous=current.artifact if current else None,
                    supersedes=current.id if current else None,
                    targets=targets,
                    notes=notes,
                    annotations=dict(slot.annotations),
                    reason=_change(current.artifact, slot.artifact) if current else "new slot",
                )
            )

    for (env_name, slot_name), record in sorted(recorded.deployed.items()):
        env_spec = desired.environments.get(env_name)
        if env_spec is not None and slot_name in env_spec.slots:
            continue
        drafts.append(
            DecommissionAction(
                id=ids.make(ActionType.DECOMMISSION, env_name, slot_name, record.id),
                environment=env_name,
                slot=slot_name,
                record=record.id,
                artifact=record.artifact,
                previous=record.artifact,
                targets=_holding(recorded, SyncSubject.RECORD, record.id),
                reason=(
                    "environment removed from manifests"
                    if env_spec is None
                    else "slot removed from manifests"
                ),
            )
        )

    drafts.extend(
        _key_actions(
            desired,
            recorded,
            now=now,
            options=options,
            ids=ids,
            drift=drift,
            key_files=key_files or {},
            sinks=sinks or {},
        )
    )
    guarded = _guard(drafts, desired, recorded, options, now, promotion or {})
    for sync in _sync_actions(desired, recorded, guarded, drift, ids, now=now):
        reasons = [sync.blocked] if sync.blocked else []  # a target's pause (see _paused)
        reasons.extend([*_holds(sync, desired, now), *_sync_guard(sync, desired)])
        guarded.append(sync.model_copy(update={"blocked": "; ".join(reasons)}) if reasons else sync)
    actions = sorted(guarded, key=action_order)
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
                transient=spec.transient,
                repository=spec.repository,
                targets=tuple(spec.targets),
            )
            for name, spec in sorted(desired.environments.items())
        ),
        summary=summarize(actions),
        targets=needed_targets(actions),
    )


def needed_targets(actions: Iterable[Action]) -> tuple[str, ...]:
    """The targets the applicable ``actions`` call."""
    names: set[str] = set()
    for action in actions:
        if action.blocked is None:
            names.update(targets_of(action))
    return tuple(sorted(names))


def recheck(
    saved: Plan,
    desired: DesiredState,
    *,
    now: datetime,
    approvals: Mapping[str, Approval] | None = None,
) -> Plan:
    """A saved plan as it may be applied ``now``: what only the manifests, the clock and the
    operators decide (the holds: suspend and freeze windows; protection; approvals) is
    evaluated again, so a freeze that started or a ``suspend`` committed since the plan was
    made turns its actions into blocked ones, and so does an approval the plan relied on that
    expired, was used or was withdrawn since. A blocked action stays blocked (approving it
    takes a new plan). Pure, like :func:`diff`."""
    current = approvals or {}
    actions = []
    for action in saved.actions:
        if action.blocked is not None:
            actions.append(action)
            continue
        approved = _still_approved(action, current, now)
        suspended = _suspended(action, desired)
        reasons = list(suspended)
        frozen = None if suspended else _frozen(action, desired, now)
        if frozen is not None and not (approved is not None and approved.override_freeze):
            reasons.append(frozen)
        if isinstance(action, CreateKeyAction | RotateKeyAction):
            # the operator may have narrowed where keys may go since the plan was made
            reasons.extend(
                r for sink in action.key.sinks for r in desired.sink_policy.refusals(sink)
            )
        spec = desired.environments.get(action.environment)
        if (
            action.type in REMOVALS
            and spec is not None
            and spec.protected
            and not saved.options.allow_decommission
            and approved is None
        ):
            reasons.append(_protected_reason(action.environment))
        if action.approval is not None and approved is None:
            reasons.append(
                f"approval #{action.approval.decision} is no longer valid (it expired, was used "
                "or was withdrawn since the plan was saved): make a new plan"
            )
        actions.append(
            action.model_copy(update={"blocked": "; ".join(reasons)}) if reasons else action
        )
    return saved.model_copy(
        update={
            "actions": tuple(actions),
            "summary": summarize(actions),
            "targets": needed_targets(actions),
        }
    )


def _still_approved(
    action: Action, approvals: Mapping[str, Approval], now: datetime
) -> Approval | None:
    """The approval a saved plan's action went through with, if it is still the one on record
    for that action and still valid ``now``."""
    if action.approval is None or action.approval.state is not ApprovalState.APPROVED:
        return None
    decision = approvals.get(action.approval.digest)
    if decision is None or decision.id != action.approval.decision or not decision.valid(now):
        return None
    return decision


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
    drift: Sequence[Drift],
    key_files: Mapping[int, str],
    sinks: Mapping[tuple[str, str], Mapping[str, SinkFinding]],
) -> list[Action]:
    actions: list[Action] = []
    declared: set[tuple[str, str]] = set()
    deleted_remotely = {
        d.subject_id: d
        for d in drift
        if d.subject is SyncSubject.KEY and d.observed == "missing" and d.subject_id is not None
    }
    for env_name in sorted(desired.environments):
        for spec in desired.environments[env_name].deploy_keys:
            identity = (spec.repository, spec.title)
            declared.add(identity)
            current = recorded.keys.get(identity)
            found = sinks.get(identity, {})
            refused = "; ".join(r for finding in found.values() for r in finding.refused) or None
            if current is None:
                actions.append(
                    CreateKeyAction(
                        id=ids.make(ActionType.CREATE_KEY, env_name, *identity),
                        environment=env_name,
                        key=_declared_key(spec),
                        targets=tuple(_key_targets(env_name, desired, recorded)),
                        reason="declared, not yet created",
                        blocked=refused,
                    )
                )
                continue
            why = _rotation_reason(spec, current, now=now, options=options)
            if why is None and current.id in key_files:
                why = key_files[current.id]
            if why is None and current.id in deleted_remotely:
                why = f"deleted on {deleted_remotely[current.id].target}"
            if why is None:
                why = next((d for finding in found.values() for d in finding.drift), None)
            wait = None
            if why is None:
                why, wait = _behind(spec, current, recorded, now)
            if why is not None:
                actions.append(
                    RotateKeyAction(
                        id=ids.make(ActionType.ROTATE_KEY, env_name, *identity, current.id),
                        environment=env_name,
                        key=_successor_key(spec, current),
                        targets=tuple(_key_targets(env_name, desired, recorded)),
                        reason=why,
                        blocked=refused or wait,
                    )
                )
    for identity, current in sorted(recorded.keys.items()):
        if identity in declared:
            continue
        actions.append(
            RevokeKeyAction(
                id=ids.make(ActionType.REVOKE_KEY, current.environment, *identity, current.id),
                environment=current.environment,
                key=_recorded_key(current),
                targets=_holding(recorded, SyncSubject.KEY, current.id),
                reason="removed from manifests",
            )
        )
    return actions


#: how long after a failed delivery to a place the rotation that retries it waits
DELIVERY_RETRY = timedelta(minutes=10)


def behind_places(
    sinks: Sequence[KeySecret], current: KeyRecord, recorded: RecordedState
) -> list[SinkHolding | str]:
    """The places beyond the secrets directory that do not hold ``current`` (the key's ACTIVE
    one): what the ledger knows of each (its holding), or its name when nothing was ever
    delivered there. Files are judged by their content instead (``keys.key_file_problems``)."""
    holdings = recorded.sinks.get((current.repository, current.title), {})
    behind: list[SinkHolding | str] = []
    for sink in sinks:
        if sink.file is not None:
            continue
        holding = holdings.get(sink.label)
        if holding is None:
            behind.append(sink.label)
        elif holding.key_id != current.id:
            behind.append(holding)
    return behind


def _behind(
    spec: DeployKeySpec, current: KeyRecord, recorded: RecordedState, now: datetime
) -> tuple[str | None, str | None]:
    """Why the key must be rotated because a place does not hold it (a private half is never
    kept to be written again), and why that rotation waits: a place that just failed is
    retried after ``DELIVERY_RETRY``, not at every reconcile (each try registers a key)."""
    behind = behind_places(spec.sinks, current, recorded)
    if not behind:
        return None, None
    first = behind[0]
    if isinstance(first, str):
        return f"{first} does not hold the current key yet", None
    why = f"{first.sink} does not hold the current key"
    if first.last_error and first.failed_at is not None:
        why += f" (last delivery failed: {first.last_error})"
        retry = first.failed_at + DELIVERY_RETRY
        if now < retry:
            return why, f"delivery to {first.sink} is retried after {retry:%Y-%m-%d %H:%M:%SZ}"
    return why, None


def _declared_key(spec: DeployKeySpec) -> PlannedKey:
    """A key as the manifests declare it: what a creation makes."""
    return PlannedKey(
        repository=spec.repository,
        title=spec.title,
        read_only=spec.read_only,
        rotate_after=spec.rotate_after,
        secret_file=spec.secret_file,
        sinks=spec.sinks,
    )


def _successor_key(spec: DeployKeySpec, current: KeyRecord) -> KnownKey:
    """A key as the manifests declare it, replacing the ledger's ``current``: what a rotation
    makes (its old secret file is removed after, unless the new key uses the same)."""
    return KnownKey(
        repository=spec.repository,
        title=spec.title,
        read_only=spec.read_only,
        rotate_after=spec.rotate_after,
        secret_file=spec.secret_file,
        sinks=spec.sinks,
        previous_id=current.id,
        previous_fingerprint=current.fingerprint,
        previous_secret_file=current.secret_file,
    )


def _recorded_key(key: KeyRecord) -> KnownKey:
    """A key as the ledger holds it: what a revocation retires and a key's sync mirrors."""
    return KnownKey(
        repository=key.repository,
        title=key.title,
        read_only=key.read_only,
        rotate_after=key.rotate_after,
        secret_file=key.secret_file,
        sinks=key.sinks,
        previous_id=key.id,
        previous_fingerprint=key.fingerprint,
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
    if spec.secret_file != normalize_secret_path(current.secret_file):
        return "secret file changed"
    if spec.rotate_after is not None:
        age = now - current.created_at
        if age >= parse_duration(spec.rotate_after):
            return f"older than rotateAfter {spec.rotate_after} (age {age.days}d)"
    return None


#: actions that take something away: a record's deployment or a deploy key
REMOVALS = (ActionType.DECOMMISSION, ActionType.REVOKE_KEY)


def _guard(
    actions: list[Action],
    desired: DesiredState,
    recorded: RecordedState,
    options: PlanOptions,
    now: datetime,
    promotion: Facts,
) -> list[Action]:
    """Mark the actions a safety guard refuses as blocked, with the reason.

    Removals (decommissions and key revocations) are the dangerous path: they are blocked in a
    protected environment, when the manifests declare nothing at all (an empty checkout), when
    a broken manifest file leaves it unknown whether they are meant, when they would take away
    more than half of what exists (whatever its size), and when a target that holds a copy of
    what goes is no longer configured (it could not be told).

    Four guards wait for a person rather than for a fix: a protected environment, the mass
    guard, a freeze window and a promotion policy (a deploy of an artifact that did not soak
    upstream, failed there, or was rolled back here). An operator's approval of exactly one
    action lifts them for it (a freeze only when the approval says so); see :func:`_decide`."""
    removals = sum(1 for a in actions if a.type in REMOVALS)
    existing = len(recorded.deployed) + len(recorded.keys)
    mass = not options.allow_mass_decommission and removals * 2 > existing
    empty = not desired.environments and not desired.broken and not options.allow_empty
    guarded: list[Action] = []
    for action in actions:
        fixes = [action.blocked] if action.blocked else []  # a place refused, a retry waits
        fixes.extend(_unconfigured(action, desired, recorded))
        waits: dict[str, str] = {}
        if action.type in REMOVALS:
            if not options.allow_decommission and _protected(action.environment, desired, recorded):
                waits[PROTECTED] = _protected_reason(action.environment)
            if empty:
                fixes.append(
                    "the manifests declare no environment (an empty or wrong checkout?): "
                    "nothing is removed unless --allow-empty is passed"
                )
            elif desired.broken and (
                action.type is ActionType.REVOKE_KEY
                or not desired.declared_by_valid_file(action.environment)
            ):
                fixes.append(_broken_reason(desired))
            if mass and not empty:
                waits[MASS] = (
                    f"would remove {removals} of {existing} deployed slots and active deploy keys "
                    "(pass --allow-mass-decommission if that is intended)"
                )
        suspended = _suspended(action, desired)
        fixes.extend(suspended)
        frozen = None if suspended else _frozen(action, desired, now)
        if frozen is not None:
            waits[FREEZE] = frozen
        if isinstance(action, DeployAction):
            held = _promotion_hold(action, desired, promotion, now)
            if held is not None:
                waits[PROMOTION] = held
        guarded.append(_decide(action, fixes, waits, recorded.approvals, now))
    return guarded


def promotion_candidates(
    desired: DesiredState, recorded: RecordedState
) -> list[tuple[str, str, str, Artifact]]:
    """The (environment, slot, upstream environment, artifact) of every deploy the manifests
    ask of a slot under a promotion policy: what the shell reads the evidence of."""
    found = []
    for name, spec in sorted(desired.environments.items()):
        if spec.promotion is None:
            continue
        for slot_name, slot in sorted(spec.slots.items()):
            current = recorded.deployed.get((name, slot_name))
            rule = rule_for(spec, slot_name)
            if rule is not None and (current is None or current.artifact != slot.artifact):
                found.append((name, slot_name, rule.upstream, slot.artifact))
    return found


def _promotion_hold(
    action: DeployAction, desired: DesiredState, facts: Facts, now: datetime
) -> str | None:
    spec = desired.environments.get(action.environment)
    rule = rule_for(spec, action.slot) if spec is not None else None
    if rule is None:
        return None
    evidence = facts.get((action.environment, action.slot, identity(action.artifact)))
    return hold_reason(rule, action.environment, action.slot, action.artifact, evidence, now)


def _decide(
    action: Action,
    fixes: list[str],
    waits: Mapping[str, str],
    approvals: Mapping[str, Approval],
    now: datetime,
) -> Action:
    """``action`` as the guards leave it: ``fixes`` are reasons only a change of the manifests
    or the targets file ends; ``waits`` (by guard) are reasons a person may approve away.

    An action held only by ``waits`` awaits approval (its ``approval`` says so, and every
    surface shows the command to run); a valid approval of its content lets it through (a
    freeze only with ``override_freeze``); a rejection keeps it held without asking again.
    While a fix is needed, no approval counts: an approval never lets through what a broken or
    empty checkout holds."""
    if not waits or fixes:
        reasons = [*fixes, *waits.values()]
        return action.model_copy(update={"blocked": "; ".join(reasons)}) if reasons else action
    digest = content_digest(action)
    guards = tuple(waits)
    decision = approvals.get(digest)
    left = list(waits.values())
    if decision is not None and decision.valid(now):
        if decision.override_freeze or FREEZE not in waits:
            approval = ActionApproval(
                state=ApprovalState.APPROVED,
                digest=digest,
                guards=guards,
                decision=decision.id,
                actor=decision.actor,
                note=decision.reason or None,
            )
            return action.model_copy(update={"approval": approval})
        left = [waits[FREEZE], f"approval #{decision.id} does not override the freeze"]
        state = ApprovalState.AWAITING
    elif decision is not None and decision.decision is Decision.REJECTED:
        said = f": {decision.reason}" if decision.reason else ""
        left.append(f"rejected by {decision.actor} at {_moment(decision.at)}{said}")
        state = ApprovalState.REJECTED
    else:
        if decision is not None and decision.used_at is None:
            left.append(f"approval #{decision.id} expired at {_moment(decision.expires_at or now)}")
        state = ApprovalState.AWAITING
    approval = ActionApproval(
        state=state,
        digest=digest,
        guards=guards,
        decision=decision.id if decision is not None else None,
        actor=decision.actor if decision is not None else None,
        note=(decision.reason or None) if decision is not None else None,
    )
    return action.model_copy(update={"blocked": "; ".join(left), "approval": approval})


def _moment(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _protected_reason(environment: str) -> str:
    return f"environment {environment!r} is protected (pass --allow-decommission)"


def _broken_reason(desired: DesiredState) -> str:
    names = [broken.file for broken in desired.broken]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    verb = "is" if len(names) == 1 else "are"
    return (
        f"manifest file {shown} {verb} invalid: removals outside the environments of valid "
        "files are held until it is fixed"
    )


def _unconfigured(action: Action, desired: DesiredState, recorded: RecordedState) -> list[str]:
    """Why ``action`` is blocked for targets that hold a copy of what it retires (the record a
    decommission retires, the key a rotation or revocation retires) but are no longer
    configured: they could not be told."""
    if isinstance(action, DecommissionAction):
        holders = _holding(recorded, SyncSubject.RECORD, action.record)
    elif isinstance(action, RotateKeyAction | RevokeKeyAction):
        holders = _holding(recorded, SyncSubject.KEY, action.key.previous_id)
    else:
        return []
    return [_unconfigured_reason(name) for name in holders if name not in desired.targets]


def _unconfigured_reason(target: str) -> str:
    return (
        f"target {target!r} holds a copy but is not configured (the operator's targets file "
        "lacks it): restore it so the copy can be retired there"
    )


def _sync_guard(action: SyncAction, desired: DesiredState) -> list[str]:
    """The guards of a target sync: its target must be configured, and an orphan key (a
    deletion the ledger did not decide) is not deleted while a broken file leaves the keys
    unknown."""
    reasons = []
    if action.target not in desired.targets:
        reasons.append(_unconfigured_reason(action.target))
    if action.subject_id is None and action.want is RemoteState.ABSENT and desired.broken:
        reasons.append(_broken_reason(desired))
    return reasons


def _sync_actions(
    desired: DesiredState,
    recorded: RecordedState,
    planned: list[Action],
    drift: Sequence[Drift],
    ids: _ActionIds,
    *,
    now: datetime,
) -> list[SyncAction]:
    """A ``sync`` for every record or key some target does not hold as the ledger wants, and a
    heartbeat for records on targets that want one (Chainloop's last_seen_at).

    Records and keys changed by this plan are left out: their deploy, decommission or key action
    tells the targets itself. Level-triggered: whatever failed before is simply planned again.
    """
    applied = [a for a in planned if a.blocked is None]
    changing = {
        a.supersedes for a in applied if isinstance(a, DeployAction) and a.supersedes is not None
    }
    changing |= {a.record for a in applied if isinstance(a, DecommissionAction)}
    keys_changing = {
        a.key.previous_id for a in applied if isinstance(a, RotateKeyAction | RevokeKeyAction)
    }
    seen: dict[tuple[str, SyncSubject, int], Drift] = {
        (d.target, d.subject, d.subject_id): d for d in drift if d.subject_id is not None
    }
    actions: list[SyncAction] = []

    def sync(
        target: str,
        subject: SyncSubject,
        subject_id: int,
        want: RemoteState,
        *,
        environment: str,
        slot: str | None = None,
        artifact: Artifact | None = None,
        key: KnownKey | None = None,
    ) -> None:
        current = recorded.syncs.get((target, subject, subject_id)) if subject_id else None
        observed = seen.get((target, subject, subject_id)) if subject_id else None
        recreate = False
        notes: tuple[str, ...] = ()
        if observed is not None and observed.failure:
            return  # a reported failure is recorded, not overwritten (see _reported_failures)
        if observed is not None:
            reason = observed.detail or f"{observed.observed} on {target}"
            recreate = observed.observed == "missing"
            remote_id = None if recreate else current and current.remote_id
        elif current is None:
            reason, remote_id = f"not yet on {target}", None
        elif current.status is not SyncStatus.SYNCED or current.remote_state is not want:
            shown = (
                current.status.value
                if current.status is not SyncStatus.SYNCED
                else (current.remote_state.value if current.remote_state else "unknown")
            )
            reason = f"{shown} on {target}, should be {want.value}"
            if current.last_error and current.status is not SyncStatus.SYNCED:
                # The reason says what happened in fixed words (a blocked action's reason is
                # on /status; a pull-request comment shows reasons); the target's own words are
                # a note, which the operator's `plan` prints.
                reason += f": {current.public_error}"
                notes = (current.last_error,)
            remote_id = current.remote_id
        elif (beat := _heartbeat_due(desired, target, current, want, now)) is not None:
            reason, remote_id = beat, current.remote_id
        else:
            return
        actions.append(
            SyncAction(
                id=ids.make(ActionType.SYNC, target, subject.value, subject_id, want.value),
                environment=environment,
                target=target,
                subject=subject,
                subject_id=subject_id,
                want=want,
                remote_id=remote_id,
                recreate=recreate,
                notes=notes,
                slot=slot,
                artifact=artifact,
                key=key,
                reason=reason,
                blocked=_paused(target, current, now),
            )
        )

    for record in sorted(recorded.deployed.values(), key=lambda r: r.id):
        if record.id in changing:
            continue
        for target in _record_targets(record.environment, desired, recorded):
            if record.artifact.kind not in desired.targets[target].artifact_kinds:
                continue
            sync(
                target,
                SyncSubject.RECORD,
                record.id,
                RemoteState.ACTIVE,
                environment=record.environment,
                slot=record.slot,
                artifact=record.artifact,
            )
    for record in sorted(recorded.retired_records.values(), key=lambda r: r.id):
        for target in _synced_targets(recorded, SyncSubject.RECORD, record.id, desired):
            sync(
                target,
                SyncSubject.RECORD,
                record.id,
                RemoteState.INACTIVE,
                environment=record.environment,
                slot=record.slot,
                artifact=record.artifact,
            )
    for key in sorted(recorded.keys.values(), key=lambda k: k.id):
        if key.id in keys_changing:
            continue
        for target in _key_targets(key.environment, desired, recorded):
            if (target, SyncSubject.KEY, key.id) in seen:
                continue  # deleted remotely: the key is rotated instead (see _key_actions)
            sync(
                target,
                SyncSubject.KEY,
                key.id,
                RemoteState.PRESENT,
                environment=key.environment,
                key=_recorded_key(key),
            )
    for key in sorted(recorded.retired_keys.values(), key=lambda k: k.id):
        if key.status is KeyStatus.ROTATED and _consumer_may_hold(key, desired, recorded):
            continue  # never delete a key a place may still hold (see behind_places)
        for target in _synced_targets(recorded, SyncSubject.KEY, key.id, desired):
            successor = recorded.syncs.get((target, SyncSubject.KEY, key.replaced_by or 0))
            if key.replaced_by is not None and (successor is None or not successor.settled):
                continue  # never leave a repository without a working key
            sync(
                target,
                SyncSubject.KEY,
                key.id,
                RemoteState.ABSENT,
                environment=key.environment,
                key=_recorded_key(key),
            )
    actions.extend(_reported_failures(desired, recorded, drift, ids))
    for observed in drift:
        if observed.observed == "orphan" and observed.target in desired.targets:
            actions.append(
                SyncAction(
                    id=ids.make(ActionType.SYNC, observed.target, "orphan", observed.remote_id),
                    environment=_environment_of_repository(observed.repository, desired),
                    target=observed.target,
                    subject=SyncSubject.KEY,
                    want=RemoteState.ABSENT,
                    remote_id=observed.remote_id,
                    repository=observed.repository,
                    reason=observed.detail or "managed key not in the ledger",
                )
            )
    return actions


def _reported_failures(
    desired: DesiredState, recorded: RecordedState, drift: Sequence[Drift], ids: _ActionIds
) -> Iterator[SyncAction]:
    """A ``sync`` that records, for every deployment a target reports failed (set there by
    someone else: the workflow that rolled it out), that it failed, and writes nothing to the
    target: the ledger keeps the report for the delivery metrics; re-asserting our success
    would erase it. Planned for a deployment this plan supersedes too (its report would be
    lost with it otherwise)."""
    records = {record.id: record for record in recorded.deployed.values()}
    live = set(records)
    records.update(recorded.retired_records)
    for observed in drift:
        record = records.get(observed.subject_id or 0) if observed.failure else None
        if record is None or observed.target not in desired.targets:
            continue
        current = recorded.syncs.get((observed.target, SyncSubject.RECORD, record.id))
        if current is not None and current.remote_detail.get("status") == observed.observed:
            continue  # recorded already
        yield SyncAction(
            id=ids.make(ActionType.SYNC, observed.target, "reported", record.id),
            environment=record.environment,
            target=observed.target,
            subject=SyncSubject.RECORD,
            subject_id=record.id,
            want=RemoteState.ACTIVE if record.id in live else RemoteState.INACTIVE,
            remote_id=observed.remote_id,
            slot=record.slot,
            artifact=record.artifact,
            reason=f"{observed.target} reports the deployment {observed.observed}: recorded as "
            "failed, not overwritten",
            reported=ReportedFailure(state=observed.observed, at=observed.updated_at),
        )


def _consumer_may_hold(key: KeyRecord, desired: DesiredState, recorded: RecordedState) -> bool:
    """Whether some place of ``key``'s deploy key may still hold it: one that does not hold
    the ACTIVE key of the same repository and title (a rotation not yet delivered
    everywhere)."""
    active = recorded.keys.get((key.repository, key.title))
    if active is None:
        return False
    spec = desired.deploy_key(key.repository, key.title)
    declared = spec.sinks if spec is not None else active.sinks
    return bool(behind_places(declared, active, recorded))


def _paused(target: str, current: TargetSync | None, now: datetime) -> str | None:
    """Why a sync waits: the target's last answer asked not to be called before a time (a rate
    limit's retry-after, journaled with the failure) that has not come yet."""
    if current is None or current.not_before is None or now >= current.not_before:
        return None
    until = current.not_before.strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{target} asked for a pause: not tried again before {until}"


def _heartbeat_due(
    desired: DesiredState, target: str, current: TargetSync, want: RemoteState, now: datetime
) -> str | None:
    spec = desired.targets.get(target)
    interval = spec.heartbeat() if spec is not None else None
    if want is not RemoteState.ACTIVE or interval is None:
        return None
    age = now - current.updated_at
    if age < interval:
        return None
    return f"heartbeat: last recorded on {target} {int(age.total_seconds() // 60)}m ago"


def _deploy_targets(
    spec: EnvironmentSpec, desired: DesiredState, kind: ArtifactKind
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The targets a new record goes to, in call order (each type's ``sync_order``: GitHub
    first, others may refer to its deployment), and notes for the ones that cannot take it."""
    names = sorted(spec.targets, key=lambda n: (desired.targets[n].sync_order, n))
    taken = tuple(n for n in names if kind in desired.targets[n].artifact_kinds)
    notes = tuple(
        f"{n}: a {kind.value} is not deployable on {desired.targets[n].type}, not sent"
        for n in names
        if n not in taken
    )
    return taken, notes


def _record_targets(
    environment: str, desired: DesiredState, recorded: RecordedState
) -> Iterator[str]:
    """Targets (that are still configured) of an environment, declared or last recorded."""
    spec = desired.environments.get(environment)
    if spec is not None:
        names: Iterable[str] = spec.targets
    else:
        known = recorded.environments.get(environment)
        names = known.targets if known else ()
    return (name for name in names if name in desired.targets)


def _key_targets(environment: str, desired: DesiredState, recorded: RecordedState) -> Iterator[str]:
    return (
        name
        for name in _record_targets(environment, desired, recorded)
        if desired.targets[name].holds_deploy_keys
    )


def _synced_targets(
    recorded: RecordedState, subject: SyncSubject, subject_id: int, desired: DesiredState
) -> list[str]:
    """Targets that hold something for a retired record or key and have not been told."""
    return sorted(
        sync.target
        for sync in recorded.syncs_by_subject.get((subject, subject_id), [])
        if not _retired_settled(sync)
    )


def _holding(recorded: RecordedState, subject: SyncSubject, subject_id: int) -> tuple[str, ...]:
    """Targets that hold a remote copy of a record or key."""
    return tuple(
        sorted(
            sync.target
            for sync in recorded.syncs_by_subject.get((subject, subject_id), [])
            if sync.remote_id is not None
        )
    )


def _retired_settled(sync: TargetSync) -> bool:
    """Nothing left to tell a target about a retired record or key: it never held a copy (no
    remote id and no attempt that might have made one), or it was told."""
    never_sent = sync.remote_id is None and (sync.attempts == 0 or sync.settled)
    return never_sent or (
        sync.settled and sync.wanted in (RemoteState.INACTIVE, RemoteState.ABSENT)
    )


def _environment_of_repository(repository: str | None, desired: DesiredState) -> str:
    for name, spec in sorted(desired.environments.items()):
        if any(key.repository == repository for key in spec.deploy_keys):
            return name
    return ""


def _holds(action: Action, desired: DesiredState, now: datetime) -> list[str]:
    """The operator's holds on ``action``, as reasons: a suspended environment or slot changes
    nothing; a freeze window stops deploys and decommissions (key rotations and target syncs
    of what is recorded go on)."""
    suspended = _suspended(action, desired)
    frozen = None if suspended else _frozen(action, desired, now)
    return suspended if frozen is None else [frozen]


def _suspended(action: Action, desired: DesiredState) -> list[str]:
    """Why ``action`` is suspended by the manifests (the environment or its slot), if it is."""
    spec = desired.environments.get(action.environment)
    if spec is None:
        return []
    if spec.suspend:
        return [f"environment {action.environment!r} is suspended"]
    slot_name = slot_of(action)
    slot = spec.slots.get(slot_name) if slot_name else None
    if slot is not None and slot.suspend:
        return [f"slot {action.environment}/{slot_name} is suspended"]
    return []


def _frozen(action: Action, desired: DesiredState, now: datetime) -> str | None:
    """The freeze window that stops ``action`` (a deploy or a decommission) now, if one does."""
    spec = desired.environments.get(action.environment)
    if spec is None or action.type not in (ActionType.DEPLOY, ActionType.DECOMMISSION):
        return None
    until = spec.frozen_until(now)
    return None if until is None else f"frozen until {_moment(until)}"


def _protected(environment: str, desired: DesiredState, recorded: RecordedState) -> bool:
    """An environment still declared says so itself; a removed one is judged by the ledger."""
    spec = desired.environments.get(environment)
    if spec is not None:
        return spec.protected
    known = recorded.environments.get(environment)
    return known.protected if known is not None else False


def _change(before: Artifact, after: Artifact) -> str:
    """A deploy's reason: the two artifacts in as few words as tell them apart. The versions
    (``v1 -> v2``); with the digests when the version stays (a re-pushed tag:
    ``v2.3.1@sha256:aaaaaaaaaaaa -> v2.3.1@sha256:bbbbbbbbbbbb``); with the names when the name
    changes, and the kinds too when the kind changes
    (``CONTAINER_IMAGE ghcr.io/acme/api v1 -> HELM_CHART oci://ghcr.io/acme/api v1``)."""
    kind = before.kind != after.kind
    name = kind or before.name != after.name
    digest = 0
    if before.version == after.version and before.digest != after.digest:
        digest = _digest_width(before.digest, after.digest)
    return (
        f"{_version(before, kind=kind, name=name, digest=digest)} -> "
        f"{_version(after, kind=kind, name=name, digest=digest)}"
    )


#: hex digits of a digest shown by default (``sha256:`` + 12, as ``Artifact.describe`` shows)
_SHORT_DIGEST = 12


def _digest_width(first: str | None, second: str | None) -> int:
    """Hex digits enough to tell two digests apart: 12, more when those are alike."""
    if first is None or second is None:
        return _SHORT_DIGEST
    a, b = first.removeprefix("sha256:"), second.removeprefix("sha256:")
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    return max(_SHORT_DIGEST, same + 1)


def _version(artifact: Artifact, *, kind: bool = False, name: bool = False, digest: int = 0) -> str:
    """An artifact's version (its short digest when it has none), with its ``digest`` hex
    digits, its name and its kind when asked."""
    text = artifact.version or ""
    if artifact.digest and (digest or not text):
        short = artifact.digest[: len("sha256:") + (digest or _SHORT_DIGEST)]
        text = f"{text}@{short}" if text else short
    parts = [artifact.kind.value] if kind else []
    if name:
        parts.append(artifact.name)
    return " ".join([*parts, text])


def _material(part: object) -> object:
    """What an id is a digest of, for one part: a model as its JSON (an artifact's written out
    field by field, the same JSON without pydantic's work: an id per slot of a first plan)."""
    if type(part) is Artifact:
        return {
            "kind": part.kind.value,
            "name": part.name,
            "version": part.version,
            "digest": part.digest,
        }
    return part.model_dump(mode="json") if isinstance(part, BaseModel) else part


class _ActionIds:
    """Stable action ids: a digest of what the action does and of the ledger state it starts
    from, so a re-plan of the same inputs gives the same ids and no two applies share one."""

    def __init__(self, lineage: str, serial: int) -> None:
        self._base = [lineage, serial]

    def make(self, kind: ActionType, *parts: object) -> str:
        material = [*self._base, kind.value, *map(_material, parts)]
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return digest[:12]
