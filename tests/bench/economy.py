"""Target 2, write economy against the fake GitHub: what each kind of change costs in writes,
what a steady state costs in reads, and what reads grow with.

Every apply is a real ``slotkeeper apply`` process against a fake GitHub in this process; the
fake's request log is what is counted, split by endpoint.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.generate import Tree, manifest_args, write
from tests.bench.measure import Child, slotkeeper, sqlite_url
from tests.bench.report import Figure, exactly, reported
from tests.fakes.github import FakeGitHub
from tests.fakes.server import RecordedRequest

TARGET = "2 economy"
TOKEN = "ghp_benchtoken0123456789"
#: no pacing: these runs count requests, the pacing benchmark is target 3
UNLIMITED = {"writesPerMinute": 1_000_000, "writesPerHour": 1_000_000}


def github_tree(fake: FakeGitHub, environments: int, slots: int, **shape: Any) -> Tree:
    spec = {
        "type": "github",
        "baseUrl": fake.base_url,
        "token": {"env": "GITHUB_TOKEN"},
        **UNLIMITED,
        **shape.pop("github", {}),
    }
    tree = Tree(
        environments,
        slots,
        repositories=min(10, environments),
        targets=("github",),
        target_specs={"github": spec},
        ref="main",
        **shape,
    )
    for repository in tree.repository_names():
        fake.add_repository(repository)
    return tree


def kind(request: RecordedRequest) -> str:
    """What a request was: ``deployment``, ``status:<state>``, ``key+``, ``key-`` or a read."""
    path = request.path
    if request.method == "POST" and path.endswith("/deployments"):
        return "deployment"
    if request.method == "POST" and path.endswith("/statuses"):
        return f"status:{(request.json or {}).get('state')}"
    if request.method == "POST" and path.endswith("/keys"):
        return "key+"
    if request.method == "DELETE" and "/keys/" in path:
        return "key-"
    if request.method == "GET":
        if path.endswith("/statuses"):
            return "read:statuses"
        return "read:keys" if path.endswith("/keys") else "read:deployments"
    return f"{request.method} {path}"


@dataclass(frozen=True)
class Step:
    """What one apply sent."""

    kinds: Counter[str]
    statuses: Counter[int]
    seconds: float

    @property
    def writes(self) -> int:
        return sum(n for k, n in self.kinds.items() if not k.startswith("read:"))

    @property
    def reads(self) -> int:
        return sum(n for k, n in self.kinds.items() if k.startswith("read:"))

    @property
    def limited(self) -> int:
        """Answers that were a rate limit (403 or 429)."""
        return self.statuses[403] + self.statuses[429]


class Bench:
    """A fake GitHub, a ledger and a secrets directory; ``apply`` runs one real apply."""

    def __init__(self, work: Path, fake: FakeGitHub, env: dict[str, str] | None = None) -> None:
        self.work = work
        self.fake = fake
        self.env = {"GITHUB_TOKEN": TOKEN, **(env or {})}
        self.root = work / "manifests"
        self.state = sqlite_url(work / "state.db")
        self.secrets = work / "secrets"

    def run(self, *args: str) -> tuple[Step, Child]:
        self.fake.reset_log()
        child = slotkeeper(
            *args,
            *manifest_args(self.root),
            "--state",
            self.state,
            "--secrets-dir",
            str(self.secrets),
            env=self.env,
        )
        if child.code != 0:
            raise RuntimeError(f"slotkeeper {args[0]} failed ({child.code}): {child.err[-3000:]}")
        requests = self.fake.requests
        step = Step(
            kinds=Counter(kind(r) for r in requests),
            statuses=Counter(r.status or 0 for r in requests),
            seconds=child.seconds,
        )
        return step, child

    def apply(self, tree: Tree, *, concurrency: int = 8) -> Step:
        write(tree, self.root)
        return self.run("apply", "--yes", "--concurrency", str(concurrency))[0]


@dataclass(frozen=True)
class Economy:
    slots: int
    keys: int
    new: Step
    unchanged: Step
    replaced: int
    replace: Step
    removed: int
    decommission: Step
    rotated: int
    rotation: Step


def measure(work: Path, environments: int, slots: int, changes: int, rotations: int) -> Economy:
    work.mkdir(parents=True, exist_ok=True)
    with FakeGitHub(TOKEN, rate_limit=10_000_000) as fake:
        bench = Bench(work, fake)
        tree = github_tree(fake, environments, slots)
        keys = tree.environments * tree.keys_per_environment
        new = bench.apply(tree)
        unchanged = bench.apply(tree)
        bumped = tree.bump(changes)
        replace = bench.apply(bumped)
        dropped = bumped.drop(changes)
        decommission = bench.apply(dropped)
        names = [
            f"{tree.repository(e)}/{tree.environment_name(e)}-deployer-0" for e in range(rotations)
        ]
        rotation, _ = bench.run("keys", "rotate", "--yes", *names)
    return Economy(
        slots=tree.slots,
        keys=keys,
        new=new,
        unchanged=unchanged,
        replaced=changes,
        replace=replace,
        removed=changes,
        decommission=decommission,
        rotated=rotations,
        rotation=rotation,
    )


def reads_of_unchanged_apply(work: Path, environments: int, slots: int) -> int:
    """Reads of a refresh when nothing changed, for one tree shape."""
    work.mkdir(parents=True, exist_ok=True)
    with FakeGitHub(TOKEN, rate_limit=10_000_000) as fake:
        bench = Bench(work, fake)
        tree = github_tree(fake, environments, slots)
        bench.apply(tree)
        return bench.apply(tree).reads


def run(work: Path, *, quick: bool) -> list[Figure]:
    shape = (4, 5, 3, 2) if quick else (200, 50, 100, 10)
    economy = measure(work / "economy", *shape)
    figures = [
        exactly(
            TARGET,
            f"writes per new slot ({economy.slots:,} slots)",
            (economy.new.kinds["deployment"] + economy.new.kinds["status:success"]) / economy.slots,
            "writes",
            2,
        ),
        exactly(
            TARGET,
            f"writes per new deploy key ({economy.keys} keys)",
            economy.new.kinds["key+"] / economy.keys,
            "writes",
            1,
        ),
        exactly(
            TARGET,
            "other writes of the first apply",
            economy.new.writes
            - economy.new.kinds["deployment"]
            - economy.new.kinds["status:success"]
            - economy.new.kinds["key+"],
            "writes",
            0,
        ),
        exactly(
            TARGET,
            f"writes per replaced artifact ({economy.replaced})",
            economy.replace.writes / economy.replaced,
            "writes",
            3,
        ),
        exactly(
            TARGET,
            f"writes per decommission ({economy.removed})",
            economy.decommission.writes / economy.removed,
            "writes",
            1,
        ),
        exactly(
            TARGET,
            f"writes per key rotation ({economy.rotated})",
            economy.rotation.writes / economy.rotated,
            "writes",
            2,
        ),
        exactly(
            TARGET,
            f"writes of a second apply, {economy.slots:,} unchanged slots",
            economy.unchanged.writes,
            "writes",
            0,
        ),
        exactly(
            TARGET,
            "refresh reads not answered 304",
            economy.unchanged.reads - economy.unchanged.statuses[304],
            "reads",
            0,
        ),
        reported(
            TARGET,
            f"refresh reads of {economy.slots:,} unchanged slots",
            economy.unchanged.reads,
            "reads",
        ),
        reported(TARGET, f"first apply of {economy.slots:,} slots", economy.new.seconds, "s"),
        reported(
            TARGET, f"unchanged apply of {economy.slots:,} slots", economy.unchanged.seconds, "s"
        ),
    ]
    environments, slots = (2, 3) if quick else (10, 10)
    base = reads_of_unchanged_apply(work / "reads-a", environments, slots)
    more_slots = reads_of_unchanged_apply(work / "reads-b", environments, 4 * slots)
    more_environments = reads_of_unchanged_apply(work / "reads-c", 2 * environments, slots)
    figures += [
        exactly(TARGET, "reads: 4x the slots / base", more_slots / base, "x", 1),
        reported(TARGET, "reads: 2x the environments / base", more_environments / base, "x"),
    ]
    return figures
