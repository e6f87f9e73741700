"""What changed since the last look, as notifications: pure, like the planner.

Two sources, one rule — a message per *transition*, never per reconcile:

- the audit log (deploys, supersedes, decommissions, key rotations): every event after the
  last one told is one message, named after the event's sequence number, so it is told once
  however often anyone looks;
- :class:`Conditions`, what holds right now (targets failing, actions held, freezes open, files
  broken): a message when one starts (``failed``, ``blocked`` or ``awaiting-approval``,
  ``frozen``, ``manifests-invalid``) and, where that means something, when it ends
  (``recovered``, ``manifests-fixed``). A target that fails at every reconcile for a day is one
  ``failed`` and, when it works again, one ``recovered``.

The caller keeps the conditions of the last look and the audit cursor in the ledger, in the
transaction that queues the messages (see ``notify.pipeline``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from slotkeeper.actions import approve_command
from slotkeeper.ledger.base import Event, PendingAction
from slotkeeper.model import Artifact, DesiredState, RecordedState, SyncStatus, SyncSubject
from slotkeeper.notify.message import ArtifactRef, Notification

#: audit events told as they are, by their notification event
_TOLD = {
    "record.deployed": "deployed",
    "record.superseded": "superseded",
    "record.decommissioned": "decommissioned",
    "key.rotated": "key-rotated",
}


class HeldAction(BaseModel):
    """An action held at the last look, as notifications remember it."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    action: str
    action_id: str
    blocked: str
    approval: str | None = None
    command: str | None = None


class Conditions(BaseModel):
    """What held at one look: targets failing per environment (``ENV|TARGET`` to the public
    reason), actions held (``ENV/SUBJECT``), environments frozen (to until when) and the
    manifest files found broken."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    failing: dict[str, str] = Field(default_factory=dict)
    held: dict[str, HeldAction] = Field(default_factory=dict)
    frozen: dict[str, str] = Field(default_factory=dict)
    broken: tuple[str, ...] = ()


def observe(
    recorded: RecordedState,
    pending: Iterable[PendingAction],
    *,
    desired: DesiredState | None,
    broken: Iterable[str],
    now: datetime,
) -> Conditions:
    """The conditions that hold now, from the ledger's state and held actions and (when known)
    the manifests' freeze windows."""
    environment_of: dict[tuple[SyncSubject, int], str] = {}
    for record in (*recorded.deployed.values(), *recorded.retired_records.values()):
        environment_of[SyncSubject.RECORD, record.id] = record.environment
    for key in (*recorded.keys.values(), *recorded.retired_keys.values()):
        environment_of[SyncSubject.KEY, key.id] = key.environment
    failing: dict[str, str] = {}
    for (target, subject, subject_id), sync in sorted(recorded.syncs.items()):
        environment = environment_of.get((subject, subject_id))
        if sync.status is SyncStatus.FAILED and environment is not None:
            failing.setdefault(f"{environment}|{target}", sync.public_error or "failed")
    held = {
        f"{p.environment}/{p.subject}": HeldAction(
            action=p.type,
            action_id=p.action_id,
            blocked=p.blocked,
            approval=p.approval,
            command=approve_command(p.action_id, p.guards) if p.approval else None,
        )
        for p in pending
    }
    frozen: dict[str, str] = {}
    for name, spec in sorted((desired.environments if desired else {}).items()):
        until = spec.frozen_until(now)
        if until is not None:
            frozen[name] = until.strftime("%Y-%m-%d %H:%M:%SZ")
    return Conditions(failing=failing, held=held, frozen=frozen, broken=tuple(sorted(broken)))


