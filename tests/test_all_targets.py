"""GitHub, Chainloop, Unkey and iftrue together: the real CLI against the four fakes.

The manifests live in a real git repository (acme/web itself, so GitHub deploys their
commits), so records carry real revisions and iftrue's changelog comes from real history. Every
request is checked against the API's description.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import stamina

from slotkeeper.model import SyncSubject
from tests.fakes.chainloop import FakeChainloop
from tests.fakes.github import FakeGitHub
from tests.fakes.iftrue import FakeIftrue
from tests.fakes.iftrue_schema import REQUEST_SCHEMA
from tests.fakes.spec import OpenApiChecker
from tests.fakes.unkey import FakeUnkey
from tests.helpers import (
    DIGEST_A,
    Run,
    age_ledger,
    environment,
    git,
    image,
    recorded_state,
    write_manifests_and_targets,
)

Sk = Callable[..., Run]
SECRETS = {
    "GITHUB_TOKEN": "ghp_testtoken0123456789",
    "CHAINLOOP_TOKEN": "cl_testtoken0123456789",
    "UNKEY_ROOT_KEY": "unkey_testroot0123456789",
    "IFTRUE_JWT": "iftrue.jwt.testtoken",
}
CHART = {"kind": "HELM_CHART", "name": "oci://ghcr.io/acme/charts/web", "version": "2.3.0"}


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=5):
        yield


@dataclass
class World:
    """The four fakes, the work tree and helpers to change the manifests and commit them."""

    github: FakeGitHub
    chainloop: FakeChainloop
    unkey: FakeUnkey
    iftrue: FakeIftrue
    root: Path

    def targets(self, **overrides: dict[str, Any]) -> list[dict[str, Any]]:
        specs = {
            "github": {
                "type": "github",
                "baseUrl": self.github.base_url,
                "token": {"env": "GITHUB_TOKEN"},
            },
            "chainloop": {
                "type": "chainloop",
                "baseUrl": self.chainloop.base_url,
                "token": {"env": "CHAINLOOP_TOKEN"},
                "heartbeatInterval": "1h",
            },
            "unkey": {
                "type": "unkey",
                "baseUrl": self.unkey.base_url,
                "rootKey": {"env": "UNKEY_ROOT_KEY"},
                "project": "acme",
                "app": "api",
                "pollTimeoutSeconds": 5,
            },
            "iftrue": {
                "type": "iftrue",
                "baseUrl": self.iftrue.base_url,
                "token": {"env": "IFTRUE_JWT"},
                "memberId": "42",
                "repositoryUrl": "https://github.com/acme/web",
            },
        }
        for name, extra in overrides.items():
            specs[name] = {**specs[name], **extra}
        return [
            {
                "apiVersion": "slotkeeper/v1",
                "kind": "Target",
                "metadata": {"name": name},
                "spec": spec,
            }
            for name, spec in specs.items()
        ]

    def declare(self, slots: dict[str, Any], message: str, **overrides: dict[str, Any]) -> str:
        """Write the manifests and commit them with ``message``; return the commit sha."""
        write_manifests_and_targets(
            self.root / "m",
            environment(
                "production",
                slots,
                repository="acme/web",
                production=True,
                targets=["github", "chainloop", "unkey", "iftrue"],
            ),
            *self.targets(**overrides),
        )
        return self.commit(message)

    def commit(self, message: str) -> str:
        """Commit the work tree (it is acme/web itself, pushed: GitHub knows the commit)."""
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)
        return self.github.add_commit("acme/web", git(self.root, "rev-parse", "HEAD"))

    def writes(self) -> dict[str, int]:
        fakes = {
            "github": self.github,
            "chainloop": self.chainloop,
            "unkey": self.unkey,
            "iftrue": self.iftrue,
        }
        return {name: len(fake.writes()) for name, fake in fakes.items()}

    def reset_logs(self) -> None:
        for fake in (self.github, self.chainloop, self.unkey, self.iftrue):
            fake.reset_log()


@pytest.fixture
def world(
    workdir: Path,
    github: FakeGitHub,
    chainloop: FakeChainloop,
    unkey: FakeUnkey,
    iftrue: FakeIftrue,
    github_spec: OpenApiChecker,
    chainloop_spec: OpenApiChecker,
    unkey_spec: OpenApiChecker,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """The four fakes with credentials set; at the end every request slotkeeper sent is checked
    against its API's description (iftrue's: the JSON Schema of its documented body)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    (workdir / ".gitignore").write_text(".slotkeeper/\n")  # the ledger and private keys
    git(workdir, "init", "-q", "-b", "main")
    git(workdir, "remote", "add", "origin", "git@github.com:acme/web.git")
    yield World(github, chainloop, unkey, iftrue, workdir)
    for fake, spec in ((github, github_spec), (chainloop, chainloop_spec), (unkey, unkey_spec)):
        for request in fake.requests:
            spec.check_request(request.method, request.url, request.headers, request.body)
    for request in iftrue.requests:
        jsonschema.validate(request.json, REQUEST_SCHEMA)


