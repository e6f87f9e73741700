"""The github target end to end: the real CLI against the stateful fake GitHub on loopback.

Every request slotkeeper sends is checked against GitHub's OpenAPI description at teardown.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina

from tests.fakes.github import FakeGitHub
from tests.helpers import (
    Run,
    deploy_key,
    environment,
    image,
    recorded_state,
    write_manifests_and_targets,
)

Sk = Callable[..., Run]
TOKEN = "ghp_testtoken0123456789"


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode), so fault tests stay fast."""
    with stamina.set_testing(True, attempts=5):
        yield


@pytest.fixture
def repo(workdir: Path, gh: FakeGitHub) -> str:
    """The work directory as a git work tree of acme/web itself (its origin), with one commit
    that GitHub knows: records are deployed at that commit. Returns the commit sha."""
    # the ledger and private keys never belong in the manifests repository
    (workdir / ".gitignore").write_text(".slotkeeper/\nsecrets/\nledger.db*\n")
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.name", "Ada"),
        ("config", "user.email", "ada@example.com"),
        ("remote", "add", "origin", "https://github.com/acme/web.git"),
        ("commit", "-q", "--allow-empty", "-m", "manifests"),
    ):
        subprocess.run(["git", *args], cwd=workdir, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, check=True
    ).stdout.strip()
    return gh.add_commit("acme/web", sha)


def target(gh: FakeGitHub, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "github",
        "baseUrl": gh.base_url,
        "token": {"env": "GITHUB_TOKEN"},
    }
    spec.update(extra)
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Target",
        "metadata": {"name": "github"},
        "spec": spec,
    }


def declare(
    workdir: Path,
    gh: FakeGitHub,
    slots: dict[str, Any],
    *,
    keys: list | None = None,
    name: str = "production",
    target_extra: dict[str, Any] | None = None,
    **spec: Any,
) -> None:
    write_manifests_and_targets(
        workdir / "m",
        environment(
            name, slots, repository="acme/web", targets=["github"], deployKeys=keys or [], **spec
        ),
        target(gh, **(target_extra or {})),
    )


def apply(sk: Sk, *args: str) -> Run:
    result = sk("apply", "--yes", "-m", "m", *args)
    assert result.code == 0, result.out + result.err
    return result


def writes(gh: FakeGitHub) -> list[tuple[str, str]]:
    return [(r.method, _shape(r.path)) for r in gh.writes()]


def _shape(path: str) -> str:
    """A path with ids replaced by {id}, to compare call sequences."""
    return "/".join("{id}" if part.isdigit() else part for part in path.split("/"))


def deployments_by_record(gh: FakeGitHub) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for deployment in gh.deployments("acme", "web"):
        found.setdefault(deployment["payload"]["slotkeeper"]["record_id"], []).append(deployment)
    return found


def assert_converged(gh: FakeGitHub, state: Path) -> None:
    """One deployment per synced record, none duplicated, each in the state the ledger wants."""
    by_record = deployments_by_record(gh)
    assert all(len(items) == 1 for items in by_record.values()), "duplicate deployments"
    recorded = recorded_state(state)
    for record in recorded.deployed.values():
        [deployment] = by_record[record.id]
        assert gh.latest_state(deployment["id"]) == "success"
    for record_id, [deployment] in by_record.items():
        if record_id not in {r.id for r in recorded.deployed.values()}:
            assert gh.latest_state(deployment["id"]) == "inactive"


