"""Each role of the ledger (``ledger.base``) keeps the promise written on it, on both backends
(an SQLite file, a PostgreSQL schema): a table of the promises that tests/test_ledger.py and
the boundary tests do not already hold it to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from slotkeeper.errors import LedgerError, LedgerLockedError
from slotkeeper.ledger import (
    AuditLog,
    HttpCacheStore,
    LastGoodStore,
    Ledger,
    LedgerTransaction,
    PendingAction,
    ReconcileRequests,
    StateStore,
    WriteLog,
    open_ledger,
)
from slotkeeper.model import (
    Artifact,
    BrokenFile,
    EnvironmentRecord,
    ManifestStatus,
    RecordStatus,
    Revision,
    SyncSubject,
)
from tests.helpers import image, synced_record
from tests.test_ledger import run_sql

NOW = datetime(2026, 11, 23, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def _deploy(ledger: StateStore, slot: str, version: str, *, environment: str = "p") -> int:
    """A DEPLOYED record in ``slot`` (superseding the one there), with its event."""
    current = [r for r in ledger.history(environment, slot) if r.status is RecordStatus.DEPLOYED]
    with ledger.transaction() as tx:
        for record in current:
            tx.set_record_status(record.id, RecordStatus.SUPERSEDED, at=NOW)
        record_id = tx.insert_record(
            environment=environment,
            slot=slot,
            artifact=Artifact.model_validate(image(version=version)),
            ref=None,
            at=NOW,
            revision=None,
            action_id=f"{slot}-{version}",
        )
        for record in current:
            tx.set_superseded_by(record.id, record_id)
        tx.append_event(
            serial=1,
            at=NOW,
            type="record.deployed",
            actor="t",
            detail={},
            environment=environment,
            slot=slot,
            record_id=record_id,
        )
    return record_id


# -- state ------------------------------------------------------------------------------------


def state_a_failing_transaction_writes_nothing(ledger: Ledger, url: str) -> None:
    """An exception inside the block undoes every write of it, its events too, and leaves the
    block as it was raised."""
    with pytest.raises(RuntimeError, match="changed my mind"), ledger.transaction() as tx:
        tx.upsert_environment(
            EnvironmentRecord(name="p", protected=False, production=True, repository=None), at=NOW
        )
        _insert(tx)
        tx.append_event(serial=1, at=NOW, type="record.deployed", actor="t", detail={})
        raise RuntimeError("changed my mind")
    assert ledger.history("p") == [] and ledger.events() == []
    assert ledger.read_state().environments == {}


def _insert(tx: LedgerTransaction, slot: str = "api") -> int:
    return tx.insert_record(
        environment="p",
        slot=slot,
        artifact=Artifact.model_validate(image()),
        ref=None,
        at=NOW,
        revision=None,
        action_id="a",
    )


def state_a_refused_write_undoes_its_whole_transaction(ledger: Ledger, url: str) -> None:
    """A write the database refuses (a second DEPLOYED record in a slot) is a LedgerError, and
    the writes before it in the same transaction are gone too."""
    with pytest.raises(LedgerError, match="ledger write failed"), ledger.transaction() as tx:
        _insert(tx, slot="web")
        _insert(tx)
        _insert(tx)
    assert ledger.history("p") == []


def state_touch_moves_only_deployed_records(ledger: Ledger, url: str) -> None:
    """``touch`` moves last_seen_at of DEPLOYED records only: a retired one keeps its own."""
    old = _deploy(ledger, "api", "v1")
    new = _deploy(ledger, "api", "v2")
    with ledger.transaction() as tx:
        tx.touch([old, new], at=LATER)
    assert ledger.record(new).last_seen_at == LATER
    assert ledger.record(old).last_seen_at == NOW


def state_reads_come_in_their_documented_order(ledger: Ledger, url: str) -> None:
    """History newest first, the newest record per slot by environment and slot, what a record
    superseded, and each slot counted once by its newest record."""
    first = _deploy(ledger, "web", "v1")
    second = _deploy(ledger, "web", "v2")
    api = _deploy(ledger, "api", "v1")
    other = _deploy(ledger, "api", "v1", environment="a")
    assert [r.id for r in ledger.history("p")] == [api, second, first]
    assert [r.id for r in ledger.history("p", "web")] == [second, first]
    assert [r.id for r in ledger.latest_records()] == [other, api, second]
    assert ledger.slot_counts() == {RecordStatus.DEPLOYED: 3}
    predecessor = ledger.predecessor(second)
    assert predecessor is not None and predecessor.id == first
    assert ledger.predecessor(first) is None


def state_an_unknown_record_or_key_is_a_ledger_error(ledger: Ledger, url: str) -> None:
    """Asking for a record or key by an id the ledger never gave is a LedgerError naming it."""
    with pytest.raises(LedgerError, match="no record #41"):
        ledger.record(41)
    with pytest.raises(LedgerError, match="no deploy key #42"):
        ledger.key(42)


def state_a_revision_keeps_its_first_details(ledger: Ledger, url: str) -> None:
    """Saving a commit again keeps what was saved first; an unknown sha is None."""
    first = Revision(sha="a" * 40, message="first", author="a", timestamp=NOW, branch="main")
    with ledger.transaction() as tx:
        tx.save_revision(first)
        tx.save_revision(first.model_copy(update={"message": "second"}))
    assert ledger.revision("a" * 40) == first
    assert ledger.revision("b" * 40) is None


def state_held_actions_replace_those_of_the_last_apply(ledger: Ledger, url: str) -> None:
    """The held actions of an apply replace the last apply's, read by environment and slot."""

    def held(action_id: str, environment: str, slot: str) -> PendingAction:
        return PendingAction(
            action_id=action_id,
            type="decommission",
            environment=environment,
            slot=slot,
            key=None,
            reason="gone",
            blocked="protected",
            serial=1,
            at=NOW,
        )

    with ledger.transaction() as tx:
        tx.replace_pending([held("1", "p", "web"), held("2", "a", "api"), held("3", "p", "api")])
    assert [p.action_id for p in ledger.pending()] == ["2", "3", "1"]
    with ledger.transaction() as tx:
        tx.replace_pending([held("4", "p", "api")])
    assert [p.action_id for p in ledger.pending()] == ["4"]


