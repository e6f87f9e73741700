"""What the rest of slotkeeper needs from a ledger, whatever stores it.

The executor and the CLI use these Protocols only; ``open_ledger`` picks the implementation from
the state URL (SQLite now, PostgreSQL as a second implementation of the same schema).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from slotkeeper.model import (
    Artifact,
    EnvironmentRecord,
    KeyRecord,
    KeyStatus,
    ManifestStatus,
    Record,
    RecordedState,
    RecordStatus,
    Revision,
    SyncSubject,
    TargetSync,
)


class PendingAction(BaseModel):
    """An action a guard held back at the last apply, shown by ``status``."""

    model_config = ConfigDict(frozen=True)

    action_id: str
    type: str
    environment: str
    slot: str | None
    key: str | None
    reason: str
    blocked: str
    serial: int
    at: datetime


class Event(BaseModel):
    """One entry of the append-only audit log."""

    model_config = ConfigDict(frozen=True)

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
    """Writes that commit together or not at all."""

    def bump_serial(self, *, lineage: str, expected: int) -> int: ...

    def check_serial(self, *, lineage: str, expected: int) -> None: ...

    def save_revision(self, revision: Revision) -> None: ...

    def upsert_environment(self, environment: EnvironmentRecord, *, at: datetime) -> None: ...

    def replace_pending(self, pending: Iterable[PendingAction]) -> None: ...

    def upsert_sync(self, sync: TargetSync) -> None: ...

    def record_write(self, target: str, *, at: datetime) -> None: ...

    def cache_put(
        self, target: str, credential: str, url: str, etag: str, body: str, *, at: datetime
    ) -> None: ...

    def touch(self, record_ids: Sequence[int], *, at: datetime) -> None: ...

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
    ) -> int: ...

    def set_record_status(self, record_id: int, status: RecordStatus, *, at: datetime) -> None: ...

    def set_superseded_by(self, record_id: int, successor: int) -> None: ...

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
    ) -> int: ...

    def set_key_status(self, key_id: int, status: KeyStatus, *, at: datetime) -> None: ...

    def set_replaced_by(self, key_id: int, successor: int) -> None: ...

    def store_last_good(
        self, files: Mapping[str, bytes], *, revision: str | None, at: datetime
    ) -> None:
        """Remember ``files`` (content by relative path) as the last manifest set that loaded
        whole, replacing the one before."""
        ...

    def set_manifest_status(self, status: ManifestStatus | None) -> None:
        """Record the broken manifest files, or (None) that there are none."""
        ...

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
    ) -> None: ...


class Ledger(Protocol):
    """The recorded state: read it, write it in transactions, one writer at a time."""

    #: the ledger's URL as it may be shown: without any credential (see ``ledger.urls``)
    url: str

    def writer(self, *, timeout: float) -> AbstractContextManager[None]: ...

    def try_lead(self) -> bool: ...

    def resign(self) -> None: ...

    def leading(self) -> bool: ...

    def transaction(self) -> AbstractContextManager[LedgerTransaction]: ...

    def read_state(self) -> RecordedState: ...

    def latest_records(self) -> list[Record]: ...

    def slot_counts(self) -> dict[RecordStatus, int]:
        """How many slots have each status as their newest record."""
        ...

    def history(self, environment: str, slot: str | None = None) -> list[Record]: ...

    def keys(self, *, include_retired: bool = False) -> list[KeyRecord]: ...

    def pending(self) -> list[PendingAction]: ...

    def events(
        self,
        *,
        since: int = 0,
        types: Sequence[str] = (),
        environment: str | None = None,
        slot: str | None = None,
        last: int | None = None,
    ) -> list[Event]: ...

    def revision(self, sha: str) -> Revision | None: ...

    def predecessor(self, record_id: int) -> Record | None: ...

    def record(self, record_id: int) -> Record: ...

    def key(self, key_id: int) -> KeyRecord: ...

    def syncs_for(self, subject: SyncSubject, subject_id: int) -> list[TargetSync]: ...

    def all_syncs(self) -> list[TargetSync]: ...

    def recent_writes(self, target: str, *, since: datetime) -> list[datetime]: ...

    def cache_get(self, target: str, credential: str, url: str) -> tuple[str, str] | None: ...

    def request_reconcile(self, reason: str, *, at: datetime) -> None: ...

    def first_delivery(self, keys: Sequence[str], *, at: datetime, window: timedelta) -> bool:
        """Remember ``keys`` (a webhook's delivery id, its body's digest); False when one of
        them was seen within ``window`` (a replay)."""
        ...

    def latest_request(self) -> int: ...

    def last_good_manifests(self) -> dict[str, bytes]: ...

    def manifest_status(self) -> ManifestStatus | None: ...

    def close(self) -> None: ...
