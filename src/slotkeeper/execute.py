"""The executor: carry out a :class:`Plan` against the ledger and the targets.

The caller holds the ledger's writer lock. An apply proceeds in four steps:

1. *begin*: one transaction checks the plan is not stale (same lineage and serial), moves the
   serial once when anything will change, stores the revision, environment metadata and the
   blocked actions (``status`` shows them as pending), and moves ``last_seen_at`` of the
   unchanged slots;
2. *ledger actions*, in plan order, each with its audit event. Deploys and decommissions only
   write the ledger here, so up to ``BATCH_SIZE`` of them share one transaction (if it fails,
   they are retried one per transaction, so only the failing one fails). Deploy keys go
   remote-first: a new key is registered and confirmed on its targets before the ledger (and the
   secret file) switch to it, and the key it replaces is deleted only after;
3. *target syncs*: the deployments of new and retired records and the planned ``sync`` actions,
   journaled and run per slot under a concurrency bound (see ``targetsync``);
4. *finish*: an ``apply.finished`` event with the counts.

One failing action or target call is a result, never the end of the apply. Because the serial
moves in step 1, a plan file can never be applied twice, even if the apply died half-way: the
rest is re-derived by the next plan (level-triggered).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from slotkeeper import observability as obs
from slotkeeper.actions import (
    Action,
    ActionType,
    ApprovalState,
    CreateKeyAction,
    DecommissionAction,
    DeployAction,
    KeyAction,
    RecordAction,
    RevokeKeyAction,
    RotateKeyAction,
    SyncAction,
    approval_hint,
    key_of,
    slot_of,
)
from slotkeeper.errors import DeliveryIncomplete, SlotkeeperError
from slotkeeper.keys import KeyPair, SecretSink, generate_key
from slotkeeper.ledger import LedgerTransaction, PendingAction, StateStore
from slotkeeper.model import (
    Artifact,
    CommitInfo,
    EnvironmentRecord,
    KeyRecord,
    KeySecret,
    KeyStatus,
    RecordStatus,
    RemoteState,
    Scope,
    SinkHolding,
    SyncStatus,
    SyncSubject,
    TargetSync,
    normalize_secret_path,
)
from slotkeeper.plan import Plan
from slotkeeper.sinks.delivery import Deliveries
from slotkeeper.targets.base import KeySubject, Remote, Target
from slotkeeper.targetsync import History, SyncOutcome, SyncWork, TargetSyncer

Clock = Callable[[], datetime]


class Outcome(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    BLOCKED = "blocked"
    DEFERRED = "deferred"


class ActionResult(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)

    action_id: str
    type: ActionType
    label: str
    outcome: Outcome
    message: str
    target: str | None = None
    record_id: int | None = None
    key_id: int | None = None
    duration_ms: float = 0.0
    #: for a blocked action that waits for a person: the command that lets it through
    hint: str | None = None


class ApplyResult(BaseModel):
    """What an apply did, action by action and target by target; the CLI and the daemon
    render this value."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    serial: int
    results: tuple[ActionResult, ...]
    #: what failed outside any one action (e.g. a target that could not be refreshed)
    problems: tuple[str, ...] = ()

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAILED) == 0 and not self.problems


ProgressHook = Callable[[ActionResult], None]
#: the commits a deployment in an environment at a ref brings after one at another ref
#: (None: unknown)
Commits = Callable[[str, str | None, str], tuple[CommitInfo, ...] | None]


