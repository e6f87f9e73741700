"""The embedded default ledger: one SQLite file in WAL mode, one writer at a time.

The writer lock is a lock file beside the database (``state.db.lock``), held for a whole apply
(read, plan, execute), so a second ``apply`` waits a bounded time and then fails clearly instead
of interleaving. Readers never wait for it: WAL lets them read the last committed state.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import filelock

from slotkeeper.errors import LedgerError
from slotkeeper.ledger.sql import Dialect, SqlLedger

SQLITE = Dialect(
    placeholder="?",
    id_column="INTEGER PRIMARY KEY AUTOINCREMENT",
    begin="BEGIN IMMEDIATE",
    error=sqlite3.Error,
)

#: How long one SQLite statement waits for another connection's write to finish.
BUSY_TIMEOUT_MS = 30_000


class SqliteLedger(SqlLedger):
    def __init__(self, path: Path, *, now: datetime) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the ledger at {path}: {exc}") from exc
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            super().__init__(connection, SQLITE, url=f"sqlite:///{path}")
            self.migrate(now=now)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise LedgerError(f"{path} is not a usable slotkeeper ledger: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        # Not thread-local: the daemon asks whether it still holds the lock from worker threads.
        self._lock = filelock.FileLock(f"{path}.lock", thread_local=False)

    def _try_lock(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    def _unlock(self) -> None:
        self._lock.release()

    def _lock_alive(self) -> bool:
        return self._lock.is_locked
