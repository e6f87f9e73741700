"""The actions of a plan: one small immutable value per kind of change.

A plan is a list of actions, and what an action carries depends on what it does: a deploy names
a slot and an artifact, a revocation the ledger key it retires, a sync the one target it is for.
Each kind is its own model, told apart by ``type`` (a pydantic discriminated union, as target
specs are), so a type checker says what a :class:`DeployAction` carries and the executor needs
no ``assert`` to find out.

On the wire (plan files, ``plan --json``) every action keeps the one flat shape it had before
the kinds were told apart (plan format version 2): all the keys of all the kinds, in a fixed
order, a kind's foreign keys null or empty. Scripts reading the JSON and plan files saved by an
earlier slotkeeper keep working; reading one back, a foreign key is accepted only with that
empty value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from slotkeeper.model import Artifact, KeySecret, RemoteState, SyncSubject


class ActionType(StrEnum):
    """The kinds of action, as plan files and ``plan --json`` name them (``type``)."""

    CREATE_KEY = "create_key"
    ROTATE_KEY = "rotate_key"
    DEPLOY = "deploy"
    DECOMMISSION = "decommission"
    REVOKE_KEY = "revoke_key"
    SYNC = "sync"


class _Value(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


class PlannedKey(_Value):
    """The deploy key an action concerns; ``previous_id`` names the ledger key it replaces."""

    repository: str
    title: str
    read_only: bool
    rotate_after: str | None
    secret_file: str
    #: every place the private half goes (the file among them), as the manifests declare
    sinks: tuple[KeySecret, ...] = Field((), exclude_if=lambda sinks: not sinks)
    previous_id: int | None = None
    previous_fingerprint: str | None = None
    previous_secret_file: str | None = None

    @property
    def name(self) -> str:
        return f"{self.repository}/{self.title}"


class ReportedFailure(_Value):
    """A deployment's failure as a target reports it: its state there (GitHub's ``failure`` or
    ``error``) and the target's time of it."""

    state: str
    at: str | None = None


class KnownKey(PlannedKey):
    """A planned key tied to a key the ledger holds: ``previous_id`` is the key a rotation
    replaces, a revocation retires or a sync mirrors."""

    previous_id: int


@dataclass(slots=True, kw_only=True)
class _WireAction:
    """An action on the wire: every key of every kind, in this order (plan format version 2,
    from when an action was one model). Only built to be written: a plain dataclass, which
    pydantic writes as fast as a model, is built in a fraction of the time."""

    id: str
    type: ActionType
    environment: str
    slot: str | None = None
    key: PlannedKey | None = None
    artifact: Artifact | None = None
    ref: str | None = None
    previous: Artifact | None = None
    supersedes: int | None = None
    record: int | None = None
    targets: tuple[str, ...] = ()
    target: str | None = None
    subject: SyncSubject | None = None
    subject_id: int | None = None
    want: RemoteState | None = None
    remote_id: str | None = None
    recreate: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    repository: str | None = None
    reason: str
    blocked: str | None = None


@dataclass(slots=True, kw_only=True)
class _WireApprovalAction(_WireAction):
    """An action that waits for, or went through with, an operator's decision: the wire shape
    plus ``approval``, written only then (plan files of every other action are unchanged)."""

    approval: ActionApproval


@dataclass(slots=True, kw_only=True)
class _WireReportedAction(_WireAction):
    """A sync that records a failure a target reported: the wire shape plus ``reported``,
    written only then."""

    reported: ReportedFailure


#: the keys a kind may leave out on the wire, with their empty value
_ABSENT: dict[str, Any] = {
    wire.name: wire.default if wire.default_factory is MISSING else wire.default_factory()
    for wire in fields(_WireAction)
    if wire.default is not MISSING or wire.default_factory is not MISSING
}


def _is_absent(name: str, value: Any) -> bool:
    """Whether ``value`` is the empty value of the foreign key ``name`` (``[]`` for a tuple)."""
    empty = _ABSENT[name]
    if isinstance(empty, tuple):
        return isinstance(value, list | tuple) and not value
    return type(value) is type(empty) and value == empty


class ApprovalState(StrEnum):
    """Where a held action stands with the operators (see :class:`ActionApproval`)."""

    #: only guards that wait for a person hold it: ``slotkeeper approve`` lets it through
    AWAITING = "awaiting"
    #: an approval lets it through the guards that held it
    APPROVED = "approved"
    #: an operator refused it: it stays held, and is no longer asked about
    REJECTED = "rejected"