class _Context:
    def __init__(
        self,
        *,
        plan: Plan,
        serial: int,
        clock: Clock,
        actor: str,
        sink: SecretSink,
        targets: Mapping[str, Target],
        ledger: StateStore,
        commits: Commits | None = None,
        concurrency: int = 4,
    ) -> None:
        self.plan = plan
        self.commits = commits
        self.concurrency = max(1, concurrency)
        #: the commits between two refs, found once per apply (many slots share their refs)
        self.brought: dict[tuple[str, str | None, str], tuple[CommitInfo, ...] | None] = {}
        #: the ref each deploy is counted from (its superseded record's), by action id
        self.bases: dict[str, str | None] = {}
        self.serial = serial
        self.clock = clock
        self.actor = actor
        self.sink = sink
        self.targets = targets
        self.ledger = ledger
        self.revision = plan.revision.sha if plan.revision else None
        #: target work produced by the ledger actions, one group per slot or key
        self.groups: dict[str, list[SyncWork]] = {}
        #: the environment of each group (its lane: see ``lanes``)
        self.group_environments: dict[str, str] = {}
        #: secret files written by this apply: never removed by it
        self.written: set[str] = set()
        #: the places beyond the secrets directory (Kubernetes Secrets, Actions secrets)
        self.deliveries = Deliveries(targets=targets)

    def event(
        self,
        tx: LedgerTransaction,
        action: Action,
        type: str,
        at: datetime,
        *,
        artifact: Artifact | None = None,
        **fields: Any,
    ) -> None:
        detail: dict[str, Any] = {"reason": action.reason}
        if action.type in (ActionType.DECOMMISSION, ActionType.REVOKE_KEY):
            # the flags that let a removal through, for the audit trail
            options = self.plan.options
            allowed = [
                flag
                for flag, given in (
                    ("--allow-decommission", options.allow_decommission),
                    ("--allow-mass-decommission", options.allow_mass_decommission),
                    ("--allow-empty", options.allow_empty),
                )
                if given
            ]
            if allowed:
                detail["allowed_by"] = allowed
        if action.approval is not None and action.approval.state is ApprovalState.APPROVED:
            # the operator's approval that let it through the guards that wait for a person
            detail["approval"] = {
                "id": action.approval.decision,
                "by": action.approval.actor,
                "reason": action.approval.note or "",
                "guards": list(action.approval.guards),
            }
        if artifact is not None:
            detail["artifact"] = artifact.model_dump(mode="json")
        if self.plan.revision is not None and self.plan.revision.dirty:
            detail["dirty"] = True
        detail.update(fields.pop("detail", {}))
        tx.append_event(
            serial=self.serial,
            at=at,
            type=type,
            actor=self.actor,
            detail=detail,
            environment=action.environment,
            slot=slot_of(action),
            action_id=action.id,
            revision=self.revision,
            **fields,
        )

    def use_approval(self, tx: LedgerTransaction, action: Action, at: datetime) -> None:
        """Use up the approval that let ``action`` through, with its audit event."""
        approval = action.approval
        if approval is None or approval.state is not ApprovalState.APPROVED:
            return
        assert approval.decision is not None  # an approved action names its approval
        tx.use_approval(approval.decision, serial=self.serial, at=at)
        tx.append_event(
            serial=self.serial,
            at=at,
            type="approval.used",
            actor=self.actor,
            detail={
                "approval": approval.decision,
                "approved_by": approval.actor or "",
                "digest": approval.digest,
                "guards": list(approval.guards),
            },
            environment=action.environment,
            slot=slot_of(action),
            action_id=action.id,
            revision=self.revision,
        )

    def find_commits(self, actions: Iterable[Action]) -> None:
        """Before a batch is written: the commits each deploy brings, from the superseded
        record's ref to its own (a slot's first deploy: its own commit), so that the record
        and its commits are written together, at deploy time (a branch moves later)."""
        commits = self.commits
        if commits is None:
            return
        wanted: set[tuple[str, str | None, str]] = set()
        for action in actions:
            if not isinstance(action, DeployAction) or action.ref is None:
                continue
            base = self.ledger.record(action.supersedes).ref if action.supersedes else None
            self.bases[action.id] = base
            if (action.environment, base, action.ref) not in self.brought:
                wanted.add((action.environment, base, action.ref))
        if not wanted:
            return
        ordered = sorted(wanted, key=str)
        # a lookup may ask a target (GitHub's compare API): as many at once as the apply's
        # concurrency, never one after another on the apply's path
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            self.brought.update(zip(ordered, pool.map(lambda k: commits(*k), ordered), strict=True))

    def commits_of(self, action: DeployAction) -> tuple[CommitInfo, ...] | None:
        """What :meth:`find_commits` found for ``action`` (None: unknown)."""
        if action.ref is None or action.id not in self.bases:
            return None
        return self.brought.get((action.environment, self.bases[action.id], action.ref))

    def enqueue(self, group: str, work: SyncWork, environment: str) -> None:
        # Work for a target that is not configured is queued too: it fails, loudly, rather
        # than being dropped (the planner blocks such retirements; a stale saved plan may not).
        self.groups.setdefault(group, []).append(work)
        self.group_environments.setdefault(group, environment)

    def lanes(self, environments: Mapping[str, EnvironmentRecord]) -> list[str]:
        """The write budget each group spends from, in the groups' order: its work's
        repository (a deploy key's), else its environment's, else the environment's name."""
        found = []
        for group, works in self.groups.items():
            environment = self.group_environments[group]
            known = environments.get(environment)
            repository = next((w.repository for w in works if w.repository), None)
            found.append(repository or (known and known.repository) or environment)
        return found

    def remove_secret(self, name: str) -> str:
        """Remove a retired key's private file, unless an ACTIVE key uses it or this apply
        wrote it (e.g. a key renamed with the same file): a file in use is never deleted."""
        normal = normalize_secret_path(name)
        active = self.ledger.keys(include_retired=False)
        in_use = {normalize_secret_path(key.secret_file) for key in active}
        if normal in in_use or normal in self.written:
            obs.get_logger().info("secret.kept", secret_file=normal, reason="in use")
            return f"; kept {normal} (in use)"
        self.sink.remove(normal)
        return ""

    def tell(
        self,
        group: str,
        action: Action,
        *,
        target: str,
        subject: SyncSubject,
        subject_id: int,
        want: RemoteState,
    ) -> None:
        """Queue: make ``target`` hold ``want`` for a record or key changed by ``action``."""
        self.enqueue(
            group,
            SyncWork(
                target=target,
                subject=subject,
                subject_id=subject_id,
                want=want,
                label=action.label,
                action_id=action.id,
            ),
            action.environment,
        )


