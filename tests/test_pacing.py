"""The write budget: waits when the next write fits soon, defers when it does not."""

from __future__ import annotations

import threading
import time as real_time
from datetime import UTC, datetime, timedelta

import pytest

from slotkeeper.errors import BudgetDeferred
from slotkeeper.targets.pacing import Window, WriteBudget

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeTime:
    """A clock that only moves when the budget sleeps."""

    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def budget(time: FakeTime, *, per_minute: int, per_hour: int, max_wait: float, **kw):
    return WriteBudget(
        target="github",
        windows=[Window(per_minute, timedelta(minutes=1)), Window(per_hour, timedelta(hours=1))],
        max_wait=max_wait,
        clock=time.clock,
        sleep=time.sleep,
        **kw,
    )


def one(pacer: WriteBudget) -> None:
    """One write, answered at once."""
    with pacer.write():
        pass


def test_writes_within_the_budget_do_not_wait() -> None:
    """Up to the per-minute limit, writes go out at once."""
    time = FakeTime()
    pacer = budget(time, per_minute=3, per_hour=100, max_wait=60)
    for _ in range(3):
        one(pacer)
    assert time.slept == []


def test_a_write_over_the_minute_waits_for_the_oldest_to_leave_the_window() -> None:
    """The fourth write of a 3-a-minute budget waits until the first is a minute old."""
    time = FakeTime()
    pacer = budget(time, per_minute=3, per_hour=100, max_wait=60)
    for step in range(3):
        one(pacer)
        time.now += timedelta(seconds=10 * step)
    one(pacer)
    assert time.slept == [pytest.approx(30.0)]
    assert time.now == START + timedelta(minutes=1)


def test_a_long_wait_is_deferred_not_slept() -> None:
    """When the hour's budget is spent, the write is deferred with the wait as a hint."""
    time = FakeTime()
    pacer = budget(time, per_minute=100, per_hour=2, max_wait=60)
    one(pacer)
    one(pacer)
    with pytest.raises(BudgetDeferred) as caught:
        one(pacer)
    assert caught.value.retry_after == pytest.approx(3600)
    assert time.slept == []


def test_history_from_earlier_runs_counts_and_writes_are_reported() -> None:
    """Writes logged by earlier runs use the same budget; each new write is reported."""
    time = FakeTime()
    noted: list[datetime] = []
    pacer = budget(
        time,
        per_minute=100,
        per_hour=3,
        max_wait=0,
        history=[START - timedelta(minutes=m) for m in (5, 10)],
        on_write=noted.append,
    )
    one(pacer)
    assert noted == [START]
    with pytest.raises(BudgetDeferred):
        one(pacer)


def test_writes_in_flight_count_until_answered_and_are_logged_when_answered() -> None:
    """A write still waiting for its answer fills a place in every window; once answered it is
    logged at the answer's time, so the window frees a place one span after the answer."""
    time = FakeTime()
    pacer = budget(time, per_minute=2, per_hour=100, max_wait=120)
    pacer.acquire()  # in flight, not answered yet
    time.now += timedelta(seconds=30)
    one(pacer)  # answered at START+30s
    time.now += timedelta(seconds=20)
    pacer.release()  # the first write is answered at START+50s
    one(pacer)
    # The window frees its first place a minute after the first *answer* (START+30s).
    assert time.slept == [pytest.approx(40.0)]
    assert time.now == START + timedelta(seconds=90)


def test_when_only_writes_in_flight_block_the_next_one_waits_for_an_answer() -> None:
    """With the whole budget in flight, the next write goes out right after an answer lands
    plus the window: it never counts on an answer that has not come."""
    pacer = WriteBudget(
        target="github",
        windows=[Window(2, timedelta(seconds=0.3))],
        max_wait=5,
        clock=lambda: datetime.now(UTC),
    )
    pacer.acquire()
    pacer.acquire()
    let_through = threading.Event()

    def third() -> None:
        with pacer.write():
            let_through.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not let_through.wait(0.5)  # both places are still in flight
    answered = real_time.monotonic()
    pacer.release()
    assert let_through.wait(30)  # a hang guard: the window is 0.3 s
    assert real_time.monotonic() - answered >= 0.25  # the answered write left the window first
    thread.join()
    pacer.release()
