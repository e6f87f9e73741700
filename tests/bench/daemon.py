"""Target 6, the daemon: manifest edit → record applied, and the idle memory of ``slotkeeper run``.

``slotkeeper run -m DIR`` runs as a subprocess (the interpreter itself, no wrapper, so its
``/proc/PID/status`` is the daemon's) on a generated tree of records only (no targets; one
deploy key per environment, as ``Tree`` writes by default), with a fresh SQLite ledger in
``work``. Then:

- **first reconcile**: from starting the process to every slot ``DEPLOYED`` in the ledger
  (interpreter start and imports included);
- **idle RSS**: ``VmRSS`` of the daemon once the first reconcile has finished (``/readyz``) and
  nothing has happened for ``SETTLE`` seconds; also ``VmHWM`` (the peak) and the RSS after the
  edits, to show whether it creeps. MB are MiB (/proc's kB ÷ 1024), as in ``measure.py``;
- **edit latency**: each edit rewrites one environment file with one slot's artifact bumped to a
  new version (digest included), **atomically**, as an editor's "safe write" does (vim's
  default, JetBrains IDEs): the new text goes to a hidden temporary file in the same directory
  (hidden files are no manifests, so a reconcile never reads it half-written) that is renamed
  over the old one. (``git checkout`` instead unlinks and writes the file anew; within the
  watcher's debounce both are one burst of changes.) The clock starts just before the write
  and stops when a poller sees the new version ``DEPLOYED`` in the ledger. The next edit waits
  until the daemon is idle again, so each edit is timed alone.

Why poll the ledger and not the daemon's HTTP endpoints: ``/status`` renders every slot (10,000
rows) in the daemon's own process, holding its GIL for a good part of a second per call, which
would slow the very reconcile being timed; ``/readyz`` only says a first reconcile finished, and
the ``slotkeeper_slots`` gauges move only after the whole reconcile, not when the record is
written. A read-only query on the ledger file hits the partial unique index of ``DEPLOYED``
records, costs well under a millisecond in this process, never touches the daemon, and sees
exactly what any reader (``slotkeeper status``) sees. Each poll opens a fresh read-only
connection and closes it (a connection kept open across the writer's WAL checkpoints was once
seen to report "database disk image is malformed").

Where the time goes comes from the daemon's own JSON log (``--log-level info``: a handful of
lines per edit, so logging costs nothing there), cut at its milestones (``PHASES``): the watcher
(watchfiles' step and debounce) until the reconcile begins (``apply.finished`` less the
reconcile's own ``duration_ms``); fetching the source and loading every manifest, until
``reconcile.started``; reading the ledger, planning and the bookkeeping transaction
(``last_seen_at`` of every unchanged slot), until ``apply.started``; the deploy itself, until
``action.applied``; and the poll that sees it.

The resync interval is set to a day so that only the edits trigger reconciles, and git is kept
from discovering a repository around ``work`` (``GIT_CEILING_DIRECTORIES``), so the figures do
not depend on where ``work`` lives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.bench.generate import Tree, artifact, environment_document, manifest_args, write
from tests.bench.report import Figure, at_most, exactly, reported

TARGET = "6 daemon"
FULL = Tree(environments=200, slots_per_environment=50)
QUICK = Tree(environments=4, slots_per_environment=5)
FULL_EDITS = 20
QUICK_EDITS = 3
RSS_BOUND_MB = 150.0
#: seconds without edits after the first reconcile before the idle RSS is read
SETTLE = 3.0
#: seconds between two ledger polls
POLL = 0.01
#: the daemon counts as idle once no reconcile has started for this long (> the debounce)
QUIET = 0.6


#: what an edit's latency is made of, in order (see ``Edit.phases``)
PHASES = (
    "watcher: write → reconcile begins",
    "fetch + load all manifests",
    "read ledger + plan + bookkeeping",
    "the deploy",
    "seen by the poller",
)


@dataclass(frozen=True)
class Edit:
    """One timed edit: one slot's artifact bumped in one environment file."""

    environment: str
    slot: str
    version: str
    #: write → the new record seen DEPLOYED in the ledger; None when it never was
    seconds: float | None
    #: from the daemon's log, seconds after the write (None when a line was not found):
    #: the reconcile began (apply.finished time less the reconcile's own duration: the watcher
    #: and its debounce come before it) ...
    reconcile_began: float | None = None
    #: ... the source was fetched and every manifest loaded (reconcile.started) ...
    reconcile_started: float | None = None
    #: ... the ledger was read, the plan made and its bookkeeping written (apply.started) ...
    apply_started: float | None = None
    #: ... and the deploy was committed (action.applied)
    action_applied: float | None = None
    #: the reconcile's own duration (reconcile.finished duration_ms), in seconds
    reconcile_seconds: float | None = None

    def phases(self) -> dict[str, float | None]:
        """The latency cut at the log's milestones: the parts add up to ``seconds``."""
        marks = [
            0.0,
            self.reconcile_began,
            self.reconcile_started,
            self.apply_started,
            self.action_applied,
            self.seconds,
        ]
        return {
            name: None if a is None or b is None else b - a
            for name, a, b in zip(PHASES, marks, marks[1:], strict=False)
        }


