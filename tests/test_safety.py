"""Removals that can never surprise: the safety contracts, through the real CLI and daemon.

Each test is an operation operators actually do — a typo in one file, a restart, a renamed key,
an empty checkout, a target removed with its environment, a plan saved before a freeze, a
target that is down — and pins what may and may not be retired by it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
import yaml
from cryptography.hazmat.primitives import serialization

from slotkeeper.keys import fingerprint, generate_key
from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import (
    Run,
    deploy_key,
    environment,
    image,
    recorded_state,
    write_manifests_and_targets,
    write_targets,
)

Sk = Callable[..., Run]
TOKEN = "ghp_testtoken0123456789"  # what the `github` fixture accepts
SECRETS = Path(".slotkeeper/secrets")


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=3):
        yield


def write(path: Path, *documents: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def three_environments(root: Path) -> None:
    """production, staging (two slots) and dev, one file each."""
    write(root / "production.yaml", environment("production", {"api": image(version="v1")}))
    write(
        root / "staging.yaml",
        environment("staging", {"api": image(version="v1"), "web": image("web", version="v1")}),
    )
    write(root / "dev.yaml", environment("dev", {"api": image(version="v1")}))


def statuses(sk: Sk) -> dict[tuple[str, str], str]:
    result = sk("status", "--json")
    assert result.code == 0, result.err
    return {(row["environment"], row["slot"]): row["status"] for row in result.json()["slots"]}


def apply(sk: Sk, *args: str, manifests: str = "m") -> Run:
    result = sk("apply", "--yes", "-m", manifests, *args)
    assert result.code == 0, result.out + result.err
    return result


def typo(path: Path) -> None:
    """The issue's example: `version:` misspelt `versoin:` in one slot."""
    path.write_text(path.read_text().replace("version: v1", "versoin: v1", 1))


# -- A: a broken file never retires anything, in any process --------------------------------


def test_run_once_with_a_broken_file_retires_nothing_and_exits_1(sk: Sk, workdir: Path) -> None:
    """A typo in staging.yaml: `run --once` (a fresh process) keeps both staging slots
    DEPLOYED, still converges the valid files, says which file is broken, and exits 1."""
    three_environments(workdir / "m")
    apply(sk)
    typo(workdir / "m" / "staging.yaml")
    write(workdir / "m" / "dev.yaml", environment("dev", {"api": image(version="v2")}))
    result = sk("run", "--once", "-m", "m")
    assert result.code == 1
    assert statuses(sk)[("staging", "api")] == "DEPLOYED"
    assert statuses(sk)[("staging", "web")] == "DEPLOYED"
    history = sk("history", "dev/api", "--json").json()
    assert [row["artifact"]["version"] for row in history] == ["v2", "v1"]
    manifests = sk("status", "--json").json()["manifests"]
    assert manifests["state"] == "degraded"
    [broken] = manifests["invalid_files"]
    assert broken["file"].endswith("staging.yaml") and broken["last_good"] is True
    assert any("versoin" in error for error in broken["errors"])
    assert "DEGRADED" in sk("status").out


def test_a_removed_file_beside_a_broken_one_retires_nothing(sk: Sk, workdir: Path) -> None:
    """While any file is broken, an environment no valid file declares is held — also one
    whose file was deleted — and the hold names the broken file; fixing it lets it through."""
    three_environments(workdir / "m")
    apply(sk)
    (workdir / "m" / "dev.yaml").unlink()
    typo(workdir / "m" / "staging.yaml")
    assert sk("run", "--once", "-m", "m").code == 1
    assert statuses(sk)[("dev", "api")] == "DEPLOYED"
    plan = sk("plan", "-m", "m")
    assert plan.code == 1 and "versoin" in plan.err  # plan and apply refuse broken input
    three_environments(workdir / "m")
    (workdir / "m" / "dev.yaml").unlink()
    result = sk("run", "--once", "-m", "m")
    assert result.code == 0, result.out + result.err
    assert statuses(sk)[("dev", "api")] == "DECOMMISSIONED"
    assert sk("status", "--json").json()["manifests"] == {"state": "ok", "invalid_files": []}