def execute(
    plan: Plan,
    ledger: StateStore,
    *,
    clock: Clock,
    actor: str,
    sink: SecretSink,
    targets: Mapping[str, Target] | None = None,
    concurrency: int = 4,
    history: History | None = None,
    commits: Commits | None = None,
    on_result: ProgressHook | None = None,
    stop: Callable[[], bool] | None = None,
    scope: Scope | None = None,
) -> ApplyResult:
    """Apply ``plan``; the caller holds the writer lock. Never raises for one action's failure;
    raises ``StalePlanError`` before touching anything if the plan is stale. A plan of a
    ``scope`` replaces the held actions of its environments only."""
    log = obs.get_logger()
    started = clock()
    applicable = plan.applicable
    # The serial counts changes of the recorded state: target syncs only mirror it, so an apply
    # that only retries them (every daemon resync) leaves saved plans valid.
    changes_ledger = any(a.type is not ActionType.SYNC for a in applicable)
    with ledger.transaction() as tx:
        if changes_ledger:
            serial = tx.bump_serial(lineage=plan.lineage, expected=plan.base_serial)
        else:
            tx.check_serial(lineage=plan.lineage, expected=plan.base_serial)
            serial = plan.base_serial
        if plan.revision is not None:
            tx.save_revision(plan.revision)
        for environment in plan.environments:
            tx.upsert_environment(environment, at=started)
        tx.replace_pending(
            (
                PendingAction(
                    action_id=action.id,
                    type=action.type.value,
                    environment=action.environment,
                    slot=slot_of(action),
                    key=key.name if (key := key_of(action)) else None,
                    reason=action.reason,
                    blocked=action.blocked or "",
                    serial=serial,
                    at=started,
                    digest=action.approval.digest if action.approval else None,
                    approval=action.approval.state.value if action.approval else None,
                    guards=action.approval.guards if action.approval else (),
                )
                for action in plan.blocked
            ),
            scope,
        )
        tx.touch(plan.unchanged, at=started)
        if applicable:
            tx.append_event(
                serial=serial,
                at=started,
                type=obs.APPLY_STARTED,
                actor=actor,
                revision=plan.revision.sha if plan.revision else None,
                detail={"summary": plan.summary, "base_serial": plan.base_serial},
            )
    log.info(obs.APPLY_STARTED, serial=serial, actions=len(applicable), blocked=len(plan.blocked))
    context = _Context(
        plan=plan,
        serial=serial,
        clock=clock,
        actor=actor,
        sink=sink,
        targets=targets or {},
        ledger=ledger,
        commits=commits,
        concurrency=concurrency,
    )

    results: list[ActionResult] = []

    def report(result: ActionResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    stopping = stop or (lambda: False)
    batch: list[RecordAction] = []

    def flush() -> None:
        if batch and stopping():
            # Asked to stop (SIGTERM, or the writer lock was lost): nothing more is written.
            results = [_result(a, Outcome.DEFERRED, "stopped before it ran") for a in batch]
        else:
            context.find_commits(batch)
            results = _run_batch(batch, context) if batch else []
        for result in results:
            report(result)
        batch.clear()

    for action in plan.actions:
        if stopping():
            # What is left is re-planned by the next reconcile.
            flush()
            report(_result(action, Outcome.DEFERRED, "stopped before it ran"))
            continue
        if action.blocked is not None:
            flush()  # results are reported in plan order
            log.warning(obs.ACTION_BLOCKED, **_log_fields(action), blocked=action.blocked)
            hint = (
                approval_hint(action.id, action.approval.state, action.approval.guards)
                if action.approval is not None
                else None
            )
            report(_result(action, Outcome.BLOCKED, action.blocked, hint=hint))
            continue
        match action:
            case SyncAction():
                _enqueue_sync(action, context)
            case DeployAction() | DecommissionAction():
                batch.append(action)
                if len(batch) >= BATCH_SIZE:
                    flush()
            case _:
                flush()  # results are reported in plan order
                report(_run(action, context))
    flush()
    context.deliveries.close()

    if context.groups:
        known = {e.name: e for e in ledger.read_state().environments.values()}
        known.update({e.name: e for e in plan.environments})
        syncer = TargetSyncer(
            ledger=ledger,
            targets=context.targets,
            environments=known,
            lineage=plan.lineage,
            clock=clock,
            concurrency=concurrency,
            history=history,
            stop=stopping,
        )
        syncer.run(
            list(context.groups.values()),
            on_outcome=lambda o: report(_sync_result(o)),
            lanes=context.lanes(known),
        )

    outcome = ApplyResult(serial=serial, results=tuple(results))
    if applicable:
        with ledger.transaction() as tx:
            tx.append_event(
                serial=serial,
                at=clock(),
                type=obs.APPLY_FINISHED,
                actor=actor,
                revision=context.revision,
                detail={o.value: outcome.count(o) for o in Outcome},
            )
    log.info(obs.APPLY_FINISHED, serial=serial, **{o.value: outcome.count(o) for o in Outcome})
    return outcome


def _log_fields(action: Action) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action_id": action.id,
        "action": action.type.value,
        "environment": action.environment,
    }
    if (slot := slot_of(action)) is not None:
        fields["slot"] = slot
    if (key := key_of(action)) is not None:
        fields["key"] = key.name
    return fields


