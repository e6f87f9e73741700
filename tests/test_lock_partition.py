"""The PostgreSQL writer lease when the network to the database fails without closing (a
partition, through tests/netfault.py): the holder finds out by its local renew deadline, never
by a query that hangs for as long as TCP retransmits; a standby takes the lease once it has
expired; and when the network heals, every write of the old holder is refused by fencing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from slotkeeper.errors import FencedError, LedgerError
from slotkeeper.ledger.lease import LeaseSettings
from slotkeeper.ledger.postgres import PostgresLedger
from tests.conftest import postgres_schema_url
from tests.netfault import TcpProxy

SHORT = LeaseSettings(duration=3.0, renew_deadline=2.0, retry_period=0.5)


@pytest.fixture
def proxied() -> Iterator[tuple[str, str, TcpProxy]]:
    """A fresh ledger schema's URL, direct and through a proxy that can fail."""
    for url in postgres_schema_url():
        parts = urlsplit(url)
        with TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432)) as proxy:
            yield url, url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}"), proxy


def open_pg(url: str) -> PostgresLedger:
    return PostgresLedger(url, now=datetime.now(UTC), lease=SHORT)


def bump(ledger: PostgresLedger) -> int:
    state = ledger.read_state()
    with ledger.transaction() as tx:
        return tx.bump_serial(lineage=state.lineage, expected=state.serial)


def test_a_partitioned_holder_stops_by_its_own_deadline_and_a_standby_takes_over(
    proxied: tuple[str, str, TcpProxy],
) -> None:
    """With the holder's network blackholed, ``leading()`` answers at once every time and
    turns False within the renew deadline; the standby acquires the next epoch once the lease
    has expired (never before); after the heal the old holder's writes are refused."""
    direct, through_proxy, proxy = proxied
    holder, standby = open_pg(through_proxy), open_pg(direct)
    try:
        assert holder.try_lead() and holder.leading()
        assert bump(holder) == 1
        assert not standby.try_lead()
        proxy.blackhole()
        cut = time.monotonic()
        slowest = 0.0
        while holder.leading():
            started = time.monotonic()
            holder.leading()
            slowest = max(slowest, time.monotonic() - started)
            assert time.monotonic() - cut < SHORT.renew_deadline + 1, "still leading"
            time.sleep(0.05)
        assert slowest < 0.1  # a local check: it never waited on the network
        while not standby.try_lead():
            assert time.monotonic() - cut < SHORT.duration + 2 * SHORT.retry_period + 1
            time.sleep(0.1)
        # never before the lease could expire: the holder's last renewal was at most one
        # retry period before the cut
        assert time.monotonic() - cut >= SHORT.duration - SHORT.retry_period - 0.2
        takeover = standby.takeover()
        assert takeover is not None and takeover.epoch == 2
        assert takeover.previous_holder == holder.holder
        assert bump(standby) == 2
        proxy.heal()
        with pytest.raises(FencedError, match="epoch 1"):
            bump(holder)
        assert standby.read_state().serial == 2
    finally:
        proxy.heal()
        holder.close()
        standby.close()


def test_a_write_in_flight_across_the_takeover_is_refused_by_the_ledger(
    proxied: tuple[str, str, TcpProxy],
) -> None:
    """A transaction the holder began before its partition (the lease row checked and locked)
    and tries to commit after the takeover writes nothing: the server ended the idle
    transaction, so the takeover did not wait for it, and its commit fails."""
    direct, through_proxy, proxy = proxied
    holder, standby = open_pg(through_proxy), open_pg(direct)
    try:
        assert holder.try_lead()
        state = holder.read_state()
        # the commit fails after the heal
        with pytest.raises(LedgerError), holder.transaction() as tx:
            tx.bump_serial(lineage=state.lineage, expected=state.serial)
            proxy.blackhole()
            started = time.monotonic()
            while not standby.try_lead():
                assert time.monotonic() - started < SHORT.duration + SHORT.renew_deadline + 3
                time.sleep(0.1)
            assert bump(standby) == 1
            proxy.heal()
        assert standby.read_state().serial == 1  # the standby's write, not the old holder's
    finally:
        proxy.heal()
        holder.close()
        standby.close()


def test_reset_connections_are_reopened_and_the_holder_keeps_its_epoch(
    proxied: tuple[str, str, TcpProxy],
) -> None:
    """Every connection of the holder reset, and new ones refused for a second (what a
    database restart does): the holder reconnects both sessions, renews within its deadline
    and writes on at the same epoch; the standby never gets the lease."""
    direct, through_proxy, proxy = proxied
    holder, standby = open_pg(through_proxy), open_pg(direct)
    try:
        assert holder.try_lead() and bump(holder) == 1
        assert proxy.reset(refuse=True) == 2  # the main session and the lease's
        time.sleep(1.0)
        proxy.heal()
        time.sleep(SHORT.renew_deadline)  # past a deadline: only renewals kept it
        assert holder.leading()
        assert bump(holder) == 2  # the main session was reopened
        assert not standby.try_lead()
        assert holder.takeover().epoch == 1  # type: ignore[union-attr]
        lease = standby.lease()
        assert lease is not None and (lease.holder, lease.epoch) == (holder.holder, 1)
    finally:
        proxy.heal()
        holder.close()
        standby.close()


def test_a_slow_network_keeps_the_lease_within_the_call_deadline_and_loses_it_beyond(
    proxied: tuple[str, str, TcpProxy],
) -> None:
    """Each packet held 0.2 s (renewals answer within their 1 s deadline): the holder keeps
    its lease. Held 1.5 s: no renewal answers in time, the holder stops at its renew deadline,
    and the standby takes the lease once it has expired."""
    direct, through_proxy, proxy = proxied
    holder, standby = open_pg(through_proxy), open_pg(direct)
    try:
        assert holder.try_lead()
        proxy.delay(0.2)
        time.sleep(SHORT.renew_deadline + 0.5)
        assert holder.leading() and not standby.try_lead()
        proxy.delay(1.5)
        slowed = time.monotonic()
        while holder.leading():
            assert time.monotonic() - slowed < SHORT.renew_deadline + 1.5, "still leading"
            time.sleep(0.05)
        while not standby.try_lead():
            assert time.monotonic() - slowed < SHORT.duration + 2.5
            time.sleep(0.1)
        assert standby.takeover().epoch == 2  # type: ignore[union-attr]
    finally:
        proxy.delay(0)
        holder.close()
        standby.close()


def test_a_standby_that_cannot_reach_the_database_says_so_rather_than_not_elected(
    proxied: tuple[str, str, TcpProxy],
) -> None:
    """Taking the lease with the database unreachable is an error naming the ledger (the
    election logs it), never a quiet "another replica leads"."""
    _, through_proxy, proxy = proxied
    standby = open_pg(through_proxy)
    try:
        proxy.reset(refuse=True)
        with pytest.raises(LedgerError, match="cannot take the writer lease at postgresql://"):
            standby.try_lead()
        proxy.heal()
        assert standby.try_lead()
    finally:
        proxy.heal()
        standby.close()
