"""The syncer's journal rules, at its seam: a temporary SQLite ledger and a scripted target.

Each case runs one piece of target work through ``TargetSyncer.apply`` and reads back the sync
row the ledger keeps: what is journaled before the call, and what is recorded after a success, a
temporary failure (with and without a pause asked for), a permanent one, a spent write budget
and a target left unusable by a rate-limited read. The target is scripted (it answers from a
list, like the HTTP tests' transport): these tests are about the journal, not an API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slotkeeper.errors import (
    BudgetDeferred,
    PermanentTargetError,
    TargetError,
    TargetFailed,
    TargetUnusable,
    TemporaryTargetError,
    UnknownOutcome,
)
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.model import (
    Artifact,
    ChainloopTargetSpec,
    EnvironmentRecord,
    GithubTargetSpec,
    RecordStatus,
    RemoteState,
    SyncStatus,
    SyncSubject,
    TargetSpecBase,
    TargetSync,
)
from slotkeeper.targets.base import RecordsOnly, RecordSubject, Remote
from slotkeeper.targetsync import SyncWork, TargetSyncer
from tests.helpers import image

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Scripted(RecordsOnly):
    """A target answering each call with the next of ``replies`` (a Remote, or an error to
    raise), noting what the ledger held for the subject at the moment of the call."""

    def __init__(
        self,
        ledger: Ledger,
        *replies: Remote | TargetError,
        spec_class: type[TargetSpecBase] = GithubTargetSpec,
    ) -> None:
        self.name = "t"
        self.spec_class = spec_class
        self._ledger = ledger
        self._replies = list(replies)
        self.calls: list[tuple[RemoteState, TargetSync | None]] = []
        self.seen_in_ledger: list[TargetSync] = []

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote:
        self.calls.append((want, current))
        self.seen_in_ledger.extend(self._ledger.syncs_for(SyncSubject.RECORD, subject.record.id))
        reply = self._replies.pop(0)
        if isinstance(reply, TargetError):
            raise reply
        return reply

    def close(self) -> None:
        return None


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh SQLite ledger holding one environment and one DEPLOYED record (#1)."""
    opened = open_ledger(f"sqlite:///{tmp_path}/ledger.db", now=NOW)
    with opened.transaction() as tx:
        tx.upsert_environment(
            EnvironmentRecord(name="p", protected=False, production=True, repository="acme/web"),
            at=NOW,
        )
        tx.insert_record(
            environment="p",
            slot="api",
            artifact=Artifact.model_validate(image()),
            ref=None,
            at=NOW,
            revision=None,
            action_id="a1",
        )
    yield opened
    opened.close()


def syncer(ledger: Ledger, target: Scripted, *, at: datetime = NOW) -> TargetSyncer:
    return TargetSyncer(
        ledger=ledger,
        targets={"t": target},
        environments={},
        lineage="lineage",
        clock=lambda: at,
        concurrency=1,
    )


def work(want: RemoteState = RemoteState.ACTIVE, *, record: int = 1) -> SyncWork:
    return SyncWork(
        target="t",
        subject=SyncSubject.RECORD,
        subject_id=record,
        want=want,
        label="p/api",
        action_id="x",
    )


def row(ledger: Ledger, record: int = 1) -> TargetSync:
    [sync] = ledger.syncs_for(SyncSubject.RECORD, record)
    return sync


HERE = {"base_url": "https://api.example.com"}


def test_a_call_finds_its_attempt_already_journaled(ledger: Ledger) -> None:
    """When the target is called, the ledger already holds the row as pending with the attempt
    counted: a crash during the call leaves it unsettled, so the next plan syncs it again."""
    target = Scripted(ledger, Remote("r1", RemoteState.ACTIVE, location=HERE))
    syncer(ledger, target).apply(work())
    [seen] = target.seen_in_ledger
    assert (seen.status, seen.attempts, seen.wanted) == (SyncStatus.PENDING, 1, RemoteState.ACTIVE)


