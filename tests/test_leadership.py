"""Leader election at its seam: two replicas' ``Leadership`` over one SQLite ledger file (each
with its own connection and lock handle, as two processes have), a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from slotkeeper.daemon.leadership import STAND_ASIDE, Leadership
from slotkeeper.daemon.status import DaemonStatus
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.observability import configure_logging

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
INTERVAL = 1.0


@dataclass
class Replica:
    ledger: Ledger
    status: DaemonStatus = field(default_factory=DaemonStatus)
    triggers: list[str] = field(default_factory=list)
    clock: list[float] = field(default_factory=lambda: [0.0])

    def __post_init__(self) -> None:
        self.leadership = Leadership(
            self.ledger,
            status=self.status,
            trigger=self.triggers.append,
            interval=INTERVAL,
            clock=lambda: NOW,
            monotonic=lambda: self.clock[0],
        )


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    url = f"sqlite:///{tmp_path}/state.db"
    first, second = open_ledger(url, now=NOW), open_ledger(url, now=NOW)
    yield Replica(first), Replica(second)
    for ledger in (first, second):
        ledger.resign()
        ledger.close()


def test_one_replica_leads_the_other_stands_by_ready(replicas: tuple[Replica, Replica]) -> None:
    """The first to try takes the writer lock and reconciles at once ("elected"); the other
    is a ready follower; once the leader resigns, the follower takes over."""
    a, b = replicas
    assert a.leadership.elect() is True
    assert a.triggers == ["elected"] and a.status.leader() and a.leadership.leading()
    assert b.leadership.elect() is False
    assert b.triggers == [] and not b.status.leader() and b.status.ready()
    assert not b.leadership.leading()
    assert a.leadership.elect() is True and a.triggers == ["elected"]  # kept, not re-elected
    a.leadership.resign()
    assert b.leadership.elect() is True and b.triggers == ["elected"]


def test_a_leader_that_lost_the_lock_stops_and_stands_aside(
    replicas: tuple[Replica, Replica],
) -> None:
    """A leader whose lock is gone stops between two actions, says leader.lost, and does not
    try again for STAND_ASIDE election intervals, even though the lock is free."""
    a, _ = replicas
    assert a.leadership.elect() is True
    a.ledger.resign()  # the lock is gone (for PostgreSQL: its lease lapsed)
    assert not a.leadership.leading()  # said at once, before the loop notices
    configure_logging(fmt="json", level="debug")
    with capture_logs() as logs:
        assert a.leadership.lost_mid_apply() is True
        assert a.leadership.elect() is False
    assert logs == [
        {
            "event": "leader.lost",
            "log_level": "error",
            "message": "lost the ledger's writer lock mid-apply",
        },
        {
            "event": "leader.lost",
            "log_level": "error",
            "message": "lost the ledger's writer lock: not writing",
        },
    ]
    assert not a.status.leader() and a.status.ready()
    assert a.leadership.lost_mid_apply() is False  # a follower has nothing to lose
    a.clock[0] += STAND_ASIDE * INTERVAL - 0.1
    assert a.leadership.elect() is False
    a.clock[0] += 0.1
    assert a.leadership.elect() is True
    assert a.triggers == ["elected", "elected"]


def test_a_webhook_on_a_follower_reaches_the_leader_through_the_ledger(
    replicas: tuple[Replica, Replica],
) -> None:
    """Asked on the leader, a reconcile is queued there; asked on a follower, it is left in the
    ledger and the leader's next look picks it up once ("forwarded")."""
    leader, follower = replicas
    assert leader.leadership.elect() and not follower.leadership.elect()
    leader.leadership.pick_up_forwarded()  # the first look notes where the requests stand
    assert leader.leadership.ask("webhook") is True
    assert leader.triggers == ["elected", "webhook"]
    assert follower.leadership.ask("webhook") is False
    assert follower.triggers == []
    leader.leadership.pick_up_forwarded()
    leader.leadership.pick_up_forwarded()
    assert leader.triggers == ["elected", "webhook", "forwarded"]