def _result(action: Action, outcome: Outcome, message: str, **fields: Any) -> ActionResult:
    return ActionResult(
        action_id=action.id,
        type=action.type,
        label=action.label,
        outcome=outcome,
        message=message,
        **fields,
    )


def _sync_result(outcome: SyncOutcome) -> ActionResult:
    work = outcome.work
    kind = {
        SyncStatus.SYNCED: Outcome.APPLIED,
        SyncStatus.FAILED: Outcome.FAILED,
        SyncStatus.PENDING: Outcome.DEFERRED,
    }[outcome.status]
    return ActionResult(
        action_id=work.action_id,
        type=ActionType.SYNC,
        label=work.label,
        outcome=kind,
        message=outcome.message,
        target=work.target,
        record_id=work.subject_id if work.subject is SyncSubject.RECORD else None,
        key_id=work.subject_id if work.subject is SyncSubject.KEY else None,
        duration_ms=outcome.duration_ms,
    )


def _run(action: _LedgerAction, context: _Context) -> ActionResult:
    """Apply one action that changes the ledger; its failure is its result."""
    log = obs.get_logger()
    started = time.perf_counter()
    try:
        record_id, key_id, message = _apply(action, context)
    except (SlotkeeperError, OSError, ValueError) as exc:
        # One action's failure is a result, not the end of the apply.
        duration = (time.perf_counter() - started) * 1000
        log.error(obs.ACTION_FAILED, **_log_fields(action), error=str(exc), duration_ms=duration)
        return _result(action, Outcome.FAILED, str(exc), duration_ms=duration)
    duration = (time.perf_counter() - started) * 1000
    log.info(obs.ACTION_APPLIED, **_log_fields(action), duration_ms=round(duration, 3))
    return _result(
        action,
        Outcome.APPLIED,
        message,
        record_id=record_id,
        key_id=key_id,
        duration_ms=duration,
    )


