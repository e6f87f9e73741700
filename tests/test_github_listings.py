"""What the refresh reads from GitHub's listings, through the CLI against the fake GitHub: keys
it did not make are left alone, and listings longer than a page are read whole.

The contract (docs/targets.md, GitHub): keys without the ``slotkeeper:`` prefix are never touched;
a key with the prefix and the title of a key this ledger manages in that repository, but unknown
to the ledger, is what an interrupted rotation leaves, and is deleted (tests/test_github_target.py
pins that). Everything else a refresh lists is someone else's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from tests.conftest import GITHUB_TOKEN_VALUE
from tests.fakes.github import FakeGitHub
from tests.helpers import (
    Run,
    age_ledger,
    deploy_key,
    environment,
    image,
    write_manifests_and_targets,
)
from tests.test_github_target import _foreign_key, assert_converged, target

Sk = Callable[..., Run]

#: keys someone else registered, each named like slotkeeper's "deployer" in some way
FOREIGN_TITLES = {
    "acme/web": [
        "deployer",  # the managed title itself
        "deployer:2026-01-01",  # and a date, without the prefix
        "Slotkeeper:deployer:2026-01-01",  # the prefix in another case
        "slotkeeper-deployer-2026-01-01",
        "slotkeeper:other:2026-01-01",  # the prefix, a title nobody declared
        "slotkeeper:deployer:ci:2026-01-01",  # the prefix, a title with a colon
    ],
    # the prefix and a title managed in acme/web, in acme/api (where only "reader" is)
    "acme/api": ["slotkeeper:deployer:2026-01-01"],
}


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=5):
        yield


def declare(
    workdir: Path,
    gh: FakeGitHub,
    *,
    slots: dict[str, Any],
    keys: list[dict[str, Any]],
    **target_extra: Any,
) -> None:
    gh.add_tag("acme/web", "v1")
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            slots,
            repository="acme/web",
            refFrom="version",
            targets=["github"],
            production=True,
            deployKeys=keys,
        ),
        target(gh, **target_extra),
    )


def registered(gh: FakeGitHub) -> set[tuple[str, int, str, str]]:
    """Every key of the repositories of FOREIGN_TITLES: repository, id, title, key."""
    found = set()
    for repository in FOREIGN_TITLES:
        owner, repo = repository.split("/")
        found |= {(repository, k["id"], k["title"], k["key"]) for k in gh.keys(owner, repo)}
    return found


def test_keys_titled_like_managed_ones_survive_every_key_change(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """Keys slotkeeper did not register, titled like its "deployer" (the bare title, another
    case of the prefix, the prefix with another title, or in another repository) outlive the
    creation, refreshes, an on-demand and a due rotation and the revocation of the keys."""
    for repository, titles in FOREIGN_TITLES.items():
        gh.add_repository(repository)
        owner, repo = repository.split("/")
        for title in titles:
            gh.add_key(owner, repo, _foreign_key(), title)
    foreign = registered(gh)
    assert len(foreign) == 7
    rotating = [
        deploy_key("deployer", rotateAfter="30d"),
        deploy_key("reader", repository="acme/api", rotateAfter="30d"),
    ]
    declare(workdir, gh, slots={"api": image()}, keys=rotating)

    def step(*args: str) -> None:
        result = sk(*args)
        assert result.code == 0, result.out + result.err
        assert foreign <= registered(gh), args

    step("apply", "--yes", "-m", "m")
    planned = sk("plan", "-m", "m", "--detailed-exitcode")
    assert planned.code == 0, planned.out  # no orphan among them: nothing to do
    step("keys", "rotate", "acme/web/deployer", "--yes", "-m", "m")
    age_ledger(state, "deploy_keys", "created_at", timedelta(days=31))
    assert "older than rotateAfter 30d" in sk("plan", "-m", "m").out
    step("apply", "--yes", "-m", "m")
    declare(workdir, gh, slots={"api": image()}, keys=[])
    step("apply", "--yes", "-m", "m", "--allow-mass-decommission")  # both keys revoked
    assert registered(gh) == foreign
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
    deletes = [r.path for r in gh.writes() if r.method == "DELETE"]
    # deployer rotated twice, reader once, both revoked: nothing else
    assert len(deletes) == 5
    assert_converged(gh, state)


def seed_deployments(gh: FakeGitHub, count: int) -> None:
    """``count`` deployments of acme/web's production made by someone else (a CI job)."""
    with httpx.Client(
        base_url=gh.base_url,
        headers={"Authorization": f"Bearer {GITHUB_TOKEN_VALUE}", "Accept": "application/json"},
    ) as client:
        for number in range(count):
            created = client.post(
                "/repos/acme/web/deployments",
                json={
                    "ref": "v1",
                    "environment": "production",
                    "auto_merge": False,
                    "required_contexts": [],
                    "payload": {"ci_run": number},
                },
            )
            assert created.status_code == 201, created.text


def pages_read(gh: FakeGitHub, path: str) -> set[str]:
    return {r.query.get("page", "1") for r in gh.requests if r.method == "GET" and r.path == path}


def test_listings_over_a_hundred_items_are_read_whole(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """With 105 slots (and 100 deployments of someone else's after them) and 103 deploy keys
    (slotkeeper's last), the refresh reads every page: plan finds no drift, and applying again
    recreates no deployment and rotates no key."""
    for _ in range(101):
        gh.add_key("acme", "web", _foreign_key(), "ci-bot")
    slots = {f"s{number:03d}": image(f"ghcr.io/acme/s{number:03d}") for number in range(105)}
    keys = [deploy_key("deployer"), deploy_key("reader")]
    roomy = {"writesPerMinute": 10_000, "writesPerHour": 10_000}
    declare(workdir, gh, slots=slots, keys=keys, **roomy)
    assert sk("apply", "--yes", "-m", "m").code == 0
    seed_deployments(gh, 100)
    assert len(gh.deployments("acme", "web", "production")) == 205
    assert len(gh.keys("acme", "web")) == 103

    gh.reset_log()
    planned = sk("plan", "-m", "m", "--detailed-exitcode")
    assert planned.code == 0, planned.out
    assert "No changes." in planned.out
    assert pages_read(gh, "/repos/acme/web/deployments") == {"1", "2", "3"}
    assert pages_read(gh, "/repos/acme/web/keys") == {"1", "2"}
    gh.reset_log()
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert gh.writes() == []
    ours = [d for d in gh.deployments("acme", "web") if "slotkeeper" in d["payload"]]
    assert sorted(d["payload"]["slotkeeper"]["record_id"] for d in ours) == list(range(1, 106))
    assert {gh.latest_state(d["id"]) for d in ours} == {"success"}
