"""The embedded default ledger: one SQLite file in WAL mode, one writer at a time.

The writer lock is a lock file beside the database (``state.db.lock``), held for a whole apply
(read, plan, execute), so a second ``apply`` waits a bounded time and then fails clearly instead
of interleaving. Readers never wait for it: WAL lets them read the last committed state.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from slotkeeper.credentials import private_dirs, private_file
from slotkeeper.errors import LedgerError, NoLedgerError
from slotkeeper.ledger.sql import Dialect, SqlLedger

if TYPE_CHECKING:
    import filelock

SQLITE = Dialect(
    placeholder="?",
    id_column="INTEGER PRIMARY KEY AUTOINCREMENT",
    begin="BEGIN IMMEDIATE",
    error=sqlite3.Error,
)

#: How long one SQLite statement waits for another connection's write to finish.
BUSY_TIMEOUT_MS = 30_000


MEMORY = ":memory:"


class SqliteLedger(SqlLedger):
    """The ledger in the file ``path`` (``MEMORY``: an empty one that lives only in memory).

    ``create`` (writers) makes the file and its directories when missing, with the ``lineage``
    given (a saved plan's, made before the ledger existed) or a new one; readers pass
    ``create=False`` and get ``NoLedgerError`` instead, so a mistyped ``--state`` creates
    nothing."""

    def __init__(
        self, path: Path, *, now: datetime, create: bool = True, lineage: str | None = None
    ) -> None:
        self.path = path
        in_memory = str(path) == MEMORY
        if not create and not in_memory and not path.is_file():
            raise NoLedgerError(
                f"no ledger at {path}: nothing has been applied there (see --state)"
            )
        try:
            if create and not in_memory:
                # Only this user reads the ledger (it caches what targets answered): 0600 files
                # (SQLite gives its WAL and shared-memory files the database's mode), 0700 dirs.
                private_dirs(path.parent)
                for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    if companion == path or companion.exists():
                        private_file(companion)
            connection = sqlite3.connect(
                MEMORY if in_memory else path, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the ledger at {path}: {exc}") from exc
        try:
            if not create and not in_memory and not _has_ledger(connection):
                raise NoLedgerError(f"no ledger at {path}: the file holds no slotkeeper ledger")
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            super().__init__(connection, SQLITE, url=f"sqlite:///{path}")
            # a current ledger is opened without a write transaction: a plan waits for no apply
            if not self._migrated():
                self.migrate(now=now, lineage=lineage)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise LedgerError(f"{path} is not a usable slotkeeper ledger: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        self._lock_path = f"{path}.lock"
        #: made by the first writer (a reader, like ``plan``, takes no lock)
        self._lock: filelock.FileLock | None = None

    def _file_lock(self) -> filelock.FileLock:
        if self._lock is None:
            import filelock

            # Not thread-local: the daemon asks whether it still holds it from worker threads.
            self._lock = filelock.FileLock(self._lock_path, thread_local=False, mode=0o600)
        return self._lock

    def _try_lock(self) -> bool:
        import filelock

        try:
            self._file_lock().acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    def _unlock(self) -> None:
        self._file_lock().release()

    def _lock_alive(self) -> bool:
        return self._lock is not None and self._lock.is_locked


def _has_ledger(connection: sqlite3.Connection) -> bool:
    """Whether the database holds a slotkeeper ledger (an empty file, or another program's
    database, does not: a reader leaves it as it is)."""
    row = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'"
    ).fetchone()
    return row is not None
