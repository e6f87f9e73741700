"""Telling targets what the ledger holds: journaled, bounded-concurrent, one slot at a time.

Every remote write is journaled first: the (target, subject) sync row is written ``pending`` with
its attempt count *before* the call, and ``synced`` or ``failed`` with the remote id after. After
a crash the next plan sees the row unsettled and plans a ``sync``; the adapter, seeing earlier
attempts, looks for what it may already have created before creating anything. Work for
different slots runs concurrently under a bound; the calls for one slot stay in order.

A failure is journaled with its message (for operators), its fixed reason (for public pages)
and, when the target's answer asked for a pause (``errors.retry_delay``: a rate limit's
retry-after), the time before which it must not be called again: the planner holds the sync
until then. A target whose spec says it supersedes by itself (Chainloop) is not told that a
superseded record is retired: it did that when the successor was recorded there.

The row also keeps where the remote copy lives, as the target reported it (the stored one is
kept when a call reports none), and the adapter is handed it back: a record is retired where it
was created, even when its environment or the target points elsewhere now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from slotkeeper import observability as obs
from slotkeeper.actions import ReportedFailure
from slotkeeper.errors import BudgetDeferred, TargetError, public_reason, retry_delay
from slotkeeper.ledger import StateStore
from slotkeeper.model import (
    EnvironmentRecord,
    Record,
    RecordStatus,
    RemoteState,
    Revision,
    SyncStatus,
    SyncSubject,
    TargetSync,
)
from slotkeeper.targets.base import (
    Commit,
    EnvironmentInfo,
    KeySubject,
    RecordSubject,
    Remote,
    Target,
)

#: commits between two revisions (since, until), newest first; None when git cannot tell
History = Callable[[str | None, str], tuple[Commit, ...] | None]


@dataclass(frozen=True)
class SyncWork:
    """One remote change: make ``target`` hold ``want`` for a record or key."""

    target: str
    subject: SyncSubject
    subject_id: int | None
    want: RemoteState
    label: str
    action_id: str
    #: a known remote id to act on (orphan keys), or None to use the journaled one
    remote_id: str | None = None
    #: forget the journaled remote id (it was deleted remotely) and make a new one
    recreate: bool = False
    repository: str | None = None
    #: the target reports the deployment failed: record that, call nothing
    reported: ReportedFailure | None = None


@dataclass(frozen=True)
class SyncOutcome:
    work: SyncWork
    status: SyncStatus
    message: str
    remote_id: str | None
    duration_ms: float


def interleaved(lanes: Sequence[str]) -> list[int]:
    """The indexes of ``lanes``' items taken in turn from each lane (in the order the lanes
    first appear, each lane's items in their order): ``a a a b b c`` runs as ``a b c a b a``."""
    queues: dict[str, list[int]] = {}
    for index, lane in enumerate(lanes):
        queues.setdefault(lane, []).append(index)
    order: list[int] = []
    rounds = max((len(queue) for queue in queues.values()), default=0)
    for turn in range(rounds):
        order.extend(queue[turn] for queue in queues.values() if turn < len(queue))
    return order