def test_an_environment_moved_into_a_broken_new_file_is_held(sk: Sk, workdir: Path) -> None:
    """staging moves from staging.yaml into a new file that is broken from the start (so it has
    no last good version): staging is not decommissioned, the reason names the new file."""
    three_environments(workdir / "m")
    apply(sk)
    (workdir / "m" / "staging.yaml").unlink()
    (workdir / "m" / "stage.yaml").write_text("apiVersion: slotkeeper/v1\nkind: Environment\n:")
    assert sk("run", "--once", "-m", "m").code == 1
    assert statuses(sk)[("staging", "api")] == "DEPLOYED"
    pending = sk("status", "--json").json()["slots"]
    held = [row["pending"] for row in pending if row["environment"] == "staging"]
    assert held and all("stage.yaml is invalid" in (p or {}).get("blocked", "") for p in held)


def test_apply_with_an_invalid_file_writes_nothing(sk: Sk, workdir: Path, state: Path) -> None:
    """`apply` refuses broken input outright: exit 1, the file and field named, the ledger
    unchanged."""
    three_environments(workdir / "m")
    apply(sk)
    serial = recorded_state(state).serial
    typo(workdir / "m" / "staging.yaml")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "staging.yaml" in result.err and "versoin" in result.err
    assert recorded_state(state).serial == serial


def test_a_restarted_daemon_keeps_the_last_good_version_and_says_so(
    sk: Sk, workdir: Path, running: Callable[..., Running]
) -> None:
    """A daemon started fresh on a tree with a broken file (the last good version is in the
    ledger, written by an earlier apply): nothing is decommissioned; /status, the dashboard
    and the gauge say the manifests are degraded; a fix clears it."""
    three_environments(workdir / "m")
    apply(sk)
    typo(workdir / "m" / "staging.yaml")
    daemon = running("-m", "m", "--resync-interval", "1s")
    wait_for(lambda: daemon.status()["manifests"]["state"] == "degraded", what="degraded")
    document = daemon.status()
    assert document["last_reconcile"] is None or document["last_reconcile"]["result"] in (
        "degraded",
        "running",
    )
    [broken] = document["manifests"]["invalid_files"]
    assert broken["file"].endswith("staging.yaml")
    page = daemon.get("/").text
    assert 'id="manifests-invalid"' in page and "versoin" in page
    assert "slotkeeper_manifests_invalid 1.0" in daemon.get("/metrics").text
    assert {(r["environment"], r["slot"]): r["status"] for r in document["slots"]}[
        ("staging", "web")
    ] == "DEPLOYED"
    three_environments(workdir / "m")
    wait_for(lambda: daemon.status()["manifests"]["state"] == "ok", what="fixed")
    assert "slotkeeper_manifests_invalid 0.0" in daemon.get("/metrics").text
    code, _ = daemon.terminate()
    assert code == 0


# -- B: a private key file in use is never deleted; a missing one is repaired ----------------


def declare_keys(manifests: Path, *keys: dict[str, Any]) -> None:
    write_manifests_and_targets(
        manifests,
        environment("production", {"api": image()}, deployKeys=list(keys)),
    )


def key_of(path: Path) -> str:
    private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return fingerprint(public.decode())


def active_keys(sk: Sk) -> dict[str, dict[str, Any]]:
    return {row["title"]: row for row in sk("keys", "list", "--json").json()}


def assert_every_active_key_has_its_file(sk: Sk) -> None:
    for row in active_keys(sk).values():
        path = SECRETS / row["secret_file"]
        assert path.is_file(), f"{row['title']}: {path} is gone"
        assert key_of(path) == row["fingerprint"], f"{row['title']}: {path} holds another key"


def test_renaming_a_key_keeps_its_file(sk: Sk, workdir: Path) -> None:
    """A key's title renamed, its secret file kept: the new key is created into the file, the
    old one revoked, and the file — in use — is not deleted; the next plan has no changes."""
    declare_keys(workdir / "m", deploy_key("deployer", secret={"file": "shared"}))
    apply(sk)
    declare_keys(workdir / "m", deploy_key("deployer-2", secret={"file": "./shared"}))
    apply(sk, "--allow-mass-decommission")
    assert set(active_keys(sk)) == {"deployer-2"}
    assert_every_active_key_has_its_file(sk)
    assert "No changes" in sk("plan", "-m", "m").out


