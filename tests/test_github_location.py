"""Records remember where they were mirrored: retirements go where a deployment was created, a
deployment already gone settles its retirement, and a target pointed at another base URL never
retires there what it did not make.

Through the real CLI against the fake GitHub (on both ledger backends), and at the adapter seam
with httpx's MockTransport for what the fake cannot say (a repository the credential cannot see).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from slotkeeper.errors import PermanentTargetError
from slotkeeper.ledger import open_ledger
from slotkeeper.model import (
    Artifact,
    Record,
    RecordedState,
    RecordStatus,
    RemoteState,
    SyncStatus,
    SyncSubject,
    TargetSync,
)
from slotkeeper.targets.base import EnvironmentInfo, RecordSubject
from slotkeeper.targets.github import GitHubTarget
from tests import test_github_target as github_target
from tests.fakes.github import FakeGitHub
from tests.helpers import (
    Run,
    deploy_key,
    environment,
    image,
    synced_record,
    write_manifests_and_targets,
)
from tests.test_github_target import TOKEN, target
from tests.test_target_links import mock_adapter

Sk = Callable[..., Run]
#: these tests retire on purpose: the mass guard is not what they are about
RETIRING = ("--allow-mass-decommission",)
repo = github_target.repo  # the work directory as a git work tree with one commit


def declare(
    workdir: Path,
    github: FakeGitHub,
    slots: dict[str, Any],
    *,
    repository: str = "acme/web",
    **spec: Any,
) -> None:
    """``slots`` in production, mirrored to ``repository``; outside acme/web (the manifests'
    own repository) the deployments are made at the versions' tags, seeded here."""
    if repository != "acme/web":
        spec.setdefault("refFrom", "version")
        for slot in slots.values():
            github.add_tag(repository, slot["version"])
    write_manifests_and_targets(
        workdir / "m",
        environment("production", slots, repository=repository, targets=["github"], **spec),
        target(github),
    )


def apply(sk: Sk, ledger_url: str, *args: str) -> Run:
    result = sk("apply", "--yes", "-m", "m", "--state", ledger_url, *args)
    assert result.code == 0, result.out + result.err
    return result


def read(ledger_url: str) -> RecordedState:
    ledger = open_ledger(ledger_url, now=datetime.now(UTC))
    try:
        return ledger.read_state()
    finally:
        ledger.close()


def deployment_of(github: FakeGitHub, repository: str, record_id: int) -> dict[str, Any]:
    owner, name = repository.split("/")
    [found] = [
        d
        for d in github.deployments(owner, name)
        if d["payload"]["slotkeeper"]["record_id"] == record_id
    ]
    return found


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=5):
        yield


def test_a_changed_repository_retires_the_old_deployment_where_it_was_created(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, ledger_url: str
) -> None:
    """A superseded deployment goes inactive in its own repository after the environment moved."""
    declare(workdir, gh, {"api": image(version="v1")})
    apply(sk, ledger_url)
    first = read(ledger_url).deployed["production", "api"]
    sync = read(ledger_url).syncs["github", SyncSubject.RECORD, first.id]
    assert sync.location == {"base_url": gh.base_url, "repository": "acme/web"}

    declare(workdir, gh, {"api": image(version="v2")}, repository="acme/other")
    gh.reset_log()
    apply(sk, ledger_url)

    old = deployment_of(gh, "acme/web", first.id)
    assert gh.latest_state(old["id"]) == "inactive"
    second = read(ledger_url).deployed["production", "api"]
    new = deployment_of(gh, "acme/other", second.id)
    assert gh.latest_state(new["id"]) == "success"
    assert gh.deployments("acme", "other", "production") == [new]
    # the one refusal: the commits since the old record's ref, asked of the new repository,
    # where that ref is unknown (the new deployment's lead time is unknown, never made up)
    refused = [(r.path, r.status) for r in gh.requests if r.status and r.status >= 400]
    assert [(path.split("/compare/")[0], status) for path, status in refused] == [
        ("/repos/acme/other", 404)
    ]
    retired = read(ledger_url).syncs["github", SyncSubject.RECORD, first.id]
    assert retired.settled and retired.location["repository"] == "acme/web"

    gh.reset_log()
    assert sk("plan", "-m", "m", "--state", ledger_url, "--detailed-exitcode").code == 0
    apply(sk, ledger_url)
    assert gh.writes() == []


