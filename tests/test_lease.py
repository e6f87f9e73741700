"""The writer lease: its settings, the holder's local renew deadline, the keeper that renews it,
and on PostgreSQL the lease row, its epochs and the fencing of every state write (issue 17)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from slotkeeper.errors import ConfigError, FencedError
from slotkeeper.keys import generate_key
from slotkeeper.ledger.lease import LeaseKeeper, LeaseSettings, LocalLease, Renewal
from slotkeeper.ledger.postgres import PostgresLedger, split_url
from slotkeeper.targets.github import GitHubSettings, github_api
from slotkeeper.targets.http import ApiClient, HttpSettings
from tests.conftest import GITHUB_TOKEN_VALUE, postgres_schema_url
from tests.fakes.github import FakeGitHub
from tests.helpers import Run

SHORT = LeaseSettings(duration=3.0, renew_deadline=2.0, retry_period=0.5)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(10, 10, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0), (15, 10, -1)],
)
def test_settings_must_let_a_holder_stop_before_its_lease_can_be_taken(
    duration: float, deadline: float, retry: float
) -> None:
    """Lease duration > renew deadline > retry period > 0, or a ConfigError naming the flags:
    otherwise a holder could still write after its lease was taken."""
    with pytest.raises(ConfigError, match=r"--lease-duration .* > --renew-deadline .* > --retry"):
        LeaseSettings(duration=duration, renew_deadline=deadline, retry_period=retry)


def test_the_defaults_are_client_gos() -> None:
    """15 s, 10 s and 2 s, as Kubernetes' client-go leader election; settings shared by a
    ledger and its keeper cannot be changed under them."""
    assert LeaseSettings() == LeaseSettings(duration=15, renew_deadline=10, retry_period=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        LeaseSettings().duration = 60  # type: ignore[misc]


def test_a_bad_combination_on_the_command_line_exits_1_naming_the_flags(
    sk: Callable[..., Run],
) -> None:
    """Through the CLI: exit 1 with the flags and their values, no traceback."""
    done = sk("apply", "--yes", "--lease-duration", "5s", "--renew-deadline", "5s")
    assert done.code == 1
    assert "--lease-duration (5s) > --renew-deadline (5s)" in done.err
    assert "Traceback" not in done.err


# -- the holder's own clock -----------------------------------------------------------------------


def test_the_local_lease_lapses_at_the_renew_deadline_counted_from_the_renewal_sent() -> None:
    """``valid`` turns false at the renew deadline after the last renewal *sent*, stays false,
    and keeps the epoch (the writes under it are fenced)."""
    clock = Clock(now=0.0)  # a process started less than a renew deadline ago
    lease = LocalLease(SHORT, monotonic=clock)
    assert not lease.valid() and lease.epoch is None  # never taken
    clock.now = 100.0
    lease.taken(7, sent=clock.now)
    assert lease.valid() and lease.epoch == 7
    clock.now += 1.5
    assert lease.renewed(sent=clock.now - 0.1)  # sent 1.4 s after: in time
    clock.now += 1.8
    assert lease.valid()  # 1.9 s after the renewal was sent
    clock.now += 0.2
    assert not lease.valid()
    assert not lease.renewed(sent=clock.now)  # too late: it does not come back
    assert not lease.valid() and lease.epoch == 7  # the epoch stays, its writes are fenced


def test_a_renewal_sent_after_the_deadline_does_not_revive_the_lease() -> None:
    """A holder frozen past its deadline whose renewal left before the freeze but is counted
    after it: the renewal's send time decides, not when its answer is read."""
    clock = Clock()
    lease = LocalLease(SHORT, monotonic=clock)
    lease.taken(1, sent=clock.now)
    clock.now += SHORT.renew_deadline
    assert not lease.valid()  # exactly at the deadline: stopped
    lease.taken(1, sent=clock.now - SHORT.renew_deadline)
    assert not lease.renewed(sent=clock.now)
    clock.now += 0.1
    assert not lease.valid()
    lease.taken(2, sent=clock.now)  # only a new acquisition does
    assert lease.valid()


def test_the_keeper_renews_until_the_lease_is_lost_and_then_breaks_off() -> None:
    """Failed attempts are retried; a LOST answer ends the keeper, marks the lease lost and
    calls ``on_lost`` (which breaks off a call stuck on the main session)."""
    lease = LocalLease(SHORT)
    lease.taken(1, sent=time.monotonic())
    answers = iter([Renewal.RENEWED, Renewal.FAILED, Renewal.RENEWED, Renewal.LOST])
    seen: list[Renewal] = []
    lost = threading.Event()
    keeper = LeaseKeeper(
        lease,
        LeaseSettings(duration=3.0, renew_deadline=2.0, retry_period=0.05),
        lambda: next(answers),
        on_renewal=seen.append,
        on_lost=lost.set,
    )
    keeper.start()
    assert lost.wait(5)
    assert seen == [Renewal.RENEWED, Renewal.FAILED, Renewal.RENEWED, Renewal.LOST]
    assert not lease.valid()
    keeper.stop()


def test_the_keeper_gives_up_at_the_deadline_when_no_attempt_answers() -> None:
    """With every attempt failing, the keeper stops at the renew deadline, not before and not
    much after."""
    settings = LeaseSettings(duration=1.0, renew_deadline=0.5, retry_period=0.1)
    lease = LocalLease(settings)
    started = time.monotonic()
    lease.taken(1, sent=started)
    lost = threading.Event()
    keeper = LeaseKeeper(lease, settings, lambda: Renewal.FAILED, on_lost=lost.set)
    keeper.start()
    assert lost.wait(5)
    assert 0.5 <= time.monotonic() - started < 1.0
    keeper.stop()


# -- remote writes ------------------------------------------------------------------------------


