"""What the rest of slotkeeper needs from a ledger, one Protocol per role.

A consumer names only the roles it uses, so mypy proves what it can touch: the dashboard is
given reads only, the target syncer the state and nothing of the webhook's memory. One class,
``SqlLedger`` (on SQLite or PostgreSQL, picked by ``open_ledger`` from the state URL), plays
every role; ``Ledger``, the union of them all, is for the places that open a ledger and hand it
on (the CLI, the daemon).

- ``StateReads`` / ``StateStore``: records, deploy keys, environments, revisions, target
  syncs, held actions, the serial and lineage. The pipeline (what it plans against), the
  executor and the target syncer; the status, history and keys commands; the dashboard.
- ``AuditLog``: the append-only event log. The dashboard.
- ``WriterLock``: one writer at a time. The pipeline (one apply); the daemon's leadership.
- ``HttpCacheStore``: conditional-request bodies and ETags. The GitHub adapter's cache.
- ``WriteLog``: each target's recent content writes. The GitHub write budget.
- ``ReconcileRequests``: reconciles asked for by followers, webhook deliveries already seen.
  The daemon's webhook receiver and loop.
- ``LastGoodReads`` / ``LastGoodStore``: the last manifest set that loaded whole, and which
  files are broken now. The daemon (tolerant loading); status and the dashboard.

Transactions: the state and its audit log are written only inside ``StateStore.transaction()``
(an event commits with the change it tells of); every other role's write is one call that
commits on its own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict

from slotkeeper.actions import approval_hint
from slotkeeper.ledger.lease import LeaseInfo, Takeover
from slotkeeper.model import (
    Approval,
    Artifact,
    CommitInfo,
    Decision,
    EnvironmentRecord,
    KeyRecord,
    KeySecret,
    KeyStatus,
    ManifestStatus,
    Record,
    RecordedState,
    RecordStatus,
    Revision,
    Scope,
    SinkHolding,
    SyncSubject,
    TargetSync,
)
from slotkeeper.promotion import Evidence, SlotHold


class SlotHead(NamedTuple):
    """A slot's newest record in brief: what a page needs of every slot to count and filter
    them (the whole record is read only for the slots it shows)."""

    record_id: int
    environment: str
    slot: str
    status: RecordStatus
    #: every target's copy is as the record wants it (none yet: none to wait for)
    confirmed: bool


class PendingAction(BaseModel):
    """An action a guard held back at the last apply, shown by ``status``."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    action_id: str
    type: str
    environment: str
    slot: str | None
    key: str | None
    reason: str
    blocked: str
    serial: int
    at: datetime
    #: for an action that waits for a person: its content digest and standing (``awaiting``,
    #: ``rejected``), see ``actions.ActionApproval``
    digest: str | None = None
    approval: str | None = None
    guards: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """``SLOT`` or ``key:REPOSITORY/TITLE``: what the action changes in its environment."""
        return self.slot if self.slot is not None else f"key:{self.key}"

    @property
    def awaiting(self) -> bool:
        return self.approval == "awaiting"

    @property
    def hint(self) -> str | None:
        """The command that lets it through, as surfaces show it (see ``approval_hint``)."""
        return approval_hint(self.action_id, self.approval, self.guards)


class NotifyState(BaseModel):
    """What notifications last saw: the audit events told up to ``cursor`` (an event seq), how
    many looks there were, and the conditions (failing targets, held actions, freezes, broken
    files) that held at the last look, as the notifier's own JSON."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    cursor: int
    generation: int
    conditions: dict[str, Any]


class OutboxMessage(BaseModel):
    """One message for one notifier, in the ledger's outbox until it is sent or given up."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    id: int = 0
    notifier: str
    #: the message's own id, the same on every try (receivers deduplicate on it)
    message_id: str
    event: str
    environment: str | None
    #: the message as JSON (never a credential)
    body: str
    created_at: datetime
    due_at: datetime
    attempts: int = 0
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None