def test_an_unchanged_record_stays_in_its_repository_until_it_is_superseded(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, ledger_url: str
) -> None:
    """A repository change alone redoes nothing: the deployment is read and retired where it is."""
    declare(workdir, gh, {"api": image(version="v1")})
    apply(sk, ledger_url)
    record = read(ledger_url).deployed["production", "api"]

    declare(workdir, gh, {"api": image(version="v1")}, repository="acme/other")
    gh.reset_log()
    result = sk("plan", "-m", "m", "--state", ledger_url, "--detailed-exitcode")
    assert result.code == 0, result.out + result.err
    assert any(r.path == "/repos/acme/web/deployments" for r in gh.requests)
    assert not any(r.path.startswith("/repos/acme/other/") for r in gh.requests)
    apply(sk, ledger_url)
    assert gh.writes() == []
    assert gh.deployments("acme", "other") == []

    declare(workdir, gh, {"api": image(version="v2")}, repository="acme/other")
    apply(sk, ledger_url)
    assert gh.latest_state(deployment_of(gh, "acme/web", record.id)["id"]) == "inactive"
    assert len(gh.deployments("acme", "other")) == 1


@pytest.mark.parametrize("retire", ["decommission", "supersede"])
def test_retiring_a_deployment_deleted_on_github_settles_it(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, ledger_url: str, retire: str
) -> None:
    """Retiring a deployment deleted on GitHub settles as already gone, with no failure left."""
    declare(workdir, gh, {"api": image(version="v1"), "web": image("ghcr.io/acme/web")})
    apply(sk, ledger_url)
    record = read(ledger_url).deployed["production", "api"]
    gh.delete_deployment("acme", "web", deployment_of(gh, "acme/web", record.id)["id"])

    slots = {"web": image("ghcr.io/acme/web")}
    if retire == "supersede":
        slots["api"] = image(version="v2")
    declare(workdir, gh, slots)
    assert re.search(r"Apply complete! \d+ applied, 0 failed", apply(sk, ledger_url, *RETIRING).out)

    sync = read(ledger_url).syncs["github", SyncSubject.RECORD, record.id]
    assert sync.status is SyncStatus.SYNCED and sync.remote_state is RemoteState.INACTIVE
    assert sync.remote_detail["status"] == "already gone"
    assert "already gone" in sk("history", "production/api", "--state", ledger_url).out
    gh.reset_log()
    result = sk("plan", "-m", "m", "--state", ledger_url, "--detailed-exitcode")
    assert result.code == 0, result.out
    assert gh.writes() == []


@pytest.fixture
def moved() -> Iterator[FakeGitHub]:
    """A second GitHub (another host) that accepts the same token."""
    with FakeGitHub(token=TOKEN) as fake:
        yield fake


def test_a_repointed_target_never_retires_a_deployment_made_elsewhere(
    sk: Sk, workdir: Path, gh: FakeGitHub, moved: FakeGitHub, repo: str, ledger_url: str
) -> None:
    """A repointed target refuses to retire an old deployment and sends its id to no host."""
    declare(workdir, gh, {"api": image(version="v1"), "web": image("ghcr.io/acme/web")})
    apply(sk, ledger_url)
    record = read(ledger_url).deployed["production", "api"]
    deployment = deployment_of(gh, "acme/web", record.id)
    gh.reset_log()

    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"web": image("ghcr.io/acme/web")},
            repository="acme/web",
            targets=["github"],
        ),
        target(moved),
    )
    for _ in range(2):  # and again: refused each time, never sent
        result = sk("apply", "--yes", "-m", "m", "--state", ledger_url, *RETIRING)
        assert result.code == 1
        assert f"was created at {gh.base_url} (acme/web)" in result.out + result.err
        assert f"now points at {moved.base_url}" in result.out + result.err

    assert gh.requests == []
    assert not any(f"/deployments/{deployment['id']}" in r.path for r in moved.requests)
    assert gh.latest_state(deployment["id"]) == "success"
    sync = read(ledger_url).syncs["github", SyncSubject.RECORD, record.id]
    assert sync.status is SyncStatus.FAILED and "now points at" in (sync.last_error or "")
    plan = sk("plan", "-m", "m", "--state", ledger_url)
    assert "now points at" in plan.out


