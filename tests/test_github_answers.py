"""GitHub's answers to a deployment creation that leave its outcome in doubt, through the CLI
against the fake GitHub: a 202 (nothing created) and an answer lost after the write happened.

A lost answer is looked into before anything is created again (targets/github.py): a deployment
is this record's only when its payload carries this ledger's lineage and this record's id. Two
ledgers (a staging copy, a restored backup) number their records from 1 alike, so the record id
alone would let one adopt the other's deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina

from slotkeeper.model import SyncSubject
from tests.fakes.github import FakeGitHub
from tests.helpers import Run, environment, image, recorded_state, write_manifests_and_targets
from tests.test_github_target import target

Sk = Callable[..., Run]
DEPLOYMENTS = "/repos/acme/web/deployments"


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=5):
        yield


def declare(workdir: Path, gh: FakeGitHub, version: str = "v1") -> None:
    gh.add_tag("acme/web", version)
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"api": image(version=version)},
            repository="acme/web",
            refFrom="version",
            targets=["github"],
            production=True,
        ),
        target(gh),
    )


def creates(gh: FakeGitHub) -> list[int | None]:
    """The status of every deployment creation the fake received (None: answer dropped)."""
    return [r.status for r in gh.requests if r.method == "POST" and r.path == DEPLOYMENTS]


def mark(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["payload"]["slotkeeper"])


def synced_deployment(state: Path, record_id: int) -> str | None:
    """The remote id the ledger holds for a record's deployment on the github target."""
    sync = recorded_state(state).syncs.get(("github", SyncSubject.RECORD, record_id))
    return sync.remote_id if sync else None


def test_a_202_creates_nothing_and_fails_until_github_creates(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """GitHub answering 202 to a deployment creation (a merge under way) created nothing: the
    apply reports the slot's sync failed with GitHub's words, sends no status and does not
    retry; the record stays DEPLOYED and the next apply creates exactly one deployment."""
    declare(workdir, gh)
    gh.merge_in_progress = True
    failed = sk("apply", "--yes", "-m", "m")
    assert failed.code == 1
    assert "GitHub answered 202 (Auto-merged main into v1 on deployment.)" in failed.out
    assert "no deployment was created for production/api" in failed.out
    assert creates(gh) == [202]
    assert gh.deployments("acme", "web") == []
    assert [r for r in gh.writes() if r.path != DEPLOYMENTS] == []
    [row] = sk("status", "--json").json()["slots"]
    assert row["status"] == "DEPLOYED"
    assert row["targets"]["github"]["status"] == "failed"
    assert "HTTP 202" in sk("plan", "-m", "m").out

    gh.merge_in_progress = False
    assert sk("apply", "--yes", "-m", "m").code == 0
    [deployment] = gh.deployments("acme", "web")
    assert creates(gh) == [202, 201]
    assert gh.latest_state(deployment["id"]) == "success"
    assert synced_deployment(state, 1) == str(deployment["id"])
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_a_creation_whose_answer_was_lost_is_adopted_not_repeated(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """A creation GitHub carried out but whose answer was lost is found by this ledger's lineage
    and record id and used at once (its status is sent to it); the next apply adopts it too:
    one deployment, never a second create."""
    declare(workdir, gh)
    gh.drop_rate, gh.knob_methods = 1.0, {"POST"}  # every POST done, every answer lost
    assert sk("apply", "--yes", "-m", "m").code == 1
    [deployment] = gh.deployments("acme", "web")
    assert mark(deployment) == {
        "lineage": recorded_state(state).lineage,
        "record_id": 1,
        "action_id": mark(deployment)["action_id"],
    }
    statuses = [r for r in gh.requests if r.path == f"{DEPLOYMENTS}/{deployment['id']}/statuses"]
    assert statuses and all(r.dropped for r in statuses)  # adopted in the same call

    gh.drop_rate = 0.0
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert [d["id"] for d in gh.deployments("acme", "web")] == [deployment["id"]]
    assert creates(gh) == [None]
    assert synced_deployment(state, 1) == str(deployment["id"])
    assert gh.latest_state(deployment["id"]) == "success"
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_another_ledgers_deployment_of_the_same_record_id_is_not_adopted(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """Another ledger deployed the same environment and ref with the same record id; this
    ledger's creation fails with its outcome unknown: the look finds only the other lineage's
    deployment, adopts nothing, and the next apply creates this ledger's own."""
    declare(workdir, gh)
    other = sk("apply", "--yes", "-m", "m", "--state", f"sqlite:///{workdir}/other.db")
    assert other.code == 0
    [theirs] = gh.deployments("acme", "web")
    assert mark(theirs)["record_id"] == 1
    their_statuses = gh.statuses(theirs["id"])

    gh.error_rate, gh.knob_methods = 1.0, {"POST"}  # 5xx: nothing done, outcome unknown
    assert sk("apply", "--yes", "-m", "m").code == 1
    assert synced_deployment(state, 1) is None
    gh.error_rate = 0.0
    assert sk("apply", "--yes", "-m", "m").code == 0

    deployments = gh.deployments("acme", "web")  # newest first
    assert len(deployments) == 2, "this ledger adopted the other's deployment"
    ours, theirs_now = deployments
    assert theirs_now == {**theirs, "updated_at": theirs_now["updated_at"]}
    assert gh.statuses(theirs["id"]) == their_statuses  # untouched
    lineage = recorded_state(state).lineage
    assert mark(ours)["lineage"] == lineage != mark(theirs)["lineage"]
    assert synced_deployment(state, 1) == str(ours["id"])
    assert gh.latest_state(ours["id"]) == "success"
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_an_older_records_deployment_is_not_adopted_by_a_newer_one(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """The same ledger's deployment of the slot's previous record (same environment, same
    lineage) is not taken for the new record's when the new creation's outcome is unknown: the
    new record gets its own deployment and the old one is retired."""
    declare(workdir, gh, "v1")
    assert sk("apply", "--yes", "-m", "m").code == 0
    [first] = gh.deployments("acme", "web")
    declare(workdir, gh, "v2")
    gh.error_rate, gh.knob_methods = 1.0, {"POST"}
    assert sk("apply", "--yes", "-m", "m").code == 1
    gh.error_rate = 0.0
    assert sk("apply", "--yes", "-m", "m").code == 0

    deployments = gh.deployments("acme", "web")  # newest first
    assert len(deployments) == 2, "the new record adopted the old record's deployment"
    second, older = deployments
    assert older["id"] == first["id"] and second["ref"] == "v2"
    assert (mark(second)["record_id"], mark(older)["record_id"]) == (2, 1)
    assert synced_deployment(state, 2) == str(second["id"])
    assert (gh.latest_state(second["id"]), gh.latest_state(first["id"])) == ("success", "inactive")
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