def detect(
    before: Conditions,
    after: Conditions,
    events: Sequence[Event],
    *,
    lineage: str,
    generation: int,
    now: datetime,
    artifacts: Mapping[int, Artifact],
    key_names: Mapping[int, str],
) -> list[Notification]:
    """The notifications of what happened between two looks: the audit ``events`` after the
    last one told, and the transitions from ``before`` to ``after``. Message ids are the
    event's sequence number, or this look's ``generation`` and an index: never reused.
    ``artifacts`` (by record id) and ``key_names`` (by key id) name what events only number."""
    told = [n for event in events if (n := _told(event, lineage, artifacts, key_names))]
    changed: list[dict[str, Any]] = []
    for where in sorted(after.failing.keys() - before.failing.keys()):
        environment, target = where.split("|", 1)
        reason = after.failing[where]
        changed.append(
            {
                "event": "failed",
                "environment": environment,
                "target": target,
                "reason": reason,
                "summary": f"{target} is failing for {environment}: {reason}",
            }
        )
    for where in sorted(before.failing.keys() - after.failing.keys()):
        environment, target = where.split("|", 1)
        changed.append(
            {
                "event": "recovered",
                "environment": environment,
                "target": target,
                "summary": f"{target} works again for {environment}",
            }
        )
    for where, now_held in sorted(after.held.items()):
        earlier = before.held.get(where)
        awaiting = now_held.approval == "awaiting"
        if earlier is not None and (not awaiting or earlier.approval == "awaiting"):
            continue  # held before, and no newly awaiting approval: not a transition
        environment, subject = where.split("/", 1)
        event = "awaiting-approval" if awaiting else "blocked"
        verb = "awaits approval" if awaiting else "is held"
        changed.append(
            {
                "event": event,
                "environment": environment,
                "slot": None if subject.startswith("key:") else subject,
                "key": subject.removeprefix("key:") if subject.startswith("key:") else None,
                "reason": now_held.blocked,
                "action": now_held.action_id,
                "command": now_held.command if awaiting else None,
                "summary": f"{now_held.action} {where} {verb}: {now_held.blocked}",
            }
        )
    for environment in sorted(after.frozen.keys() - before.frozen.keys()):
        until = after.frozen[environment]
        changed.append(
            {
                "event": "frozen",
                "environment": environment,
                "reason": f"frozen until {until}",
                "summary": f"{environment} is frozen until {until}: no deploys or decommissions",
            }
        )
    newly_broken = sorted(set(after.broken) - set(before.broken))
    if newly_broken:
        files = ", ".join(newly_broken)
        changed.append(
            {
                "event": "manifests-invalid",
                "reason": files,
                "summary": f"manifest files invalid (their last good versions stand in): {files}",
            }
        )
    elif before.broken and not after.broken:
        changed.append(
            {"event": "manifests-fixed", "summary": "every manifest file is valid again"}
        )
    made = [
        Notification(id=f"{lineage}:g{generation}:{index}", at=now, **fields)
        for index, fields in enumerate(changed)
    ]
    return [*told, *made]


def _told(
    event: Event,
    lineage: str,
    artifacts: Mapping[int, Artifact],
    key_names: Mapping[int, str],
) -> Notification | None:
    """The notification of one audit event, if it is one that is told."""
    kind = _TOLD.get(event.type)
    if kind is None:
        return None
    where = f"{event.environment}/{event.slot}" if event.slot else event.environment or ""
    artifact = _artifact(event.detail.get("artifact"))
    fields: dict[str, Any] = {}
    if kind == "deployed":
        summary = f"{where} deployed {_describe(artifact)}"
    elif kind == "superseded":
        before = artifacts.get(event.record_id or 0)
        fields["previous"] = _ref(before)
        summary = f"{where}: {_describe(_ref(before))} superseded by {_describe(artifact)}"
    elif kind == "decommissioned":
        summary = f"{where} decommissioned ({_describe(artifact)})"
    else:
        name = key_names.get(event.key_id or 0, f"#{event.key_id}")
        fields["key"] = name
        summary = f"deploy key {name} rotated in {event.environment}"
    approval = event.detail.get("approval")
    if isinstance(approval, dict) and approval.get("by"):
        summary += f" (approved by {approval['by']})"
    return Notification(
        id=f"{lineage}:e{event.seq}",
        event=kind,
        at=event.at,
        summary=summary,
        environment=event.environment,
        slot=event.slot,
        reason=str(event.detail.get("reason") or "") or None,
        artifact=artifact,
        revision=event.revision,
        actor=event.actor,
        action=event.action_id,
        **fields,
    )


def _artifact(data: Any) -> ArtifactRef | None:
    if not isinstance(data, dict):
        return None
    return ArtifactRef(
        kind=str(data.get("kind", "")),
        name=str(data.get("name", "")),
        version=data.get("version"),
        digest=data.get("digest"),
    )


def _ref(artifact: Artifact | None) -> ArtifactRef | None:
    return None if artifact is None else _artifact(artifact.model_dump(mode="json"))


def _describe(artifact: ArtifactRef | None) -> str:
    if artifact is None:
        return "?"
    version = artifact.version or (artifact.digest or "")[:19]
    return f"{artifact.name} {version}".strip()
