"""Target 8, what a person waits for, timed from outside the process like a stopwatch: the whole
``slotkeeper`` process from exec to exit, against a bare process doing only the unavoidable part.

- ``slotkeeper --version``: start-up (imports) alone;
- a first ``slotkeeper plan`` of the 10,000-slot tree (200 environments) on a fresh ledger,
  against a bare ``python`` process that reads and parses the same files with PyYAML's C loader
  and nothing else — both sides run as processes, interleaved, best of three;
- ``slotkeeper plan`` with nothing to do, after the tree was applied.

Each child is measured by ``measure.run_child`` (wall time and that process's peak RSS).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.bench.generate import Tree, manifest_args, write
from tests.bench.measure import Child, run_child, slotkeeper, sqlite_url
from tests.bench.report import Figure, at_most, reported

TARGET = "8 process"

#: the yardstick's whole program: read every file, parse it with libyaml, keep nothing
BARE_PARSE = """
import sys
from pathlib import Path
import yaml
for path in sorted(Path(sys.argv[1]).glob("*.yaml")):
    with path.open("rb") as stream:
        list(yaml.load_all(stream, Loader=yaml.CSafeLoader))
"""


def _checked(child: Child, what: str, codes: tuple[int, ...] = (0,)) -> Child:
    if child.code not in codes:
        raise RuntimeError(f"{what} failed ({child.code}): {child.err[-2000:]}")
    return child


def version_seconds(runs: int) -> float:
    """The median wall time of ``slotkeeper --version``."""
    times = sorted(_checked(slotkeeper("--version"), "--version").seconds for _ in range(runs))
    return times[len(times) // 2]


def first_plan(root: Path, work: Path, runs: int) -> tuple[float, float, float]:
    """(bare parse seconds, first plan seconds, first plan peak RSS MB), best of ``runs`` each,
    the two sides interleaved; every plan on a ledger that does not exist yet."""
    bare: list[float] = []
    plans: list[Child] = []
    for run in range(runs):
        bare.append(
            _checked(run_child([sys.executable, "-c", BARE_PARSE, str(root)]), "bare").seconds
        )
        state = sqlite_url(work / f"first-{run}.db")
        plans.append(
            _checked(
                slotkeeper("plan", "--no-refresh", *manifest_args(root), "--state", state),
                "plan",
            )
        )
    best = min(plans, key=lambda child: child.seconds)
    return min(bare), best.seconds, best.peak_rss_mb


def unchanged_plan(root: Path, work: Path, runs: int) -> float:
    """The best wall time of ``slotkeeper plan`` once the tree is applied: nothing to do."""
    state = sqlite_url(work / "applied.db")
    common = ("--no-refresh", *manifest_args(root), "--state", state)
    _checked(slotkeeper("apply", "--yes", *common, "--secrets-dir", str(work / "secrets")), "apply")
    return min(
        _checked(slotkeeper("plan", *common, "--detailed-exitcode"), "plan").seconds
        for _ in range(runs)
    )


def run(work: Path, *, quick: bool) -> list[Figure]:
    work.mkdir(parents=True, exist_ok=True)
    tree = Tree(8, 25) if quick else Tree(200, 50)
    root = write(tree, work / "tree")
    runs = 1 if quick else 3
    version = version_seconds(3 if quick else 7)
    bare, plan, rss = first_plan(root, work, runs)
    unchanged = unchanged_plan(root, work, runs)
    # Times are held to their bounds only at full size: a small tree measures start-up alone.
    bound = at_most if not quick else (lambda t, n, v, u, _b: reported(t, n, v, u))
    return [
        bound(TARGET, "`slotkeeper --version`, whole process", version, "s", 0.15),
        bound(
            TARGET,
            f"first `plan` of {tree.slots:,} slots / bare libyaml parse, both whole processes",
            plan / bare,
            "x",
            3.0,
        ),
        reported(TARGET, f"first `plan` of {tree.slots:,} slots, whole process", plan, "s"),
        reported(TARGET, f"bare parse of the same {tree.slots:,} slots, whole process", bare, "s"),
        reported(TARGET, f"first `plan` of {tree.slots:,} slots, peak RSS", rss, "MB"),
        bound(
            TARGET,
            f"`plan` of {tree.slots:,} slots with nothing to do, whole process",
            unchanged,
            "s",
            0.5,
        ),
    ]