def apply(sk: Sk, *args: str) -> Run:
    result = sk("apply", "--yes", "-m", "m", *args)
    assert result.code == 0, result.out + result.err
    return result


def converged(sk: Sk) -> bool:
    return sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_one_apply_records_everything_everywhere(sk: Sk, world: World, state: Path) -> None:
    """One apply mirrors each new record into all four systems with the documented fields;
    a second apply writes nothing anywhere."""
    sha = world.declare(
        {"api": image(version="v1", digest=DIGEST_A), "web": CHART}, "feat: first release (#1)"
    )
    out = apply(sk).out
    assert "unkey: a HELM_CHART is not deployable on unkey, not sent" in out
    recorded = recorded_state(state)
    api = recorded.deployed[("production", "api")]

    [active_api] = [world.chainloop.active("production", "api")]
    assert active_api is not None and active_api["status"] == "DEPLOYED"
    assert active_api["artifact"]["digest"] == DIGEST_A
    assert world.chainloop.active("production", "web")["artifact"]["kind"] == "HELM_CHART"

    [deployment] = world.unkey.deployments()
    assert deployment["dockerImage"] == f"ghcr.io/acme/api:v1@{DIGEST_A}"
    assert deployment["environmentSlug"] == "production"
    assert (deployment["project"], deployment["app"], deployment["branch"]) == (
        "acme",
        "api",
        "main",
    )
    assert deployment["gitCommit"]["commitSha"] == sha
    assert isinstance(deployment["gitCommit"]["timestamp"], int)
    assert deployment["gitCommit"]["timestamp"] > 1_000_000_000_000  # milliseconds

    events = {e["title"]: e for e in world.iftrue.records()}
    assert set(events) == {"production/api v1", "production/web 2.3.0"}
    event = events["production/api v1"]
    assert event["commit_id"] == sha and event["branch"] == "main"
    assert event["pull_request_number"] == 1
    assert event["status"] == "succes"
    github_node = next(
        d["node_id"]
        for d in world.github.deployments("acme", "web")
        if d["payload"]["slotkeeper"]["record_id"] == api.id
    )
    assert event["node_id"] == github_node

    row = {r["slot"]: r for r in sk("status", "--json").json()["slots"]}["api"]
    assert {name: t["status"] for name, t in row["targets"].items()} == {
        "github": "synced",
        "chainloop": "synced",
        "unkey": "synced",
        "iftrue": "synced",
    }
    history = sk("history", "production/api", "--json").json()
    assert history[0]["targets"]["unkey"]["detail"]["status"] == "READY"

    world.reset_logs()
    assert "No changes." in apply(sk).out
    assert world.writes() == {"github": 0, "chainloop": 0, "unkey": 0, "iftrue": 0}


def test_a_new_version_with_history(sk: Sk, world: World, state: Path) -> None:
    """A replaced artifact: Chainloop gets one DEPLOYED (it supersedes by itself, no SUPERSEDED
    is posted), Unkey one deployment, iftrue one event whose changelog, commit count, PR number
    and fix flag come from the commits since the previous record's revision."""
    world.declare({"api": image(version="v1")}, "feat: first")
    apply(sk)
    world.commit("fix: null pointer in the handler")
    world.commit("docs: explain retries")
    world.declare({"api": image(version="v2")}, "fix: ship v2 with the timeout fix (#12)")
    world.reset_logs()
    apply(sk)
    assert world.writes() == {"github": 3, "chainloop": 1, "unkey": 1, "iftrue": 1}
    [post] = world.chainloop.writes()
    assert post.json["status"] == "DEPLOYED"
    assert [r["status"] for r in world.chainloop.records(deployment_name="api")] == [
        "DEPLOYED",
        "SUPERSEDED",
    ]
    event = world.iftrue.records()[0]
    assert event["pull_request_number"] == 12
    assert event["is_fix"] is True and event["is_hotfix"] is False
    assert event["commits_count"] == 3
    assert (
        event["changelog"].splitlines()[0].startswith("- fix: ship v2 with the timeout fix (#12)")
    )
    assert "docs: explain retries" in event["changelog"]
    assert len(world.unkey.deployments()) == 2