#: the guards an approval lifts, by name (a freeze only with ``--override-freeze``)
PROTECTED, MASS, FREEZE, PROMOTION = "protected", "mass", "freeze", "promotion"


class ActionApproval(_Value):
    """An action's standing with the operators: set only on an action that a guard which waits
    for a person held (a protected environment, the mass guard, a freeze window, a promotion
    policy), and on which nothing else holds (a broken manifest, an empty checkout, a suspended
    slot are fixed in the manifests, never approved away)."""

    state: ApprovalState
    #: the action's content digest (:func:`content_digest`), which an approval names
    digest: str
    #: the guards that held it (``protected``, ``mass``, ``freeze``, ``promotion``)
    guards: tuple[str, ...]
    #: the decision this state comes from (an approval's or a rejection's ledger id), who made
    #: it and why
    decision: int | None = None
    actor: str | None = None
    note: str | None = None


def approve_command(action_id: str, guards: Iterable[str]) -> str:
    """The command that lets a held action through: with ``--override-freeze`` when a freeze
    window is among what holds it."""
    flag = " --override-freeze" if FREEZE in guards else ""
    return f"slotkeeper approve {action_id}{flag}"


def approval_hint(action_id: str, state: str | None, guards: Iterable[str]) -> str | None:
    """What a surface says about a held action's standing with the operators, if it has one:
    the command to run while it awaits approval."""
    if state == ApprovalState.AWAITING:
        return f"awaiting approval: {approve_command(action_id, guards)}"
    if state == ApprovalState.REJECTED:
        return f"rejected: {approve_command(action_id, guards)} lets it through after all"
    return None


