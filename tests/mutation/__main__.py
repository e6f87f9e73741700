"""``make mutate``: cosmic-ray over the trust boundary, one score per module, survivors listed.

    python -m tests.mutation [--module NAME ...] [--lanes 2] [--list]

Each lane is a scratch copy of the work tree under .slotkeeper/mutation/ (the checked-in
sources are never mutated; an interrupted run leaves nothing behind). A lane takes one module at
a time: it runs the module's tests once unmutated (they must pass), lets ``cosmic-ray init``
list every mutant, skips those outside the scoped functions or operators (scope.toml), and lets
``cosmic-ray exec`` run the module's tests against each of the rest. Survivors listed in
accepted.toml with a reason do not count against the score. Exit code 1 when a module is under
its floor or a lane failed; the figures are written to .slotkeeper/mutation/report.json too.
One run at a time: a lock in .slotkeeper/mutation/ refuses a second one.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

from tests.mutation.scope import (
    Definitions,
    Module,
    Scope,
    load_accepted,
    load_scope,
    mutant_key,
)

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".slotkeeper" / "mutation"
BIN = Path(sys.executable).parent
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "--no-cov", "-p", "no:cacheprovider"]


@dataclass
class Survivor:
    key: str
    line: int
    reason: str | None  # why it is accepted; None when it is not


@dataclass
class Outcome:
    module: str
    path: str
    floor: float
    mutants: int = 0
    killed: int = 0
    survivors: list[Survivor] = field(default_factory=list)
    #: mutations cosmic-ray itself failed to apply (a bug of its operator): no mutant, noted
    unapplied: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.survivors if s.reason is not None)

    @property
    def killed_share(self) -> float:
        """Killed share of all the mutants, accepted survivors counted as survivors."""
        return 100.0 * self.killed / self.mutants if self.mutants else 100.0

    @property
    def score(self) -> float:
        """Killed share of the mutants, accepted survivors left out (100 when none is left)."""
        counted = self.mutants - self.accepted
        return 100.0 * self.killed / counted if counted else 100.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.score >= self.floor


def lane_copy(lane: Path) -> None:
    """A fresh copy of the work tree's files (tracked and new, not ignored), bytecode warmed:
    pytest's rewritten tests cached, src compiled with hash-checked pycs so that a mutated
    module is always recompiled and an unmutated one never."""
    shutil.rmtree(lane, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (lane / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, lane / name)
    warm = {k: v for k, v in lane_env(lane).items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [*PYTEST, "--collect-only", "tests"], cwd=lane, env=warm, check=True, capture_output=True
    )
    compileall = [sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode"]
    subprocess.run([*compileall, "checked-hash", "src"], cwd=lane, check=True)


def lane_env(lane: Path) -> dict[str, str]:
    """The lane's sources come first on the path, for the tests and for every process they
    start (the daemon, the CLI): the editable install points at the checked-in tree."""
    return dict(os.environ, PYTHONPATH=str(lane / "src"))


def write_config(config: Path, module: Module, timeout: float) -> Path:
    """cosmic-ray's configuration for ``module`` (its paths are relative to the lane)."""
    config.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join([*PYTEST, *module.tests])
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module.source}"\n'
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    return config


def skip_out_of_scope(db: WorkDB, module: Module, source: str, operators: frozenset[str]) -> int:
    """Mark the mutants outside the scoped functions and operators as skipped; how many remain."""
    definitions = Definitions(source)
    remaining = 0
    for item in list(db.pending_work_items):
        (mutation,) = item.mutations
        wanted = (
            mutation.operator_name in operators
            and module.selects(definitions.at(mutation.start_pos[0]))
            and definitions.is_mutant(tuple(mutation.start_pos))
        )
        if wanted:
            remaining += 1
        else:
            db.set_result(
                item.job_id,
                WorkResult(output="out of scope", worker_outcome=WorkerOutcome.SKIPPED),
            )
    return remaining