def test_a_held_revocation_applied_later_keeps_the_file_its_successor_took(
    sk: Sk, workdir: Path
) -> None:
    """A key renamed with its file in a protected environment: the new key takes the file at
    once, the old key's revocation is held; when it is allowed in a later apply, the file (now
    the new key's, written by an earlier apply) is kept."""
    for title in ("deployer", "deployer-2"):
        write_manifests_and_targets(
            workdir / "m",
            environment(
                "production",
                {"api": image()},
                protected=True,
                deployKeys=[deploy_key(title, secret={"file": "shared"})],
            ),
        )
        if title == "deployer":
            apply(sk)
    held = apply(sk, "--allow-mass-decommission")
    assert "is protected" in held.out
    assert set(active_keys(sk)) == {"deployer", "deployer-2"}
    allowed = apply(sk, "--allow-decommission", "--allow-mass-decommission")
    assert "1 applied, 0 failed, 0 blocked" in allowed.out
    assert set(active_keys(sk)) == {"deployer-2"}
    assert_every_active_key_has_its_file(sk)


def test_swapping_two_keys_files_leaves_each_key_its_own(sk: Sk, workdir: Path) -> None:
    """Two keys swap their secret files: after the apply each file holds its key's private half."""
    declare_keys(
        workdir / "m",
        deploy_key("a", secret={"file": "one"}),
        deploy_key("b", secret={"file": "two"}),
    )
    apply(sk)
    declare_keys(
        workdir / "m",
        deploy_key("a", secret={"file": "two"}),
        deploy_key("b", secret={"file": "one"}),
    )
    apply(sk)
    assert {row["secret_file"] for row in active_keys(sk).values()} == {"one", "two"}
    assert_every_active_key_has_its_file(sk)
    assert "No changes" in sk("plan", "-m", "m").out


def test_two_spellings_of_one_secret_file_are_one_file(sk: Sk, workdir: Path) -> None:
    """`shared` and `./shared` name the same file: two keys may not share it."""
    declare_keys(
        workdir / "m",
        deploy_key("a", secret={"file": "shared"}),
        deploy_key("b", secret={"file": "./shared"}),
    )
    result = sk("validate", "-m", "m")
    assert result.code == 1 and "secret file 'shared' is already used" in result.err


@pytest.mark.parametrize("damage", ["deleted", "another key", "garbage"])
def test_a_lost_private_key_is_detected_by_plan_and_repaired(
    sk: Sk, workdir: Path, damage: str
) -> None:
    """An ACTIVE key whose private file vanished (an emptyDir after a restart), or holds
    something else, is rotated by the next plan; after the apply the file holds the key."""
    declare_keys(workdir / "m", deploy_key("deployer"))
    apply(sk)
    path = SECRETS / "deployer"
    if damage == "deleted":
        path.unlink()
    elif damage == "another key":
        path.write_bytes(generate_key("someone else").private_key)
    else:
        path.write_text("not a key\n")
    assert "No changes" in sk("plan", "-m", "m", "--no-refresh").out  # offline: not looked at
    plan = sk("plan", "-m", "m")
    assert "rotate_key" in plan.out
    assert ("missing" if damage == "deleted" else "holds another key") in plan.out
    apply(sk)
    assert_every_active_key_has_its_file(sk)
    assert "No changes" in sk("plan", "-m", "m").out


def test_a_rotation_checks_the_secrets_directory_before_registering(
    sk: Sk, workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the private half cannot be written, no key is registered on GitHub (each failing
    try would otherwise leave an orphan key there)."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare_github(workdir / "m", github, keys=[deploy_key("deployer")])
    (workdir / "blocked").write_text("a file where the secrets directory should be")
    result = sk("apply", "--yes", "-m", "m", "--secrets-dir", "blocked")
    assert result.code == 1 and "cannot write secret" in result.out
    assert github.keys("acme", "web") == []


# -- C: a target's work is never dropped silently -------------------------------------------


def github_target(gh: FakeGitHub) -> dict[str, Any]:
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Target",
        "metadata": {"name": "github"},
        "spec": {"type": "github", "baseUrl": gh.base_url, "token": {"env": "GITHUB_TOKEN"}},
    }