@dataclass(frozen=True)
class DaemonFigures:
    slots: int
    #: process start → every slot DEPLOYED in the ledger
    first_reconcile_seconds: float
    #: VmRSS after the first reconcile and SETTLE idle seconds, MB (MiB)
    idle_rss_mb: float
    #: VmHWM (peak RSS) at that moment: the first reconcile's high-water mark
    peak_rss_mb: float
    #: VmRSS once the edits are done and the daemon is idle again
    rss_after_edits_mb: float
    edits_requested: int
    edits: tuple[Edit, ...]
    #: the daemon's exit code after SIGTERM
    exit_code: int
    #: the edits' reconciles that planned a scope (the environments of the edited file)
    scoped: int = 0
    log: Path = field(repr=False, default=Path())

    @property
    def latencies(self) -> list[float]:
        return [e.seconds for e in self.edits if e.seconds is not None]

    @property
    def applied(self) -> int:
        return len(self.latencies)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- the daemon process -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields


def _mb(kib: int) -> float:
    return kib / 1024


class LogTail:
    """The daemon's JSON log lines, read incrementally from its stderr file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # whole lines only
        self.offset += end
        for line in chunk[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not a log line (a traceback, say): kept in the file
            if isinstance(event, dict):
                self.events.append(event)
        return self.events

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e.get("event") == name)

    def find(self, name: str, since: int = 0, **fields: str) -> dict[str, Any] | None:
        """The first ``name`` event with these fields among the events from index ``since``."""
        for event in self.events[since:]:
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        return None


def _at(event: dict[str, Any] | None) -> float | None:
    """A log line's wall-clock time (UTC ISO timestamp) as a Unix time."""
    if event is None or "timestamp" not in event:
        return None
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


