"""The daemon's smaller collaborators at their seams: the source watcher (a directory and a
polled git remote) and the gauges (read back from the Prometheus registry)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from slotkeeper import metrics
from slotkeeper.daemon import gauges
from slotkeeper.daemon.watch import watch
from slotkeeper.ledger import open_ledger
from slotkeeper.sources import DirectorySource, GitSource
from tests.helpers import Run, deploy_key, environment, image, write_manifests

Sk = Callable[..., Run]


@contextmanager
def watching(source: DirectorySource | GitSource, fetched: list[str | None]) -> Iterator[Any]:
    """``watch`` on a thread, its triggers in a queue; stopped (and joined) after the block."""
    triggers: queue.Queue[str] = queue.Queue()
    stopping = threading.Event()
    thread = threading.Thread(
        target=watch,
        kwargs={
            "source": source,
            "stopping": stopping,
            "trigger": triggers.put,
            "fetched": lambda: fetched[0],
            "poll_interval": 0.05,
        },
    )
    thread.start()
    try:
        yield triggers
    finally:
        stopping.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def commit(work: Path, message: str) -> str:
    for args in (
        ["add", "-A"],
        ["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", message],
        ["push", "-q", "origin", "HEAD:main"],
    ):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    return subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_polled_remote_triggers_when_its_head_moves_past_what_was_fetched(
    tmp_path: Path,
) -> None:
    """A git remote is polled: nothing before the first fetch, nothing while its head is the
    fetched version, "change" once the branch moves."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True, capture_output=True)
    write_manifests(work, environment("production", {"api": image()}))
    first = commit(work, "first")
    source = GitSource(f"file://{origin}", branch="main", path=".", cache_dir=tmp_path / "cache")
    fetched: list[str | None] = [None]
    with watching(source, fetched) as triggers:
        time.sleep(0.3)  # several polls: before any fetch, a head means nothing yet
        assert triggers.empty()
        fetched[0] = first
        time.sleep(0.3)
        assert triggers.empty()
        write_manifests(work, environment("production", {"api": image(version="v2")}))
        commit(work, "second")
        assert triggers.get(timeout=10) == "change"


def test_a_watched_directory_triggers_on_a_manifest_edit(tmp_path: Path) -> None:
    """An edit of a manifest file in a watched directory is a "change" (edited again until
    one comes: the watcher may not be set up yet when the first edit lands)."""
    write_manifests(tmp_path / "m", environment("production", {"api": image()}))
    with watching(DirectorySource(tmp_path / "m"), [None]) as triggers:
        for attempt in range(40):
            write_manifests(
                tmp_path / "m", environment("production", {"api": image(version=f"v{attempt}")})
            )
            try:
                assert triggers.get(timeout=0.5) == "change"
                break
            except queue.Empty:
                continue
        else:
            pytest.fail("no change seen in 20 s of edits")


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_finished_reconcile_is_counted_and_a_success_is_dated() -> None:
    """Each result is counted with its duration; only a success moves the last-success time."""
    before = sample("slotkeeper_reconciles_total", result="failure")
    observed = sample("slotkeeper_reconcile_duration_seconds_count", result="failure")
    gauges.reconcile_finished("failure", 0.2)
    assert sample("slotkeeper_reconciles_total", result="failure") == before + 1
    assert sample("slotkeeper_reconcile_duration_seconds_count", result="failure") == observed + 1
    gauges.reconcile_finished("success", 0.2)
    assert time.time() - sample("slotkeeper_last_successful_reconcile_timestamp_seconds") < 60
    gauges.manifests_loaded(2)
    assert sample("slotkeeper_manifests_invalid") == 2
    gauges.manifests_loaded(0)


def test_the_ledger_figures_count_slots_and_age_each_active_key(sk: Sk, workdir: Path) -> None:
    """After an apply of one slot and one deploy key: one DEPLOYED slot, and the key's age as
    of the time given."""
    write_manifests(
        workdir / "m",
        environment("production", {"api": image()}, deployKeys=[deploy_key("deployer")]),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    ledger = open_ledger(f"sqlite:///{workdir}/.slotkeeper/state.db", now=datetime.now(UTC))
    try:
        [key] = ledger.keys()
        gauges.ledger_figures(ledger, now=key.created_at + timedelta(hours=1))
    finally:
        ledger.close()
    assert sample("slotkeeper_slots", status="DEPLOYED") == 1
    assert sample("slotkeeper_slots", status="DECOMMISSIONED") == 0
    age = sample("slotkeeper_deploy_key_age_seconds", repository="acme/web", title="deployer")
    assert age == pytest.approx(3600)
