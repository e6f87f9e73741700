"""A large first parse shares its work with a forked worker: the same results in the same
order, whether the worker ran, could not run, or died; through ``slotkeeper plan``, the same
plan and the same errors (file, line, field) as one process gives."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotkeeper import fanout, manifests
from slotkeeper.ledger import open_ledger
from slotkeeper.manifests import parse
from tests.bench.generate import Tree, write


def _pid_of(item: int) -> tuple[int, int]:
    return item, os.getpid()


def _as_sent(_item: int, sent: tuple[int, int]) -> tuple[int, int]:
    return sent


def _dies_in_worker(item: int) -> int:
    if os.getpid() != PARENT:
        os._exit(3)  # the worker dies without a word
    return item * 2


def _doubled(_item: int, sent: int) -> int:
    return sent


PARENT = os.getpid()
#: every plan here is made as if at this time, so two plans compare whole
AT = "2026-12-01T00:00:00Z"


@pytest.mark.skipif(not fanout.may_fork(), reason="needs Linux and two processors")
def test_the_later_half_is_mapped_by_a_worker_and_the_order_kept() -> None:
    """Above the weight worth it, the later items making the worker's share of the weight go
    to one forked worker; what it sends back is landed here, in the items' order."""
    done = fanout.split_map(
        _pid_of, list(range(20)), weight=lambda _: 1, worth=5, ship=_pid_of, land=_as_sent
    )
    assert [item for item, _ in done] == list(range(20))
    split = round(20 * (1 - fanout.WORKER_SHARE))
    here = {pid for item, pid in done if item < split}
    there = {pid for item, pid in done if item >= split}
    assert here == {os.getpid()}
    assert len(there) == 1 and there != here


def test_below_the_weight_worth_it_everything_is_mapped_here() -> None:
    """A map too small to gain from a worker forks none."""
    done = fanout.split_map(
        _pid_of, list(range(10)), weight=lambda _: 1, worth=11, ship=_pid_of, land=_as_sent
    )
    assert done == [(item, os.getpid()) for item in range(10)]


def test_with_another_thread_running_nothing_is_forked() -> None:
    """A process that runs another thread (the daemon) maps everything itself: a fork would
    copy locks that thread holds."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not fanout.may_fork()
        done = fanout.split_map(
            _pid_of, list(range(10)), weight=lambda _: 1, worth=1, ship=_pid_of, land=_as_sent
        )
    finally:
        stop.set()
        other.join()
    assert done == [(item, os.getpid()) for item in range(10)]


@pytest.mark.skipif(not fanout.may_fork(), reason="needs Linux and two processors")
def test_a_worker_that_dies_leaves_its_half_to_be_done_here() -> None:
    """The worker exits mid-way: its half is mapped by this process, nothing is lost."""
    done = fanout.split_map(
        _dies_in_worker,
        list(range(8)),
        weight=lambda _: 1,
        worth=1,
        ship=_dies_in_worker,
        land=_doubled,
    )
    assert done == [item * 2 for item in range(8)]


@pytest.fixture(scope="module")
def large_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest set above the size from which a worker takes half of the parse."""
    root = write(Tree(100, 50), tmp_path_factory.mktemp("large") / "tree")
    assert sum(p.stat().st_size for p in root.glob("*.yaml")) > manifests.READ_AHEAD_BYTES
    return root


def test_a_large_load_in_two_processes_equals_the_load_in_one(
    large_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every environment, slot and line the same as one process's parse; the files to parse
    were handed to the fan-out whole, half of their bytes to the worker."""
    files = {path: path.read_bytes() for path in large_tree.glob("*.yaml")}
    handed: list[int] = []

    def spy(function, items, **how):  # type: ignore[no-untyped-def]
        handed.append(len(items))
        return fanout.split_map(function, items, **how)

    monkeypatch.setattr(manifests, "split_map", spy)
    shared = parse(files)
    assert handed == [len(files)]
    monkeypatch.setattr(manifests, "READ_AHEAD_BYTES", sys.maxsize)
    alone = parse(files)
    assert handed == [len(files)]  # too little to parse: not handed over
    assert shared == alone
    assert shared.slot_lines == alone.slot_lines


def _plan(root: Path, state: Path) -> subprocess.CompletedProcess[str]:
    command = ["plan", "--no-refresh", "-m", str(root), "--state", f"sqlite:///{state}"]
    return subprocess.run(
        [sys.executable, "-m", "slotkeeper", *command, "--at", AT, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_reports_errors_of_both_halves_by_file_line_and_field(
    large_tree: Path, tmp_path: Path
) -> None:
    """A mistake in a file this process parses and one in a file the worker parses: both are
    reported, in order, with their lines and fields; exit 1 and no ledger written."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in sorted(large_tree.glob("*.yaml")):
        (broken / path.name).write_bytes(path.read_bytes())
    first, last = sorted(broken.glob("*.yaml"))[0], sorted(broken.glob("*.yaml"))[-1]
    first.write_text(first.read_text().replace("kind: CONTAINER_IMAGE", "kind: NOPE", 1))
    last.write_text(last.read_text().replace("version: ", "version: [", 1))
    done = _plan(broken, tmp_path / "state.db")
    assert done.returncode == 1, done.stderr
    lines = [line.strip() for line in done.stderr.splitlines() if line.startswith("  /")]
    assert lines[0].startswith(f"{first}:"), lines
    assert "artifact.kind: must be one of CONTAINER_IMAGE, HELM_CHART" in lines[0]
    assert lines[-1].startswith(f"{last}:"), lines
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state.db").exists()


def test_plan_of_a_large_set_is_the_plan_one_process_makes(
    large_tree: Path, tmp_path: Path
) -> None:
    """The whole plan document, through the command line, equals what the same command makes
    when the load stays in one process (a thread running beside it rules out a fork)."""
    state = tmp_path / "state.db"
    open_ledger(f"sqlite:///{state}", now=datetime(2026, 12, 1, tzinfo=UTC)).close()
    shared = _plan(large_tree, state)
    assert shared.returncode == 0, shared.stderr
    alone = subprocess.run(
        [
            sys.executable,
            "-c",
            "import threading, sys; threading.Thread(target=threading.Event().wait, daemon=True)"
            ".start(); from slotkeeper.cli import main; sys.argv[0] = 'slotkeeper'; main()",
            "plan",
            "--no-refresh",
            "-m",
            str(large_tree),
            "--state",
            f"sqlite:///{state}",
            "--at",
            AT,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert alone.returncode == 0, alone.stderr
    assert shared.stdout == alone.stdout
    assert shared.stdout.count('"type": "deploy"') == 100 * 50