class Daemon:
    """``slotkeeper run -m manifests`` on a fresh ledger, its log in a file."""

    def __init__(self, root: Path, manifests: Path) -> None:
        self.database = root / "state.db"
        self.log_path = root / "daemon.log"
        self.port = _free_port()
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(root))
        for name in list(env):  # no ledger or secrets settings, no coverage of the daemon
            if name.startswith(("SLOTKEEPER_", "COVERAGE_", "COV_CORE_")) or name == "NO_COLOR":
                del env[name]
        command = [
            sys.executable,
            "-m",
            "slotkeeper",
            "--log-format",
            "json",
            "--log-level",
            "info",
            "run",
            *manifest_args(manifests),
            "--state",
            f"sqlite:///{self.database}",
            "--secrets-dir",
            str(root / "secrets"),
            "--cache-dir",
            str(root / "cache"),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--resync-interval",
            "1d",
        ]
        with self.log_path.open("wb") as log:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.log = LogTail(self.log_path)
        try:
            self._check_is_python()
        except BaseException:
            self.stop()
            raise

    def _check_is_python(self) -> None:
        """The PID must be the interpreter running slotkeeper, not a shell or shim around it."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.alive()
            try:
                cmdline = Path(f"/proc/{self.process.pid}/cmdline").read_bytes().split(b"\0")
                exe = Path(f"/proc/{self.process.pid}/exe").resolve().name
            except OSError:
                time.sleep(0.01)
                continue
            if b"slotkeeper" in cmdline and exe.startswith("python"):
                return
            time.sleep(0.01)
        raise RuntimeError(f"pid {self.process.pid} is not the slotkeeper interpreter")

    def alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"slotkeeper run exited with {self.process.returncode}:\n{tail}")

    def status(self) -> dict[str, int]:
        return _proc_status(self.process.pid)

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, sql: str, *params: str) -> tuple[Any, ...] | None:
        """One read-only query on a fresh connection, closed at once (None: no ledger yet)."""
        if not self.database.exists():
            return None
        try:
            connection = sqlite3.connect(f"{self.database.as_uri()}?mode=ro", uri=True)
        except sqlite3.OperationalError:
            return None
        try:
            row: tuple[Any, ...] | None = connection.execute(sql, params).fetchone()
            return row
        except sqlite3.OperationalError:
            return None  # not migrated yet, or busy: ask again
        finally:
            connection.close()

    def deployed_count(self) -> int:
        row = self.query("SELECT count(*) FROM records WHERE status = 'DEPLOYED'")
        return int(row[0]) if row else 0

    def deployed_version(self, environment: str, slot: str) -> str | None:
        row = self.query(
            "SELECT artifact_version FROM records"
            " WHERE environment = ? AND slot = ? AND status = 'DEPLOYED'",
            environment,
            slot,
        )
        return str(row[0]) if row else None

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self.alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL)

    def wait_idle(self, timeout: float) -> None:
        """Until every reconcile that started has finished and none started for QUIET s."""
        deadline = time.monotonic() + timeout
        started = -1
        quiet_since = time.monotonic()
        while True:
            self.alive()
            self.log.poll()
            # reconcile.finished ends every reconcile, even one that failed before it logged
            # reconcile.started: hence >= below
            now_started = self.log.count("reconcile.started")
            finished = self.log.count("reconcile.finished")
            if now_started != started:
                started, quiet_since = now_started, time.monotonic()
            if finished >= started and time.monotonic() - quiet_since >= QUIET:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon not idle after {timeout:g} s")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# -- the measurement --------------------------------------------------------------------------


def _edit_at(tree: Tree, i: int) -> tuple[int, int]:
    """Edit i's (environment, slot): spread over files and slots, deterministic."""
    return (i * 7 + 3) % tree.environments, (i * 11 + 1) % tree.slots_per_environment


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _edit(daemon: Daemon, tree: Tree, manifests: Path, e: int, s: int, timeout: float) -> Edit:
    environment, slot = tree.environment_name(e), tree.slot_name(s)
    version = str(artifact(tree, e, s)["version"])
    text = yaml.dump(environment_document(tree, e), Dumper=yaml.CSafeDumper, sort_keys=False)
    path = manifests / f"{environment}.yaml"
    mark = len(daemon.log.poll())  # only events after this edit's write count for it
    wall = time.time()
    start = time.perf_counter()
    _write_atomically(path, text)
    seconds: float | None = None
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if daemon.deployed_version(environment, slot) == version:
            seconds = time.perf_counter() - start
            break
        daemon.alive()
        time.sleep(POLL)
    daemon.wait_idle(timeout)
    applied = daemon.log.find(
        "action.applied", mark, action="deploy", environment=environment, slot=slot
    )
    if applied is None:
        return Edit(environment, slot, version, seconds)
    rid = str(applied.get("reconcile_id"))
    finished = daemon.log.find("reconcile.finished", mark, reconcile_id=rid)
    duration = float(finished["duration_ms"]) / 1000 if finished else None
    apply_finished = _at(daemon.log.find("apply.finished", mark, reconcile_id=rid))

    def since(event: dict[str, Any] | None) -> float | None:
        at = _at(event)
        return None if at is None else at - wall

    return Edit(
        environment,
        slot,
        version,
        seconds,
        reconcile_began=None
        if apply_finished is None or duration is None
        else apply_finished - duration - wall,
        reconcile_started=since(daemon.log.find("reconcile.started", mark, reconcile_id=rid)),
        apply_started=since(daemon.log.find("apply.started", mark, reconcile_id=rid)),
        action_applied=since(applied),
        reconcile_seconds=duration,
    )


