"""The pool lender (issue 22): one single-connection pool per request in flight, the one used
last lent first, httpcore's limits kept (connections in flight, idle ones kept, keep-alive
expiry). The wire-level side (connections a server sees) is in test_egress.py."""

from __future__ import annotations

import threading

import httpcore
import pytest

from slotkeeper.targets.pools import PoolLender


class Pool(httpcore.ConnectionPool):
    """A pool that never connects and remembers being closed."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lender(
    *,
    max_connections: int | None = 10,
    max_keepalive_connections: int | None = 5,
    keepalive_expiry: float | None = 5.0,
    clock: Clock | None = None,
) -> tuple[PoolLender, list[Pool]]:
    made: list[Pool] = []

    def make() -> httpcore.ConnectionPool:
        made.append(Pool(len(made)))
        return made[-1]

    return (
        PoolLender(
            make,
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
            clock=clock or Clock(),
        ),
        made,
    )


def test_one_request_after_another_shares_one_pool() -> None:
    """A pool given back is lent again: sequential requests keep one connection alive."""
    pools, made = lender()
    for _ in range(3):
        pools.give_back(pools.borrow(None))
    assert len(made) == 1 and not made[0].closed


def test_requests_in_flight_each_get_their_own_pool_and_the_last_back_goes_out_first() -> None:
    """Concurrent requests never share a pool; afterwards the most recently used one is lent
    first (its connection is the warmest)."""
    pools, made = lender()
    first, second, third = (pools.borrow(None) for _ in range(3))
    assert len({id(first), id(second), id(third)}) == 3 and len(made) == 3
    for pool in (first, third, second):
        pools.give_back(pool)
    assert pools.borrow(None) is second
    assert pools.borrow(None) is third
    assert pools.borrow(None) is first
    assert len(made) == 3


def test_idle_pools_beyond_the_keepalive_limit_are_closed() -> None:
    """At most ``max_keepalive_connections`` idle pools are kept; the rest close on return."""
    pools, made = lender(max_keepalive_connections=2)
    lent = [pools.borrow(None) for _ in range(4)]
    for pool in lent:
        pools.give_back(pool)
    assert [pool.closed for pool in made] == [False, False, True, True]


def test_an_idle_pool_past_the_keepalive_expiry_is_closed_and_never_lent() -> None:
    """An idle pool unused for longer than the expiry is closed at the next look."""
    clock = Clock()
    pools, made = lender(keepalive_expiry=5.0, clock=clock)
    old, recent = pools.borrow(None), pools.borrow(None)
    pools.give_back(old)
    clock.now += 4.0
    pools.give_back(recent)
    clock.now += 2.0  # old has been idle for 6 s, recent for 2 s
    assert pools.borrow(None) is recent
    assert made[0].closed and not made[1].closed
    pools.give_back(recent)
    clock.now += 6.0
    fresh = pools.borrow(None)
    assert fresh is not recent and made[1].closed and len(made) == 3


def test_without_an_expiry_idle_pools_are_kept() -> None:
    """``keepalive_expiry=None``: idle pools stay however long they wait."""
    clock = Clock()
    pools, made = lender(keepalive_expiry=None, clock=clock)
    pool = pools.borrow(None)
    pools.give_back(pool)
    clock.now += 10_000
    assert pools.borrow(None) is pool and not made[0].closed


def test_a_request_beyond_max_connections_waits_for_one_to_come_back() -> None:
    """With ``max_connections`` requests in flight, one more waits until a pool is given
    back, then gets that one."""
    pools, made = lender(max_connections=1)
    lent = pools.borrow(None)
    got: list[httpcore.ConnectionPool] = []
    waiting = threading.Thread(target=lambda: got.append(pools.borrow(5.0)))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and not got
    pools.give_back(lent)
    waiting.join(5)
    assert got == [lent] and len(made) == 1


def test_waiting_longer_than_the_pool_timeout_is_a_pool_timeout() -> None:
    """No pool back within the request's pool timeout: httpcore's PoolTimeout."""
    pools, _ = lender(max_connections=1)
    pools.borrow(None)
    with pytest.raises(httpcore.PoolTimeout):
        pools.borrow(0.05)


def test_without_a_connection_limit_nobody_waits() -> None:
    """``max_connections=None``: as many pools as requests in flight."""
    pools, made = lender(max_connections=None, max_keepalive_connections=None)
    lent = [pools.borrow(0.0) for _ in range(50)]
    for pool in lent:
        pools.give_back(pool)
    assert len(made) == 50 and not any(pool.closed for pool in made)


def test_close_closes_idle_pools_now_and_lent_ones_when_they_come_back() -> None:
    """Closing the lender closes what is idle; a pool still lent out is closed on return."""
    pools, made = lender()
    idle, lent = pools.borrow(None), pools.borrow(None)
    pools.give_back(idle)
    pools.close()
    assert made[0].closed and not made[1].closed
    pools.give_back(lent)
    assert made[1].closed


def test_a_pool_that_cannot_be_made_frees_its_place() -> None:
    """When making a pool fails, the request's place among ``max_connections`` is free again."""
    attempts: list[int] = []

    def broken() -> httpcore.ConnectionPool:
        attempts.append(1)
        raise OSError("no")

    pools = PoolLender(
        broken, max_connections=1, max_keepalive_connections=1, keepalive_expiry=None
    )
    for _ in range(3):
        with pytest.raises(OSError):
            pools.borrow(0.05)
    assert len(attempts) == 3