def test_a_success_records_what_the_target_holds(ledger: Ledger) -> None:
    """Synced, with the remote id, state, time and location the target reported."""
    reply = Remote("r1", RemoteState.ACTIVE, updated_at="t0", detail={"k": "v"}, location=HERE)
    outcome = syncer(ledger, Scripted(ledger, reply)).apply(work())
    assert (outcome.status, outcome.remote_id) == (SyncStatus.SYNCED, "r1")
    sync = row(ledger)
    assert sync.settled and sync.attempts == 1
    assert (sync.remote_id, sync.remote_updated_at, sync.remote_detail, sync.location) == (
        "r1",
        "t0",
        {"k": "v"},
        HERE,
    )
    assert (sync.last_error, sync.error_reason, sync.not_before) == (None, None, None)


@pytest.mark.parametrize(
    ("error", "status", "reason", "pause"),
    [
        (
            TemporaryTargetError("t: 502 down (gave up after retries)", http_status=502),
            SyncStatus.FAILED,
            "HTTP 502: target unavailable",
            None,
        ),
        (
            TemporaryTargetError("t: rate limited", retry_after=120.0, http_status=429),
            SyncStatus.FAILED,
            "HTTP 429: rate limited",
            timedelta(seconds=120),
        ),
        (
            TemporaryTargetError("t: rate limited", retry_after=0.0, http_status=429),
            SyncStatus.FAILED,
            "HTTP 429: rate limited",
            None,
        ),
        (
            UnknownOutcome("t: no answer", retry_after=None),
            SyncStatus.FAILED,
            "no answer (the write may have happened)",
            None,
        ),
        (
            PermanentTargetError("t: permission denied", http_status=403),
            SyncStatus.FAILED,
            "HTTP 403: permission denied",
            None,
        ),
        (
            TargetFailed("t: deployment ended FAILED"),
            SyncStatus.FAILED,
            "failed on the target",
            None,
        ),
        (
            BudgetDeferred("t: write budget spent", retry_after=3600.0),
            SyncStatus.PENDING,
            "write budget spent: left for the next reconcile",
            None,
        ),
    ],
    ids=["5xx", "rate-limited", "no-pause", "unknown", "permanent", "failed", "budget"],
)
def test_a_failure_is_journaled_by_its_class(
    ledger: Ledger,
    error: TargetError,
    status: SyncStatus,
    reason: str,
    pause: timedelta | None,
) -> None:
    """The row keeps the message (for operators), the fixed reason (for public pages), and a
    "not before" only when the answer asked for a pause; a spent budget stays pending."""
    outcome = syncer(ledger, Scripted(ledger, error)).apply(work())
    sync = row(ledger)
    assert (outcome.status, sync.status, sync.attempts) == (status, status, 1)
    assert (sync.last_error, sync.error_reason) == (str(error), reason)
    assert sync.not_before == (NOW + pause if pause is not None else None)


def test_a_target_left_unusable_by_a_rate_limited_read_carries_its_pause(ledger: Ledger) -> None:
    """A write refused because the target's refresh was rate limited waits as long as that
    answer asked: the pause is found in the error's cause."""
    limited = TemporaryTargetError("t: rate limited", retry_after=30.0, http_status=403)
    unusable = TargetUnusable("t: not usable: unreachable")
    unusable.__cause__ = limited
    syncer(ledger, Scripted(ledger, unusable)).apply(work())
    assert row(ledger).not_before == NOW + timedelta(seconds=30)


def test_a_failure_keeps_what_the_target_made(ledger: Ledger) -> None:
    """An error that carries a remote id and detail (an Unkey deployment that failed) leaves
    them on the row, so the next attempt acts on that deployment."""
    failed = TargetFailed("t: ended FAILED", remote_id="d-1", detail={"status": "FAILED"})
    syncer(ledger, Scripted(ledger, failed)).apply(work())
    sync = row(ledger)
    assert (sync.remote_id, sync.remote_detail) == ("d-1", {"status": "FAILED"})