def run_module(lane: Path, module: Module, scope: Scope, accepted: dict[str, str]) -> Outcome:
    outcome = Outcome(module=module.name, path=module.path, floor=module.floor)
    started = time.monotonic()
    env = lane_env(lane)
    baseline = subprocess.run(
        [*PYTEST, *module.tests], cwd=lane, env=env, capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    if baseline.returncode != 0:
        outcome.error = f"the tests fail unmutated:\n{baseline.stdout[-3000:]}"
        return outcome
    sessions = WORK / "sessions"
    config = write_config(sessions / f"{module.name}.toml", module, max(15.0, 2 * took + 10))
    session = sessions / f"{module.name}.sqlite"
    session.unlink(missing_ok=True)
    cosmic_ray = str(BIN / "cosmic-ray")
    subprocess.run([cosmic_ray, "init", str(config), str(session)], cwd=lane, env=env, check=True)
    source = (lane / module.source).read_text()
    with use_db(str(session), WorkDB.Mode.open) as db:
        skip_out_of_scope(db, module, source, scope.operators)
    log = sessions / f"{module.name}.log"
    with log.open("w") as out:
        subprocess.run(
            [cosmic_ray, "exec", str(config), str(session)],
            cwd=lane,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    if (lane / module.source).read_text() != source:
        outcome.error = "cosmic-ray left the module mutated"
    definitions = Definitions(source)
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome is WorkerOutcome.SKIPPED:
                continue
            (mutation,) = item.mutations
            where = f"{mutation.operator_name} at line {mutation.start_pos[0]}"
            if result.worker_outcome is not WorkerOutcome.NORMAL:
                output = result.output or ""
                if "cosmic_ray/operators/" in output:
                    outcome.unapplied.append(f"{where}: {output.strip().splitlines()[-1]}")
                else:
                    outcome.error = f"{where}: {result.worker_outcome.value}: {output[-500:]}"
                continue
            outcome.mutants += 1
            if result.test_outcome is not TestOutcome.SURVIVED:
                outcome.killed += 1
                continue
            qualname = definitions.at(mutation.start_pos[0])
            key = mutant_key(module, qualname, mutation.operator_name, result.diff or "")
            outcome.survivors.append(Survivor(key, mutation.start_pos[0], accepted.get(key)))
    outcome.survivors.sort(key=lambda s: s.line)
    outcome.seconds = time.monotonic() - started
    return outcome


def count_mutants(scope: Scope, modules: list[Module]) -> None:
    """Print how many mutants each module has in scope, without running anything."""
    sessions = WORK / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    for module in modules:
        config = write_config(sessions / f"{module.name}.count.toml", module, timeout=60)
        session = sessions / f"{module.name}.count.sqlite"
        session.unlink(missing_ok=True)
        subprocess.run(
            [str(BIN / "cosmic-ray"), "init", str(config), str(session)], cwd=ROOT, check=True
        )
        with use_db(str(session), WorkDB.Mode.open) as db:
            total = db.num_work_items
            source = (ROOT / module.source).read_text()
            remaining = skip_out_of_scope(db, module, source, scope.operators)
        print(f"{module.name:<14} {module.path:<20} {remaining:>5} of {total:>5} mutants")
        session.unlink()
        config.unlink()


def table(outcomes: list[Outcome], seconds: float) -> str:
    lines = [
        f"{'module':<14} {'file':<20} {'mutants':>7} {'killed':>7} {'survived':>8} "
        f"{'accepted':>8} {'killed%':>7} {'score':>7} {'floor':>6} {'time':>7}",
    ]
    for o in outcomes:
        verdict = "ERROR" if o.error else ("PASS" if o.passed else "FAIL")
        lines.append(
            f"{o.module:<14} {o.path:<20} {o.mutants:>7} {o.killed:>7} {len(o.survivors):>8} "
            f"{o.accepted:>8} {o.killed_share:>6.1f}% {o.score:>6.1f}% {o.floor:>5.0f}% "
            f"{o.seconds / 60:>6.1f}m  {verdict}"
        )
    mutants = sum(o.mutants for o in outcomes)
    killed = sum(o.killed for o in outcomes)
    survived = sum(len(o.survivors) for o in outcomes)
    accepted = sum(o.accepted for o in outcomes)
    counted = mutants - accepted
    total = 100.0 * killed / counted if counted else 100.0
    share = 100.0 * killed / mutants if mutants else 100.0
    lines.append(
        f"{'all':<14} {'':<20} {mutants:>7} {killed:>7} {survived:>8} {accepted:>8} "
        f"{share:>6.1f}% {total:>6.1f}% {'':>6} {seconds / 60:>6.1f}m (wall clock)"
    )
    return "\n".join(lines)


def survivors(outcomes: list[Outcome]) -> str:
    lines: list[str] = []
    for o in outcomes:
        for s in o.survivors:
            path = f"src/slotkeeper/{o.path}:{s.line}"
            status = f"accepted: {s.reason}" if s.reason else "NOT ACCEPTED"
            lines.append(f"{path}  {s.key}\n    {status}")
        for note in o.unapplied:
            lines.append(f"{o.module}: not a mutant (cosmic-ray could not apply it): {note}")
        if o.error:
            lines.append(f"{o.module}: ERROR {o.error}")
    return "\n".join(lines) or "no survivors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("--module", action="append", help="only this module (repeatable)")
    parser.add_argument("--lanes", type=int, default=2, help="modules mutated at once")
    parser.add_argument("--list", action="store_true", help="count the mutants in scope only")
    args = parser.parse_args(argv)
    scope = load_scope()
    accepted = load_accepted()
    modules = [m for m in scope.modules if not args.module or m.name in args.module]
    unknown = set(args.module or ()) - {m.name for m in modules}
    if unknown:
        parser.error(f"no such module in scope.toml: {', '.join(sorted(unknown))}")
    if args.list:
        count_mutants(scope, modules)
        return 0

    WORK.mkdir(parents=True, exist_ok=True)
    lock = (WORK / "lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        parser.error(f"another run is using {WORK} (its lanes and sessions)")
    started = time.monotonic()
    todo: queue.Queue[Module] = queue.Queue()
    for module in modules:
        todo.put(module)
    outcomes: dict[str, Outcome] = {}
    results = threading.Lock()

    def lane_worker(index: int) -> None:
        lane = WORK / f"lane{index}"
        lane_copy(lane)
        while True:
            try:
                module = todo.get_nowait()
            except queue.Empty:
                return
            print(f"[lane {index}] {module.name}: mutating {module.path}", flush=True)
            try:
                outcome = run_module(lane, module, scope, accepted)
            except (subprocess.CalledProcessError, OSError) as exc:
                outcome = Outcome(module.name, module.path, module.floor, error=str(exc))
            with results:
                outcomes[module.name] = outcome
            print(
                f"[lane {index}] {module.name}: {outcome.killed}/{outcome.mutants} killed "
                f"in {outcome.seconds / 60:.1f} min",
                flush=True,
            )

    count = min(args.lanes, len(modules))
    lanes = [threading.Thread(target=lane_worker, args=(i,)) for i in range(count)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    seconds = time.monotonic() - started

    ordered = [outcomes[m.name] for m in modules if m.name in outcomes]
    print()
    print(table(ordered, seconds))
    print()
    print("Survivors (file:line  file | function | operator | before -> after):")
    print(survivors(ordered))
    keys = {s.key for o in ordered for s in o.survivors}
    stale = sorted(
        key
        for key in accepted
        if key not in keys and any(key.startswith(f"{o.path} |") for o in ordered)
    )
    if stale:
        print("\nAccepted in accepted.toml but no longer surviving (remove them):")
        print("\n".join(f"  {key}" for key in stale))
    report = {
        "seconds": seconds,
        "modules": [
            asdict(o) | {"score": o.score, "killed_share": o.killed_share} for o in ordered
        ],
    }
    (WORK / "report.json").write_text(json.dumps(report, indent=2))
    failed = [o.module for o in ordered if not o.passed]
    if failed:
        print(f"\nmake mutate: under the floor or failed: {', '.join(failed)}")
        return 1
    print(f"\nmake mutate: every module at or above its floor ({seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