class DeliveryRow(BaseModel):
    """A record as the delivery metrics read it: when and what, what it superseded, its marks,
    the commits it brought (None: unknown) and whether a target reported it failed."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    record: Record
    replaced: Artifact | None
    commits: tuple[CommitInfo, ...] | None
    target_failed: bool


class Event(BaseModel):
    """One entry of the append-only audit log."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    seq: int
    serial: int
    at: datetime
    type: str
    environment: str | None
    slot: str | None
    record_id: int | None
    key_id: int | None
    action_id: str | None
    revision: str | None
    actor: str
    detail: dict[str, Any]


class LedgerTransaction(Protocol):
    """The writes of one state transaction (``StateStore.transaction()``).

    They commit together when the block ends, or none of them does: an exception rolls back all
    of it, the audit events with it, so the event log never tells of a change that did not
    happen nor misses one that did. A database failure is raised as ``LedgerError``. Records,
    keys and events are never deleted: the ledger is the history.

    The guards raise ``StalePlanError``: ``check_serial`` and ``bump_serial`` when the ledger
    moved (or is another lineage) since the plan was made; ``set_record_status`` and
    ``set_key_status`` when the record is no longer DEPLOYED or the key no longer ACTIVE, so a
    record or key is retired once. The writer lock is not checked here: the caller holds it
    (``WriterLock.writer``) for a whole apply, which is what keeps two appliers apart.
    """

    def bump_serial(self, *, lineage: str, expected: int) -> int:
        """Check the serial (see ``check_serial``) and move it by one: the new serial."""
        ...

    def check_serial(self, *, lineage: str, expected: int) -> None: ...

    def save_revision(self, revision: Revision) -> None:
        """Keep a commit's details; a sha already kept keeps its first details."""
        ...

    def upsert_environment(self, environment: EnvironmentRecord, *, at: datetime) -> None: ...

    def replace_pending(self, pending: Iterable[PendingAction], scope: Scope | None = None) -> None:
        """The held actions of this apply replace those of the last one (of the ``scope``'s
        environments only, after a scoped plan)."""
        ...

    def set_commits(self, record_id: int, commits: Sequence[CommitInfo] | None) -> None:
        """Keep the commits a deployment brought (None: they could not be known)."""
        ...

    def use_approval(self, approval_id: int, *, serial: int, at: datetime) -> None:
        """Mark an approval used by the apply at ``serial``: it lets nothing else through."""
        ...

    def upsert_sync(self, sync: TargetSync) -> None:
        """One target's journal row for a record or key, replacing the one before."""
        ...

    def touch(self, record_ids: Sequence[int], *, at: datetime) -> None:
        """Move ``last_seen_at`` of those records that are still DEPLOYED."""
        ...

    def insert_record(
        self,
        *,
        environment: str,
        slot: str,
        artifact: Artifact,
        ref: str | None,
        at: datetime,
        revision: str | None,
        action_id: str,
        annotations: dict[str, str] | None = None,
    ) -> int:
        """A new DEPLOYED record (its id); a second DEPLOYED one in a slot is a ``LedgerError``
        (the schema refuses it)."""
        ...

    def set_record_status(self, record_id: int, status: RecordStatus, *, at: datetime) -> None: ...

    def set_superseded_by(self, record_id: int, successor: int) -> None: ...

    def hold_rollback(self, record_id: int, superseded: int, *, at: datetime) -> SlotHold | None:
        """Hold the artifact of ``superseded`` in its slot when ``record_id``, its successor,
        puts back an artifact the slot ran before it (a rollback); the hold, or None."""
        ...

    def insert_key(
        self,
        *,
        environment: str,
        repository: str,
        title: str,
        fingerprint: str,
        public_key: str,
        read_only: bool,
        secret_file: str,
        rotate_after: str | None,
        at: datetime,
        revision: str | None,
        action_id: str,
        sinks: Sequence[KeySecret] = (),
    ) -> int:
        """A new ACTIVE deploy key (its id): its public half and where its private half is."""
        ...

    def delivered(
        self,
        repository: str,
        title: str,
        sink: str,
        *,
        key_id: int,
        fingerprint: str,
        version: str | None,
        at: datetime,
    ) -> None:
        """Record that the place ``sink`` of a deploy key now holds key ``key_id``."""
        ...

    def delivery_failed(
        self, repository: str, title: str, sink: str, *, error: str, at: datetime
    ) -> None:
        """Record a failure to deliver to ``sink``; what it holds is unchanged."""
        ...

    def forget_sink(self, repository: str, title: str, sink: str) -> None:
        """The place ``sink`` holds nothing of this key any more."""
        ...

    def set_key_status(self, key_id: int, status: KeyStatus, *, at: datetime) -> None: ...

    def set_replaced_by(self, key_id: int, successor: int) -> None: ...

    def append_event(
        self,
        *,
        serial: int,
        at: datetime,
        type: str,
        actor: str,
        detail: dict[str, Any],
        environment: str | None = None,
        slot: str | None = None,
        record_id: int | None = None,
        key_id: int | None = None,
        action_id: str | None = None,
        revision: str | None = None,
    ) -> None:
        """Append to the audit log (see ``AuditLog``), in this transaction."""
        ...


