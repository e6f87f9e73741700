"""Target 5, the ledger: 10,000 deploys applied to SQLite and to PostgreSQL; actions per second,
and how many transactions the ledger commits for them.

For each backend, on a fresh ledger each time (an SQLite file in ``work``, a PostgreSQL schema
dropped afterwards), a records-only tree (no deploy keys, no targets: every action is a
``deploy`` and touches the ledger alone) is applied twice:

- with the real entry point, ``python -m slotkeeper apply --yes --no-refresh``, as a subprocess:
  the wall time a user waits, interpreter start-up, manifest loading and output included;
- in-process, ``execute`` alone on a plan made beforehand (``make_plan``): the ledger part
  without start-up, loading or planning. The ledger's own commit counter
  (``slotkeeper_ledger_commits_total``) is read around it: commits per 1,000 actions is held to
  at most 10, i.e. actions share transactions where that is safe, not one commit each.

For PostgreSQL the server's own count is taken too: ``xact_commit`` of the database in
``pg_stat_database`` around the subprocess apply, and around a second apply of the same tree
that has nothing to change. The server counts every transaction, the autocommit reads
(``read_state``, the writer lock's queries) included; the no-change apply makes the same ones,
so the difference is what the actions themselves committed. Anything else using the database
meanwhile (autovacuum, another test run) adds to it: a cross-check of the in-process counter,
not a replacement. Statistics reach ``pg_stat_database`` when a backend
goes idle (at most once a second) or exits: each reading waits :data:`SETTLE` seconds first and
clears the reading session's snapshot; what the readings themselves add is measured on an idle
interval and subtracted.

PostgreSQL not reachable is reported as a skipped figure (``passed=None``), never a failure.

``python -m tests.bench.ledger [--quick] [--profile sqlite|postgres]`` prints the figures, or the
functions taking most cumulative time in the in-process apply.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from slotkeeper.execute import ApplyResult, Outcome, execute
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import open_ledger
from slotkeeper.metrics import REGISTRY
from slotkeeper.model import RecordStatus
from slotkeeper.observability import configure_logging
from slotkeeper.plan import PlanOptions
from slotkeeper.reconcile import RunOptions, make_plan
from tests.bench.generate import Tree, write
from tests.bench.report import Figure, at_most, exactly, reported

TARGET = "5 ledger"
FULL = Tree(environments=200, slots_per_environment=50, keys_per_environment=0)
#: 1,000 deploys: enough that the apply's fixed transactions (start, finish) stay under the bound
QUICK = Tree(environments=10, slots_per_environment=100, keys_per_environment=0)
#: the same server the test-suite uses (tests/conftest.py)
POSTGRES = os.environ.get("SLOTKEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
#: commits per 1,000 actions at most: batching required
COMMITS_BOUND = 10.0
#: seconds to wait before reading pg_stat_database (backends flush at most once a second)
SETTLE = 1.2
COMMITS_METRIC = "slotkeeper_ledger_commits_total"
ACTOR = "bench"


@dataclass(frozen=True)
class Applied:
    """One apply of a tree to a fresh ledger."""

    #: actions the apply carried out (in-process: applied results; subprocess: records written)
    actions: int
    seconds: float
    #: DEPLOYED records in the ledger afterwards
    deployed: int
    #: transactions the ledger committed for it (in-process counter), None when not counted
    commits: int | None = None

    @property
    def per_second(self) -> float:
        return self.actions / self.seconds if self.seconds > 0 else 0.0


def tree_for(quick: bool) -> Tree:
    return QUICK if quick else FULL


def now() -> datetime:
    return datetime.now(UTC)


def ledger_commits() -> int:
    """Transactions the ledger committed so far in this process."""
    value = REGISTRY.get_sample_value(COMMITS_METRIC)
    if value is None:
        raise RuntimeError(f"the ledger exports no {COMMITS_METRIC} counter")
    return int(value)


def deployed_records(url: str) -> int:
    """How many records are DEPLOYED in the ledger at ``url``."""
    ledger = open_ledger(url, now=now())
    try:
        return len(ledger.read_state().deployed)
    finally:
        ledger.close()


def missing_slots(url: str, tree: Tree) -> list[str]:
    """The slots of ``tree`` that have no DEPLOYED record in the ledger at ``url``."""
    ledger = open_ledger(url, now=now())
    try:
        deployed = ledger.read_state().deployed
    finally:
        ledger.close()
    missing = []
    for e, s in tree.slot_indexes():
        key = (tree.environment_name(e), tree.slot_name(s))
        record = deployed.get(key)
        if record is None or record.status is not RecordStatus.DEPLOYED:
            missing.append("/".join(key))
    return missing


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Log as the CLI does by default (warnings only, on stderr), then restore the set-up."""
    saved = structlog.get_config()
    configure_logging(fmt="json", level="warning")
    try:
        yield
    finally:
        structlog.configure(**saved)