#: the actions that change the ledger (a ``sync`` only mirrors it: see ``_enqueue_sync``)
_LedgerAction = RecordAction | KeyAction
#: what applying one action made: the record id, the key id, and a message for people
_Applied = tuple[int | None, int | None, str]


def _apply(action: _LedgerAction, context: _Context) -> _Applied:
    """Dispatch by kind: record actions in a transaction of their own (``_run_batch`` shares
    one among many), key actions remote-first."""
    match action:
        case DeployAction() | DecommissionAction():
            return _record_step(action, context)
        case CreateKeyAction() | RotateKeyAction():
            return _create_or_rotate_key(action, context)
        case RevokeKeyAction():
            return _revoke_key(action, context)


def _enqueue_sync(action: SyncAction, context: _Context) -> None:
    group = f"{action.environment}/{action.slot}" if action.slot else f"key:{action.label}"
    context.enqueue(
        group,
        SyncWork(
            target=action.target,
            subject=action.subject,
            subject_id=action.subject_id,
            want=action.want,
            label=action.label,
            action_id=action.id,
            remote_id=action.remote_id if action.subject_id is None else None,
            recreate=action.recreate,
            repository=action.repository,
            reported=action.reported,
        ),
        action.environment,
    )


def _retire_remotely(context: _Context, action: RecordAction, group: str, record_id: int) -> None:
    """Queue an ``inactive`` for every target that holds (or may hold, after an attempt whose
    answer was lost) a deployment of ``record_id``."""
    for sync in context.ledger.syncs_for(SyncSubject.RECORD, record_id):
        if sync.remote_id is not None or (sync.attempts > 0 and not sync.settled):
            context.tell(
                group,
                action,
                target=sync.target,
                subject=SyncSubject.RECORD,
                subject_id=record_id,
                want=RemoteState.INACTIVE,
            )


def _write_deploy(tx: LedgerTransaction, action: DeployAction, context: _Context) -> int:
    at = context.clock()
    # Retire the old record first: the ledger allows one DEPLOYED record per slot.
    if action.supersedes is not None:
        tx.set_record_status(action.supersedes, RecordStatus.SUPERSEDED, at=at)
    record_id = tx.insert_record(
        environment=action.environment,
        slot=action.slot,
        artifact=action.artifact,
        ref=action.ref,
        at=at,
        revision=context.revision,
        action_id=action.id,
        annotations=action.annotations,
    )
    tx.set_commits(record_id, context.commits_of(action))
    if action.supersedes is not None:
        tx.set_superseded_by(action.supersedes, record_id)
        context.event(
            tx,
            action,
            "record.superseded",
            at,
            artifact=action.artifact,
            record_id=action.supersedes,
            detail={"superseded_by": record_id},
        )
        hold = tx.hold_rollback(record_id, action.supersedes, at=at)
        if hold is not None:  # a rollback: what it replaced is not deployed here again
            context.event(
                tx,
                action,
                "hold.created",
                at,
                artifact=hold.artifact,
                record_id=hold.record,
                detail={"hold": hold.id, "rolled_back_by": record_id},
            )
    context.event(tx, action, "record.deployed", at, artifact=action.artifact, record_id=record_id)
    context.use_approval(tx, action, at)
    return record_id