class StateReads(Protocol):
    """The recorded state, read: what the planner compares the manifests with, and what the
    status, history and keys commands and the dashboard show.

    Reads never wait for the writer lock. Each sees what is committed (and, from inside a
    transaction of the same ledger object, that transaction's own writes); separate calls are
    separate reads, so a caller that needs them to agree (the pipeline, the executor) holds the
    writer lock, under which no other process moves them. Lists come in a fixed order, given
    on each method.
    """

    def read_state(self, scope: Scope | None = None) -> RecordedState:
        """The serial and lineage, every DEPLOYED record, ACTIVE key, environment and sync
        row, and the retired records and keys some target may still hold as live. With a
        ``scope``: only its environments' records, keys and environments, the keys on its
        repositories, the sync rows of those, and the sinks of keys on its repositories."""
        ...

    def latest_records(self) -> list[Record]:
        """The newest record of every environment/slot ever seen, by environment and slot."""
        ...

    def slot_heads(self, environments: Collection[str] | None = None) -> list[SlotHead]:
        """Every environment/slot's newest record in brief (of ``environments`` only, when
        given), by environment and slot."""
        ...

    def head_tally(self) -> list[tuple[str, RecordStatus, bool, int]]:
        """How many slots of each environment have a newest record of each status, confirmed
        by every target or not: (environment, status, confirmed, count), by environment."""
        ...

    def records(self, ids: Collection[int]) -> list[Record]:
        """The records of ``ids`` (those that exist), by id."""
        ...

    def syncs_of(self, subject: SyncSubject, ids: Collection[int]) -> list[TargetSync]:
        """The sync rows of the records (or keys) of ``ids``, by subject id and target."""
        ...

    def slot_counts(self) -> dict[RecordStatus, int]:
        """How many slots have each status as their newest record."""
        ...

    def history(self, environment: str, slot: str | None = None) -> list[Record]:
        """Every record of an environment (or one slot of it), newest first."""
        ...

    def all_sinks(self) -> dict[tuple[str, str], dict[str, SinkHolding]]:
        """What each place of each deploy key holds, by (repository, title) and place."""
        ...

    def sinks_of(self, repository: str, title: str) -> dict[str, SinkHolding]:
        """What each place of the deploy key ``repository``/``title`` holds, by place."""
        ...

    def keys(self, *, include_retired: bool = False) -> list[KeyRecord]:
        """ACTIVE deploy keys (every key with ``include_retired``), by repository and title,
        newest first."""
        ...

    def pending(self) -> list[PendingAction]:
        """The actions the last apply held, by environment, slot and key."""
        ...

    def revision(self, sha: str) -> Revision | None: ...

    def predecessor(self, record_id: int) -> Record | None:
        """The record that ``record_id`` superseded, if any."""
        ...

    def record(self, record_id: int) -> Record:
        """One record; an unknown id is a ``LedgerError``."""
        ...

    def key(self, key_id: int) -> KeyRecord:
        """One deploy key; an unknown id is a ``LedgerError``."""
        ...

    def syncs_for(self, subject: SyncSubject, subject_id: int) -> list[TargetSync]:
        """Every target's sync row of one record or key, by target."""
        ...

    def all_syncs(self) -> list[TargetSync]:
        """Every sync row, by subject, subject id and target."""
        ...