class _ActionBase(_Value):
    """What every action has: a stable id, its kind, the environment it changes, a reason
    people read, and, when a guard, a hold or the daemon's back-off refuses it, why it is
    blocked (it stays in the plan, so every surface can say what is not done and why)."""

    id: str
    type: ActionType
    environment: str
    reason: str
    blocked: str | None = None
    approval: ActionApproval | None = None

    @model_serializer(mode="wrap")
    def _flat(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> _WireApprovalAction | _WireReportedAction | _WireAction | dict[str, Any]:
        """The flat wire shape (see the module's docstring): every key of every kind in a fixed
        order, the ones this kind does not carry with their empty value."""
        if (
            info.include
            or info.exclude
            or info.exclude_none
            or info.exclude_defaults
            or info.exclude_unset
        ):
            own: dict[str, Any] = handler(self)
            return own  # a part was asked for, not the wire shape
        wire = dict(self.__dict__)
        reported = wire.pop("reported", None)  # a sync's only
        if wire["approval"] is not None:
            return _WireApprovalAction(**wire)
        del wire["approval"]
        if reported is not None:
            return _WireReportedAction(**wire, reported=reported)
        return _WireAction(**wire)

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        """Drop the foreign keys of the flat shape that hold their empty value; a foreign key
        with any other value stays, and is refused as an extra field."""
        if not isinstance(data, dict):
            return data
        carried = cls.model_fields
        if data.keys() <= carried.keys() and data.get("approval", True) is not None:
            return data  # no foreign key: what the planner builds (10,000 times a first plan)
        if data.get("approval", True) is None:
            data = {name: value for name, value in data.items() if name != "approval"}
        return {
            name: value
            for name, value in data.items()
            if name in carried or name not in _ABSENT or not _is_absent(name, value)
        }


class DeployAction(_ActionBase):
    """Record ``artifact`` in a slot, superseding the slot's DEPLOYED record if it has one,
    and send the new record to ``targets``."""

    type: Literal[ActionType.DEPLOY] = ActionType.DEPLOY
    slot: str
    artifact: Artifact
    #: the git ref GitHub is sent, decided by the planner so that the record holds exactly it
    ref: str | None = None
    #: the artifact and the record this deploy supersedes (None for a new slot)
    previous: Artifact | None = None
    supersedes: int | None = None
    #: the targets told about the new record, in call order
    targets: tuple[str, ...] = ()
    #: what the deploy carries onto its record
    annotations: dict[str, str] = Field(default_factory=dict)
    #: what the plan has to say about targets (e.g. one that cannot take this kind of artifact)
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``environment/slot``, for display."""
        return f"{self.environment}/{self.slot}"


class DecommissionAction(_ActionBase):
    """Turn the DEPLOYED ``record`` of a slot that left the manifests DECOMMISSIONED, and
    retire it on the targets that hold a copy."""

    type: Literal[ActionType.DECOMMISSION] = ActionType.DECOMMISSION
    slot: str
    record: int
    #: the artifact the record holds (``previous`` too: what the slot held before)
    artifact: Artifact
    previous: Artifact
    #: the targets that hold a copy of the record
    targets: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``environment/slot``, for display."""
        return f"{self.environment}/{self.slot}"


class _KeyChange(_ActionBase):
    """A change of one deploy key, told to the ``targets`` that manage (or hold) it."""

    key: PlannedKey
    targets: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``environment/key:repository/title``, for display."""
        return f"{self.environment}/key:{self.key.name}"


class CreateKeyAction(_KeyChange):
    """Make a declared deploy key that the ledger does not hold."""

    type: Literal[ActionType.CREATE_KEY] = ActionType.CREATE_KEY


class RotateKeyAction(_KeyChange):
    """Replace the ledger key ``key.previous_id`` with a new one: register the new key,
    confirm it, switch the secret, then delete the old one."""

    type: Literal[ActionType.ROTATE_KEY] = ActionType.ROTATE_KEY
    key: KnownKey


class RevokeKeyAction(_KeyChange):
    """Retire the ledger key ``key.previous_id``, which left the manifests."""

    type: Literal[ActionType.REVOKE_KEY] = ActionType.REVOKE_KEY
    key: KnownKey


class SyncAction(_ActionBase):
    """Make one ``target`` hold what the ledger wants (``want``) for one record or key the
    ledger already holds, or delete an orphan key (``subject_id`` None: a key the target holds
    that the ledger never recorded)."""

    type: Literal[ActionType.SYNC] = ActionType.SYNC
    target: str
    subject: SyncSubject
    subject_id: int | None = None
    want: RemoteState
    remote_id: str | None = None
    #: the remote copy was deleted: make a new one rather than update the old
    recreate: bool = False
    #: the target's own words about an earlier failure (the reason keeps to fixed words)
    notes: tuple[str, ...] = ()
    #: what the subject is, for display: a record's slot and artifact, a key, or for an orphan
    #: the repository it is registered on
    slot: str | None = None
    artifact: Artifact | None = None
    key: KnownKey | None = None
    repository: str | None = None
    #: the target reports the deployment failed: record that, write nothing to the target
    reported: ReportedFailure | None = None

    @property
    def label(self) -> str:
        """``environment/slot``, ``environment/key:repository/title``, or
        ``environment/key:repository#remote-id`` for an orphan, for display."""
        if self.key is not None:
            return f"{self.environment}/key:{self.key.name}"
        if self.slot is not None:
            return f"{self.environment}/{self.slot}"
        return f"{self.environment}/key:{self.repository}#{self.remote_id}"


#: One step of a plan, whichever kind (``type`` tells them apart).
Action = Annotated[
    DeployAction
    | DecommissionAction
    | CreateKeyAction
    | RotateKeyAction
    | RevokeKeyAction
    | SyncAction,
    Field(discriminator="type"),
]
#: reads one action from its wire shape (a ``Plan`` reads its actions itself)
ACTION: TypeAdapter[Action] = TypeAdapter(Action, config=ConfigDict(defer_build=True))

#: the actions that change a record (the executor batches their ledger writes)
RecordAction = DeployAction | DecommissionAction
#: the actions that change a deploy key
KeyAction = CreateKeyAction | RotateKeyAction | RevokeKeyAction


def slot_of(action: Action) -> str | None:
    """The slot an action changes or syncs; None for a deploy key's."""
    if isinstance(action, DeployAction | DecommissionAction | SyncAction):
        return action.slot
    return None


def key_of(action: Action) -> PlannedKey | None:
    """The deploy key an action changes or syncs; None for a record's (and an orphan's)."""
    if isinstance(action, _KeyChange | SyncAction):
        return action.key
    return None


def targets_of(action: Action) -> tuple[str, ...]:
    """The targets an action calls: those a change is mirrored to, or a sync's one."""
    if isinstance(action, SyncAction):
        return (action.target,)
    return action.targets


#: what an action's content digest leaves out: its id (which moves with the ledger's serial),
#: the words about it, and who is told (which targets hold a copy can change between plans)
_NOT_CONTENT = frozenset({"id", "reason", "blocked", "approval", "notes", "targets"})


def content_digest(action: Action) -> str:
    """What an approval names: a digest of what ``action`` does (its kind, environment, slot or
    key, artifacts and record or key ids), the same in every plan that does exactly that, and
    another as soon as anything it does changes (a new version, another record)."""
    content = action.model_dump(mode="json", exclude=set(_NOT_CONTENT))
    material = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]
