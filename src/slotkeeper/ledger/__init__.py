"""The ledger: the recorded state, its history and its audit log.

``open_ledger`` turns a state URL into a ledger: ``sqlite:///relative/path``,
``sqlite:////absolute/path`` or a plain file path select the embedded SQLite backend;
``postgresql://…`` (optionally ``?schema=NAME``) selects PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from slotkeeper.errors import ConfigError
from slotkeeper.ledger.base import Event, Ledger, LedgerTransaction, PendingAction
from slotkeeper.ledger.sqlite import SqliteLedger

DEFAULT_STATE = "sqlite:///.slotkeeper/state.db"

__all__ = [
    "DEFAULT_STATE",
    "Event",
    "Ledger",
    "LedgerTransaction",
    "PendingAction",
    "open_ledger",
    "sqlite_path",
]


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite state URL names (None for PostgreSQL)."""
    if url.startswith(("postgresql://", "postgres://")) or (
        "://" in url and not url.startswith("sqlite:///")
    ):
        return None
    return Path(url.removeprefix("sqlite:///"))


def open_ledger(url: str, *, now: datetime) -> Ledger:
    """Open (creating and migrating if needed) the ledger that ``url`` names."""
    if url.startswith(("postgresql://", "postgres://")):
        from slotkeeper.ledger.postgres import PostgresLedger  # the driver loads only if used

        return PostgresLedger(url, now=now)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ConfigError(f"state URL {url!r} names no file")
        return SqliteLedger(Path(path), now=now)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"unsupported state URL scheme {scheme!r}: use sqlite:///PATH, a file path or "
            "postgresql://…"
        )
    return SqliteLedger(Path(url), now=now)
