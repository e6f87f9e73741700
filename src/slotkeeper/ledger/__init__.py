"""The ledger: the recorded state, its history and its audit log.

``open_ledger`` turns a state URL into a ledger: ``sqlite:///relative/path``,
``sqlite:////absolute/path`` or a plain file path select the embedded SQLite backend;
``postgresql://…`` (optionally ``?schema=NAME``) selects PostgreSQL. A libpq keyword string
(``host=db dbname=x``) is refused: it would otherwise name a file, password and all.

Writers open with ``create=True`` (the default) and create the ledger where there is none;
readers pass ``create=False`` and get ``NoLedgerError`` instead. ``empty_ledger`` is an empty
ledger in memory, for a first ``plan`` before anything was applied. Both give a ``Ledger``: every
role of ``ledger.base``, for the caller to hand each part of slotkeeper the roles it uses.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from slotkeeper.errors import ConfigError
from slotkeeper.ledger.base import (
    AuditLog,
    DeliveryRow,
    Event,
    Holds,
    HttpCacheStore,
    LastGoodReads,
    LastGoodStore,
    Ledger,
    LedgerTransaction,
    NotifyState,
    Outbox,
    OutboxMessage,
    PendingAction,
    PromotionReads,
    ReconcileRequests,
    SlotHead,
    StateReads,
    StateStore,
    WriteLog,
    WriterLock,
)
from slotkeeper.ledger.lease import LeaseInfo, LeaseSettings, Takeover
from slotkeeper.ledger.sqlite import MEMORY, SqliteLedger
from slotkeeper.ledger.urls import is_keyword_dsn
from slotkeeper.worktree import refuse_if_exposed

DEFAULT_STATE = "sqlite:///.slotkeeper/state.db"

__all__ = [
    "DEFAULT_STATE",
    "AuditLog",
    "DeliveryRow",
    "Event",
    "Holds",
    "HttpCacheStore",
    "LastGoodReads",
    "LastGoodStore",
    "LeaseInfo",
    "LeaseSettings",
    "Ledger",
    "LedgerTransaction",
    "NotifyState",
    "Outbox",
    "OutboxMessage",
    "PendingAction",
    "PromotionReads",
    "ReconcileRequests",
    "SlotHead",
    "StateReads",
    "StateStore",
    "Takeover",
    "WriteLog",
    "WriterLock",
    "empty_ledger",
    "open_ledger",
    "sqlite_path",
]


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite state URL names (None for PostgreSQL)."""
    if (
        url.startswith(("postgresql://", "postgres://"))
        or ("://" in url and not url.startswith("sqlite:///"))
        or is_keyword_dsn(url)
    ):
        return None
    return Path(url.removeprefix("sqlite:///"))


def open_ledger(
    url: str,
    *,
    now: datetime,
    create: bool = True,
    lineage: str | None = None,
    lease: LeaseSettings | None = None,
) -> Ledger:
    """Open the ledger that ``url`` names, migrating it if needed. ``create``: make it when
    missing (with ``lineage`` when given); otherwise a missing ledger is ``NoLedgerError``.
    ``lease``: how a PostgreSQL ledger's writer lease is held (an SQLite ledger's writer lock
    is a file lock, which has no settings)."""
    if is_keyword_dsn(url):
        # Never echo it: a keyword string usually carries password=...
        raise ConfigError(
            "--state looks like a libpq keyword connection string (host=... dbname=...): "
            "give the ledger as a URL, postgresql://USER@HOST:5432/DBNAME (the password in "
            "PGPASSWORD or a passfile), or sqlite:///PATH"
        )
    if url.startswith(("postgresql://", "postgres://")):
        from slotkeeper.ledger.postgres import PostgresLedger  # the driver loads only if used

        return PostgresLedger(url, now=now, create=create, lineage=lineage, lease=lease)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ConfigError(f"state URL {url!r} names no file")
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"unsupported state URL scheme {scheme!r}: use sqlite:///PATH, a file path or "
            "postgresql://…"
        )
    else:
        path = url
    if create and not Path(path).exists():
        # The ledger is the audit trail of a company's deployments: never one `git add -A`
        # from being pushed with the manifests.
        refuse_if_exposed(
            Path(path),
            what="the ledger",
            fix="pass --state (SLOTKEEPER_STATE) with a path outside the work tree",
            error=ConfigError,
        )
    return SqliteLedger(Path(path), now=now, create=create, lineage=lineage)


def empty_ledger(*, now: datetime) -> Ledger:
    """An empty ledger that lives in memory only: what a first ``plan`` plans against."""
    return SqliteLedger(Path(MEMORY), now=now)
