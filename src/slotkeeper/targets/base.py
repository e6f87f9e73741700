"""What the executor needs from any target, and the values that cross that boundary.

A target makes the remote system hold what the ledger wants for one subject (a record's
deployment active or inactive, a deploy key present or absent) and reports drift on refresh. The
executor journals every attempt in the ledger before calling, so after a crash an adapter is told
that an earlier attempt may have succeeded (``current.attempts > 0``) and looks before it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from slotkeeper.errors import PermanentTargetError
from slotkeeper.model import (
    CommitInfo,
    Drift,
    KeyRecord,
    Record,
    RemoteState,
    Revision,
    TargetSpecBase,
    TargetSync,
)


@dataclass(frozen=True)
class EnvironmentInfo:
    name: str
    repository: str | None
    production: bool
    transient: bool


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str


@dataclass(frozen=True)
class RecordSubject:
    record: Record
    environment: EnvironmentInfo
    lineage: str
    #: the commit that declared the record, when the ledger knows it
    revision: Revision | None = None
    #: what the other targets hold for the same record (e.g. GitHub's deployment node id)
    others: tuple[TargetSync, ...] = ()
    #: commits since the record this one supersedes was declared (newest first), or None when
    #: git cannot tell; a call, because only some targets need it and it costs a git run
    changes: Callable[[], tuple[Commit, ...] | None] = lambda: None


@dataclass(frozen=True)
class KeySubject:
    key: KeyRecord


@dataclass(frozen=True)
class Remote:
    """What the target holds after a call."""

    remote_id: str | None
    state: RemoteState
    updated_at: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: where the remote copy lives (base URL, repository, project...), for the calls that
    #: created or changed it; empty when the call touched nothing (the stored one is kept)
    location: dict[str, str] = field(default_factory=dict)


class Target(Protocol):
    """An adapter for one configured target. ``spec_class`` is its type's spec: the type's name
    and capabilities (``holds_deploy_keys``, ``supersedes_itself``, ...) are read from there."""

    name: str

    @property
    def spec_class(self) -> type[TargetSpecBase]: ...

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote: ...

    def add_key(self, subject: KeySubject) -> Remote: ...

    def delete_key(
        self, repository: str, remote_id: str, location: dict[str, str] | None = None
    ) -> Remote:
        """Delete a deploy key; ``location`` is where it was registered, when the ledger knows."""
        ...

    def refresh(
        self,
        *,
        records: Sequence[tuple[RecordSubject, TargetSync]],
        keys: Sequence[tuple[KeySubject, TargetSync]],
        managed_titles: dict[str, set[str]],
    ) -> list[Drift]: ...

    def close(self) -> None: ...


@runtime_checkable
class CommitSource(Protocol):
    """A target that can say which commits a deployment brings (GitHub's compare API)."""

    def commits_between(
        self, repository: str, base: str | None, head: str
    ) -> tuple[CommitInfo, ...] | None: ...


@dataclass(frozen=True)
class PullRequest:
    """A pull request slotkeeper opened or updated: its number, page, and whether it is new."""

    number: int
    url: str
    created: bool


@runtime_checkable
class Proposer(Protocol):
    """A target that can open (or update) a pull request: auto-promotion's (GitHub)."""

    def propose(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest: ...


class RecordsOnly:
    """For targets that mirror records and know nothing of deploy keys or drift reads."""

    name: str
    spec_class: type[TargetSpecBase]

    def add_key(self, subject: KeySubject) -> Remote:
        raise PermanentTargetError(f"{self.name}: {self._type} does not manage deploy keys")

    def delete_key(
        self, repository: str, remote_id: str, location: dict[str, str] | None = None
    ) -> Remote:
        raise PermanentTargetError(f"{self.name}: {self._type} does not manage deploy keys")

    @property
    def _type(self) -> str:
        return self.spec_class.type_name()

    def refresh(
        self,
        *,
        records: Sequence[tuple[RecordSubject, TargetSync]],
        keys: Sequence[tuple[KeySubject, TargetSync]],
        managed_titles: dict[str, set[str]],
    ) -> list[Drift]:
        """No read endpoint to compare against: nothing to report."""
        return []


K = TypeVar("K")
V = TypeVar("V")

#: how many list reads a refresh sends at once to one target (writes have their own bound)
READ_CONCURRENCY = 8


def read_all(fetch: Callable[[K], V], keys: Sequence[K]) -> list[V]:
    """``[fetch(k) for k in keys]``, up to ``READ_CONCURRENCY`` at a time, results in order."""
    if len(keys) <= 1:
        return [fetch(key) for key in keys]
    with ThreadPoolExecutor(max_workers=min(READ_CONCURRENCY, len(keys))) as pool:
        return list(pool.map(fetch, keys))