def _retiring(
    answers: dict[tuple[str, str], int],
) -> tuple[GitHubTarget, list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        code = answers[request.method, request.url.path]
        body: Any = {"message": "Not Found"} if code == 404 else []
        if code == 201:
            body = {"id": 1, "state": "inactive", "created_at": "2026-11-23T00:00:00Z"}
        return httpx.Response(code, json=body)

    return mock_adapter("https://api.github.com", answer), calls


def _subject_and_sync() -> tuple[RecordSubject, TargetSync]:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    record = Record(
        id=7,
        environment="production",
        slot="api",
        artifact=Artifact.model_validate(image()),
        ref="main",
        status=RecordStatus.DECOMMISSIONED,
        created_at=now,
        updated_at=now,
        last_seen_at=now,
        action_id="a",
    )
    subject = RecordSubject(
        record=record,
        environment=EnvironmentInfo("production", "acme/other", True, False),
        lineage="l",
    )
    sync = synced_record(
        "github",
        7,
        remote_id="1001",
        at=now,
        wanted=RemoteState.INACTIVE,
        status=SyncStatus.PENDING,
        attempts=0,
        location={"base_url": "https://api.github.com", "repository": "acme/web"},
    )
    return subject, sync


STATUSES = "/repos/acme/web/deployments/1001/statuses"
LIST = "/repos/acme/web/deployments"


def test_a_404_in_a_visible_repository_means_already_gone() -> None:
    """Retiring answers 404 while the repository's deployments list: settled as already gone."""
    adapter, calls = _retiring({("POST", STATUSES): 404, ("GET", LIST): 200})
    subject, sync = _subject_and_sync()
    remote = adapter.sync_record(subject, want=RemoteState.INACTIVE, current=sync)
    adapter.close()
    assert remote.state is RemoteState.INACTIVE and remote.detail["status"] == "already gone"
    assert calls == [("POST", STATUSES), ("GET", LIST)]


def test_a_404_from_a_repository_the_credential_cannot_see_is_not_called_gone() -> None:
    """GitHub hides repositories without access behind 404: then the retirement fails, clearly."""
    adapter, _ = _retiring({("POST", STATUSES): 404, ("GET", LIST): 404})
    subject, sync = _subject_and_sync()
    with pytest.raises(PermanentTargetError, match="acme/web is not visible"):
        adapter.sync_record(subject, want=RemoteState.INACTIVE, current=sync)
    adapter.close()


def test_a_key_deleted_on_github_is_reported_already_gone() -> None:
    """Deleting a deploy key that answers 404 leaves it absent, and says it was already gone."""
    adapter = mock_adapter("https://api.github.com", lambda r: httpx.Response(404, json={}))
    remote = adapter.delete_key("acme/web", "700009")
    adapter.close()
    assert remote.state is RemoteState.ABSENT and remote.detail == {"status": "already gone"}


def test_the_location_of_a_key_is_stored_with_its_sync(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, ledger_url: str
) -> None:
    """A deploy key's sync keeps the base URL and repository it was registered in."""
    gh.add_repository("acme/keys")
    declare(workdir, gh, {}, deployKeys=[deploy_key("deployer", repository="acme/keys")])
    apply(sk, ledger_url, "--secrets-dir", "secrets")
    [key] = read(ledger_url).keys.values()
    sync = read(ledger_url).syncs["github", SyncSubject.KEY, key.id]
    assert sync.location == {"base_url": gh.base_url, "repository": "acme/keys"}


def test_a_key_registered_through_another_base_url_is_not_deleted_through_this_one(
    sk: Sk, workdir: Path, gh: FakeGitHub, moved: FakeGitHub, repo: str, ledger_url: str
) -> None:
    """A repointed target refuses to delete an old deploy key and sends its id to no host."""
    declare(workdir, gh, {}, deployKeys=[deploy_key("deployer")])
    apply(sk, ledger_url, "--secrets-dir", "secrets")
    [registered] = gh.keys("acme", "web")
    gh.reset_log()

    declare(workdir, moved, {})
    result = sk(
        "apply", "--yes", "-m", "m", "--state", ledger_url, "--secrets-dir", "secrets", *RETIRING
    )
    assert result.code == 1
    output = result.out + result.err
    assert f"was registered at {gh.base_url}" in output
    assert f"now points at {moved.base_url}" in output
    assert gh.requests == []
    assert not any(f"/keys/{registered['id']}" in r.path for r in moved.requests)
    assert gh.keys("acme", "web") == [registered]
    assert "now points at" in sk("plan", "-m", "m", "--state", ledger_url).out