def run_cli(manifests: Path, url: str, work: Path) -> float:
    """``slotkeeper apply --yes --no-refresh`` as a user runs it; its wall time in seconds."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SLOTKEEPER_STATE", "SLOTKEEPER_SECRETS_DIR")
    }
    env.update(NO_COLOR="1", SLOTKEEPER_ACTOR=ACTOR)
    command = [
        sys.executable,
        "-m",
        "slotkeeper",
        "apply",
        "--yes",
        "--no-refresh",
        "-m",
        str(manifests),
        "--state",
        url,
        "--secrets-dir",
        str(work / "secrets"),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"slotkeeper apply exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return seconds


def applied_by_cli(url: str, seconds: float) -> Applied:
    """What a CLI apply to a fresh ledger did: on a records-only tree every DEPLOYED record is
    one deploy action."""
    deployed = deployed_records(url)
    return Applied(actions=deployed, seconds=seconds, deployed=deployed)


def apply_in_process(
    manifests: Path,
    url: str,
    work: Path,
    *,
    wrap: Callable[[Callable[[], ApplyResult]], ApplyResult] | None = None,
) -> Applied:
    """Plan (untimed), then ``execute`` the plan on the ledger at ``url``, timed alone, with the
    ledger's commits counted. ``wrap`` runs the timed call (e.g. under a profiler)."""
    with quiet_logs():
        ledger = open_ledger(url, now=now())
        try:
            with ledger.writer(timeout=10):
                plan = make_plan(
                    manifests, ledger, options=PlanOptions(), clock=now, run=RunOptions()
                )

                def apply() -> ApplyResult:
                    return execute(
                        plan,
                        ledger,
                        clock=now,
                        actor=ACTOR,
                        sink=SecretSink(work / "secrets"),
                        targets={},
                    )

                commits_before = ledger_commits()
                started = time.perf_counter()
                result = apply() if wrap is None else wrap(apply)
                seconds = time.perf_counter() - started
                commits = ledger_commits() - commits_before
            deployed = len(ledger.read_state().deployed)
        finally:
            ledger.close()
    return Applied(
        actions=result.count(Outcome.APPLIED),
        seconds=seconds,
        deployed=deployed,
        commits=commits,
    )


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_reachable(base: str = POSTGRES) -> str | None:
    """None when PostgreSQL answers at ``base``, else why not (without any password)."""
    import psycopg

    from slotkeeper.redact import redact_url

    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return redact_url(first.rsplit(": ", 1)[-1])  # the cause, e.g. "Connection refused"
    return None


@contextlib.contextmanager
def postgres_schema(base: str = POSTGRES) -> Iterator[str]:
    """A ledger URL in a fresh schema of ``base``'s database, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{base}?schema={schema}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class ServerCommits:
    """``xact_commit`` of one database, as the server counts it, read from another session."""

    def __init__(self, base: str = POSTGRES) -> None:
        import psycopg

        self._connection = psycopg.connect(base, autocommit=True, connect_timeout=5)
        #: what one reading adds to the count itself (its own autocommit statements)
        self.own = 0
        self._last = 0

    def read(self) -> int:
        """The database's committed transactions so far, once pending statistics are flushed."""
        time.sleep(SETTLE)
        self._connection.execute("SELECT pg_stat_clear_snapshot()")
        row = self._connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def start(self) -> None:
        """Measure what a reading adds on an idle interval, and start counting."""
        first = self.read()
        self._last = self.read()
        self.own = max(0, self._last - first)

    def delta(self) -> int:
        """Transactions committed by other sessions since the last reading."""
        reading = self.read()
        count = max(0, reading - self._last - self.own)
        self._last = reading
        return count

    def close(self) -> None:
        self._connection.close()


# -- the benchmark ---------------------------------------------------------------------------


def per_thousand(commits: int, actions: int) -> float:
    return 1000 * commits / actions if actions else float("inf")


def _figures(label: str, tree: Tree, outside: Applied, inside: Applied) -> list[Figure]:
    size = f"{tree.slots:,} deploys"
    assert inside.commits is not None
    return [
        exactly(
            TARGET,
            f"{label}: records DEPLOYED after apply (subprocess)",
            outside.deployed,
            "records",
            tree.slots,
        ),
        exactly(
            TARGET,
            f"{label}: records DEPLOYED after execute (in-process)",
            inside.deployed,
            "records",
            tree.slots,
        ),
        reported(TARGET, f"{label}: apply {size}, CLI subprocess", outside.per_second, "actions/s"),
        reported(TARGET, f"{label}: apply {size}, CLI subprocess wall time", outside.seconds, "s"),
        reported(TARGET, f"{label}: execute {size}, in-process", inside.per_second, "actions/s"),
        at_most(
            TARGET,
            f"{label}: ledger commits per 1,000 actions (in-process counter)",
            per_thousand(inside.commits, inside.actions),
            "commits",
            COMMITS_BOUND,
        ),
    ]


