"""Target 1, scale of planning: load, validate and plan N slots from YAML on disk, against only
parsing the same files with PyYAML's C loader, in the same run; peak RSS of `slotkeeper plan`.

Both sides run in this process on the same files, interleaved, best of three; the slotkeeper
side is the pipeline `plan` runs (``make_plan``: manifests, an empty SQLite ledger, the plan).
Peak RSS is that of a real ``slotkeeper plan --no-refresh`` process on the same tree.
"""

from __future__ import annotations

import gc
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from slotkeeper.ledger import open_ledger
from slotkeeper.plan import PlanOptions
from slotkeeper.reconcile import RunOptions, make_plan
from tests.bench.generate import Tree, manifest_args, write
from tests.bench.measure import best_of, slotkeeper, sqlite_url
from tests.bench.report import Figure, at_most, reported

TARGET = "1 scale"


#: CPython's own collector thresholds, which a bare script runs with
DEFAULT_GC_THRESHOLDS = (700, 10, 10)


@dataclass(frozen=True)
class ScaleRun:
    slots: int
    parse_seconds: float
    plan_seconds: float
    actions: int
    peak_rss_mb: float
    cli_seconds: float

    @property
    def ratio(self) -> float:
        return self.plan_seconds / self.parse_seconds


def parse_only(root: Path) -> int:
    """The yardstick: every file read and parsed with PyYAML's C loader, nothing more, as a bare
    script runs it: with CPython's default collector thresholds, not the ones slotkeeper's entry
    point sets (which this runner sets for the in-process side, as the CLI does)."""
    documents = 0
    tuned = gc.get_threshold()
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)
    try:
        for path in sorted(root.glob("*.yaml")):
            with path.open("rb") as stream:
                documents += len(list(yaml.load_all(stream, Loader=yaml.CSafeLoader)))
    finally:
        gc.set_threshold(*tuned)
    return documents


def measure(work: Path, tree: Tree, *, runs: int = 3) -> ScaleRun:
    root = write(tree, work / f"tree-{tree.slots}")
    state = work / f"state-{tree.slots}.db"
    ledger = open_ledger(sqlite_url(state), now=datetime.now(UTC))
    planned: list[int] = []

    def ours() -> None:
        plan = make_plan(
            root,
            ledger,
            options=PlanOptions(),
            clock=lambda: datetime.now(UTC),
            run=RunOptions(refresh=False),
        )
        planned.append(len(plan.actions))

    try:
        parse_seconds, plan_seconds = best_of(runs, lambda: parse_only(root), ours)
    finally:
        ledger.close()
    child = slotkeeper(
        "plan", "--no-refresh", *manifest_args(root), "--state", sqlite_url(state), "--json"
    )
    if child.code not in (0, 2):
        raise RuntimeError(f"slotkeeper plan failed ({child.code}): {child.err[-2000:]}")
    shutil.rmtree(root)
    return ScaleRun(
        slots=tree.slots,
        parse_seconds=parse_seconds,
        plan_seconds=plan_seconds,
        actions=planned[-1],
        peak_rss_mb=child.peak_rss_mb,
        cli_seconds=child.seconds,
    )


def _reported(target: str, name: str, value: float, unit: str, _bound: float) -> Figure:
    return reported(target, name, value, unit)


def run(work: Path, *, quick: bool) -> list[Figure]:
    # (environments, slots per environment): 1k, 10k and 50k slots; 50 slots an environment.
    shapes = [(4, 25), (8, 25)] if quick else [(20, 50), (200, 50), (1000, 50)]
    runs = [measure(work, Tree(e, s)) for e, s in shapes]
    # Times are held to their bounds only at full size: a small tree measures start-up costs.
    bound = _reported if quick else at_most
    main = runs[0] if quick else runs[1]
    figures = [
        bound(TARGET, f"plan {main.slots:,} slots / parse only", main.ratio, "x", 2.0),
        bound(TARGET, f"peak RSS, `plan` of {main.slots:,} slots", main.peak_rss_mb, "MB", 200),
    ]
    for one in runs:
        figures.append(
            reported(TARGET, f"{one.slots:,} slots: load+validate+plan", one.plan_seconds, "s")
        )
        figures.append(
            reported(
                TARGET, f"{one.slots:,} slots: `slotkeeper plan` process", one.cli_seconds, "s"
            )
        )
    first, last = runs[0], runs[-1]
    growth = (last.plan_seconds / last.slots) / (first.plan_seconds / first.slots)
    figures.append(
        bound(
            TARGET,
            f"time per slot at {last.slots:,} / at {first.slots:,} (linear: ≈1)",
            growth,
            "x",
            1.5,
        )
    )
    return figures
