"""The ledger over any DB-API connection; backends supply the connection, dialect and lock.

SQL is written once with ``?`` placeholders and the ``{id}`` column type; :class:`Dialect`
adapts both. Timestamps are stored as fixed-width ISO-8601 UTC text so they sort as they read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from slotkeeper.errors import LedgerError, LedgerLockedError, SchemaVersionError, StalePlanError
from slotkeeper.ledger import holds as slot_holds
from slotkeeper.ledger.base import (
    DeliveryRow,
    Event,
    NotifyState,
    OutboxMessage,
    PendingAction,
    SlotHead,
)
from slotkeeper.ledger.lease import LeaseInfo, Takeover
from slotkeeper.ledger.schema import LATEST_VERSION, MIGRATIONS
from slotkeeper.model import (
    TARGET_FAILURES,
    Approval,
    Artifact,
    ArtifactKind,
    BrokenFile,
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
    RemoteState,
    Revision,
    Scope,
    SinkHolding,
    SyncStatus,
    SyncSubject,
    TargetSync,
)
from slotkeeper.promotion import Evidence, SlotHold


@dataclass(frozen=True)
class Dialect:
    placeholder: str
    id_column: str
    begin: str
    error: type[Exception]
    #: the column type of a time on the database's clock (the writer lease's)
    timestamp_column: str = "TEXT"

    def sql(self, text: str) -> str:
        return text.replace("?", self.placeholder) if self.placeholder != "?" else text


def to_text(moment: datetime) -> str:
    """A timestamp as stored: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


_RECORD_COLUMNS = (
    "id, environment, slot, artifact_kind, artifact_name, artifact_version, artifact_digest, "
    "ref, status, created_at, updated_at, last_seen_at, superseded_by, revision, action_id, "
    "annotations"
)
_KEY_COLUMNS = (
    "id, environment, repository, title, fingerprint, public_key, read_only, secret_file, "
    "rotate_after, status, created_at, updated_at, replaced_by, sinks"
)
_SINK_COLUMNS = (
    "repository, title, sink, key_id, fingerprint, version, delivered_at, last_error, failed_at"
)


#: the enums' members by value: a dict lookup, where calling the enum class costs a
#: microsecond or two a row (noticeable over 10,000 records per reconcile)
_KIND = {kind.value: kind for kind in ArtifactKind}
_STATUS = {status.value: status for status in RecordStatus}


_Model = TypeVar("_Model", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def _stored(model: type[_Model], values: dict[str, Any]) -> _Model:
    """A model of values read back from the ledger: validated before they were written and
    typed by the caller, every field given. What ``model_construct`` makes, without its work
    per call (a quarter of the time: 10,000 records are read at every reconcile)."""
    built = _new(model)
    _set(built, "__dict__", values)
    _set(built, "__pydantic_fields_set__", set(values))
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_private__", None)
    return built


def _record(row: Sequence[Any]) -> Record:
    """A record as stored, the values typed here: the record the validating constructor would
    give (see ``_stored``)."""
    artifact = {"kind": _KIND[row[3]], "name": row[4], "version": row[5], "digest": row[6]}
    return _stored(
        Record,
        {
            "id": row[0],
            "environment": row[1],
            "slot": row[2],
            "artifact": _stored(Artifact, artifact),
            "ref": row[7],
            "status": _STATUS[row[8]],
            "created_at": from_text(row[9]),
            "updated_at": from_text(row[10]),
            "last_seen_at": from_text(row[11]),
            "superseded_by": row[12],
            "revision": row[13],
            "action_id": row[14],
            "annotations": json.loads(row[15]) if row[15] != "{}" else {},
        },
    )


#: a sync row of record ``r`` that does not (yet) hold what the record wants there
_UNSETTLED = (
    "SELECT 1 FROM target_syncs s WHERE s.subject = 'record' AND s.subject_id = r.id "
    "AND NOT (s.status = 'synced' AND s.remote_state IS NOT NULL AND s.remote_state = s.wanted)"
)

#: ids asked for in one statement (far below SQLite's and PostgreSQL's parameter limits)
_BATCH = 900


def _within(scope: Scope | None, *columns: str) -> tuple[str, tuple[str, ...]]:
    """`` AND (…)`` keeping the rows of a scope (by environment, or repository too), with its
    parameters; nothing without one."""
    if scope is None:
        return "", ()
    values = {"environment": sorted(scope.environments), "repository": sorted(scope.repositories)}
    tests = [
        f"{column} IN ({', '.join('?' * len(values[column]))})"
        for column in columns
        if values[column]
    ]
    params = tuple(value for column in columns for value in values[column])
    return f" AND ({' OR '.join(tests) or '1 = 0'})", params


_SYNC_COLUMNS = (
    "target, subject, subject_id, wanted, remote_id, remote_state, remote_updated_at, status, "
    "attempts, last_error, updated_at, remote_detail, location, error_reason, not_before"
)


def _sync(row: Sequence[Any]) -> TargetSync:
    """A journal row as stored, the values typed here (see ``_stored``)."""
    return _stored(
        TargetSync,
        {
            "target": row[0],
            "subject": SyncSubject(row[1]),
            "subject_id": row[2],
            "wanted": RemoteState(row[3]),
            "remote_id": row[4],
            "remote_state": RemoteState(row[5]) if row[5] else None,
            "remote_updated_at": row[6],
            "status": SyncStatus(row[7]),
            "attempts": int(row[8]),
            "last_error": row[9],
            "error_reason": row[13],
            "updated_at": from_text(row[10]),
            "remote_detail": json.loads(row[11]),
            "location": json.loads(row[12]),
            "not_before": from_text(row[14]) if row[14] else None,
        },
    )


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        environment=row[1],
        repository=row[2],
        title=row[3],
        fingerprint=row[4],
        public_key=row[5],
        read_only=bool(row[6]),
        secret_file=row[7],
        rotate_after=row[8],
        status=KeyStatus(row[9]),
        created_at=from_text(row[10]),
        updated_at=from_text(row[11]),
        replaced_by=row[12],
        sinks=tuple(KeySecret.model_validate(sink) for sink in json.loads(row[13] or "[]")),
    )


_APPROVAL_COLUMNS = (
    "id, digest, action_id, decision, actor, reason, override_freeze, at, expires_at, used_at"
)