def test_decommission_reaches_chainloop_only(sk: Sk, world: World) -> None:
    """A removed slot is DECOMMISSIONED on Chainloop (and inactive on GitHub); Unkey and iftrue
    have nothing to retire."""
    world.declare({"api": image(), "worker": image("worker"), "db": image("db")}, "feat: all")
    apply(sk)
    world.declare({"api": image(), "db": image("db")}, "chore: drop the worker")
    world.reset_logs()
    apply(sk)
    assert world.writes() == {"github": 1, "chainloop": 1, "unkey": 0, "iftrue": 0}
    [post] = world.chainloop.writes()
    assert post.json["status"] == "DECOMMISSIONED"
    assert world.chainloop.active("production", "worker") is None


def test_chainloop_heartbeat_refreshes_last_seen_without_a_new_record(
    sk: Sk, world: World, state: Path
) -> None:
    """Once heartbeatInterval has passed, DEPLOYED records are re-recorded on Chainloop: the
    record's last_seen_at moves and no new record appears."""
    world.declare({"api": image()}, "feat: first")
    apply(sk)
    before = world.chainloop.active("production", "api")
    assert "heartbeat" in sk("plan", "-m", "m", "--at", "+2h").out
    age_ledger(state, "target_syncs", "updated_at", timedelta(hours=2))
    planned = sk("plan", "-m", "m", "--out", "beat.plan")
    assert "heartbeat" in planned.out
    world.reset_logs()
    assert sk("apply", "beat.plan", "-m", "m").code == 0
    assert world.writes() == {"github": 0, "chainloop": 1, "unkey": 0, "iftrue": 0}
    after = world.chainloop.active("production", "api")
    assert after["id"] == before["id"]
    assert after["last_seen_at"] > before["last_seen_at"]
    assert len(world.chainloop.records()) == 1


def test_a_failing_target_does_not_hold_back_the_others(sk: Sk, world: World, state: Path) -> None:
    """Chainloop refusing every call fails its syncs only; the ledger and the other targets
    are updated, status names the failure, and the next apply heals it."""
    world.chainloop.error_rate = 1.0
    world.declare({"api": image()}, "feat: first")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    row = sk("status", "--json").json()["slots"][0]
    states = {name: t["status"] for name, t in row["targets"].items()}
    assert states == {
        "github": "synced",
        "chainloop": "failed",
        "unkey": "synced",
        "iftrue": "synced",
    }
    assert row["targets"]["chainloop"]["last_error"]
    world.chainloop.error_rate = 0.0
    apply(sk)
    assert converged(sk)
    assert world.chainloop.active("production", "api") is not None
    assert len(world.iftrue.records()) == 1


def test_unkey_failure_is_kept_with_its_message(sk: Sk, world: World) -> None:
    """An Unkey deployment that ends FAILED fails the sync with Unkey's error message, which
    history shows with the remote status."""
    world.unkey.fail_images = {"broken"}
    world.unkey.fill_details = True  # a server that sends errorMessage (today's never does)
    world.declare({"api": image("ghcr.io/acme/broken", "v1")}, "feat: broken")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    [record] = sk("history", "production/api", "--json").json()
    unkey = record["targets"]["unkey"]
    assert unkey["status"] == "failed"
    assert unkey["detail"]["status"] == "FAILED"
    assert unkey["detail"]["error"]
    assert "FAILED" in sk("history", "production/api").out