def test_the_next_attempt_counts_on_and_a_success_clears_the_failure(ledger: Ledger) -> None:
    """Attempts accumulate across runs; the adapter is handed the row as it was (its error,
    its pause); a success clears the error, its reason and the pause."""
    limited = TemporaryTargetError("t: rate limited", retry_after=60.0, http_status=429)
    syncer(ledger, Scripted(ledger, limited)).apply(work())
    later = NOW + timedelta(minutes=2)
    target = Scripted(ledger, Remote("r1", RemoteState.ACTIVE, location=HERE))
    syncer(ledger, target, at=later).apply(work())
    [(_, handed)] = target.calls
    assert handed is not None and handed.not_before == NOW + timedelta(seconds=60)
    assert handed.last_error == "t: rate limited"
    sync = row(ledger)
    assert (sync.attempts, sync.status) == (2, SyncStatus.SYNCED)
    assert (sync.last_error, sync.error_reason, sync.not_before) == (None, None, None)
    assert sync.updated_at == later


def test_an_unconfigured_target_fails_the_work_and_writes_nothing(ledger: Ledger) -> None:
    """Work for a target that is not open fails with that reason; no row is journaled."""
    outcome = TargetSyncer(
        ledger=ledger,
        targets={},
        environments={},
        lineage="lineage",
        clock=lambda: NOW,
        concurrency=1,
    ).apply(work())
    assert (outcome.status, outcome.message) == (SyncStatus.FAILED, "target is not configured")
    assert ledger.syncs_for(SyncSubject.RECORD, 1) == []


def supersede(ledger: Ledger) -> None:
    """Record #1 superseded by a new record #2 in the same slot."""
    with ledger.transaction() as tx:
        tx.set_record_status(1, RecordStatus.SUPERSEDED, at=NOW)
        successor = tx.insert_record(
            environment="p",
            slot="api",
            artifact=Artifact.model_validate(image(version="v2")),
            ref=None,
            at=NOW,
            revision=None,
            action_id="a2",
        )
        tx.set_superseded_by(1, successor)


@pytest.mark.parametrize(
    ("spec_class", "called"), [(ChainloopTargetSpec, False), (GithubTargetSpec, True)]
)
def test_a_superseded_record_is_retired_without_a_call_where_the_target_supersedes_itself(
    ledger: Ledger, spec_class: type[TargetSpecBase], called: bool
) -> None:
    """On a target whose spec says it supersedes by itself, the retirement of a superseded
    record is settled with no call (keeping the remote id); elsewhere the target is told."""
    syncer(ledger, Scripted(ledger, Remote("r1", RemoteState.ACTIVE), spec_class=spec_class)).apply(
        work()
    )
    supersede(ledger)
    target = Scripted(ledger, Remote("r1", RemoteState.INACTIVE), spec_class=spec_class)
    outcome = syncer(ledger, target).apply(work(RemoteState.INACTIVE))
    assert outcome.status is SyncStatus.SYNCED
    assert bool(target.calls) is called
    sync = row(ledger)
    assert (sync.remote_id, sync.remote_state, sync.wanted) == (
        "r1",
        RemoteState.INACTIVE,
        RemoteState.INACTIVE,
    )


def test_a_decommissioned_record_is_always_told(ledger: Ledger) -> None:
    """Superseding by itself covers superseded records only: a decommissioned one is sent to
    every target, Chainloop included."""
    syncer(ledger, Scripted(ledger, Remote("r1", RemoteState.ACTIVE))).apply(work())
    with ledger.transaction() as tx:
        tx.set_record_status(1, RecordStatus.DECOMMISSIONED, at=NOW)
    target = Scripted(ledger, Remote("r1", RemoteState.INACTIVE), spec_class=ChainloopTargetSpec)
    syncer(ledger, target).apply(work(RemoteState.INACTIVE))
    assert [want for want, _ in target.calls] == [RemoteState.INACTIVE]


def test_groups_are_taken_in_turn_from_each_write_budget() -> None:
    """The workers take the slots in turn from each lane (repository, so installation): three
    slots of a, two of b and one of c run as a b c a b a, each lane's slots in order."""
    from slotkeeper.targetsync import interleaved

    assert interleaved(["a", "a", "a", "b", "b", "c"]) == [0, 3, 5, 1, 4, 2]
    assert interleaved(["x", "y", "x", "y"]) == [0, 1, 2, 3]
    assert interleaved([]) == []
    order = interleaved([f"r{i % 4}" for i in range(400)])
    assert sorted(order) == list(range(400))
