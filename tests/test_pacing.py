"""The write budget: waits when the next write fits soon, defers when it does not."""

from __future__ import annotations

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


def test_writes_within_the_budget_do_not_wait() -> None:
    """Up to the per-minute limit, writes go out at once."""
    time = FakeTime()
    pacer = budget(time, per_minute=3, per_hour=100, max_wait=60)
    for _ in range(3):
        pacer.acquire()
    assert time.slept == []


def test_a_write_over_the_minute_waits_for_the_oldest_to_leave_the_window() -> None:
    """The fourth write of a 3-a-minute budget waits until the first is a minute old."""
    time = FakeTime()
    pacer = budget(time, per_minute=3, per_hour=100, max_wait=60)
    for step in range(3):
        pacer.acquire()
        time.now += timedelta(seconds=10 * step)
    pacer.acquire()
    assert time.slept == [pytest.approx(30.0)]
    assert time.now == START + timedelta(minutes=1)


def test_a_long_wait_is_deferred_not_slept() -> None:
    """When the hour's budget is spent, the write is deferred with the wait as a hint."""
    time = FakeTime()
    pacer = budget(time, per_minute=100, per_hour=2, max_wait=60)
    pacer.acquire()
    pacer.acquire()
    with pytest.raises(BudgetDeferred) as caught:
        pacer.acquire()
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
    pacer.acquire()
    assert noted == [START]
    with pytest.raises(BudgetDeferred):
        pacer.acquire()