def declare_github(
    manifests: Path, gh: FakeGitHub, *, keys: list[dict[str, Any]] | None = None, **more: Any
) -> None:
    production = environment(
        "production",
        {"api": image()},
        repository="acme/web",
        targets=["github"],
        deployKeys=keys or [],
    )
    production["spec"]["slots"]["api"]["ref"] = "main"
    write_manifests_and_targets(manifests, production, github_target(gh), *more.get("extra", ()))


def test_an_environment_removed_with_its_target_is_held_until_the_target_returns(
    sk: Sk, workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting an environment while the operator takes its target out of the targets file
    cannot retire the GitHub deployment nor delete the deploy key: the decommission and the
    revocation are blocked with the reason, visible in plan and status; configuring the target
    again lets them through."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare_github(workdir / "m", github, keys=[deploy_key("deployer")])
    write(workdir / "m" / "dev.yaml", environment("dev", {"api": image()}))
    apply(sk)
    [deployment] = github.deployments("acme", "web")
    (workdir / "m" / "envs.yaml").unlink()
    write_targets()
    plan = sk("plan", "-m", "m", "--allow-mass-decommission")
    assert plan.out.count("target 'github' holds a copy but is not configured") == 2
    result = apply(sk, "--allow-mass-decommission")
    assert "0 applied" in result.out and "2 blocked" in result.out
    assert statuses(sk)[("production", "api")] == "DEPLOYED"
    assert set(active_keys(sk)) == {"deployer"}
    assert github.latest_state(deployment["id"]) == "success"
    assert len(github.keys("acme", "web")) == 1
    # The target comes back (no environment uses it): the retirements go through.
    write_targets(github_target(github))
    apply(sk, "--allow-mass-decommission")
    assert statuses(sk)[("production", "api")] == "DECOMMISSIONED"
    assert github.latest_state(deployment["id"]) == "inactive"
    assert github.keys("acme", "web") == []
    assert "No changes" in sk("plan", "-m", "m").out


def test_a_saved_plan_names_its_targets_and_is_refused_without_them(
    sk: Sk, workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    """`apply PLANFILE` when the operator's targets file lacks a target the plan needs is
    refused, nothing written; without -m it uses the manifests the plan was made from."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare_github(workdir / "m", github)
    assert sk("plan", "-m", "m", "--out", "p.plan").code == 0
    assert '"targets": [\n    "github"\n  ]' in (workdir / "p.plan").read_text()
    assert TOKEN not in (workdir / "p.plan").read_text()
    write_manifests_and_targets(workdir / "other", environment("production", {"api": image()}))
    refused = sk("apply", "p.plan", "-m", "other")
    assert refused.code == 1 and "github" in refused.err and "--targets" in refused.err
    assert not state.exists() or recorded_state(state).serial == 0
    write_targets(github_target(github))
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    applied = sk("apply", "../p.plan", "--state", str(state))
    assert applied.code == 0, applied.out + applied.err
    assert len(github.deployments("acme", "web")) == 1


# -- E: guards count what matters ------------------------------------------------------------


def test_an_empty_checkout_is_refused_by_validate_and_removes_nothing(
    sk: Sk, workdir: Path
) -> None:
    """An empty directory over a ledger with a slot and three keys: validate fails, apply
    revokes no key, decommissions nothing and deletes no private file; --allow-empty allows."""
    declare_keys(workdir / "m", deploy_key("a"), deploy_key("b"), deploy_key("c"))
    apply(sk)
    (workdir / "empty").mkdir()
    assert sk("validate", "-m", "empty").code == 1
    assert sk("validate", "-m", "empty", "--allow-empty").code == 0
    result = apply(sk, "--allow-mass-decommission", manifests="empty")
    assert "--allow-empty" in result.out and "0 applied" in result.out
    assert set(active_keys(sk)) == {"a", "b", "c"}
    assert_every_active_key_has_its_file(sk)
    assert statuses(sk)[("production", "api")] == "DEPLOYED"
    # The empty set did not replace the last good version: a broken file still has one.
    (workdir / "m" / "envs.yaml").write_text(
        (workdir / "m" / "envs.yaml").read_text().replace("version:", "versoin:")
    )
    assert sk("run", "--once", "-m", "m").code == 1
    [broken] = sk("status", "--json").json()["manifests"]["invalid_files"]
    assert broken["last_good"] is True
    apply(sk, "--allow-mass-decommission", "--allow-empty", manifests="empty")
    assert active_keys(sk) == {}
    assert statuses(sk)[("production", "api")] == "DECOMMISSIONED"


def test_revoking_most_keys_is_a_mass_removal(sk: Sk, workdir: Path) -> None:
    """Revocations count in the mass guard: dropping three keys of four things is held."""
    declare_keys(workdir / "m", deploy_key("a"), deploy_key("b"), deploy_key("c"))
    apply(sk)
    declare_keys(workdir / "m")
    result = apply(sk)
    assert "would remove 3 of 4" in result.out and "3 blocked" in result.out
    assert set(active_keys(sk)) == {"a", "b", "c"}


# -- F: a saved plan re-checks holds when applied --------------------------------------------


def test_plan_at_cannot_be_saved(sk: Sk, workdir: Path) -> None:
    """`plan --at … --out` is refused: a plan saved for later is applied now."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    result = sk("plan", "-m", "m", "--at", "2099-01-01T00:00:00Z", "--out", "p.plan")
    assert result.code == 1 and "--at" in result.err
    assert not (workdir / "p.plan").exists()


@pytest.mark.parametrize("hold", ["freeze", "suspend", "slot-suspend"])
def test_a_hold_committed_after_the_plan_blocks_its_apply(sk: Sk, workdir: Path, hold: str) -> None:
    """A freeze window that now covers the present, or a suspend committed between plan and
    apply, turns the saved plan's deploy into a blocked action: nothing is deployed."""
    write_manifests_and_targets(
        workdir / "m", environment("production", {"api": image(version="v1")})
    )
    apply(sk)
    write_manifests_and_targets(
        workdir / "m", environment("production", {"api": image(version="v2")})
    )
    assert sk("plan", "-m", "m", "--out", "p.plan").code == 0
    document = environment("production", {"api": image(version="v2")})
    if hold == "freeze":
        document["spec"]["freeze"] = [
            {"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}
        ]
    elif hold == "suspend":
        document["spec"]["suspend"] = True
    else:
        document["spec"]["slots"]["api"]["suspend"] = True
    write_manifests_and_targets(workdir / "m", document)
    result = sk("apply", "p.plan")
    assert result.code == 0, result.out + result.err
    assert "1 blocked" in result.out
    history = sk("history", "production/api", "--json").json()
    assert [row["artifact"]["version"] for row in history] == ["v1"]
    [row] = sk("status", "--json").json()["slots"]
    assert row["pending"] is not None and row["pending"]["action"] == "deploy"


# -- G: failures are contained and visible ---------------------------------------------------


def test_a_target_that_is_down_never_stops_the_ledger(
    sk: Sk, workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub goes down: `plan` still plans (with a warning), `apply` records every change in
    the ledger, leaves GitHub's work failed with the reason (retried by the next reconcile),
    and exits 1."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare_github(workdir / "m", github)
    apply(sk)
    target = github_target(github)
    github.stop()
    production = yaml.safe_load((workdir / "m" / "envs.yaml").read_text().split("---")[0])
    production["spec"]["slots"]["api"]["artifact"]["version"] = "v2"
    production["spec"]["slots"]["web"] = {"artifact": image("web"), "ref": "main"}
    write_manifests_and_targets(workdir / "m", production, target)
    plan = sk("plan", "-m", "m")
    assert plan.code == 0 and "deploy" in plan.out
    assert "github: not refreshed" in plan.err
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "github: not refreshed" in result.out
    rows = {row["slot"]: row for row in sk("status", "--json").json()["slots"]}
    assert rows["api"]["artifact"]["version"] == "v2" and rows["api"]["status"] == "DEPLOYED"
    assert rows["web"]["status"] == "DEPLOYED"
    for slot in ("api", "web"):
        assert rows[slot]["targets"]["github"]["status"] == "failed"
        assert "unreachable" in rows[slot]["targets"]["github"]["last_error"]


def test_private_keys_are_never_written_where_git_would_pick_them_up(sk: Sk, workdir: Path) -> None:
    """`apply` in a manifests repository whose .gitignore does not cover the secrets
    directory refuses to write the private key, saying how to fix it; once ignored, it works."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=workdir, check=True)
    (workdir / ".gitignore").write_text(".slotkeeper/state.db*\n")  # the ledger only
    declare_keys(workdir / "m", deploy_key("deployer"))
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "git does not ignore it" in result.out and ".gitignore" in result.out
    assert not (SECRETS / "deployer").exists()
    (workdir / ".gitignore").write_text(".slotkeeper/\n")
    apply(sk)
    assert_every_active_key_has_its_file(sk)
    untracked = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".slotkeeper" not in untracked


def test_a_ledger_is_never_created_where_git_would_pick_it_up(sk: Sk, workdir: Path) -> None:
    """A new ledger file inside a git work tree that does not ignore it is refused before
    anything is written, with the fix; an ignored path, or a path outside, is fine."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=workdir, check=True)
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    result = sk("apply", "--yes", "-m", "m", "--state", "sqlite:///ledger/state.db")
    assert result.code == 1
    assert "refusing to write the ledger" in result.err and "--state" in result.err
    assert not (workdir / "ledger").exists()
    (workdir / ".gitignore").write_text("ledger/\n")
    apply(sk, "--state", "sqlite:///ledger/state.db")
    assert (workdir / "ledger" / "state.db").is_file()


def test_a_ledger_inside_the_watched_directory_does_not_trigger_reconciles(
    sk: Sk, workdir: Path, running: Callable[..., Running]
) -> None:
    """The daemon reacts to manifest files only: its own ledger (and WAL) changing inside the
    watched directory triggers nothing."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    daemon = running("-m", "m", "--state", "sqlite:///m/state.db", "--resync-interval", "1h")
    wait_for(lambda: daemon.reconciles() >= 1, what="first reconcile")
    settled = daemon.reconciles()
    time.sleep(3.0)  # a ledger write at every reconcile would have triggered several by now
    assert daemon.reconciles() - settled <= 1
    write_manifests_and_targets(
        workdir / "m", environment("production", {"api": image(version="v2")})
    )
    wait_for(lambda: daemon.reconciles() > settled, what="reconcile on a manifest change")


# -- H: planning without credentials; retries do not move the serial -------------------------


def test_plan_without_refresh_needs_no_credentials(
    sk: Sk, workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull request from a fork has no secrets: `plan --no-refresh` plans without them."""
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    declare_github(workdir / "m", github)
    result = sk("plan", "-m", "m", "--no-refresh")
    assert result.code == 0 and "deploy" in result.out
    assert github.requests == []


def test_retrying_target_syncs_leaves_saved_plans_valid(
    sk: Sk, workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    """An apply that only retries failed target syncs (what every daemon resync does) does
    not move the serial: a plan saved before it still applies."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare_github(workdir / "m", github)
    github.forbidden = True
    assert sk("apply", "--yes", "-m", "m").code == 1  # recorded; GitHub refused the sync
    serial = recorded_state(state).serial
    declare_github(workdir / "next", github)
    nxt = (workdir / "next" / "envs.yaml").read_text().replace("version: v1", "version: v2")
    (workdir / "next" / "envs.yaml").write_text(nxt)
    assert sk("plan", "-m", "next", "--out", "p.plan").code == 0
    github.forbidden = False
    retried = apply(sk)  # only the failed sync is planned, and it now goes through
    assert "1 applied" in retried.out
    assert recorded_state(state).serial == serial
    applied = sk("apply", "p.plan")
    assert applied.code == 0, applied.out + applied.err
    assert recorded_state(state).serial == serial + 1