def _sqlite(work: Path, manifests: Path, tree: Tree) -> list[Figure]:
    url = f"sqlite:///{work / 'subprocess.db'}"
    outside = applied_by_cli(url, run_cli(manifests, url, work))
    inside = apply_in_process(manifests, f"sqlite:///{work / 'in-process.db'}", work)
    return _figures("SQLite", tree, outside, inside)


def _postgres(work: Path, manifests: Path, tree: Tree, *, hold_server: bool) -> list[Figure]:
    from slotkeeper.redact import redact_url

    why = postgres_reachable()
    if why is not None:
        return [
            Figure(
                TARGET,
                f"PostgreSQL: skipped, not reachable at {redact_url(POSTGRES)} ({why})",
                0,
                "",
                passed=None,
            )
        ]
    counter = ServerCommits()
    try:
        with postgres_schema() as url:
            counter.start()
            seconds = run_cli(manifests, url, work)
            changed = counter.delta()
            # The same apply again, with nothing to change: the same start-up, reads and lock,
            # no actions. What the first apply committed beyond it is what its actions cost.
            run_cli(manifests, url, work)
            unchanged = counter.delta()
            outside = applied_by_cli(url, seconds)
    finally:
        counter.close()
    with postgres_schema() as url:
        inside = apply_in_process(manifests, url, work)
    figures = _figures("PostgreSQL", tree, outside, inside)
    server = "PostgreSQL: server commits per 1,000 actions (xact_commit, beyond a no-change apply)"
    extra = per_thousand(max(0, changed - unchanged), outside.actions)
    figures += [
        reported(TARGET, "PostgreSQL: server transactions, CLI apply", changed, "commits"),
        reported(
            TARGET,
            "PostgreSQL: server transactions, CLI apply with no change",
            unchanged,
            "commits",
        ),
        at_most(TARGET, server, extra, "commits", COMMITS_BOUND)
        if hold_server
        else reported(TARGET, server, extra, "commits"),
    ]
    return figures


def measure(work: Path, tree: Tree, *, hold_server: bool = True) -> list[Figure]:
    """Apply ``tree`` to SQLite and to PostgreSQL (when reachable); the figures of target 5.
    ``hold_server``: the server's count is held to the bound, not only reported."""
    work.mkdir(parents=True, exist_ok=True)
    manifests = write(tree, work / "manifests")
    return _sqlite(work, manifests, tree) + _postgres(
        work, manifests, tree, hold_server=hold_server
    )


def run(work: Path, *, quick: bool) -> list[Figure]:
    """The figures of target 5: 10,000 deploys (1,000 with ``quick``). The quick version
    holds the ledger's own count and reports the server's: at 1,000 actions the few commits
    they cost are outweighed by what other sessions commit meanwhile (59 once, right after
    a test suite's PostgreSQL tests, against the apply's own 6)."""
    return measure(work, tree_for(quick), hold_server=not quick)


# -- where the time goes ---------------------------------------------------------------------


def profile(work: Path, *, backend: str, quick: bool, top: int = 15) -> str:
    """The ``top`` functions by cumulative time of the in-process apply on ``backend``."""
    tree = tree_for(quick)
    work.mkdir(parents=True, exist_ok=True)
    manifests = write(tree, work / "manifests")
    profiler = cProfile.Profile()

    def wrap(call: Callable[[], ApplyResult]) -> ApplyResult:
        result: ApplyResult = profiler.runcall(call)
        return result

    with contextlib.ExitStack() as stack:
        if backend == "postgres":
            url = stack.enter_context(postgres_schema())
        else:
            url = f"sqlite:///{work / 'profile.db'}"
        applied = apply_in_process(manifests, url, work, wrap=wrap)
    out = io.StringIO()
    print(
        f"{backend}: {applied.actions:,} actions in {applied.seconds:.2f} s "
        f"({applied.per_second:,.0f}/s under the profiler), {applied.commits:,} commits",
        file=out,
    )
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    from tests.bench.report import table

    parser = argparse.ArgumentParser(prog="python -m tests.bench.ledger")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", choices=["sqlite", "postgres"])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as scratch:
        if args.profile:
            print(profile(Path(scratch), backend=args.profile, quick=args.quick, top=args.top))
        else:
            print(table(run(Path(scratch), quick=args.quick)))


if __name__ == "__main__":
    main()