def state_sync_rows_come_by_subject_and_target(ledger: Ledger, url: str) -> None:
    """One row per target, subject and id, replaced by the next write; read by target for one
    subject, by subject, id and target for all."""
    with ledger.transaction() as tx:
        for target, subject_id in [("unkey", 2), ("github", 2), ("chainloop", 1), ("github", 1)]:
            tx.upsert_sync(synced_record(target, subject_id, remote_id="r", at=NOW))
        tx.upsert_sync(synced_record("github", 1, remote_id="again", at=LATER))
    assert [s.target for s in ledger.syncs_for(SyncSubject.RECORD, 2)] == ["github", "unkey"]
    everything = [(s.subject_id, s.target, s.remote_id) for s in ledger.all_syncs()]
    assert everything == [
        (1, "chainloop", "r"),
        (1, "github", "again"),
        (2, "github", "r"),
        (2, "unkey", "r"),
    ]


# -- audit log --------------------------------------------------------------------------------


def audit_events_number_upwards_and_combine_their_filters(ledger: Ledger, url: str) -> None:
    """Every event gets a higher ``seq`` than the one before; ``since``, ``types`` and ``last``
    narrow the same read together, oldest first."""
    for version in ("v1", "v2", "v3"):
        _deploy(ledger, "api", version)
    log: AuditLog = ledger
    seqs = [event.seq for event in log.events()]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    newest = log.events(since=seqs[0], types=("record.deployed",), last=1)
    assert [event.seq for event in newest] == [seqs[2]]
    assert log.events(since=seqs[2]) == []


