"""``python -m tests.reliability`` (``make reliability``): the full reliability run.

Runs the crash-consistency scenario (30+ SIGKILLs on a 300+ action change set) and the faults
scenario, then the operations corpus (see ``operations_scenario``), then the high-availability
rounds on PostgreSQL (see ``tests/reliability/ha.py``), prints a table of figures for each,
writes them as JSON to ``.slotkeeper/reliability.json`` (the HA figures under ``"ha"``) and
exits 1 when any invariant failed or fewer HA rounds ran than asked. ``RELIABILITY_SEED``,
``RELIABILITY_KILLS`` and ``RELIABILITY_HA_ROUNDS`` override the seed, the number of kills and
the number of HA rounds (each also checks that every deploy was told to a webhook once), and
``RELIABILITY_NOTIFY_KILLS`` (20) the SIGKILLs of a notifying daemon (see ``notify.py``); the
scratch directory is kept when something failed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import allow_egress_to_the_fakes
from tests.reliability.ha import HaFigures, ha_scenario
from tests.reliability.harness import (
    REPO_ROOT,
    Figures,
    Shape,
    crash_scenario,
    faults_scenario,
    operations_scenario,
    write_report,
)
from tests.reliability.notify import NotifyFigures, kill_scenario
from tests.reliability.rotation import RotationFigures, rotation_scenario

#: 6 environments x 40 slots; each change set supersedes 180, decommissions 60 (or 108),
#: deploys 108 (or 60) new slots and rotates 6 deploy keys: 354 actions either way.
CRASH_SHAPE = Shape(environments=6, slots=40, changed=30, removed=10, added=18)
FAULTS_SHAPE = Shape(environments=3, slots=20, changed=10, removed=5, added=5)
#: the operations corpus (broken file, key renames and swaps, empty checkout, target removed
#: with its environment, saved plan across a freeze, target down) on 4 environments x 10 slots
OPERATIONS_SHAPE = Shape(environments=4, slots=10, changed=0, removed=0, added=0)
REPORT = REPO_ROOT / ".slotkeeper" / "reliability.json"


def main() -> int:
    allow_egress_to_the_fakes()
    seed = int(os.environ.get("RELIABILITY_SEED", "20240601"))
    kills = int(os.environ.get("RELIABILITY_KILLS", "30"))
    ha_rounds = int(os.environ.get("RELIABILITY_HA_ROUNDS", "21"))
    figures = Figures()
    ha = HaFigures(rounds_asked=ha_rounds)
    rotation = RotationFigures()
    told = NotifyFigures()
    notify_kills = int(os.environ.get("RELIABILITY_NOTIFY_KILLS", "20"))
    scratch = Path(tempfile.mkdtemp(prefix="slotkeeper-reliability-"))
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    say(f"seed {seed}, {kills} kills, {ha_rounds} HA rounds, scratch {scratch}")
    try:
        crash_scenario(
            scratch / "crash", CRASH_SHAPE, kills=kills, seed=seed, figures=figures, say=say
        )
        faults_scenario(scratch / "faults", FAULTS_SHAPE, seed=seed, figures=figures, say=say)
        operations_scenario(
            scratch / "operations", OPERATIONS_SHAPE, seed=seed, figures=figures, say=say
        )
        ha_scenario(scratch / "ha", rounds=ha_rounds, seed=seed, figures=ha, say=say, notify=told)
        rotation_scenario(scratch / "rotation", rotation, say=say)
        kill_scenario(scratch / "notify", kills=notify_kills, seed=seed, figures=told, say=say)
    except Exception as exc:  # a broken harness is a failed run, with the figures so far
        figures.fail(f"the run itself failed: {exc!r}")
        raise
    finally:
        figures.seconds = time.monotonic() - started
        if figures.first_kills < kills:
            figures.fail(f"only {figures.first_kills} of {kills} kills hit an apply in progress")
        if any(n < 300 for n in figures.change_set_actions[:2]):
            figures.fail(f"the crash change sets are too small: {figures.change_set_actions}")
        if told.kills < notify_kills:
            told.failures.append(f"only {told.kills} of {notify_kills} daemon kills ran")
        write_report(figures, REPORT, {"ha": ha, "rotation": rotation, "notifications": told})
        print(figures.table())
        print()
        print(ha.table())
        print()
        print(rotation.table())
        print()
        print(told.table())
        print(f"figures written to {REPORT.relative_to(REPO_ROOT)}")
        ok = figures.ok and ha.ok and rotation.ok and told.ok
        if ok:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch directory kept: {scratch}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
