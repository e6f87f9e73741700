"""The daemon's shared status at its seam: liveness and readiness as the loop reports them, and
readers on other threads that only ever see whole updates."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

from slotkeeper.daemon.status import (
    RECONCILE_STUCK_AFTER,
    STALL_AFTER,
    DaemonStatus,
    LastReconcile,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_alive_while_the_loop_ticks_or_a_reconcile_runs_not_too_long() -> None:
    """Alive while ticks come within STALL_AFTER; a running reconcile keeps it alive up to
    RECONCILE_STUCK_AFTER; stopping ends it at once."""
    clock = [1000.0]
    status = DaemonStatus(monotonic=lambda: clock[0])
    assert status.alive()
    clock[0] += STALL_AFTER - 1
    assert status.alive()
    clock[0] += 1
    assert not status.alive()  # no tick for STALL_AFTER: the loop is stuck
    status.tick()
    assert status.alive()

    status.started(LastReconcile(id="a", reason="start", started_at=NOW))
    clock[0] += RECONCILE_STUCK_AFTER - 1
    assert status.alive()  # a long apply is not a dead loop
    clock[0] += 1
    assert not status.alive()
    status.finished(replace(status.last() or LastReconcile("a", "start", NOW), result="success"))
    assert status.alive()  # finishing ticks
    status.stop()
    assert not status.alive()


def test_ready_after_the_first_reconcile_or_as_a_follower() -> None:
    """Not ready at start; ready once a reconcile finished, or when set (a follower)."""
    status = DaemonStatus()
    assert not status.ready()
    status.started(LastReconcile(id="a", reason="start", started_at=NOW))
    assert not status.ready()
    status.finished(LastReconcile(id="a", reason="start", started_at=NOW, result="failure"))
    assert status.ready()
    follower = DaemonStatus()
    follower.set_ready()
    assert follower.ready() and not follower.leader()


def test_the_running_reconcile_shows_its_revision_then_its_end() -> None:
    """/status's document of the last reconcile: running with its revision, then finished."""
    status = DaemonStatus()
    assert status.last_document() is None
    status.started(LastReconcile(id="a", reason="webhook", started_at=NOW))
    status.revision_known("c" * 40)
    running = status.last_document()
    assert running is not None
    assert (running["result"], running["revision"], running["finished_at"]) == (
        "running",
        "c" * 40,
        None,
    )
    last = status.last()
    assert last is not None
    status.finished(replace(last, result="success", finished_at=NOW, duration_seconds=0.25))
    assert status.last_document() == {
        "id": "a",
        "reason": "webhook",
        "started_at": "2026-11-23T12:00:00.000000Z",
        "finished_at": "2026-11-23T12:00:00.000000Z",
        "revision": "c" * 40,
        "result": "success",
        "duration_seconds": 0.25,
        "counts": {},
        "blocked": [],
        "error": None,
    }


def test_readers_on_other_threads_see_whole_updates_only() -> None:
    """While the loop publishes thousands of reconciles, four reader threads never see one
    half-updated (a finished reconcile without its counts, a revision of another) and a value
    once read never changes under them."""
    status = DaemonStatus()
    rounds = 3_000
    done = threading.Event()
    problems: list[str] = []

    def publish() -> None:
        for n in range(rounds):
            last = LastReconcile(id=str(n), reason="resync", started_at=NOW)
            status.started(last)
            status.revision_known(f"rev-{n}")
            status.set_leader(n % 2 == 0)
            status.finished(
                replace(
                    last,
                    revision=f"rev-{n}",
                    result="success",
                    finished_at=NOW,
                    duration_seconds=float(n),
                    counts={"applied": n},
                )
            )
        done.set()

    def read() -> None:
        seen: list[tuple[LastReconcile, dict[str, object]]] = []
        while not done.is_set():
            last = status.last()
            if last is None:
                continue
            seen.append((last, last.document()))
            if last.revision not in (None, f"rev-{last.id}"):
                problems.append(f"reconcile {last.id} shows {last.revision}")
            if last.finished_at is not None and (
                last.result != "success" or last.counts != {"applied": int(last.id)}
            ):
                problems.append(f"reconcile {last.id} finished without its outcome")
        problems.extend(
            f"reconcile {last.id} changed after it was read"
            for last, document in seen[-500:]
            if last.document() != document
        )

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    publish()
    for reader in readers:
        reader.join()
    assert problems == []
    last = status.last()
    assert last is not None and last.id == str(rounds - 1) and last.result == "success"