def test_new_slots_cost_one_create_and_one_success_each(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A first apply creates one deployment and one success status per slot, with the fields
    GitHub needs to not merge, not check and not guess the environment."""
    declare(workdir, gh, {"api": image(), "web": image("web", "2.0.0")}, production=True)
    apply(sk)
    assert sorted(writes(gh)) == sorted(
        [("POST", "/repos/acme/web/deployments")] * 2
        + [("POST", "/repos/acme/web/deployments/{id}/statuses")] * 2
    )
    recorded = recorded_state(state)
    creates = [r for r in gh.writes() if r.path.endswith("/deployments")]
    for request in creates:
        body = request.json
        record = recorded.deployed[("production", body["payload"]["slot"])]
        assert body["ref"] == repo
        assert body["environment"] == "production"
        assert body["task"] == "deploy"
        assert body["auto_merge"] is False
        assert body["required_contexts"] == []
        assert body["production_environment"] is True
        assert body["transient_environment"] is False
        assert len(body["description"]) < 140
        assert body["payload"]["slotkeeper"]["action_id"] == record.action_id
        assert body["payload"]["slotkeeper"]["record_id"] == record.id
        assert body["payload"]["artifact"] == record.artifact.model_dump(mode="json")
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
        assert request.headers["user-agent"].startswith("slotkeeper")
    for request in gh.writes():
        if request.path.endswith("/statuses"):
            assert request.json["state"] == "success"
            assert request.json["auto_inactive"] is False
    assert_converged(gh, state)
    rows = sk("status", "--json").json()["slots"]
    assert {row["targets"]["github"]["status"] for row in rows} == {"synced"}


def test_second_apply_writes_nothing_and_is_answered_with_304s(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str
) -> None:
    """Unchanged manifests: no write call at all, and every refresh read is a 304."""
    declare(workdir, gh, {"api": image()}, keys=[deploy_key("deployer")])
    apply(sk)
    gh.reset_log()
    assert "No changes." in apply(sk).out
    assert gh.writes() == []
    assert gh.requests, "the refresh read nothing"
    assert {r.status for r in gh.requests} == {304}


def test_new_version_costs_one_create_one_success_and_one_inactive(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A replaced artifact: one create and one success for the new, one inactive for the old
    (production deployments are not auto-inactivated by GitHub)."""
    declare(workdir, gh, {"api": image(version="v1")}, production=True)
    apply(sk)
    gh.reset_log()
    declare(workdir, gh, {"api": image(version="v2")}, production=True)
    apply(sk)
    assert writes(gh) == [
        ("POST", "/repos/acme/web/deployments"),
        ("POST", "/repos/acme/web/deployments/{id}/statuses"),
        ("POST", "/repos/acme/web/deployments/{id}/statuses"),
    ]
    assert [r.json["state"] for r in gh.writes()[1:]] == ["success", "inactive"]
    assert_converged(gh, state)


def test_decommission_costs_one_inactive(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A slot removed from the manifests costs exactly one inactive status."""
    declare(workdir, gh, {"api": image(), "web": image("web"), "db": image("db")})
    apply(sk)
    gh.reset_log()
    declare(workdir, gh, {"api": image(), "db": image("db")})
    apply(sk)
    assert writes(gh) == [("POST", "/repos/acme/web/deployments/{id}/statuses")]
    assert gh.writes()[0].json["state"] == "inactive"
    assert_converged(gh, state)


def test_key_rotation_adds_confirms_then_deletes(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str
) -> None:
    """Rotation registers the new key, confirms it is listed, then deletes the old one: the
    repository always has a managed key; foreign keys are never touched."""
    gh.add_key("acme", "web", _foreign_key(), "ci-bot", read_only=True)
    declare(workdir, gh, {"api": image()}, keys=[deploy_key("deployer", rotateAfter="30d")])
    apply(sk)
    [created] = [k for k in gh.keys("acme", "web") if k["title"].startswith("slotkeeper:")]
    assert created["title"].startswith("slotkeeper:deployer:")
    assert created["read_only"] is True
    [listed] = sk("keys", "list", "--json").json()
    assert created["key"] == " ".join(listed["public_key"].split()[:2])
    assert listed["targets"]["github"]["status"] == "synced"
    assert listed["targets"]["github"]["remote_id"] == str(created["id"])
    assert "github:synced" in sk("keys", "list").out

    assert sk("keys", "rotate", "acme/web/deployer", "-m", "m", "--yes").code == 0
    gh.reset_log()
    assert sk("keys", "rotate", "acme/web/deployer", "-m", "m", "--yes").code == 0
    calls = [
        (r.method, _shape(r.path)) for r in gh.requests if r.path.startswith("/repos/acme/web/keys")
    ]
    post = calls.index(("POST", "/repos/acme/web/keys"))
    confirm = calls.index(("GET", "/repos/acme/web/keys/{id}"), post)
    delete = calls.index(("DELETE", "/repos/acme/web/keys/{id}"))
    assert post < confirm < delete
    assert [w for w in writes(gh) if "keys" in w[1]] == [
        ("POST", "/repos/acme/web/keys"),
        ("DELETE", "/repos/acme/web/keys/{id}"),
    ]
    managed = [k for k in gh.keys("acme", "web") if k["title"].startswith("slotkeeper:")]
    assert len(managed) == 1 and managed[0]["id"] != created["id"]
    assert [
        k["title"] for k in gh.keys("acme", "web") if not k["title"].startswith("slotkeeper")
    ] == ["ci-bot"]
    new_public = sk("keys", "list", "--json").json()[0]["public_key"]
    assert managed[0]["key"] == " ".join(new_public.split()[:2])


def test_revoked_key_is_deleted_remotely(sk: Sk, workdir: Path, gh: FakeGitHub, repo: str) -> None:
    """A key removed from the manifests is deleted from the repository."""
    declare(workdir, gh, {"api": image()}, keys=[deploy_key("deployer")])
    apply(sk)
    declare(workdir, gh, {"api": image()})
    gh.reset_log()
    apply(sk)
    assert writes(gh) == [("DELETE", "/repos/acme/web/keys/{id}")]
    assert gh.keys("acme", "web") == []


def test_drift_deleted_deployment_is_recreated(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A recorded deployment deleted on GitHub is reported by plan and healed by apply."""
    declare(workdir, gh, {"api": image()})
    apply(sk)
    [deployment] = gh.deployments("acme", "web")
    gh.delete_deployment("acme", "web", deployment["id"])
    planned = sk("plan", "-m", "m", "--detailed-exitcode")
    assert planned.code == 2
    assert "sync" in planned.out and "deployment deleted on GitHub" in planned.out
    assert sk("plan", "-m", "m", "--no-refresh", "--detailed-exitcode").code == 0
    apply(sk)
    [again] = gh.deployments("acme", "web")
    assert again["id"] != deployment["id"]
    assert_converged(gh, state)
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_drift_inactive_deployment_is_made_active_again(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A DEPLOYED record's deployment made inactive on GitHub gets its success status back."""
    declare(workdir, gh, {"api": image()})
    apply(sk)
    [deployment] = gh.deployments("acme", "web")
    gh.add_status("acme", "web", deployment["id"], "inactive")
    assert "deployment is inactive on GitHub" in sk("plan", "-m", "m").out
    gh.reset_log()
    apply(sk)
    assert writes(gh) == [("POST", "/repos/acme/web/deployments/{id}/statuses")]
    assert gh.latest_state(deployment["id"]) == "success"
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_drift_deleted_key_is_rotated_and_orphans_removed(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str
) -> None:
    """A managed key deleted on GitHub is replaced by a fresh pair; a managed key the ledger
    does not know (an interrupted rotation) is deleted; foreign keys stay."""
    declare(workdir, gh, {"api": image()}, keys=[deploy_key("deployer")])
    apply(sk)
    [key] = gh.keys("acme", "web")
    gh.delete_key("acme", "web", key["id"])
    gh.add_key("acme", "web", _foreign_key(), "slotkeeper:deployer:2020-01-01")
    gh.add_key("acme", "web", _foreign_key(), "deploy-bot")
    planned = sk("plan", "-m", "m").out
    assert "rotate_key" in planned and "deleted on github" in planned
    assert "managed key 'slotkeeper:deployer:2020-01-01' is not in the ledger" in planned
    apply(sk)
    titles = sorted(k["title"] for k in gh.keys("acme", "web"))
    assert titles[0] == "deploy-bot" and len(titles) == 2
    assert titles[1].startswith("slotkeeper:deployer:") and "2020" not in titles[1]
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_permission_error_fails_clearly_and_is_retried_by_the_next_apply(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A 403 without rate-limit signals is a permission error: not retried, reported in the
    apply and in status; the ledger keeps the record and the next apply syncs it."""
    declare(workdir, gh, {"api": image()})
    gh.forbidden = True
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "permission denied" in result.out
    assert len([r for r in gh.requests if r.method == "POST"]) == 1  # not retried
    row = sk("status", "--json").json()["slots"][0]
    assert row["status"] == "DEPLOYED"
    assert row["targets"]["github"]["status"] == "failed"
    assert "permission denied" in row["targets"]["github"]["last_error"]
    assert "github:failed" in sk("status").out
    gh.forbidden = False
    planned = sk("plan", "-m", "m").out
    assert "sync" in planned and "failed on github" in planned
    apply(sk)
    assert_converged(gh, state)


def test_secondary_rate_limit_is_waited_out(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """A 403 with retry-after is waited out (when short) and the apply still converges."""
    gh.secondary_limit = (2, 1.0)
    declare(workdir, gh, {"api": image(), "web": image("web")})
    with stamina.set_testing(False):  # this test is about really waiting
        apply(sk, "--concurrency", "1")
    assert any(r.status == 403 for r in gh.requests)
    assert_converged(gh, state)


def test_write_budget_defers_what_does_not_fit(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """Writes beyond the configured budget are not sent: they stay pending for the next
    reconcile, and the limit is never tripped."""
    budget = {"writesPerMinute": 3, "writesPerHour": 3, "maxWaitSeconds": 0}
    declare(workdir, gh, {"api": image(), "web": image("web")}, target_extra=budget)
    result = apply(sk, "--concurrency", "1")
    assert "deferred" in result.out
    assert len(gh.writes()) == 3
    assert not any(r.status in (403, 429) for r in gh.requests)
    rows = {
        row["slot"]: row["targets"]["github"]["status"]
        for row in sk("status", "--json").json()["slots"]
    }
    assert sorted(rows.values()) == ["pending", "synced"]
    gh.reset_log()
    second = apply(sk)  # the hour's budget is still spent: nothing is sent
    assert gh.writes() == [] and "deferred" in second.out


def test_error_knobs_at_20_percent_converge_without_duplicates(
    sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path
) -> None:
    """With 20% of requests failing (5xx) and 20% of writes losing their answer, repeated
    applies converge: no duplicate deployment, every status right."""
    gh.error_rate = 0.2
    gh.drop_rate = 0.2
    for version in ("v1", "v2"):
        declare(
            workdir,
            gh,
            {f"s{i}": image(f"img{i}", version) for i in range(8)},
            keys=[deploy_key("deployer", rotateAfter="1m")] if version == "v2" else [],
        )
        for _ in range(12):
            sk("apply", "--yes", "-m", "m")
            if sk("plan", "-m", "m", "--detailed-exitcode").code == 0:
                break
        else:
            pytest.fail("did not converge in 12 applies")
    gh.error_rate = gh.drop_rate = 0.0
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
    assert_converged(gh, state)
    assert len(deployments_by_record(gh)) == 16


def test_token_never_leaks(sk: Sk, workdir: Path, gh: FakeGitHub, repo: str) -> None:
    """The token appears in no log line, plan file, ledger byte, status output or error."""
    declare(workdir, gh, {"api": image()}, keys=[deploy_key("deployer")])
    outputs = [
        sk("--log-format", "json", "--log-level", "debug", "plan", "-m", "m", "--out", "p.plan"),
        sk("--log-format", "json", "--log-level", "debug", "apply", "p.plan", "-m", "m"),
    ]
    gh.forbidden = True
    declare(workdir, gh, {"api": image(version="v2")})
    outputs.append(sk("--log-format", "json", "--log-level", "debug", "apply", "--yes", "-m", "m"))
    outputs.append(sk("status", "--json"))
    outputs.append(sk("status"))
    haystack = "".join(r.out + r.err for r in outputs) + Path("p.plan").read_text()
    for path in (workdir / ".slotkeeper").glob("state.db*"):
        haystack += path.read_bytes().decode("latin-1")
    assert "permission denied" in haystack  # the failure was reported...
    assert TOKEN not in haystack  # ...without the credential


def test_missing_token_is_a_clear_error(
    sk: Sk, workdir: Path, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset token variable is named in a clear error before anything is written."""
    monkeypatch.delenv("GITHUB_TOKEN")
    declare(workdir, gh, {"api": image()}, refFrom="version")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "environment variable GITHUB_TOKEN is not set" in result.err
    assert gh.requests == []


def _foreign_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_token_from_a_file(sk: Sk, workdir: Path, gh: FakeGitHub, repo: str, state: Path) -> None:
    """A token referenced as {file: PATH} is read from that file; a missing or empty file is a
    clear error naming the path."""
    declare(workdir, gh, {"api": image()}, target_extra={"token": {"file": "token.txt"}})
    missing = sk("apply", "--yes", "-m", "m")
    assert missing.code == 1 and "cannot read credential file token.txt" in missing.err
    Path("token.txt").write_text("\n")
    empty = sk("apply", "--yes", "-m", "m")
    assert empty.code == 1 and "credential file token.txt is empty" in empty.err
    Path("token.txt").write_text(TOKEN + "\n")
    apply(sk)
    assert_converged(gh, state)