def _after_deploy(action: DeployAction, context: _Context, record_id: int) -> _Applied:
    """Once committed: queue the new record for its targets and the old one's retirement."""
    group = action.label
    for target in action.targets:
        context.tell(
            group,
            action,
            target=target,
            subject=SyncSubject.RECORD,
            subject_id=record_id,
            want=RemoteState.ACTIVE,
        )
    if action.supersedes is not None:
        _retire_remotely(context, action, group, action.supersedes)
    verb = f"superseded #{action.supersedes} with" if action.supersedes else "deployed"
    return record_id, None, f"{verb} #{record_id}"


def _write_decommission(
    tx: LedgerTransaction, action: DecommissionAction, context: _Context
) -> int:
    at = context.clock()
    tx.set_record_status(action.record, RecordStatus.DECOMMISSIONED, at=at)
    context.event(
        tx, action, "record.decommissioned", at, artifact=action.artifact, record_id=action.record
    )
    context.use_approval(tx, action, at)
    return action.record


def _after_decommission(action: DecommissionAction, context: _Context, record_id: int) -> _Applied:
    _retire_remotely(context, action, action.label, record_id)
    return record_id, None, f"decommissioned #{record_id}"


# Record actions (deploys and decommissions) only write the ledger; their target work is queued
# after the commit. So many of them can share one transaction: a crash loses the whole batch or
# none of it, and the next plan derives the same actions again; nothing remote has happened for
# any of them yet.

#: the most actions one ledger transaction carries
BATCH_SIZE = 500


def _write_record(tx: LedgerTransaction, action: RecordAction, context: _Context) -> int:
    """A record action's ledger writes, in the caller's transaction; the record id."""
    match action:
        case DeployAction():
            return _write_deploy(tx, action, context)
        case DecommissionAction():
            return _write_decommission(tx, action, context)


def _after_record(action: RecordAction, context: _Context, record_id: int) -> _Applied:
    """Once a record action is committed: queue its target work."""
    match action:
        case DeployAction():
            return _after_deploy(action, context, record_id)
        case DecommissionAction():
            return _after_decommission(action, context, record_id)


def _record_step(action: RecordAction, context: _Context) -> _Applied:
    """One record action in a transaction of its own."""
    with context.ledger.transaction() as tx:
        record_id = _write_record(tx, action, context)
    return _after_record(action, context, record_id)


def _run_batch(actions: list[RecordAction], context: _Context) -> list[ActionResult]:
    """Record actions in one transaction; if it fails, each one alone, so that only the
    failing action fails."""
    if len(actions) == 1:
        return [_run(actions[0], context)]
    started = time.perf_counter()
    try:
        with context.ledger.transaction() as tx:
            written = [_write_record(tx, action, context) for action in actions]
    except (SlotkeeperError, OSError, ValueError):
        return [_run(action, context) for action in actions]
    each = (time.perf_counter() - started) * 1000 / len(actions)
    log = obs.get_logger()
    results = []
    for action, record_id in zip(actions, written, strict=True):
        record, key, message = _after_record(action, context, record_id)
        log.info(obs.ACTION_APPLIED, **_log_fields(action), duration_ms=round(each, 3))
        results.append(
            _result(
                action,
                Outcome.APPLIED,
                message,
                record_id=record,
                key_id=key,
                duration_ms=each,
            )
        )
    return results


