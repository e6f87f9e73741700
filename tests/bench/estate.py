"""Target 10, a large estate as a person meets it: the dashboard at 10,000 slots, and 100,000
slots (2,000 environments of 50) from the command line, the daemon and the dashboard.

Everything here is a whole ``slotkeeper`` process timed from outside, like a stopwatch:

- **the dashboard at 10,000 slots**: the 10,000-slot tree is applied (``apply --no-refresh``),
  ``slotkeeper ui`` serves its ledger, and ``/`` (the matrix's first window: 50 slots in 10
  environments, counts of the whole set), ``/keys`` and a filtered view (one environment) are
  fetched over HTTP, best of five each; ``/``'s size in bytes;
- **100,000 slots**: a first ``plan`` (wall time and peak RSS of the process), the first
  ``apply`` (reported), an ``apply`` with nothing to do, ``slotkeeper run`` on the applied
  ledger (its RSS once idle after a first reconcile with nothing to do), and ``slotkeeper ui``
  on it: a filtered view (one environment) and ``/``.

The quick version (``--quick``) runs the same steps on 200 and 1,000 slots and holds nothing
but that each step succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.bench.daemon import Daemon, _free_port, _mb
from tests.bench.generate import Tree, manifest_args, write
from tests.bench.measure import Child, slotkeeper, sqlite_url
from tests.bench.report import Figure, at_most, reported

TARGET = "10 estate"
#: the runs of each page, the best of which is the figure
FETCHES = 5


def _checked(child: Child, what: str) -> Child:
    if child.code != 0:
        raise RuntimeError(f"{what} failed ({child.code}): {child.err[-2000:]}")
    return child


class Ui:
    """``slotkeeper ui`` on a ledger, on a free port."""

    def __init__(self, state: str) -> None:
        listen = f"127.0.0.1:{_free_port()}"
        self.url = f"http://{listen}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTKEEPER_", "COV"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "slotkeeper", "ui", "--state", state, "--listen", listen],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("slotkeeper ui did not start")
            time.sleep(0.1)

    def fetch(self, path: str) -> tuple[float, int]:
        """The best wall time of ``FETCHES`` GETs of ``path``, and the page's size."""
        best, size = float("inf"), 0
        with httpx.Client(timeout=60) as client:
            for _ in range(FETCHES):
                started = time.perf_counter()
                answer = client.get(self.url + path)
                best = min(best, time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {path}: {answer.status_code}")
                size = len(answer.content)
        return best, size

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.communicate()


@dataclass(frozen=True)
class Applied:
    """A tree applied to a ledger beside it, with its secrets where the daemon looks."""

    root: Path
    manifests: Path
    state: str
    seconds: float


def applied(work: Path, tree: Tree) -> Applied:
    """The tree under ``work``, applied by ``slotkeeper apply --no-refresh`` (timed)."""
    manifests = write(tree, work / "manifests")
    state = sqlite_url(work / "state.db")  # where ``Daemon(work, …)`` keeps its ledger
    child = _checked(
        slotkeeper(
            "apply",
            "--yes",
            "--no-refresh",
            *manifest_args(manifests),
            "--state",
            state,
            "--secrets-dir",
            str(work / "secrets"),
        ),
        "apply",
    )
    return Applied(work, manifests, state, child.seconds)


def dashboard(work: Path, tree: Tree, *, hold: bool) -> list[Figure]:
    """The pages a person opens, at the tree's size."""
    estate = applied(work, tree)
    ui = Ui(estate.state)
    try:
        page, size = ui.fetch("/")
        keys, _ = ui.fetch("/keys")
        filtered, _ = ui.fetch(f"/?env={tree.environment_name(tree.environments // 2)}")
    finally:
        ui.stop()
    slots = f"{tree.slots:,} slots"
    bound = at_most if hold else (lambda t, n, v, u, _b: reported(t, n, v, u))
    return [
        bound(TARGET, f"dashboard `/` at {slots}, over HTTP", page, "s", 0.3),
        bound(TARGET, f"dashboard `/` at {slots}, size", size / 1000, "KB", 500),
        bound(TARGET, f"dashboard `/keys` at {slots}, over HTTP", keys, "s", 0.05),
        reported(TARGET, f"dashboard `/?env=` (one environment) at {slots}", filtered, "s"),
    ]


def hundred_thousand(work: Path, tree: Tree, *, hold: bool) -> list[Figure]:
    """Plan, apply, apply again, the daemon and the dashboard on the big tree."""
    slots = f"{tree.slots:,} slots"
    manifests = write(tree, work / "plan-tree")
    first = _checked(
        slotkeeper(
            "plan", "--no-refresh", *manifest_args(manifests), "--state", sqlite_url(work / "x.db")
        ),
        "plan",
    )
    estate = applied(work / "estate", tree)
    again = _checked(
        slotkeeper(
            "apply",
            "--yes",
            "--no-refresh",
            *manifest_args(estate.manifests),
            "--state",
            estate.state,
            "--secrets-dir",
            str(estate.root / "secrets"),
        ),
        "apply with nothing to do",
    )
    if "No changes" not in again.out:
        raise RuntimeError(f"the second apply had work to do: {again.out[-500:]}")
    daemon = Daemon(estate.root, estate.manifests)
    try:
        daemon.wait(daemon.ready, 600, "/readyz")
        daemon.wait_idle(600)
        time.sleep(3)
        idle = _mb(daemon.status()["VmRSS"])
    finally:
        daemon.stop()
    ui = Ui(estate.state)
    try:
        filtered, _ = ui.fetch(f"/?env={tree.environment_name(tree.environments // 2)}")
        whole, _ = ui.fetch("/")
    finally:
        ui.stop()
    bound = at_most if hold else (lambda t, n, v, u, _b: reported(t, n, v, u))
    return [
        bound(TARGET, f"first `plan` of {slots}, whole process", first.seconds, "s", 10),
        bound(TARGET, f"first `plan` of {slots}, peak RSS", first.peak_rss_mb, "MB", 500),
        reported(TARGET, f"first `apply` of {slots}, whole process", estate.seconds, "s"),
        bound(TARGET, f"`apply` of {slots} with nothing to do", again.seconds, "s", 10),
        bound(TARGET, f"`run` holding {slots}, idle RSS", idle, "MB", 600),
        bound(TARGET, f"dashboard `/?env=` (one environment) at {slots}", filtered, "s", 0.5),
        reported(TARGET, f"dashboard `/` at {slots}", whole, "s"),
    ]


def run(work: Path, *, quick: bool) -> list[Figure]:
    work.mkdir(parents=True, exist_ok=True)
    small, big = (Tree(8, 25), Tree(40, 25)) if quick else (Tree(200, 50), Tree(2000, 50))
    return [
        *dashboard(work / "dashboard", small, hold=not quick),
        *hundred_thousand(work / "big", big, hold=not quick),
    ]