@pytest.mark.parametrize("knob", ["error_rate", "latency"])
def test_every_adapter_converges_under_its_fakes_knobs(
    sk: Sk, world: World, state: Path, knob: str
) -> None:
    """With 20% errors (or latency) on every fake, repeated applies converge with no duplicate
    anywhere: one deployment, record and event per record."""
    for fake in (world.github, world.chainloop, world.unkey, world.iftrue):
        setattr(fake, knob, 0.2 if knob == "error_rate" else 0.01)
    for version in ("v1", "v2"):
        world.declare({f"s{i}": image(f"img{i}", version) for i in range(4)}, f"feat: {version}")
        for _ in range(10):
            sk("apply", "--yes", "-m", "m")
            if converged(sk):
                break
        else:
            pytest.fail("did not converge")
    records = recorded_state(state)
    assert {r.artifact.version for r in records.deployed.values()} == {"v2"}
    assert len(world.unkey.deployments()) == 8
    assert len(world.iftrue.records()) == 8
    assert len({e["title"] for e in world.iftrue.records()}) == 8
    per_slot = [r for r in world.chainloop.records() if r["status"] == "DEPLOYED"]
    assert sorted(r["deployment_name"] for r in per_slot) == ["s0", "s1", "s2", "s3"]


def test_iftrue_answers_lost_are_reported_never_resent(sk: Sk, world: World) -> None:
    """When iftrue's answer is lost, slotkeeper does not guess: the event is reported as
    possibly recorded and not sent again, so there is never a duplicate."""
    world.iftrue.drop_rate = 1.0
    world.declare({"api": image()}, "feat: first")
    first = sk("apply", "--yes", "-m", "m")
    assert first.code == 1
    assert len(world.iftrue.records()) == 1  # the fake recorded it; the answer was lost
    world.iftrue.drop_rate = 0.0
    second = sk("apply", "--yes", "-m", "m")
    assert second.code == 1
    assert "may have been recorded" in second.out
    assert len(world.iftrue.records()) == 1
    row = sk("status", "--json").json()["slots"][0]
    assert row["targets"]["iftrue"]["status"] == "failed"
    assert row["targets"]["github"]["status"] == "synced"


def test_every_target_keeps_where_it_holds_a_record(sk: Sk, world: World, state: Path) -> None:
    """Every target's sync stores where its copy lives (base URL, repository, project, app)."""
    world.declare({"api": image()}, "feat: first")
    apply(sk)
    recorded = recorded_state(state)
    record = recorded.deployed["production", "api"]
    locations = {
        name: recorded.syncs[name, SyncSubject.RECORD, record.id].location
        for name in ("github", "chainloop", "unkey", "iftrue")
    }
    assert locations == {
        "github": {"base_url": world.github.base_url, "repository": "acme/web"},
        "chainloop": {"base_url": world.chainloop.base_url},
        "unkey": {"base_url": world.unkey.base_url, "project": "acme", "app": "api"},
        "iftrue": {"base_url": world.iftrue.base_url},
    }


def test_an_iftrue_event_of_a_github_repository_waits_for_its_github_deployment(
    sk: Sk, world: World
) -> None:
    """iftrue requires the GitHub deployment's node id for a repository on GitHub: while GitHub
    refuses the deployment, no event is sent (the sync fails, saying why); once GitHub has it,
    the event goes out with its node id."""
    world.github.forbidden = True
    world.declare({"api": image()}, "feat: first")
    assert sk("apply", "--yes", "-m", "m").code == 1
    assert world.iftrue.requests == []
    row = sk("status", "--json").json()["slots"][0]
    assert row["targets"]["iftrue"]["status"] == "failed"
    assert "deployment_node_id" in row["targets"]["iftrue"]["last_error"]

    world.github.forbidden = False
    apply(sk)
    [deployment] = world.github.deployments("acme", "web")
    [event] = world.iftrue.records()
    assert event["deployment_node_id"] == event["node_id"] == deployment["node_id"]
    assert converged(sk)


def test_iftrue_without_a_github_target_for_a_github_repository_is_a_clear_error(
    sk: Sk, world: World
) -> None:
    """An environment that records on iftrue a repository on GitHub, but has no github target
    to make the deployment iftrue requires, fails that sync clearly and sends nothing."""
    write_manifests_and_targets(
        world.root / "m",
        environment("production", {"api": image()}, repository="acme/web", targets=["iftrue"]),
        *world.targets(),
    )
    world.commit("feat: first")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "deployment_node_id" in result.out and "github target" in result.out
    assert world.iftrue.requests == []