def _create_or_rotate_key(action: CreateKeyAction | RotateKeyAction, context: _Context) -> _Applied:
    key = action.key
    at = context.clock()
    pair = generate_key(comment=f"slotkeeper:{key.title}")
    provisional = KeyRecord(
        id=0,
        environment=action.environment,
        repository=key.repository,
        title=key.title,
        fingerprint=pair.fingerprint,
        public_key=pair.public_key,
        read_only=key.read_only,
        secret_file=key.secret_file,
        rotate_after=key.rotate_after,
        status=KeyStatus.ACTIVE,
        created_at=at,
        updated_at=at,
    )
    # The sink must be able to take the private half before anything is registered: a failing
    # write after registration would leave an orphan key on the target at every try.
    if key.secret_file:
        context.sink.check_writable(key.secret_file)
    # Remote first: the new key is registered and confirmed listed on every target before the
    # ledger and the secret file switch to it. A failure here changes nothing locally.
    # Every target the action names is open (apply_saved refuses a plan naming one the operator
    # no longer configures; one that could not be set up is there and fails its calls).
    registered: dict[str, Remote] = {}
    for name in action.targets:
        target = context.targets[name]
        if target.spec_class.holds_deploy_keys:
            registered[name] = target.add_key(KeySubject(key=provisional))
    # The new private half is moved into place as the last step before the ledger commits the
    # key: if the move fails nothing is recorded, and a failed commit is the only (rare) gap.
    staged = (
        context.sink.staged(key.secret_file, pair.private_key) if key.secret_file else nullcontext()
    )
    with context.ledger.transaction() as tx, staged:
        if key.previous_id is not None:
            # Retire the old key first: the ledger allows one ACTIVE key per repository/title.
            tx.set_key_status(key.previous_id, KeyStatus.ROTATED, at=at)
        key_id = tx.insert_key(
            environment=action.environment,
            repository=key.repository,
            title=key.title,
            fingerprint=pair.fingerprint,
            public_key=pair.public_key,
            read_only=key.read_only,
            secret_file=key.secret_file,
            rotate_after=key.rotate_after,
            at=at,
            revision=context.revision,
            action_id=action.id,
            sinks=key.sinks,
        )
        for name, remote in registered.items():
            tx.upsert_sync(
                TargetSync(
                    target=name,
                    subject=SyncSubject.KEY,
                    subject_id=key_id,
                    wanted=RemoteState.PRESENT,
                    remote_id=remote.remote_id,
                    remote_state=RemoteState.PRESENT,
                    status=SyncStatus.SYNCED,
                    attempts=1,
                    updated_at=at,
                    location=remote.location,
                )
            )
        detail = {"fingerprint": pair.fingerprint}
        if key.previous_id is not None:
            tx.set_replaced_by(key.previous_id, key_id)
            detail["previous_fingerprint"] = key.previous_fingerprint or ""
        kind = "key.rotated" if key.previous_id is not None else "key.created"
        context.event(tx, action, kind, at, key_id=key_id, detail=detail)
    if key.secret_file:
        context.written.add(normalize_secret_path(key.secret_file))
    kept = ""
    if key.previous_secret_file and normalize_secret_path(
        key.previous_secret_file
    ) != normalize_secret_path(key.secret_file):
        kept = context.remove_secret(key.previous_secret_file)
    behind = _deliver(action, context, key_id, pair)
    if behind:
        # The new key is recorded, registered and in the places that took it; the old one
        # stays registered, so a consumer still holding it keeps working. The next plan
        # rotates again (a private half is never kept to be written later).
        raise DeliveryIncomplete(
            f"{pair.fingerprint} (#{key_id}) is registered but not yet in every place: "
            + "; ".join(behind)
            + (
                f". Key #{key.previous_id} stays registered until every place holds a new key"
                if key.previous_id is not None
                else ""
            )
        )
    if key.previous_id is not None:
        _delete_remotely(context, action, key.previous_id)
    return None, key_id, f"{pair.fingerprint} (#{key_id}){kept}"