class TargetSyncer:
    """Runs groups of :class:`SyncWork` (one group per slot or key) against the targets."""

    def __init__(
        self,
        *,
        ledger: StateStore,
        targets: Mapping[str, Target],
        environments: Mapping[str, EnvironmentRecord],
        lineage: str,
        clock: Callable[[], datetime],
        concurrency: int,
        history: History | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self._history = history
        self._stop = stop
        self._ledger = ledger
        self._targets = targets
        self._environments = environments
        self._lineage = lineage
        self._clock = clock
        self._concurrency = max(1, concurrency)
        self._revisions: dict[str, Revision | None] = {}

    def run(
        self,
        groups: Sequence[Sequence[SyncWork]],
        on_outcome: Callable[[SyncOutcome], None] | None = None,
        *,
        lanes: Sequence[str] | None = None,
    ) -> list[SyncOutcome]:
        """Run every group (its work in order, the groups ``concurrency`` at a time); the
        outcomes are reported in the groups' order. ``lanes`` names each group's write budget
        (its repository: a GitHub App has one budget per installation): the groups are taken
        in turn from each lane, so the workers spread over the budgets instead of queueing on
        the one the first groups share."""
        outcomes: list[SyncOutcome] = []

        def run_group(group: Sequence[SyncWork]) -> list[SyncOutcome]:
            done = []
            not_there: set[str] = set()
            # New copies first, then retirements: a target whose new deployment did not land
            # keeps the old one live (the next reconcile retries both, in this order).
            for work in sorted(group, key=lambda w: w.want is not RemoteState.ACTIVE):
                if self._stop():
                    break  # asked to stop: the rest is planned again next time
                if work.want is RemoteState.INACTIVE and work.target in not_there:
                    continue
                outcome = self.apply(work)
                done.append(outcome)
                if outcome.status is not SyncStatus.SYNCED and work.want is RemoteState.ACTIVE:
                    not_there.add(work.target)
            return done

        if self._concurrency == 1 or len(groups) <= 1:
            results = [run_group(group) for group in groups]
        else:
            order = interleaved(lanes) if lanes is not None else list(range(len(groups)))
            with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
                done = dict(
                    zip(order, pool.map(run_group, (groups[i] for i in order)), strict=True)
                )
            results = [done[i] for i in range(len(groups))]
        for group_outcomes in results:
            for outcome in group_outcomes:
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
        return outcomes

    def apply(self, work: SyncWork) -> SyncOutcome:
        """Journal, call the target, record what it holds now. Never raises for a target error."""
        log = obs.get_logger().bind(target=work.target, action_id=work.action_id)
        started = time.perf_counter()
        target = self._targets.get(work.target)
        if target is None:
            return self._outcome(work, SyncStatus.FAILED, "target is not configured", None, started)
        syncs = self._syncs(work)
        previous = next((sync for sync in syncs if sync.target == work.target), None)
        if work.reported is not None:
            return self._record_report(work, work.reported, previous, started)
        journal = self._journal(work, previous)
        try:
            remote = self._call(target, work, previous, syncs)
        except TargetError as exc:
            status = SyncStatus.PENDING if isinstance(exc, BudgetDeferred) else SyncStatus.FAILED
            pause = retry_delay(exc)
            update: dict[str, object] = {
                "status": status,
                "last_error": str(exc),  # may quote the target: for operators only
                "error_reason": public_reason(exc),  # fixed words: what public pages show
                # the target asked not to be called before then: the planner holds it till then
                "not_before": self._clock() + timedelta(seconds=pause) if pause else None,
            }
            if exc.remote_id is not None:
                update["remote_id"] = exc.remote_id
            if exc.detail:
                update["remote_detail"] = exc.detail
            self._save(journal.model_copy(update=update))
            log.warning(obs.TARGET_SYNC_FAILED, subject=work.label, error=str(exc))
            return self._outcome(work, status, str(exc), journal.remote_id, started)
        self._save(
            journal.model_copy(
                update={
                    "remote_id": remote.remote_id,
                    "remote_state": remote.state,
                    "remote_updated_at": remote.updated_at,
                    "remote_detail": remote.detail or journal.remote_detail,
                    "location": remote.location or journal.location,
                    "status": SyncStatus.SYNCED,
                    "last_error": None,
                    "error_reason": None,
                    "not_before": None,
                    "updated_at": self._clock(),
                }
            )
        )
        log.info(obs.TARGET_SYNCED, subject=work.label, want=work.want.value)
        return self._outcome(
            work, SyncStatus.SYNCED, f"{work.target}: {work.want.value}", remote.remote_id, started
        )

    def _record_report(
        self,
        work: SyncWork,
        reported: ReportedFailure,
        previous: TargetSync | None,
        started: float,
    ) -> SyncOutcome:
        """Keep what the target reports of a deployment (it failed) in the journal row, and so
        in the ledger's failures: nothing is sent to the target."""
        if previous is None:  # it made the deployment, so the ledger knows the row
            return self._outcome(work, SyncStatus.FAILED, "nothing recorded there", None, started)
        self._save(
            previous.model_copy(
                update={
                    "remote_detail": {**previous.remote_detail, "status": reported.state},
                    "remote_updated_at": reported.at or previous.remote_updated_at,
                    "updated_at": self._clock(),
                }
            )
        )
        obs.get_logger().warning(
            obs.TARGET_REPORTED_FAILURE,
            target=work.target,
            subject=work.label,
            state=reported.state,
        )
        return self._outcome(
            work,
            SyncStatus.SYNCED,
            f"{work.target}: reported {reported.state}, recorded",
            previous.remote_id,
            started,
        )

    def _syncs(self, work: SyncWork) -> list[TargetSync]:
        """What every target holds of the work's record or key, as recorded."""
        if work.subject_id is None:
            return []
        return self._ledger.syncs_for(work.subject, work.subject_id)

    def _revision(self, sha: str) -> Revision | None:
        if sha not in self._revisions:  # revisions never change once stored
            self._revisions[sha] = self._ledger.revision(sha)
        return self._revisions[sha]

    def _journal(self, work: SyncWork, previous: TargetSync | None) -> TargetSync:
        """Write the intent (attempt count up) before any remote call."""
        remote_id = work.remote_id or (
            None if work.recreate or previous is None else previous.remote_id
        )
        journal = TargetSync(
            target=work.target,
            subject=work.subject,
            subject_id=work.subject_id or 0,
            wanted=work.want,
            remote_id=remote_id,
            remote_state=None if work.recreate or previous is None else previous.remote_state,
            remote_updated_at=previous.remote_updated_at if previous else None,
            status=SyncStatus.PENDING,
            attempts=(previous.attempts if previous else 0) + 1,
            last_error=previous.last_error if previous else None,
            error_reason=previous.error_reason if previous else None,
            updated_at=self._clock(),
            remote_detail=previous.remote_detail if previous and not work.recreate else {},
            location=previous.location if previous and not work.recreate else {},
        )
        self._save(journal)
        return journal

    def _save(self, sync: TargetSync) -> None:
        with self._ledger.transaction() as tx:  # fenced: only the writer gets past it
            # orphans (remote keys unknown to the ledger) have no row of their own: the
            # empty transaction is the writer check their remote call follows
            if sync.subject_id != 0:
                tx.upsert_sync(sync)

    def _call(
        self,
        target: Target,
        work: SyncWork,
        previous: TargetSync | None,
        syncs: Sequence[TargetSync],
    ) -> Remote:
        if work.subject is SyncSubject.RECORD:
            assert work.subject_id is not None
            record = self._ledger.record(work.subject_id)
            known = self._environments.get(record.environment)
            environment = EnvironmentInfo(
                name=record.environment,
                repository=known.repository if known else None,
                production=known.production if known else False,
                transient=known.transient if known else False,
            )
            current = previous
            if work.recreate and previous is not None:
                current = previous.model_copy(update={"remote_id": None, "attempts": 0})
            if (
                work.want is RemoteState.INACTIVE
                and record.status is RecordStatus.SUPERSEDED
                and target.spec_class.supersedes_itself
            ):
                # The target retired it by itself when its successor was recorded there.
                return Remote(current.remote_id if current else None, RemoteState.INACTIVE)
            subject = RecordSubject(
                record=record,
                environment=environment,
                lineage=self._lineage,
                revision=self._revision(record.revision) if record.revision else None,
                others=tuple(s for s in syncs if s.target != work.target),
                changes=lambda: self._changes(record),
            )
            return target.sync_record(subject, want=work.want, current=current)
        if work.want is RemoteState.ABSENT:
            remote_id = work.remote_id or (previous.remote_id if previous else None)
            repository = work.repository
            if repository is None and work.subject_id is not None:
                repository = self._ledger.key(work.subject_id).repository
            if remote_id is None or repository is None:
                return Remote(remote_id, RemoteState.ABSENT)
            return target.delete_key(repository, remote_id, previous.location if previous else None)
        assert work.subject_id is not None
        return target.add_key(KeySubject(key=self._ledger.key(work.subject_id)))

    def _changes(self, record: Record) -> tuple[Commit, ...] | None:
        if self._history is None or record.revision is None:
            return None
        previous = self._ledger.predecessor(record.id)
        return self._history(previous.revision if previous else None, record.revision)

    def _outcome(
        self,
        work: SyncWork,
        status: SyncStatus,
        message: str,
        remote_id: str | None,
        started: float,
    ) -> SyncOutcome:
        return SyncOutcome(
            work=work,
            status=status,
            message=message,
            remote_id=remote_id,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