def _approval(row: Sequence[Any]) -> Approval:
    return Approval(
        id=int(row[0]),
        digest=row[1],
        action_id=row[2],
        decision=Decision(row[3]),
        actor=row[4],
        reason=row[5],
        override_freeze=bool(row[6]),
        at=from_text(row[7]),
        expires_at=from_text(row[8]) if row[8] else None,
        used_at=from_text(row[9]) if row[9] else None,
    )


_OUTBOX_COLUMNS = (
    "id, notifier, message_id, event, environment, body, created_at, due_at, attempts, "
    "sent_at, failed_at, last_error"
)


def _message(row: Sequence[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=int(row[0]),
        notifier=row[1],
        message_id=row[2],
        event=row[3],
        environment=row[4],
        body=row[5],
        created_at=from_text(row[6]),
        due_at=from_text(row[7]),
        attempts=int(row[8]),
        sent_at=from_text(row[9]) if row[9] else None,
        failed_at=from_text(row[10]) if row[10] else None,
        last_error=row[11],
    )


def _holding(row: Sequence[Any]) -> SinkHolding:
    return SinkHolding(
        repository=row[0],
        title=row[1],
        sink=row[2],
        key_id=row[3],
        fingerprint=row[4],
        version=row[5],
        delivered_at=from_text(row[6]) if row[6] else None,
        last_error=row[7],
        failed_at=from_text(row[8]) if row[8] else None,
    )


class SqlTransaction:
    """The write operations of one open transaction: ``LedgerTransaction``'s, and those that
    ``SqlLedger`` commits one call at a time for the other roles (cache, write log, last good
    manifests)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cursor.execute(self._dialect.sql(sql), tuple(params))
        return self._cursor

    def _insert(self, table: str, **values: Any) -> int:
        """Insert one row and return its generated id."""
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        row = self._run(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id", tuple(values.values())
        ).fetchone()
        return int(row[0])

    def _current(self) -> tuple[str, int]:
        row = self._run("SELECT lineage, serial FROM ledger WHERE id = 1").fetchone()
        return str(row[0]), int(row[1])

    def check_serial(self, *, lineage: str, expected: int) -> None:
        current_lineage, serial = self._current()
        if current_lineage != lineage:
            raise StalePlanError(
                f"plan is stale: it was made for ledger lineage {lineage}, "
                f"this ledger is {current_lineage}"
            )
        if serial != expected:
            raise StalePlanError(
                f"plan is stale: it was made at serial {expected}, the ledger is at {serial}; "
                "make a new plan"
            )

    def bump_serial(self, *, lineage: str, expected: int) -> int:
        self.check_serial(lineage=lineage, expected=expected)
        self._run("UPDATE ledger SET serial = serial + 1 WHERE id = 1")
        return expected + 1

    def save_revision(self, revision: Revision) -> None:
        exists = self._run("SELECT 1 FROM revisions WHERE sha = ?", (revision.sha,)).fetchone()
        if exists is None:
            self._run(
                "INSERT INTO revisions (sha, message, author, timestamp, branch) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    revision.sha,
                    revision.message,
                    revision.author,
                    to_text(revision.timestamp),
                    revision.branch,
                ),
            )

    def upsert_environment(self, environment: EnvironmentRecord, *, at: datetime) -> None:
        self._run(
            "INSERT INTO environments (name, protected, production, transient, repository, "
            "targets, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "protected = excluded.protected, production = excluded.production, "
            "transient = excluded.transient, repository = excluded.repository, "
            "targets = excluded.targets, updated_at = excluded.updated_at",
            (
                environment.name,
                int(environment.protected),
                int(environment.production),
                int(environment.transient),
                environment.repository,
                json.dumps(list(environment.targets)),
                to_text(at),
            ),
        )

    def upsert_sync(self, sync: TargetSync) -> None:
        self._run(
            "INSERT INTO target_syncs (target, subject, subject_id, wanted, remote_id, "
            "remote_state, remote_updated_at, status, attempts, last_error, updated_at, "
            "remote_detail, location, error_reason, not_before) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (target, subject, subject_id) DO UPDATE SET "
            "wanted = excluded.wanted, remote_id = excluded.remote_id, "
            "remote_state = excluded.remote_state, "
            "remote_updated_at = excluded.remote_updated_at, status = excluded.status, "
            "attempts = excluded.attempts, last_error = excluded.last_error, "
            "updated_at = excluded.updated_at, remote_detail = excluded.remote_detail, "
            "location = excluded.location, error_reason = excluded.error_reason, "
            "not_before = excluded.not_before",
            (
                sync.target,
                sync.subject.value,
                sync.subject_id,
                sync.wanted.value,
                sync.remote_id,
                sync.remote_state.value if sync.remote_state else None,
                sync.remote_updated_at,
                sync.status.value,
                sync.attempts,
                sync.last_error,
                to_text(sync.updated_at),
                json.dumps(sync.remote_detail, sort_keys=True),
                json.dumps(sync.location, sort_keys=True),
                sync.error_reason,
                to_text(sync.not_before) if sync.not_before else None,
            ),
        )
        status = str(sync.remote_detail.get("status", ""))
        if sync.subject is SyncSubject.RECORD and status in TARGET_FAILURES:
            self._run(
                "INSERT INTO target_failures (record_id, target, status, reported_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (record_id, target) DO NOTHING",
                (sync.subject_id, sync.target, status, to_text(sync.updated_at)),
            )

    def record_write(self, target: str, *, at: datetime) -> None:
        """Log one content-creating request for the write budget; drop entries over a day old."""
        self._run("INSERT INTO target_writes (target, at) VALUES (?, ?)", (target, to_text(at)))
        self._run(
            "DELETE FROM target_writes WHERE target = ? AND at < ?",
            (target, to_text(at - timedelta(days=1))),
        )

    def cache_put(
        self, target: str, credential: str, url: str, etag: str, body: str, *, at: datetime
    ) -> None:
        self._run(
            "INSERT INTO http_cache (target, credential, url, etag, body, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target, credential, url) DO UPDATE SET "
            "etag = excluded.etag, body = excluded.body, updated_at = excluded.updated_at",
            (target, credential, url, etag, body, to_text(at)),
        )

    def replace_pending(self, pending: Iterable[PendingAction], scope: Scope | None = None) -> None:
        where, params = _within(scope, "environment")
        self._run(f"DELETE FROM pending WHERE 1 = 1{where}", params)
        for item in pending:
            self._run(
                "INSERT INTO pending (action_id, type, environment, slot, key, reason, blocked, "
                "serial, at, digest, approval, guards) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.action_id,
                    item.type,
                    item.environment,
                    item.slot,
                    item.key,
                    item.reason,
                    item.blocked,
                    item.serial,
                    to_text(item.at),
                    item.digest,
                    item.approval,
                    ",".join(item.guards) or None,
                ),
            )

    def set_commits(self, record_id: int, commits: Sequence[CommitInfo] | None) -> None:
        if commits is None:
            return  # unknown: commits_known stays NULL
        self._run("UPDATE records SET commits_known = 1 WHERE id = ?", (record_id,))
        for commit in commits:
            self._run(
                "INSERT INTO record_commits (record_id, sha, authored_at, committed_at, subject) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (record_id, sha) DO NOTHING",
                (
                    record_id,
                    commit.sha,
                    to_text(commit.authored_at),
                    to_text(commit.committed_at),
                    commit.subject,
                ),
            )

    def use_approval(self, approval_id: int, *, serial: int, at: datetime) -> None:
        self._run(
            "UPDATE approvals SET used_at = ?, used_serial = ? WHERE id = ? AND used_at IS NULL",
            (to_text(at), serial, approval_id),
        )

    def touch(self, record_ids: Sequence[int], *, at: datetime) -> None:
        stamp = to_text(at)
        self._cursor.executemany(
            self._dialect.sql(
                "UPDATE records SET last_seen_at = ? WHERE id = ? AND status = 'DEPLOYED'"
            ),
            [(stamp, record_id) for record_id in record_ids],
        )

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
        stamp = to_text(at)
        return self._insert(
            "records",
            annotations=json.dumps(annotations or {}, sort_keys=True),
            environment=environment,
            slot=slot,
            artifact_kind=artifact.kind.value,
            artifact_name=artifact.name,
            artifact_version=artifact.version,
            artifact_digest=artifact.digest,
            ref=ref,
            status=RecordStatus.DEPLOYED.value,
            created_at=stamp,
            updated_at=stamp,
            last_seen_at=stamp,
            revision=revision,
            action_id=action_id,
        )

    def set_record_status(self, record_id: int, status: RecordStatus, *, at: datetime) -> None:
        changed = self._run(
            "UPDATE records SET status = ?, updated_at = ? WHERE id = ? AND status = 'DEPLOYED'",
            (status.value, to_text(at), record_id),
        ).rowcount
        if changed != 1:
            raise StalePlanError(f"record {record_id} is no longer DEPLOYED; make a new plan")

    def set_superseded_by(self, record_id: int, successor: int) -> None:
        self._run("UPDATE records SET superseded_by = ? WHERE id = ?", (successor, record_id))

    def hold_rollback(self, record_id: int, superseded: int, *, at: datetime) -> SlotHold | None:
        return slot_holds.hold_rollback(
            lambda sql, params: list(self._run(sql, params).fetchall()),
            self._insert,
            record_id,
            superseded,
            to_text(at),
        )

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
        stamp = to_text(at)
        return self._insert(
            "deploy_keys",
            environment=environment,
            repository=repository,
            title=title,
            fingerprint=fingerprint,
            public_key=public_key,
            read_only=int(read_only),
            secret_file=secret_file,
            rotate_after=rotate_after,
            status=KeyStatus.ACTIVE.value,
            created_at=stamp,
            updated_at=stamp,
            revision=revision,
            action_id=action_id,
            sinks=json.dumps(
                [sink.model_dump(mode="json", by_alias=True, exclude_none=True) for sink in sinks]
            ),
        )

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
        """Record that ``sink`` now holds key ``key_id`` (its last failure is cleared)."""
        self._run(
            "INSERT INTO key_sinks (repository, title, sink, key_id, fingerprint, version, "
            "delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repository, title, sink) "
            "DO UPDATE SET key_id = excluded.key_id, fingerprint = excluded.fingerprint, "
            "version = excluded.version, delivered_at = excluded.delivered_at, "
            "last_error = NULL, failed_at = NULL",
            (repository, title, sink, key_id, fingerprint, version, to_text(at)),
        )

    def delivery_failed(
        self, repository: str, title: str, sink: str, *, error: str, at: datetime
    ) -> None:
        """Record a failure to deliver to ``sink``; what it holds is unchanged."""
        self._run(
            "INSERT INTO key_sinks (repository, title, sink, last_error, failed_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, title, sink) "
            "DO UPDATE SET last_error = excluded.last_error, failed_at = excluded.failed_at",
            (repository, title, sink, error, to_text(at)),
        )

    def forget_sink(self, repository: str, title: str, sink: str) -> None:
        """``sink`` holds nothing of this key any more (removed, or dropped from the key)."""
        self._run(
            "DELETE FROM key_sinks WHERE repository = ? AND title = ? AND sink = ?",
            (repository, title, sink),
        )

    def set_key_status(self, key_id: int, status: KeyStatus, *, at: datetime) -> None:
        changed = self._run(
            "UPDATE deploy_keys SET status = ?, updated_at = ? WHERE id = ? AND status = 'ACTIVE'",
            (status.value, to_text(at), key_id),
        ).rowcount
        if changed != 1:
            raise StalePlanError(f"deploy key {key_id} is no longer ACTIVE; make a new plan")

    def store_last_good(
        self, files: Mapping[str, bytes], *, revision: str | None, at: datetime
    ) -> None:
        stored = dict(self._run("SELECT path, digest FROM manifest_files").fetchall())
        for path, content in files.items():
            digest = hashlib.sha256(content).hexdigest()
            if stored.get(path) == digest:
                continue
            self._run(
                "INSERT INTO manifest_files (path, digest, content, revision, stored_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "digest = excluded.digest, content = excluded.content, "
                "revision = excluded.revision, stored_at = excluded.stored_at",
                (path, digest, content.decode("utf-8"), revision, to_text(at)),
            )
        for path in stored.keys() - files.keys():
            self._run("DELETE FROM manifest_files WHERE path = ?", (path,))

    def set_manifest_status(self, status: ManifestStatus | None) -> None:
        self._run("DELETE FROM manifest_status")
        if status is not None:
            self._run(
                "INSERT INTO manifest_status (id, at, revision, broken) VALUES (1, ?, ?, ?)",
                (
                    to_text(status.at),
                    status.revision,
                    json.dumps([broken.model_dump(mode="json") for broken in status.broken]),
                ),
            )

    def set_replaced_by(self, key_id: int, successor: int) -> None:
        self._run("UPDATE deploy_keys SET replaced_by = ? WHERE id = ?", (successor, key_id))

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
        self._run(
            "INSERT INTO events (serial, at, type, environment, slot, record_id, key_id, "
            "action_id, revision, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                serial,
                to_text(at),
                type,
                environment,
                slot,
                record_id,
                key_id,
                action_id,
                revision,
                actor,
                json.dumps(detail, sort_keys=True),
            ),
        )


#: every migration's version
_VERSIONS = frozenset(migration.version for migration in MIGRATIONS)


class SqlLedger:
    """Every role of ``ledger.base`` (``Ledger``) over SQL, shared by the backends; subclasses
    supply the connection and the writer lock itself (``_try_lock``, ``_unlock``,
    ``_lock_alive``)."""

    url: str

    def __init__(self, connection: Any, dialect: Dialect, *, url: str) -> None:
        self._connection = connection
        self._dialect = dialect
        self.url = url
        # Target syncs run on worker threads; they share this connection one call at a time.
        self._mutex = threading.RLock()

    # -- one writer at a time ---------------------------------------------------------------

    _holds = 0

    def _try_lock(self) -> bool:
        raise NotImplementedError

    def _unlock(self) -> None:
        raise NotImplementedError

    def _lock_alive(self) -> bool:
        raise NotImplementedError

    def try_lead(self) -> bool:
        """Take the writer lock if it is free (re-entrant); True while this process holds it."""
        if self._holds and not self._lock_alive():
            self._holds = 0  # lost meanwhile: taken anew, or not at all
        if self._holds or self._try_lock():
            self._holds += 1
            return True
        return False

    def resign(self) -> None:
        if self._holds:
            self._holds -= 1
            if not self._holds:
                self._unlock()

    def leading(self) -> bool:
        """Whether this process still holds the writer lock (a lost connection loses it)."""
        return bool(self._holds) and self._lock_alive()

    def takeover(self) -> Takeover | None:
        """The last acquisition of a writer lease (None where the lock is a file lock)."""
        return None

    def lease(self) -> LeaseInfo | None:
        """The writer lease as the ledger holds it (None where the lock is a file lock)."""
        return None

    @contextmanager
    def writer(self, *, timeout: float) -> Iterator[None]:
        """Hold the writer lock for the block, waiting at most ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while not self.try_lead():
            if time.monotonic() >= deadline:
                lease = self.lease()
                held = (
                    f"; its writer lease is held by {lease.holder} (epoch {lease.epoch}) until "
                    f"{lease.expires_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} unless renewed"
                    if lease is not None and not lease.expired
                    else ""
                )
                raise LedgerLockedError(
                    f"ledger is locked: another slotkeeper is writing to {self.url} "
                    f"(waited {timeout:g}s; see --lock-timeout){held}"
                )
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        try:
            yield
        finally:
            self.resign()

    # -- plumbing ---------------------------------------------------------------------------

    def _revive(self) -> bool:
        """Reconnect when the connection was lost (a database restart); whether it did."""
        return False

    def _fence(self, cursor: Any) -> None:
        """Inside a state-changing transaction: refuse it unless this process is the writer
        (backends whose writer lock can change hands under a live process)."""

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            self._revive()
            for attempt in (1, 2):
                try:
                    return self._fetch(sql, params)
                except self._dialect.error as exc:
                    # once more on a new connection when this one was lost (a restart)
                    if attempt == 2 or not self._revive():
                        raise LedgerError(f"ledger read failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        cursor = self._connection.cursor()
        try:
            cursor.execute(self._dialect.sql(sql), tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def transaction(self) -> AbstractContextManager[SqlTransaction]:
        """A transaction that changes the state: fenced (see ``_fence``)."""
        return self._transaction(fenced=True)

    @contextmanager
    def _transaction(self, *, fenced: bool) -> Iterator[SqlTransaction]:
        with self._mutex:
            self._revive()
            cursor = self._begin()
            try:
                if fenced:
                    self._fence(cursor)
                yield SqlTransaction(cursor, self._dialect)
                cursor.execute("COMMIT")
            except self._dialect.error as exc:
                self._rollback(cursor)
                raise LedgerError(f"ledger write failed: {exc}") from exc
            except BaseException:
                self._rollback(cursor)
                raise
            else:
                from slotkeeper import metrics  # not imported by a plan: see slotkeeper.metrics

                metrics.LEDGER_COMMITS.inc()
            finally:
                cursor.close()

    def _begin(self) -> Any:
        """A cursor in a new transaction; on a connection found lost at BEGIN (nothing done
        yet), once more on a new one."""
        for attempt in (1, 2):
            cursor = self._connection.cursor()
            try:
                cursor.execute(self._dialect.begin)
                return cursor
            except self._dialect.error as exc:
                cursor.close()
                if attempt == 2 or not self._revive():
                    raise LedgerError(f"ledger write failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self, cursor: Any) -> None:
        # A connection that is gone has rolled back already, on the server's side.
        with contextlib.suppress(self._dialect.error):
            cursor.execute("ROLLBACK")

    def migrate(
        self, *, now: datetime, lock: str | None = None, lineage: str | None = None
    ) -> None:
        """Bring the schema to the latest version; create the ledger row on first use, with
        ``lineage`` when given (else a new one).

        ``lock`` is a statement that serialises concurrent migrations where the transaction
        alone does not (SQLite's BEGIN IMMEDIATE does)."""
        with self._transaction(fenced=False) as tx:  # at open, before any writer lock
            if lock is not None:
                tx._run(lock)
            cursor = tx._run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            rows = tx._run("SELECT version FROM schema_migrations").fetchall()
            applied = {int(row[0]) for row in rows}
            unknown = applied - {migration.version for migration in MIGRATIONS}
            if unknown:
                raise SchemaVersionError(
                    f"the ledger at {self.url} has schema version {max(unknown)}, which this "
                    f"slotkeeper (schema {LATEST_VERSION}) does not know: upgrade slotkeeper"
                )
            # Every migration not yet recorded, in version order: numbers may have gaps, and a
            # lower number may arrive after a higher one was applied.
            for migration in sorted(MIGRATIONS, key=lambda m: m.version):
                if migration.version in applied:
                    continue
                for statement in migration.statements:
                    cursor.execute(
                        statement.replace("{id}", self._dialect.id_column).replace(
                            "{timestamp}", self._dialect.timestamp_column
                        )
                    )
                tx._run(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, to_text(now)),
                )
            if tx._run("SELECT 1 FROM ledger WHERE id = 1").fetchone() is None:
                tx._run(
                    "INSERT INTO ledger (id, lineage, serial, created_at) VALUES (1, ?, 0, ?)",
                    (lineage or str(uuid.uuid4()), to_text(now)),
                )

    def _migrated(self) -> bool:
        """Whether every migration is applied and the ledger row made, read without taking the
        write lock (for a backend where a failed read outside a transaction leaves nothing
        behind: SQLite)."""
        with self._mutex:
            try:
                rows = self._fetch("SELECT version FROM schema_migrations", ())
                made = self._fetch("SELECT 1 FROM ledger WHERE id = 1", ())
            except self._dialect.error:
                return False
        return bool(made) and {int(row[0]) for row in rows} == _VERSIONS

    # -- reads ------------------------------------------------------------------------------

    def read_state(self, scope: Scope | None = None) -> RecordedState:
        lineage, serial = self._query("SELECT lineage, serial FROM ledger WHERE id = 1")[0]
        # A scope reads its environments' records and keys, and every key on its repositories
        # (a key is the repository's, whichever environment declared it).
        records_in, record_params = _within(scope, "environment")
        keys_in, key_params = _within(scope, "environment", "repository")
        deployed = [
            _record(row)
            for row in self._query(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE status = 'DEPLOYED'{records_in}",
                record_params,
            )
        ]
        keys = [
            _key(row)
            for row in self._query(
                f"SELECT {_KEY_COLUMNS} FROM deploy_keys WHERE status = 'ACTIVE'{keys_in}",
                key_params,
            )
        ]
        environments = [
            e for e in self.environment_records() if scope is None or e.name in scope.environments
        ]
        syncs_in = ""
        sync_params: tuple[str, ...] = ()
        if scope is not None:
            syncs_in = (
                f" WHERE (subject = 'record' AND subject_id IN "
                f"(SELECT id FROM records WHERE 1 = 1{records_in})) "
                f"OR (subject = 'key' AND subject_id IN "
                f"(SELECT id FROM deploy_keys WHERE 1 = 1{keys_in}))"
            )
            sync_params = (*record_params, *key_params)
        syncs = [
            _sync(row)
            for row in self._query(
                f"SELECT {_SYNC_COLUMNS} FROM target_syncs{syncs_in}", sync_params
            )
        ]
        # Retired records and keys some target may still hold as live: a copy was made (or an
        # attempt whose answer was lost may have made one) and it was not yet retired there.
        unsettled = (
            "SELECT subject_id FROM target_syncs WHERE subject = ? "
            "AND (remote_id IS NOT NULL OR attempts > 0) "
            "AND NOT (status = 'synced' AND remote_state = ?)"
        )
        retired_records = [
            _record(row)
            for row in self._query(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE status != 'DEPLOYED' "
                f"AND id IN ({unsettled}){records_in}",
                ("record", RemoteState.INACTIVE.value, *record_params),
            )
        ]
        retired_keys = [
            _key(row)
            for row in self._query(
                f"SELECT {_KEY_COLUMNS} FROM deploy_keys WHERE status != 'ACTIVE' "
                f"AND id IN ({unsettled}){keys_in}",
                ("key", RemoteState.ABSENT.value, *key_params),
            )
        ]
        # the latest unused decision about each held action (a later one overrides: a rejection
        # withdraws an approval, an approval overrides a rejection)
        approvals = {
            approval.digest: approval
            for approval in map(
                _approval,
                self._query(
                    f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE used_at IS NULL ORDER BY id"
                ),
            )
        }
        sinks = {
            key: held
            for key, held in self.all_sinks().items()
            if scope is None or key[0] in scope.repositories
        }
        return RecordedState(
            lineage=lineage,
            serial=int(serial),
            deployed={(r.environment, r.slot): r for r in deployed},
            keys={(k.repository, k.title): k for k in keys},
            environments={e.name: e for e in environments},
            syncs={(s.target, s.subject, s.subject_id): s for s in syncs},
            retired_records={r.id: r for r in retired_records},
            retired_keys={k.id: k for k in retired_keys},
            sinks=sinks,
            approvals=approvals,
        )

    def revision(self, sha: str) -> Revision | None:
        rows = self._query(
            "SELECT sha, message, author, timestamp, branch FROM revisions WHERE sha = ?", (sha,)
        )
        if not rows:
            return None
        sha_, message, author, timestamp, branch = rows[0]
        return Revision(
            sha=sha_, message=message, author=author, timestamp=from_text(timestamp), branch=branch
        )

    def predecessor(self, record_id: int) -> Record | None:
        """The record that ``record_id`` superseded, if any."""
        rows = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE superseded_by = ?", (record_id,)
        )
        return _record(rows[0]) if rows else None

    def record(self, record_id: int) -> Record:
        rows = self._query(f"SELECT {_RECORD_COLUMNS} FROM records WHERE id = ?", (record_id,))
        if not rows:
            raise LedgerError(f"no record #{record_id} in the ledger")
        return _record(rows[0])

    def key(self, key_id: int) -> KeyRecord:
        rows = self._query(f"SELECT {_KEY_COLUMNS} FROM deploy_keys WHERE id = ?", (key_id,))
        if not rows:
            raise LedgerError(f"no deploy key #{key_id} in the ledger")
        return _key(rows[0])

    def syncs_for(self, subject: SyncSubject, subject_id: int) -> list[TargetSync]:
        return [
            _sync(row)
            for row in self._query(
                f"SELECT {_SYNC_COLUMNS} FROM target_syncs WHERE subject = ? AND subject_id = ? "
                "ORDER BY target",
                (subject.value, subject_id),
            )
        ]

    def all_syncs(self) -> list[TargetSync]:
        return [
            _sync(row)
            for row in self._query(
                f"SELECT {_SYNC_COLUMNS} FROM target_syncs ORDER BY subject, subject_id, target"
            )
        ]

    def recent_writes(self, target: str, *, since: datetime) -> list[datetime]:
        rows = self._query(
            "SELECT at FROM target_writes WHERE target = ? AND at >= ? ORDER BY at",
            (target, to_text(since)),
        )
        return [from_text(row[0]) for row in rows]

    def request_reconcile(self, reason: str, *, at: datetime) -> None:
        """Ask whichever replica leads to reconcile soon (e.g. a webhook reached a follower)."""
        with self._transaction(fenced=False) as tx:  # any replica may ask
            tx._run(
                "INSERT INTO reconcile_requests (at, reason) VALUES (?, ?)", (to_text(at), reason)
            )
            tx._run(
                "DELETE FROM reconcile_requests WHERE seq < "
                "(SELECT MAX(seq) FROM reconcile_requests) - 100"
            )

    def first_delivery(self, keys: Sequence[str], *, at: datetime, window: timedelta) -> bool:
        try:
            with self._transaction(fenced=False) as tx:  # any replica receives webhooks
                tx._run("DELETE FROM webhook_deliveries WHERE at < ?", (to_text(at - window),))
                marks = ", ".join("?" for _ in keys)
                seen = tx._run(
                    f"SELECT 1 FROM webhook_deliveries WHERE key IN ({marks})", tuple(keys)
                ).fetchone()
                if seen is not None:
                    return False
                for key in keys:
                    tx._run(
                        "INSERT INTO webhook_deliveries (key, at) VALUES (?, ?)", (key, to_text(at))
                    )
        except LedgerError:
            return False  # another replica remembered the same delivery at the same moment
        return True

    def latest_request(self) -> int:
        rows = self._query("SELECT MAX(seq) FROM reconcile_requests")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def cache_get(self, target: str, credential: str, url: str) -> tuple[str, str] | None:
        rows = self._query(
            "SELECT etag, body FROM http_cache WHERE target = ? AND credential = ? AND url = ?",
            (target, credential, url),
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def cache_put(
        self, target: str, credential: str, url: str, etag: str, body: str, *, at: datetime
    ) -> None:
        with self._transaction(fenced=False) as tx:  # a plan reads targets without the lock
            tx.cache_put(target, credential, url, etag, body, at=at)

    def record_writes(self, target: str, moments: Sequence[datetime]) -> None:
        """Log content-creating requests for the write budget, all in one transaction."""
        if not moments:
            return
        with self.transaction() as tx:
            for at in moments:
                tx.record_write(target, at=at)

    def latest_records(self) -> list[Record]:
        """The newest record of every environment/slot ever seen."""
        rows = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE id IN "
            "(SELECT MAX(id) FROM records GROUP BY environment, slot) "
            "ORDER BY environment, slot"
        )
        return [_record(row) for row in rows]

    def slot_heads(self, environments: Collection[str] | None = None) -> list[SlotHead]:
        within = ""
        params: tuple[str, ...] = ()
        if environments is not None:
            wanted = sorted(set(environments))
            within = f" WHERE environment IN ({', '.join('?' * len(wanted))})"
            params = tuple(wanted)
        rows = self._query(
            f"SELECT r.id, r.environment, r.slot, r.status, NOT EXISTS ({_UNSETTLED}) "
            "FROM records r WHERE r.id IN "
            f"(SELECT MAX(id) FROM records{within} GROUP BY environment, slot) "
            "ORDER BY r.environment, r.slot",
            params,
        )
        return [
            SlotHead(int(id_), environment, slot, _STATUS[status], bool(confirmed))
            for id_, environment, slot, status, confirmed in rows
        ]

    def head_tally(self) -> list[tuple[str, RecordStatus, bool, int]]:
        rows = self._query(
            f"SELECT r.environment, r.status, NOT EXISTS ({_UNSETTLED}) AS confirmed, COUNT(*) "
            "FROM records r WHERE r.id IN "
            "(SELECT MAX(id) FROM records GROUP BY environment, slot) "
            "GROUP BY r.environment, r.status, confirmed ORDER BY r.environment"
        )
        return [
            (environment, _STATUS[status], bool(confirmed), int(count))
            for environment, status, confirmed, count in rows
        ]

    def records(self, ids: Collection[int]) -> list[Record]:
        sql = f"SELECT {_RECORD_COLUMNS} FROM records WHERE id IN ({{ids}}) ORDER BY id"
        return [_record(row) for row in self._by_ids(sql, ids)]

    def syncs_of(self, subject: SyncSubject, ids: Collection[int]) -> list[TargetSync]:
        sql = (
            f"SELECT {_SYNC_COLUMNS} FROM target_syncs WHERE subject = ? "
            "AND subject_id IN ({ids}) ORDER BY subject_id, target"
        )
        return [_sync(row) for row in self._by_ids(sql, ids, subject.value)]

    def _by_ids(self, sql: str, ids: Collection[Any], *params: Any) -> list[Any]:
        """The rows of ``sql`` for ``ids`` (its ``{ids}``), asked in batches, in id order."""
        rows: list[Any] = []
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            rows += self._query(sql.format(ids=", ".join("?" * len(batch))), (*params, *batch))
        return rows

    def slot_counts(self) -> dict[RecordStatus, int]:
        """How many slots have each status as their newest record (counted by the database)."""
        rows = self._query(
            "SELECT status, COUNT(*) FROM records WHERE id IN "
            "(SELECT MAX(id) FROM records GROUP BY environment, slot) GROUP BY status"
        )
        return {RecordStatus(status): int(count) for status, count in rows}

    def history(self, environment: str, slot: str | None = None) -> list[Record]:
        sql = f"SELECT {_RECORD_COLUMNS} FROM records WHERE environment = ?"
        params: list[Any] = [environment]
        if slot is not None:
            sql += " AND slot = ?"
            params.append(slot)
        return [_record(row) for row in self._query(sql + " ORDER BY id DESC", params)]

    def all_sinks(self) -> dict[tuple[str, str], dict[str, SinkHolding]]:
        sinks: dict[tuple[str, str], dict[str, SinkHolding]] = {}
        for row in self._query(f"SELECT {_SINK_COLUMNS} FROM key_sinks ORDER BY 1, 2, 3"):
            holding = _holding(row)
            sinks.setdefault((holding.repository, holding.title), {})[holding.sink] = holding
        return sinks

    def sinks_of(self, repository: str, title: str) -> dict[str, SinkHolding]:
        rows = self._query(
            f"SELECT {_SINK_COLUMNS} FROM key_sinks WHERE repository = ? AND title = ? "
            "ORDER BY sink",
            (repository, title),
        )
        return {row[2]: _holding(row) for row in rows}

    def keys(self, *, include_retired: bool = False) -> list[KeyRecord]:
        where = "" if include_retired else " WHERE status = 'ACTIVE'"
        rows = self._query(
            f"SELECT {_KEY_COLUMNS} FROM deploy_keys{where} ORDER BY repository, title, id DESC"
        )
        return [_key(row) for row in rows]

    def pending(self) -> list[PendingAction]:
        rows = self._query(
            "SELECT action_id, type, environment, slot, key, reason, blocked, serial, at, "
            "digest, approval, guards FROM pending ORDER BY environment, slot, key"
        )
        return [
            PendingAction(
                action_id=row[0],
                type=row[1],
                environment=row[2],
                slot=row[3],
                key=row[4],
                reason=row[5],
                blocked=row[6],
                serial=row[7],
                at=from_text(row[8]),
                digest=row[9],
                approval=row[10],
                guards=tuple(row[11].split(",")) if row[11] else (),
            )
            for row in rows
        ]

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
        """Record an operator's decision about the held action ``held`` (which must wait for
        a person: it has a digest), and its audit event. Any process may decide, leader or
        not: an operator approves from a laptop against the daemon's ledger."""
        if held.digest is None:
            raise ValueError(f"action {held.action_id} does not wait for an approval")
        with self._transaction(fenced=False) as tx:
            _, serial = tx._current()
            approval_id = tx._insert(
                "approvals",
                digest=held.digest,
                action_id=held.action_id,
                type=held.type,
                environment=held.environment,
                subject=held.subject,
                decision=decision.value,
                actor=actor,
                reason=reason,
                override_freeze=int(override_freeze),
                at=to_text(at),
                expires_at=to_text(expires_at) if expires_at else None,
            )
            detail: dict[str, Any] = {
                "approval": approval_id,
                "digest": held.digest,
                "action": held.type,
                "reason": reason,
                "blocked": held.blocked,
            }
            if expires_at is not None:
                detail["expires_at"] = to_text(expires_at)
            if override_freeze:
                detail["override_freeze"] = True
            tx.append_event(
                serial=serial,
                at=at,
                type=f"approval.{'granted' if decision is Decision.APPROVED else 'rejected'}",
                actor=actor,
                detail=detail,
                environment=held.environment,
                slot=held.slot,
                action_id=held.action_id,
            )
        return Approval(
            id=approval_id,
            digest=held.digest,
            action_id=held.action_id,
            decision=decision,
            actor=actor,
            reason=reason,
            override_freeze=override_freeze,
            at=at,
            expires_at=expires_at,
        )

    def notify_state(self) -> NotifyState | None:
        rows = self._query("SELECT cursor, generation, conditions FROM notify_state WHERE id = 1")
        if not rows:
            return None
        cursor, generation, conditions = rows[0]
        return NotifyState(
            cursor=int(cursor), generation=int(generation), conditions=json.loads(conditions)
        )

    def record_notifications(self, state: NotifyState, messages: Sequence[OutboxMessage]) -> None:
        with self.transaction() as tx:  # fenced: only the writer moves what was told
            tx._run(
                "INSERT INTO notify_state (id, cursor, generation, conditions) "
                "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, "
                "generation = excluded.generation, conditions = excluded.conditions",
                (state.cursor, state.generation, json.dumps(state.conditions, sort_keys=True)),
            )
            for message in messages:
                tx._run(
                    "INSERT INTO outbox (notifier, message_id, event, environment, body, "
                    "created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (notifier, message_id) DO NOTHING",
                    (
                        message.notifier,
                        message.message_id,
                        message.event,
                        message.environment,
                        message.body,
                        to_text(message.created_at),
                        to_text(message.due_at),
                    ),
                )

    def due_messages(self, *, now: datetime, limit: int) -> list[OutboxMessage]:
        rows = self._query(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
            f"AND due_at <= ? ORDER BY id LIMIT {int(limit)}",
            (to_text(now),),
        )
        return [_message(row) for row in rows]

    def _update_outbox(self, ids: Sequence[int], assignments: str, params: Sequence[Any]) -> None:
        if not ids:
            return
        marks = ", ".join("?" for _ in ids)
        with self.transaction() as tx:  # fenced, like the sending itself
            tx._run(
                f"UPDATE outbox SET {assignments} WHERE id IN ({marks}) AND sent_at IS NULL",
                (*params, *ids),
            )

    def mark_sent(self, ids: Sequence[int], *, at: datetime) -> None:
        self._update_outbox(ids, "sent_at = ?, attempts = attempts + 1", (to_text(at),))

    def retry_later(self, ids: Sequence[int], *, due_at: datetime, error: str) -> None:
        self._update_outbox(
            ids, "due_at = ?, attempts = attempts + 1, last_error = ?", (to_text(due_at), error)
        )

    def delay(self, ids: Sequence[int], *, due_at: datetime) -> None:
        self._update_outbox(ids, "due_at = ?", (to_text(due_at),))

    def give_up(self, ids: Sequence[int], *, at: datetime, error: str) -> None:
        self._update_outbox(ids, "failed_at = ?, last_error = ?", (to_text(at), error))

    def outbox(self, *, last: int = 100) -> list[OutboxMessage]:
        rows = self._query(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT {int(last)}"
        )
        return [_message(row) for row in rows]

    def promotion_evidence(
        self, candidates: Sequence[tuple[str, str, str, Artifact]]
    ) -> dict[tuple[str, str, tuple[str, str, str]], Evidence]:
        return slot_holds.evidence(self._query, candidates)

    def release_holds(
        self, environment: str, slot: str, *, actor: str, reason: str, at: datetime
    ) -> list[SlotHold]:
        """End every hold standing on ``environment``/``slot``, with its audit event. Any
        process may, leader or not: an operator releases from a laptop."""
        with self._transaction(fenced=False) as tx:
            _, serial = tx._current()
            released = slot_holds.standing_holds(
                lambda sql, params: list(tx._run(sql, params).fetchall()), environment, slot
            )
            for hold in released:
                tx._run(
                    "UPDATE slot_holds SET released_at = ?, released_by = ?, release_reason = ? "
                    "WHERE id = ?",
                    (to_text(at), actor, reason, hold.id),
                )
                tx.append_event(
                    serial=serial,
                    at=at,
                    type="hold.released",
                    actor=actor,
                    detail={
                        "hold": hold.id,
                        "artifact": hold.artifact.model_dump(mode="json"),
                        "rolled_back": hold.record,
                        "reason": reason,
                    },
                    environment=environment,
                    slot=slot,
                    record_id=hold.record,
                )
        return released

    def delivery_rows(
        self,
        *,
        environments: Sequence[str] | None,
        until: datetime,
        since: datetime | None = None,
        slot: str | None = None,
    ) -> list[DeliveryRow]:
        where = ["r.created_at < ?"]
        params: list[Any] = [to_text(until)]
        if since is not None:
            where.append("r.created_at >= ?")
            params.append(to_text(since))
        if slot is not None:
            where.append("r.slot = ?")
            params.append(slot)
        if environments is not None:
            if not environments:
                return []
            where.append(f"r.environment IN ({', '.join('?' for _ in environments)})")
            params.extend(environments)
        condition = " AND ".join(where)
        columns = ", ".join(f"r.{c.strip()}" for c in _RECORD_COLUMNS.split(","))
        rows = self._query(
            f"SELECT {columns}, r.commits_known, p.artifact_kind, p.artifact_name, "
            "p.artifact_version, p.artifact_digest FROM records r "
            f"LEFT JOIN records p ON p.superseded_by = r.id WHERE {condition} ORDER BY r.id",
            params,
        )
        commits: dict[int, list[CommitInfo]] = {}
        for record_id, sha, authored, committed, subject in self._query(
            "SELECT c.record_id, c.sha, c.authored_at, c.committed_at, c.subject "
            f"FROM record_commits c JOIN records r ON r.id = c.record_id WHERE {condition} "
            "ORDER BY c.record_id, c.committed_at",
            params,
        ):
            commits.setdefault(int(record_id), []).append(
                CommitInfo(
                    sha=sha,
                    authored_at=from_text(authored),
                    committed_at=from_text(committed),
                    subject=subject,
                )
            )
        failed = {
            int(record_id)
            for (record_id,) in self._query(
                "SELECT f.record_id FROM target_failures f "
                f"JOIN records r ON r.id = f.record_id WHERE {condition}",
                params,
            )
        }
        found = []
        for row in rows:
            record = _record(row[:16])
            replaced = (
                Artifact(kind=ArtifactKind(row[17]), name=row[18], version=row[19], digest=row[20])
                if row[17] is not None
                else None
            )
            known = row[16] is not None
            found.append(
                DeliveryRow(
                    record=record,
                    replaced=replaced,
                    commits=tuple(commits.get(record.id, ())) if known else None,
                    target_failed=record.id in failed,
                )
            )
        return found

    def environment_records(self) -> list[EnvironmentRecord]:
        return [
            EnvironmentRecord(
                name=row[0],
                protected=bool(row[1]),
                production=bool(row[2]),
                repository=row[3],
                transient=bool(row[4]),
                targets=tuple(json.loads(row[5])),
            )
            for row in self._query(
                "SELECT name, protected, production, repository, transient, targets "
                "FROM environments ORDER BY name"
            )
        ]

    def approvals(self) -> list[Approval]:
        """Every decision ever recorded, newest first."""
        rows = self._query(f"SELECT {_APPROVAL_COLUMNS} FROM approvals ORDER BY id DESC")
        return [_approval(row) for row in rows]

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
        """Events after ``since``, oldest first; only of ``types`` / that environment and slot
        / that time span when given; only the newest ``last`` of them when given."""
        where = ["seq > ?"]
        params: list[Any] = [since]
        if after is not None:  # stored as UTC text of one width: compared as text
            where.append("at >= ?")
            params.append(to_text(after))
        if before is not None:
            where.append("at < ?")
            params.append(to_text(before))
        if types:
            where.append(f"type IN ({', '.join('?' for _ in types)})")
            params.extend(types)
        if environment is not None:
            where.append("environment = ?")
            params.append(environment)
        if slot is not None:
            where.append("slot = ?")
            params.append(slot)
        order = "DESC" if last is not None else "ASC"
        limit = f" LIMIT {int(last)}" if last is not None else ""
        rows = self._query(
            "SELECT seq, serial, at, type, environment, slot, record_id, key_id, action_id, "
            f"revision, actor, detail FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY seq {order}{limit}",
            params,
        )
        if last is not None:
            rows = list(reversed(rows))
        return [
            Event(
                seq=row[0],
                serial=row[1],
                at=from_text(row[2]),
                type=row[3],
                environment=row[4],
                slot=row[5],
                record_id=row[6],
                key_id=row[7],
                action_id=row[8],
                revision=row[9],
                actor=row[10],
                detail=json.loads(row[11]),
            )
            for row in rows
        ]

    def last_good_manifests(self) -> dict[str, bytes]:
        rows = self._query("SELECT path, content FROM manifest_files")
        return {path: content.encode("utf-8") for path, content in rows}

    def remember_whole(
        self, files: Mapping[str, bytes] | None, *, revision: str | None, at: datetime
    ) -> None:
        with self.transaction() as tx:
            if files is not None:
                tx.store_last_good(files, revision=revision, at=at)
            tx.set_manifest_status(None)

    def remember_broken(self, status: ManifestStatus) -> None:
        with self.transaction() as tx:
            tx.set_manifest_status(status)

    def stored_parses(self, digests: Collection[str], format: str) -> dict[str, str]:
        sql = "SELECT digest, parsed FROM manifest_parses WHERE format = ? AND digest IN ({ids})"
        return dict(self._by_ids(sql, digests, format))

    def store_parses(
        self, parses: Mapping[str, str], *, keep: Collection[str], format: str
    ) -> None:
        kept = set(keep)
        with self.transaction() as tx:
            stored = tx._run("SELECT digest, format FROM manifest_parses").fetchall()
            for digest, stored_format in stored:
                if stored_format != format or digest not in kept:
                    tx._run(
                        "DELETE FROM manifest_parses WHERE digest = ? AND format = ?",
                        (digest, stored_format),
                    )
            for digest, parsed in parses.items():
                tx._run(
                    "INSERT INTO manifest_parses (digest, format, parsed) VALUES (?, ?, ?) "
                    "ON CONFLICT (digest, format) DO NOTHING",
                    (digest, format, parsed),
                )

    def manifest_status(self) -> ManifestStatus | None:
        rows = self._query("SELECT at, revision, broken FROM manifest_status WHERE id = 1")
        if not rows:
            return None
        at, revision, broken = rows[0]
        return ManifestStatus(
            at=from_text(at),
            revision=revision,
            broken=tuple(BrokenFile.model_validate(item) for item in json.loads(broken)),
        )

    def close(self) -> None:
        self._connection.close()
