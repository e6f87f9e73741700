"""Target 3, pacing at the limit: the fake GitHub enforces a secondary write limit (GitHub's
80 a minute, scaled down in time), slotkeeper's budget is set to the same figure, and 400 new
slots are applied. slotkeeper must see no 403/429 and finish within 1.2x the floor (writes ÷
budget). The hand-written PyGithub baseline runs against the same fake for comparison.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.bench.economy import TOKEN, Bench, github_tree
from tests.bench.generate import write
from tests.bench.measure import run_child
from tests.bench.report import Figure, at_most, exactly, reported
from tests.fakes.github import FakeGitHub

TARGET = "3 pacing"
BASELINE = Path(__file__).with_name("baseline_pygithub.py")


@dataclass(frozen=True)
class Limit:
    writes: int
    seconds: int

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds


@dataclass(frozen=True)
class Paced:
    slots: int
    writes: int
    limited: int
    seconds: float

    def floor(self, limit: Limit) -> float:
        return self.writes / limit.per_second


def measure_slotkeeper(work: Path, slots: int, limit: Limit) -> Paced:
    work.mkdir(parents=True, exist_ok=True)
    with FakeGitHub(TOKEN, rate_limit=10_000_000) as fake:
        fake.secondary_limit = (limit.writes, float(limit.seconds))
        bench = Bench(work, fake)
        budget = {"writeLimits": [{"writes": limit.writes, "perSeconds": limit.seconds}]}
        tree = github_tree(
            fake, slots // 20 or 1, min(slots, 20), keys_per_environment=0, github=budget
        )
        step = bench.apply(tree)
    return Paced(tree.slots, step.writes, step.limited, step.seconds)


@dataclass(frozen=True)
class Baseline:
    slots: int
    #: slots with both their deployment and their status created
    finished_slots: int
    limited: int
    seconds: float
    stopped_at: int | None
    error: str | None


def measure_baseline(work: Path, slots: int, limit: Limit | None, latency: float = 0.0) -> Baseline:
    """The PyGithub script against a fresh fake with the same knobs. PyGithub's own throttle
    (a second between writes) is off, as a team that found it too slow would have it: with it
    the script would never meet the limit, and take writes x 1 s."""
    work.mkdir(parents=True, exist_ok=True)
    with FakeGitHub(TOKEN, rate_limit=10_000_000) as fake:
        if limit is not None:
            fake.secondary_limit = (limit.writes, float(limit.seconds))
        fake.latency = latency
        tree = github_tree(fake, slots // 20 or 1, min(slots, 20), keys_per_environment=0)
        root = write(tree, work / "manifests")
        child = run_child(
            [
                sys.executable,
                str(BASELINE),
                "--manifests",
                str(root),
                "--base-url",
                fake.base_url,
                "--no-throttle",
            ],
            env={"GITHUB_TOKEN": TOKEN},
        )
        statuses = Counter(r.status for r in fake.requests)
    try:
        summary = json.loads(child.out.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise RuntimeError(f"the baseline printed no summary: {child.err[-2000:]}") from exc
    return Baseline(
        slots=tree.slots,
        finished_slots=min(summary["deployments"], summary["statuses"]),
        limited=statuses[403] + statuses[429],
        seconds=child.seconds,
        stopped_at=summary["stopped_at"],
        error=summary["error"],
    )


def run(work: Path, *, quick: bool) -> list[Figure]:
    # GitHub's 80 writes a minute, 30 times faster; quick: a small budget and tree.
    limit = Limit(10, 1) if quick else Limit(80, 2)
    slots = 15 if quick else 400
    ours = measure_slotkeeper(work / "slotkeeper", slots, limit)
    floor = ours.floor(limit)
    figures = [
        exactly(
            TARGET,
            f"403/429 answers to slotkeeper ({ours.slots} slots)",
            ours.limited,
            "answers",
            0,
        ),
        exactly(TARGET, "slotkeeper writes per new slot", ours.writes / ours.slots, "writes", 2),
    ]
    if quick:
        figures.append(reported(TARGET, "slotkeeper time / floor", ours.seconds / floor, "x"))
    else:
        figures.append(at_most(TARGET, "slotkeeper time / floor", ours.seconds / floor, "x", 1.2))
    figures += [
        reported(
            TARGET, f"floor: {ours.writes} writes at {limit.writes}/{limit.seconds}s", floor, "s"
        ),
        reported(TARGET, "slotkeeper apply", ours.seconds, "s"),
    ]
    baseline = measure_baseline(work / "baseline", slots, limit)
    figures += [
        reported(TARGET, "PyGithub baseline: 403/429 answers", baseline.limited, "answers"),
        reported(TARGET, "PyGithub baseline: slots finished", baseline.finished_slots, "slots"),
        reported(
            TARGET,
            "PyGithub baseline: stopped at slot (-1: it finished)",
            -1 if baseline.stopped_at is None else baseline.stopped_at,
            "",
        ),
        reported(TARGET, "PyGithub baseline: time", baseline.seconds, "s"),
        reported(
            TARGET,
            "PyGithub baseline with its default 1 s between writes: time (computed)",
            2 * baseline.slots * 1.0,
            "s",
        ),
    ]
    return figures