# -- writer lock ------------------------------------------------------------------------------


def lock_is_reentrant_and_freed_by_the_last_resign(ledger: Ledger, url: str) -> None:
    """``try_lead`` counts and ``resign`` undoes one: another holder gets the lock only after
    the last resign, and an extra resign changes nothing."""
    other = open_ledger(url, now=NOW)
    try:
        assert ledger.try_lead() and ledger.try_lead() and ledger.leading()
        assert not other.try_lead()
        ledger.resign()
        assert ledger.leading() and not other.try_lead()
        ledger.resign()
        assert not ledger.leading()
        ledger.resign()
        assert other.try_lead() and other.leading()
        assert not ledger.try_lead()
        other.resign()
    finally:
        other.close()


def lock_writer_gives_up_after_its_timeout_naming_the_ledger(ledger: Ledger, url: str) -> None:
    """While another holds the lock, ``writer`` fails after its timeout with a
    LedgerLockedError that names the ledger and the wait; once freed, it is taken."""
    other = open_ledger(url, now=NOW)
    try:
        with other.writer(timeout=1):
            with pytest.raises(LedgerLockedError) as locked, ledger.writer(timeout=0.2):
                pytest.fail("the lock was taken twice")
            assert f"writing to {ledger.url} (waited 0.2s" in str(locked.value)
            lease = other.lease()  # PostgreSQL says who holds it, and until when
            if lease is not None:
                assert f"held by {lease.holder} (epoch {lease.epoch}) until" in str(locked.value)
            assert ledger.read_state().serial == 0  # readers do not wait
        with ledger.writer(timeout=1):
            assert ledger.leading() and not other.leading()
        assert not ledger.leading()
    finally:
        other.close()


# -- HTTP cache -------------------------------------------------------------------------------


def cache_is_kept_per_target_credential_and_url(ledger: Ledger, url: str) -> None:
    """A body comes back for its target, credential and URL only; a second put replaces it,
    and it lasts beyond the ledger object that put it."""
    cache: HttpCacheStore = ledger
    page = "https://api.github.com/repos/a/b/deployments"
    cache.cache_put("github", "digest-1", page, '"e1"', "[1]", at=NOW)
    assert cache.cache_get("github", "digest-1", page) == ('"e1"', "[1]")
    assert cache.cache_get("github", "digest-2", page) is None
    assert cache.cache_get("ghes", "digest-1", page) is None
    assert cache.cache_get("github", "digest-1", page + "?page=2") is None
    cache.cache_put("github", "digest-1", page, '"e2"', "[2]", at=LATER)
    reopened = open_ledger(url, now=NOW)
    try:
        assert reopened.cache_get("github", "digest-1", page) == ('"e2"', "[2]")
    finally:
        reopened.close()


# -- write log --------------------------------------------------------------------------------


def write_log_keeps_a_day_per_target_oldest_first(ledger: Ledger, url: str) -> None:
    """Writes come back from ``since`` on (inclusive), oldest first, per target; storing one
    drops that target's writes more than a day older; storing none writes nothing."""
    log: WriteLog = ledger
    hour = timedelta(hours=1)
    log.record_writes("github", [NOW + 2 * hour, NOW, NOW + hour])
    log.record_writes("other", [NOW])
    assert log.recent_writes("github", since=NOW + hour) == [NOW + hour, NOW + 2 * hour]
    log.record_writes("github", [NOW + 25 * hour + timedelta(seconds=1)])
    assert log.recent_writes("github", since=NOW - hour) == [
        NOW + 2 * hour,
        NOW + 25 * hour + timedelta(seconds=1),
    ]
    assert log.recent_writes("other", since=NOW) == [NOW]
    log.record_writes("github", [])
    assert len(log.recent_writes("github", since=NOW - hour)) == 2


# -- reconcile requests -----------------------------------------------------------------------


