"""Target 9, the write budget over several GitHub App installations: GitHub's secondary limit
(about 80 content-creating requests a minute) holds per installation, and slotkeeper keeps one
write budget per installation of an App (the GitHub target's lanes), so an estate whose
repositories belong to several organisations, the App installed on each, can be written at
several budgets at once.

The same 800 new slots (8 environments of 100, one repository each) are applied twice by a real
``slotkeeper apply`` process authenticated as a GitHub App, against the fake GitHub enforcing a
secondary write limit per installation (GitHub's 80 a minute, 15 times faster: 40 in any 2 s);
slotkeeper's ``writeLimits`` are set to the same figure:

- once with the 8 repositories in one organisation: one installation, one budget;
- once with them spread over four organisations (two repositories each), the App installed on
  each: four installations, four budgets.

Held: the four-installation run's throughput (writes a second of the whole ``apply`` process)
at least 3.5x the one-installation run's, and no 403 (secondary limit) or 429 answer in either
run. Reported: each run's writes, seconds and throughput, and its time against its floor, the
busiest installation's writes at the limit's rate (writes ÷ (installations x rate) when the
writes are spread evenly, as here). The writes are counted from the fake's request log, each
by the installation whose token sent it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.economy import TOKEN, UNLIMITED, Bench
from tests.bench.generate import Tree
from tests.bench.pacing import Limit
from tests.bench.report import Figure, at_least, exactly, reported
from tests.fakes.github import FakeGitHub
from tests.fakes.github_apps import AppCredentials

TARGET = "9 installations"
#: the organisations the App is installed on (the first alone in the one-installation run)
OWNERS = ("acme", "globex", "initech", "umbrella")
#: environments, each with its own repository; owner i % installations holds repository i
REPOSITORIES = 8
#: GitHub's 80 writes a minute, 15 times faster; quick: a small budget that the runs still meet
LIMIT = Limit(40, 2)
QUICK_LIMIT = Limit(7, 1)
#: the primary limits are not what is measured
UNMETERED = 10_000_000
CONCURRENCY = 8


@dataclass(frozen=True)
class Spread:
    """What one apply sent and how long it took."""

    installations: int
    slots: int
    #: deployment and status writes, by the installation whose token sent them
    writes: Counter[int]
    #: answers that were a rate limit (403 or 429), to any request
    limited: int
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.writes.values())

    @property
    def throughput(self) -> float:
        """Writes a second of the whole apply."""
        return self.total / self.seconds

    def floor(self, limit: Limit) -> float:
        """The least time the budgets allow: the busiest installation's writes at the rate."""
        return max(self.writes.values()) / limit.per_second


def app_target(
    fake: FakeGitHub, app: AppCredentials, key_file: Path, limit: Limit
) -> dict[str, Any]:
    """The GitHub target as the App, its budget (``writeLimits``) set to the fake's limit."""
    return {
        "type": "github",
        "baseUrl": fake.base_url,
        "auth": {"app": {"clientId": app.client_id, "privateKey": {"file": str(key_file)}}},
        **UNLIMITED,
        "writeLimits": [{"writes": limit.writes, "perSeconds": limit.seconds}],
    }


def writes_by_installation(fake: FakeGitHub) -> Counter[int]:
    """The writes to repositories in the fake's log, by the installation whose token sent
    each (a write with any other credential is an error: every write must spend a budget)."""
    found: Counter[int] = Counter()
    for request in fake.requests:
        if request.method == "GET" or not request.path.startswith("/repos/"):
            continue
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        issued = fake.issued_token(token)
        if issued is None:
            raise RuntimeError(f"{request.method} {request.path} without an installation token")
        found[issued.installation.id] += 1
    return found


def measure(
    work: Path, slots: int, installations: int, limit: Limit, *, concurrency: int = CONCURRENCY
) -> Spread:
    """Apply ``slots`` new slots in ``REPOSITORIES`` environments, their repositories owned by
    ``installations`` organisations with the App installed on each, at ``limit`` per
    installation (the fake's secondary limit and slotkeeper's budget)."""
    if slots % REPOSITORIES:
        raise ValueError(f"{slots} slots do not spread evenly over {REPOSITORIES} environments")
    work.mkdir(parents=True, exist_ok=True)
    with FakeGitHub(TOKEN, rate_limit=UNMETERED) as fake:
        fake.secondary_limit = (limit.writes, float(limit.seconds))
        app = fake.add_app(rate_limit=UNMETERED)
        owners = OWNERS[:installations]
        for owner in owners:
            fake.add_installation(app, owner, rate_limit=UNMETERED)
        key_file = work / "app.pem"  # the operator's copy of the App's key
        key_file.write_bytes(app.private_key_pem)
        key_file.chmod(0o600)
        tree = Tree(
            REPOSITORIES,
            slots // REPOSITORIES,
            repositories=REPOSITORIES,
            owners=owners,
            keys_per_environment=0,
            targets=("github",),
            target_specs={"github": app_target(fake, app, key_file, limit)},
            ref="main",
        )
        for repository in tree.repository_names():
            fake.add_repository(repository)
        step = Bench(work, fake).apply(tree, concurrency=concurrency)
        writes = writes_by_installation(fake)
    # A status is sent again when its answer was lost (it is idempotent): counted, not refused.
    if step.kinds["deployment"] != tree.slots or step.kinds["status:success"] < tree.slots:
        raise RuntimeError(f"not every slot reached GitHub: {dict(step.kinds)}")
    if len(writes) != installations:
        raise RuntimeError(f"the writes reached {len(writes)} installations: {dict(writes)}")
    return Spread(installations, tree.slots, writes, step.limited, step.seconds)


def run(work: Path, *, quick: bool) -> list[Figure]:
    limit = QUICK_LIMIT if quick else LIMIT
    slots = 16 if quick else 800
    one = measure(work / "one", slots, 1, limit)
    four = measure(work / "four", slots, len(OWNERS), limit)
    ratio = four.throughput / one.throughput
    name = "throughput, four installations / one"
    figures = [
        exactly(
            TARGET,
            f"403/429 answers, one installation ({one.slots} slots)",
            one.limited,
            "answers",
            0,
        ),
        exactly(
            TARGET,
            f"403/429 answers, four installations ({four.slots} slots)",
            four.limited,
            "answers",
            0,
        ),
        reported(TARGET, name, ratio, "x") if quick else at_least(TARGET, name, ratio, "x", 3.5),
    ]
    for label, spread in (("one installation", one), ("four installations", four)):
        floor = spread.floor(limit)
        figures += [
            reported(TARGET, f"{label}: writes", spread.total, "writes"),
            reported(TARGET, f"{label}: apply", spread.seconds, "s"),
            reported(TARGET, f"{label}: throughput", spread.throughput, "writes/s"),
            reported(
                TARGET,
                f"{label}: floor, {max(spread.writes.values())} writes at "
                f"{limit.writes}/{limit.seconds}s",
                floor,
                "s",
            ),
            reported(TARGET, f"{label}: time / floor", spread.seconds / floor, "x"),
        ]
    return figures