def measure(
    work: Path, tree: Tree, edits: int, *, settle: float = SETTLE, timeout: float = 120.0
) -> DaemonFigures:
    """Run the daemon on ``tree`` in ``work/daemon`` (replaced), time ``edits`` edits, stop it."""
    root = work / "daemon"
    if root.exists():
        shutil.rmtree(root)
    manifests = write(tree, root / "manifests")
    daemon = Daemon(root, manifests)
    try:
        daemon.wait(lambda: daemon.deployed_count() >= tree.slots, timeout, "the first reconcile")
        first = time.perf_counter() - daemon.started
        daemon.wait(daemon.ready, timeout, "/readyz")
        daemon.wait_idle(timeout)
        time.sleep(settle)
        idle = daemon.status()
        current = tree
        timed = []
        for i in range(edits):
            e, s = _edit_at(tree, i)
            generations = dict(current.generations)
            generations[e, s] = generations.get((e, s), 0) + 1
            current = replace(current, generations=generations)
            timed.append(_edit(daemon, current, manifests, e, s, timeout))
        after = daemon.status()
        scoped = daemon.log.count("reconcile.scoped")
    finally:
        code = daemon.stop()
    return DaemonFigures(
        slots=tree.slots,
        first_reconcile_seconds=first,
        idle_rss_mb=_mb(idle["VmRSS"]),
        peak_rss_mb=_mb(idle["VmHWM"]),
        rss_after_edits_mb=_mb(after["VmRSS"]),
        edits_requested=edits,
        edits=tuple(timed),
        exit_code=code,
        scoped=scoped,
        log=daemon.log_path,
    )


def _p50(values: Sequence[float | None]) -> float:
    return percentile([v for v in values if v is not None], 0.5)


def figures(measured: DaemonFigures, *, quick: bool) -> list[Figure]:
    slots = f"{measured.slots:,} slots"
    n = measured.edits_requested
    rss = f"idle RSS, run holding {slots}"
    latency = f"edit → record applied %s ({n} edits, watcher)"
    parts = [edit.phases() for edit in measured.edits]
    return [
        reported(TARGET, rss, measured.idle_rss_mb, "MB")
        if quick
        else at_most(TARGET, rss, measured.idle_rss_mb, "MB", RSS_BOUND_MB),
        reported(TARGET, "peak RSS (VmHWM, first reconcile)", measured.peak_rss_mb, "MB"),
        reported(TARGET, f"RSS after {n} edits", measured.rss_after_edits_mb, "MB"),
        reported(
            TARGET,
            f"first reconcile: process start → {slots} deployed",
            measured.first_reconcile_seconds,
            "s",
        ),
        exactly(TARGET, f"edits applied (of {n})", measured.applied, "edits", n),
        exactly(
            TARGET, "edits planned as a scope (their environments)", measured.scoped, "edits", n
        ),
        reported(TARGET, latency % "p50", percentile(measured.latencies, 0.5), "s")
        if quick
        else at_most(TARGET, latency % "p50", percentile(measured.latencies, 0.5), "s", 0.25),
        reported(TARGET, latency % "p95", percentile(measured.latencies, 0.95), "s"),
        *(
            reported(TARGET, f"  p50 {phase}", _p50([p[phase] for p in parts]), "s")
            for phase in PHASES[:3]
        ),
    ]


def run(work: Path, *, quick: bool) -> list[Figure]:
    tree, edits = (QUICK, QUICK_EDITS) if quick else (FULL, FULL_EDITS)
    return figures(measure(work, tree, edits, settle=1.0 if quick else SETTLE), quick=quick)