class StateStore(StateReads, Protocol):
    """The recorded state, read and written: the executor and the target syncer.

    Writes happen only in a ``transaction()`` (see ``LedgerTransaction``). One transaction runs
    at a time per ledger object: the target syncs share it from worker threads.
    """

    def transaction(self) -> AbstractContextManager[LedgerTransaction]: ...


class AuditLog(Protocol):
    """The append-only audit trail: who (actor), what (type, detail), when, at which serial and
    revision, for which environment, slot, record, key or action.

    Events are appended only by ``LedgerTransaction.append_event``, inside the state change
    they tell of, and never changed or deleted; ``seq`` grows with each. Read by the dashboard
    (the last apply, who deployed a record) and by anyone auditing the ledger.
    """

    def events(
        self,
        *,
        since: int = 0,
        types: Sequence[str] = (),
        environment: str | None = None,
        slot: str | None = None,
        last: int | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> list[Event]:
        """Events after ``since``, oldest first; only of ``types``, of that environment and
        slot, and at or after ``after`` and before ``before`` when given (the database filters:
        a caller reads only what it asked for); only the newest ``last`` of them when given."""
        ...


class WriterLock(Protocol):
    """One writer at a time: an apply (the CLI) or a leading replica (the daemon).

    The lock is the ledger's own: a lock file beside an SQLite database (freed when its process
    ends), a lease on PostgreSQL (``ledger.lease``: renewed on the database's clock, with a
    fencing epoch that every state-changing transaction checks, so a holder that lost it, frozen
    or partitioned, has every later write refused). It is re-entrant within one process
    (``try_lead`` counts, ``resign`` undoes one, the last one releases it) and never waited for
    by readers. Used by the pipeline, which holds ``writer`` for a whole apply (read, plan,
    execute), and by the daemon's leader election (``try_lead``, ``leading``, ``resign``).
    """

    def writer(self, *, timeout: float) -> AbstractContextManager[None]:
        """Hold the lock for the block, waiting at most ``timeout`` seconds for it; then a
        ``LedgerLockedError`` that names the ledger and says how long it waited."""
        ...

    def try_lead(self) -> bool:
        """Take the lock if it is free, without waiting; True while this process holds it."""
        ...

    def resign(self) -> None:
        """Undo one successful ``try_lead`` (nothing when not holding)."""
        ...

    def leading(self) -> bool:
        """Whether this process may still write: False once it resigned, or once its lease
        was not renewed within the renew deadline (a local check that never waits on the
        database: a replica that lost the lock stops before its next action)."""
        ...

    def takeover(self) -> Takeover | None:
        """This process's last acquisition of the lease: its epoch and whom it was taken from
        (None where the lock is a file lock)."""
        ...

    def lease(self) -> LeaseInfo | None:
        """Who holds the writer lease, since when and until when, as the ledger says (None
        where the lock is a file lock, or before anyone wrote)."""
        ...


class HttpCacheStore(Protocol):
    """Conditional-request cache of the targets (GitHub's ETags), kept between runs so that a
    steady state's refresh is answered with 304s and spends no rate limit.

    Entries are keyed by target name, credential digest (never the credential: the caller
    passes a one-way digest) and URL, so a body one credential was shown is never served to
    another. ``cache_put`` commits on its own and replaces the entry. Called through
    ``reconcile.LedgerHttpCache``, which binds a target and credential.
    """

    def cache_get(self, target: str, credential: str, url: str) -> tuple[str, str] | None:
        """The (ETag, body) kept for the URL, or None."""
        ...

    def cache_put(
        self, target: str, credential: str, url: str, etag: str, body: str, *, at: datetime
    ) -> None: ...


class WriteLog(Protocol):
    """The write budget's journal: when each target was last sent a content-creating request,
    shared by every run and replica on the ledger (GitHub's secondary limits count per
    credential, not per process).

    ``record_writes`` commits all its moments in one transaction (a crash loses all or none)
    and drops the target's entries more than a day older than each moment stored. Called by
    ``reconcile.LedgerWriteLog`` (writes) and when a GitHub target's budget is set up (reads).
    """

    def recent_writes(self, target: str, *, since: datetime) -> list[datetime]:
        """The target's writes at or after ``since``, oldest first."""
        ...

    def record_writes(self, target: str, moments: Sequence[datetime]) -> None: ...


class ReconcileRequests(Protocol):
    """The daemon replicas' shared memory of webhooks: reconciles a follower asked the leader
    for, and the deliveries already seen.

    Each call commits on its own. Old requests are dropped (the newest hundred are kept), and a
    delivery is remembered for the ``window`` it is asked about. Called by the daemon's webhook
    receiver (``first_delivery``, ``request_reconcile``) and its loop (``latest_request``).
    """

    def request_reconcile(self, reason: str, *, at: datetime) -> None:
        """Ask whichever replica leads to reconcile soon."""
        ...

    def latest_request(self) -> int:
        """The number of the newest request (0 before any): it grows with each one, so a
        leader that remembers the last it saw knows when another came."""
        ...

    def first_delivery(self, keys: Sequence[str], *, at: datetime, window: timedelta) -> bool:
        """Remember ``keys`` (a webhook's delivery id, its body's digest); False when one of
        them was seen within ``window`` (a replay), and False when unsure (another replica
        remembered the same delivery at the same moment, or the write failed)."""
        ...


class LastGoodReads(Protocol):
    """The last manifest set that loaded whole, and which files are broken now, read: by the
    daemon, which loads a broken file's last good version instead, and by ``status`` and the
    dashboard, which show the broken files."""

    def last_good_manifests(self) -> dict[str, bytes]:
        """The content of each file of the last good set, by relative path."""
        ...

    def manifest_status(self) -> ManifestStatus | None:
        """The broken files at the last load, or None when there were none."""
        ...

    def stored_parses(self, digests: Collection[str], format: str) -> dict[str, str]:
        """The stored parses (``format``) of the manifest files with these content digests."""
        ...


class LastGoodStore(LastGoodReads, Protocol):
    """The last good manifests, read and written, one transaction per call: by the pipeline
    after each reconcile of the daemon."""

    def remember_whole(
        self, files: Mapping[str, bytes] | None, *, revision: str | None, at: datetime
    ) -> None:
        """The manifests loaded whole: ``files`` (content by relative path) replace the last
        good set (None keeps it as it is) and no file is broken any more."""
        ...

    def remember_broken(self, status: ManifestStatus) -> None:
        """Some files are broken: record which; the last good set stays as it is."""
        ...

    def store_parses(
        self, parses: Mapping[str, str], *, keep: Collection[str], format: str
    ) -> None:
        """Keep ``parses`` (by content digest) as ``format``'s, and of those kept before only
        the ones of digests in ``keep`` (the files of the set just loaded)."""
        ...


class Approvals(Protocol):
    """Operators' decisions about held actions (``slotkeeper approve`` / ``reject``): written
    by any process, leader or not, one transaction each with its audit event."""

    def decide(
        self,
        held: PendingAction,
        decision: Decision,
        *,
        actor: str,
        reason: str,
        at: datetime,
        expires_at: datetime | None = None,
        override_freeze: bool = False,
    ) -> Approval:
        """Record a decision about ``held``, which must wait for a person (has a digest)."""
        ...

    def approvals(self) -> list[Approval]:
        """Every decision ever recorded, newest first."""
        ...


class DeliveryReads(Protocol):
    """What the delivery metrics read."""

    def delivery_rows(
        self,
        *,
        environments: Sequence[str] | None,
        until: datetime,
        since: datetime | None = None,
        slot: str | None = None,
    ) -> list[DeliveryRow]:
        """Every record of ``environments`` (None: all) created before ``until`` (and not
        before ``since``; of that ``slot`` alone): a deployment's judges are the later ones
        of its slot."""
        ...

    def environment_records(self) -> list[EnvironmentRecord]:
        """Every environment the ledger knows."""
        ...


class PromotionReads(Protocol):
    """What promotion decides from (see :mod:`slotkeeper.promotion`)."""

    def promotion_evidence(
        self, candidates: Sequence[tuple[str, str, str, Artifact]]
    ) -> dict[tuple[str, str, tuple[str, str, str]], Evidence]:
        """For each (environment, slot, upstream environment, artifact): its stints upstream
        and the holds standing on it in the slot."""
        ...


class Holds(PromotionReads, Protocol):
    """Operators end holds (``slotkeeper release-hold``): any process, leader or not."""

    def release_holds(
        self, environment: str, slot: str, *, actor: str, reason: str, at: datetime
    ) -> list[SlotHold]:
        """End every hold standing on the slot, each with its audit event; the ones ended."""
        ...


class Outbox(Protocol):
    """Notifications: what was last seen, and the messages waiting to be sent.

    ``record_notifications`` is fenced like every state change (only the writer moves what
    was told); the sender's bookkeeping is too, so a process that lost the lease neither sends
    (its HTTP client is fenced) nor marks anything."""

    def notify_state(self) -> NotifyState | None:
        """What the last look saw; None before the first."""
        ...

    def record_notifications(self, state: NotifyState, messages: Sequence[OutboxMessage]) -> None:
        """In one transaction: keep ``state`` and queue ``messages`` (one already queued, same
        notifier and message id, is not queued again)."""
        ...

    def due_messages(self, *, now: datetime, limit: int) -> list[OutboxMessage]:
        """Messages neither sent nor given up whose time has come, oldest first."""
        ...

    def mark_sent(self, ids: Sequence[int], *, at: datetime) -> None: ...

    def retry_later(self, ids: Sequence[int], *, due_at: datetime, error: str) -> None:
        """Count a failed try and wait until ``due_at`` (``error`` in fixed words)."""
        ...

    def delay(self, ids: Sequence[int], *, due_at: datetime) -> None:
        """Wait until ``due_at`` without counting a try (a rate limit)."""
        ...

    def give_up(self, ids: Sequence[int], *, at: datetime, error: str) -> None: ...

    def outbox(self, *, last: int = 100) -> list[OutboxMessage]:
        """The newest messages, sent or not, newest first."""
        ...


class Ledger(
    StateStore,
    AuditLog,
    Approvals,
    DeliveryReads,
    Holds,
    Outbox,
    WriterLock,
    HttpCacheStore,
    WriteLog,
    ReconcileRequests,
    LastGoodStore,
    Protocol,
):
    """Every role at once: what ``open_ledger`` returns, for the places that open a ledger and
    hand each part of slotkeeper the roles it needs (the CLI, the daemon)."""

    #: the ledger's URL as it may be shown: without any credential (see ``slotkeeper.redact``)
    url: str

    def close(self) -> None: ...