def requests_number_upwards_and_the_newest_hundred_stay(ledger: Ledger, url: str) -> None:
    """``latest_request`` is 0 before any and grows with each; old requests go, the newest
    hundred stay."""
    requests: ReconcileRequests = ledger
    assert requests.latest_request() == 0
    seen = []
    for n in range(120):
        requests.request_reconcile(f"webhook {n}", at=NOW)
        seen.append(requests.latest_request())
    assert seen == sorted(seen) and len(set(seen)) == 120
    kept = {row[0] for row in run_sql(url, "SELECT seq FROM reconcile_requests")}
    assert set(seen[-100:]) <= kept and len(kept) <= 101


# -- last good manifests ----------------------------------------------------------------------


def last_good_set_is_replaced_whole(ledger: Ledger, url: str) -> None:
    """A whole set replaces the one before (a file not in it is gone), bytes as they were;
    None keeps the set; either way no file is broken any more."""
    store: LastGoodStore = ledger
    store.remember_whole(
        {"a.yaml": b"one\n", "b/c.yaml": "\u00e9\n".encode()}, revision="r1", at=NOW
    )
    assert store.last_good_manifests() == {"a.yaml": b"one\n", "b/c.yaml": "\u00e9\n".encode()}
    store.remember_whole({"a.yaml": b"two\n"}, revision="r2", at=LATER)
    assert store.last_good_manifests() == {"a.yaml": b"two\n"}
    store.remember_whole(None, revision="r3", at=LATER)
    assert store.last_good_manifests() == {"a.yaml": b"two\n"}
    assert store.manifest_status() is None


def last_good_broken_files_stay_until_a_whole_load(ledger: Ledger, url: str) -> None:
    """Broken files are recorded (the last good set untouched) until the manifests load whole."""
    store: LastGoodStore = ledger
    store.remember_whole({"a.yaml": b"one\n"}, revision="r1", at=NOW)
    broken = ManifestStatus(
        at=LATER,
        revision="r2",
        broken=(BrokenFile(file="a.yaml", errors=("a.yaml:1: bad",), last_good=True),),
    )
    store.remember_broken(broken)
    assert store.manifest_status() == broken
    assert store.last_good_manifests() == {"a.yaml": b"one\n"}
    store.remember_whole(None, revision="r3", at=LATER)
    assert store.manifest_status() is None


PROMISES: list[Callable[[Ledger, str], None]] = [
    state_a_failing_transaction_writes_nothing,
    state_a_refused_write_undoes_its_whole_transaction,
    state_touch_moves_only_deployed_records,
    state_reads_come_in_their_documented_order,
    state_an_unknown_record_or_key_is_a_ledger_error,
    state_a_revision_keeps_its_first_details,
    state_held_actions_replace_those_of_the_last_apply,
    state_sync_rows_come_by_subject_and_target,
    audit_events_number_upwards_and_combine_their_filters,
    lock_is_reentrant_and_freed_by_the_last_resign,
    lock_writer_gives_up_after_its_timeout_naming_the_ledger,
    cache_is_kept_per_target_credential_and_url,
    write_log_keeps_a_day_per_target_oldest_first,
    requests_number_upwards_and_the_newest_hundred_stay,
    last_good_set_is_replaced_whole,
    last_good_broken_files_stay_until_a_whole_load,
]


@pytest.mark.parametrize("promise", PROMISES, ids=[p.__name__ for p in PROMISES])
def test_each_role_keeps_its_promise_on_both_backends(
    ledger_url: str, promise: Callable[[Ledger, str], None]
) -> None:
    """Run one role's promise (named by the case) against a fresh ledger on each backend, as
    its writer (state is written under the writer lock; the lock's own promises take it)."""
    ledger = open_ledger(ledger_url, now=NOW)
    try:
        if promise.__name__.startswith("lock_"):
            promise(ledger, ledger_url)
        else:
            with ledger.writer(timeout=5):
                promise(ledger, ledger_url)
    finally:
        ledger.close()