def test_a_client_that_may_no_longer_write_sends_no_write_but_still_reads() -> None:
    """The last check before the bytes leave: a write request is refused (never sent) once
    ``may_write`` turns false; reads still go out."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(200, json={})

    writer = {"leading": True}
    client = ApiClient(
        name="t",
        settings=HttpSettings(base_url="https://api.example.test", headers={}),
        transport=httpx.MockTransport(answer),
        may_write=lambda: writer["leading"],
    )
    client.send("POST", "/things", json={}, write=True)
    writer["leading"] = False
    with pytest.raises(FencedError, match="POST /things not sent"):
        client.send("POST", "/things", json={}, write=True)
    with pytest.raises(FencedError):
        client.send("DELETE", "/things/1", write=True)
    client.send("GET", "/things")
    assert sent == ["POST", "GET"]


def test_a_lease_lost_after_the_transport_check_still_stops_the_bytes_at_the_socket(
    github: FakeGitHub,
) -> None:
    """A process that passed the transport's check and froze before its request was on the
    wire (the check says yes, then no): the connection's stream checks again just before the
    write, so the request never reaches the server. A read is not checked there."""
    answers = iter([True, False])
    client = github_api(
        "t",
        GitHubSettings(base_url=github.base_url, attempts=1),
        token=GITHUB_TOKEN_VALUE,
        may_write=lambda: next(answers, False),
    )
    body = {"title": "k", "key": generate_key("k").public_key, "read_only": True}
    with pytest.raises(FencedError, match="no longer holds the ledger's writer lock"):
        client.send("POST", "repos/acme/web/keys", json=body, write=True, idempotent=False)
    assert [r.method for r in github.requests] == []
    client.send("GET", "repos/acme/web/keys")
    assert [r.method for r in github.requests] == ["GET"]
    client.close()


# -- the lease row and fencing on PostgreSQL ----------------------------------------------------


@pytest.fixture
def url() -> Iterator[str]:
    yield from postgres_schema_url()


@pytest.fixture
def two(url: str) -> Iterator[tuple[PostgresLedger, PostgresLedger]]:
    first = PostgresLedger(url, now=datetime.now(UTC), lease=SHORT)
    second = PostgresLedger(url, now=datetime.now(UTC), lease=SHORT)
    yield first, second
    first.close()
    second.close()


def bump(ledger: PostgresLedger) -> int:
    state = ledger.read_state()
    with ledger.transaction() as tx:
        return tx.bump_serial(lineage=state.lineage, expected=state.serial)


def db_row(url: str) -> tuple[object, ...]:
    libpq, schema = split_url(url)
    with psycopg.connect(libpq, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        row = db.execute(
            "SELECT holder, epoch, expires_at - renewed_at, now() - renewed_at FROM lease"
        ).fetchone()
        assert row is not None
        return tuple(row)


def test_a_process_that_does_not_hold_the_lease_writes_no_state(
    two: tuple[PostgresLedger, PostgresLedger],
) -> None:
    """A state transaction is refused (FencedError, nothing written) unless this process holds
    the lease: before it took it, and while another holds it."""
    first, second = two
    with pytest.raises(FencedError, match="does not hold its writer lease"):
        bump(first)
    assert first.try_lead()
    with pytest.raises(FencedError):
        bump(second)  # the other one, while the first holds it
    assert bump(first) == 1
    assert second.read_state().serial == 1


def test_the_lease_row_is_kept_on_the_database_clock_and_released_on_resign(
    url: str, two: tuple[PostgresLedger, PostgresLedger]
) -> None:
    """The row's times are the database's (expiry exactly the duration after renewal, renewal
    at its now()); a resign releases it, so the next holder takes it at once, one epoch up."""
    first, second = two
    assert first.try_lead()
    holder, epoch, length, age = db_row(url)
    assert (holder, epoch) == (first.holder, 1)
    assert length.total_seconds() == SHORT.duration  # type: ignore[attr-defined]
    assert age.total_seconds() < 1  # type: ignore[attr-defined]
    lease = second.lease()
    assert lease is not None and lease.holder == first.holder and not lease.expired
    first.resign()
    assert second.try_lead()  # released: taken at once, the next epoch
    takeover = second.takeover()
    assert takeover is not None and takeover.epoch == 2
    assert takeover.previous_holder == first.holder
    assert takeover.gap_seconds is not None and takeover.gap_seconds < 1
    assert not first.try_lead()
    second.resign()
    assert first.try_lead() and first.takeover().epoch == 3  # type: ignore[union-attr]


def test_a_takeover_waits_for_a_fenced_write_and_the_old_epoch_writes_nothing_after(
    two: tuple[PostgresLedger, PostgresLedger],
) -> None:
    """The fence locks the lease row for its transaction: a takeover attempted while the
    writer's transaction is still working, past the lease's expiry, is refused (busy) instead
    of slipping in before its commit; then the lease is taken, and the old epoch's next write
    is refused."""
    first, second = two
    assert first.try_lead()
    state = first.read_state()
    keeper = first._keeper
    assert keeper is not None
    keeper.stop()  # the holder stops renewing: the lease will expire
    expires = time.monotonic() + SHORT.duration
    with first.transaction() as tx:
        tx.bump_serial(lineage=state.lineage, expected=state.serial)
        while time.monotonic() < expires + 0.3:
            tx._run("SELECT pg_sleep(0.5)")  # working, never idle for the server to end it
        assert not second.try_lead()  # the row is locked by the write in flight
    assert second.read_state().serial == 1  # that write was the holder's, in its epoch
    assert second.try_lead()
    assert second.takeover().epoch == 2  # type: ignore[union-attr]
    with pytest.raises(FencedError, match="epoch 1"):
        bump(first)
    assert bump(second) == 2