def _deliver(
    action: CreateKeyAction | RotateKeyAction, context: _Context, key_id: int, pair: KeyPair
) -> list[str]:
    """Write the new private half to every place beyond the secrets directory, each confirmed
    and recorded as it lands; then take the key out of places the key no longer lists. What
    did not land, one line per place."""
    key = action.key
    identity = (key.repository, key.title)
    behind: list[str] = []
    holdings = context.ledger.sinks_of(*identity)
    for sink in key.sinks:
        if sink.file is not None:
            continue
        try:
            version = context.deliveries.deliver(
                identity, sink, pair, action.targets, holdings.get(sink.label)
            )
        except SlotkeeperError as exc:
            with context.ledger.transaction() as tx:
                tx.delivery_failed(*identity, sink.label, error=str(exc), at=context.clock())
            obs.get_logger().warning(
                "key.delivery_failed", key=key.name, sink=sink.label, error=str(exc)
            )
            behind.append(str(exc))
            continue
        with context.ledger.transaction() as tx:
            tx.delivered(
                *identity,
                sink.label,
                key_id=key_id,
                fingerprint=pair.fingerprint,
                version=version,
                at=context.clock(),
            )
        obs.get_logger().info("key.delivered", key=key.name, sink=sink.label, key_id=key_id)
    if not behind:
        declared = {sink.label for sink in key.sinks}
        previous = context.ledger.key(key.previous_id) if key.previous_id is not None else None
        for label, holding in context.ledger.sinks_of(*identity).items():
            if label in declared or label.startswith("file:"):
                continue
            dropped = next(
                (s for s in (previous.sinks if previous else ()) if s.label == label), None
            )
            _take_out(context, identity, dropped, holding, action.targets)
    return behind


def _take_out(
    context: _Context,
    identity: tuple[str, str],
    sink: KeySecret | None,
    holding: SinkHolding,
    targets: tuple[str, ...],
) -> str:
    """Remove a key from a place it no longer belongs to (unless the place says to keep it),
    and forget the place. A failure is logged and the place kept in the ledger: tried again
    at the next rotation or revocation."""
    if sink is not None and sink.keep_on_revoke:
        outcome = "kept (keepOnRevoke)"
    elif sink is None:
        outcome = "left in place (its settings are not known)"
    else:
        try:
            outcome = context.deliveries.remove(identity, sink, holding, targets)
        except SlotkeeperError as exc:
            obs.get_logger().warning("key.sink_removal_failed", sink=holding.sink, error=str(exc))
            return f"{holding.sink}: not removed: {exc}"
    with context.ledger.transaction() as tx:
        tx.forget_sink(*identity, holding.sink)
    obs.get_logger().info("key.sink_removed", sink=holding.sink, outcome=outcome)
    return f"{holding.sink}: {outcome}"


def _delete_remotely(context: _Context, action: KeyAction, key_id: int) -> None:
    """Queue the deletion of a retired key wherever it is registered."""
    for sync in context.ledger.syncs_for(SyncSubject.KEY, key_id):
        if sync.remote_id is not None:
            context.tell(
                f"key:{action.label}",
                action,
                target=sync.target,
                subject=SyncSubject.KEY,
                subject_id=key_id,
                want=RemoteState.ABSENT,
            )


def _revoke_key(action: RevokeKeyAction, context: _Context) -> _Applied:
    key = action.key
    at = context.clock()
    with context.ledger.transaction() as tx:
        tx.set_key_status(key.previous_id, KeyStatus.REVOKED, at=at)
        context.event(
            tx,
            action,
            "key.revoked",
            at,
            key_id=key.previous_id,
            detail={"fingerprint": key.previous_fingerprint or ""},
        )
        context.use_approval(tx, action, at)
    kept = context.remove_secret(key.secret_file) if key.secret_file else ""
    _delete_remotely(context, action, key.previous_id)
    identity = (key.repository, key.title)
    notes = [
        _take_out(
            context,
            identity,
            next((sink for sink in key.sinks if sink.label == label), None),
            holding,
            action.targets,
        )
        for label, holding in context.ledger.sinks_of(*identity).items()
        if not label.startswith("file:") and holding.key_id == key.previous_id
    ]
    places = "".join(f"; {note}" for note in notes)
    return None, key.previous_id, f"revoked {key.previous_fingerprint}{kept}{places}"
