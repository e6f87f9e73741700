"""Promotion end to end in a git repository: the manifests live in a repository (a bare remote
and a work tree), `promote` and `rollback` commit to it, the daemon (`run --once`, following the
remote) applies, and auto-promotion proposes pull requests on the fake GitHub, whose branches
are the remote's own.

staging deploy -> soak not met (held, with the reason) -> soak met (promote -> commit -> the
daemon applies) -> rollback in production -> the rolled-back artifact is not re-promoted (by
`promote` or by auto-promotion) while the hold stands -> released: one pull request, updated
rather than duplicated.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.fakes.github import FakeGitHub
from tests.helpers import Run, age_ledger, git, target_document, write_targets

Sk = Callable[..., Run]

PRODUCTION = """\
# Production: promoted from staging after two hours there.
apiVersion: slotkeeper/v1
kind: Environment
metadata:
  name: production
spec:
  production: true
  promotion:
    from: staging
    soak: 2h{auto}
  slots:
    api:
      artifact:
        kind: CONTAINER_IMAGE
        name: ghcr.io/acme/api   # the public image
        version: v1
"""


def staging(version: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "slotkeeper/v1",
            "kind": "Environment",
            "metadata": {"name": "staging"},
            "spec": {
                "slots": {
                    "api": {
                        "artifact": {
                            "kind": "CONTAINER_IMAGE",
                            "name": "ghcr.io/acme/api",
                            "version": version,
                        }
                    }
                }
            },
        }
    )


class Repository:
    """A bare remote and a work tree of it, manifests under ``m/``."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)
        subprocess.run(["git", "clone", "-q", str(self.remote), str(self.work)], check=True)
        git(self.work, "checkout", "-q", "-b", "main")
        (self.work / "m").mkdir()

    def write(self, name: str, text: str) -> None:
        (self.work / "m" / name).write_text(text)

    def push(self, subject: str) -> None:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", subject)
        git(self.work, "push", "-q", "origin", "HEAD:main")

    def log(self) -> list[str]:
        return git(self.work, "log", "--format=%s").splitlines()

    def branch(self, name: str) -> str | None:
        found = git(self.remote, "for-each-ref", "--format=%(objectname)", f"refs/heads/{name}")
        return found or None


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(tmp_path / "repo")


def run_once(repo: Repository, tmp_path: Path, state: Path) -> tuple[str, ...]:
    """`slotkeeper run --once` following the remote's manifests on ``state``."""
    return (
        "run",
        "--once",
        "--source",
        f"file://{repo.remote}",
        "--path",
        "m",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--state",
        str(state),
    )


def age(state: Path, by: timedelta) -> None:
    for column in ("created_at", "updated_at"):
        age_ledger(state, "records", column, by)


def deployed(sk: Sk, state: Path, environment: str) -> str | None:
    for row in sk("status", "--json", "--state", str(state)).json()["slots"]:
        if (row["environment"], row["status"]) == (environment, "DEPLOYED"):
            return str(row["artifact"]["version"])
    return None


def test_promote_rollback_and_holds_through_git_and_the_daemon(
    sk: Sk,
    repo: Repository,
    tmp_path: Path,
    gh: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole cycle, each step checked where a person would look (see the module)."""
    state = tmp_path / "ledger.db"
    write_targets(
        target_document("github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"})
    )
    gh.add_repository("acme/deployments")
    gh.link_git("acme/deployments", repo.remote)
    monkeypatch.chdir(repo.work)

    def daemon(*extra: str) -> Run:
        done = sk(*run_once(repo, tmp_path, state), *extra)
        assert done.code == 0, done.err
        return done

    # staging takes v2; production asks for v1, which staging never ran: held
    repo.write("staging.yaml", staging("v1"))
    repo.write("production.yaml", PRODUCTION.format(auto=""))
    repo.push("v1 everywhere")
    daemon()
    assert deployed(sk, state, "staging") == "v1" and deployed(sk, state, "production") is None
    age(state, timedelta(hours=3))
    daemon()
    assert deployed(sk, state, "production") == "v1"
    repo.write("staging.yaml", staging("v2"))
    repo.push("staging: v2")
    daemon()
    age(state, timedelta(minutes=42))

    # soak not met: promote refuses, saying why; --dry-run shows the diff, changes nothing
    refused = sk("promote", "staging", "production", "-m", "m", "--state", str(state))
    assert refused.code == 1
    assert "v2 soaked 42 m of 2 h in staging" in refused.err
    before = (repo.work / "m" / "production.yaml").read_text()
    age(state, timedelta(hours=2))
    dry = sk("promote", "staging", "production", "-m", "m", "--state", str(state), "--dry-run")
    assert dry.code == 0 and "-        version: v1\n+        version: v2\n" in dry.out
    assert (repo.work / "m" / "production.yaml").read_text() == before

    # soak met: promote commits (comments kept), the daemon applies
    done = sk("promote", "staging", "production", "-m", "m", "--state", str(state), "--commit")
    assert done.code == 0, done.err
    assert repo.log()[0] == "promote staging -> production: api v2"
    after = (repo.work / "m" / "production.yaml").read_text()
    assert after == before.replace("version: v1", "version: v2")
    git(repo.work, "push", "-q", "origin", "HEAD:main")
    daemon()
    assert deployed(sk, state, "production") == "v2"

    # rollback in production: committed, applied; v2 is held there now
    back = sk("rollback", "production/api", "-m", "m", "--state", str(state), "--commit")
    assert back.code == 0, back.err
    assert repo.log()[0] == "rollback production/api: api v1"
    git(repo.work, "push", "-q", "origin", "HEAD:main")
    daemon()
    assert deployed(sk, state, "production") == "v1"
    again = sk("promote", "staging", "production", "-m", "m", "--state", str(state))
    assert again.code == 1 and "was rolled back in production" in again.err

    # auto-promotion does not propose the held artifact either
    repo.write("production.yaml", PRODUCTION.format(auto="\n    auto: true"))
    repo.push("production: auto-promotion")
    auto = ("--promotion-target", "github", "--promotion-repository", "acme/deployments")
    daemon(*auto)
    assert gh.pulls("acme", "deployments") == []
    assert repo.branch("slotkeeper/promote/production/api") is None

    # released: one pull request, from a proposal branch, into main; not duplicated
    assert sk("release-hold", "production/api", "--state", str(state)).code == 0
    daemon(*auto)
    [pull] = gh.pulls("acme", "deployments")
    assert pull["head"]["ref"] == "slotkeeper/promote/production/api"
    assert pull["base"]["ref"] == "main" and pull["title"].endswith("api v2")
    first = repo.branch("slotkeeper/promote/production/api")
    daemon(*auto)
    assert len(gh.pulls("acme", "deployments")) == 1
    assert repo.branch("slotkeeper/promote/production/api") == first
    proposed = git(repo.remote, "show", f"{first}:m/production.yaml")
    assert proposed == after.replace("soak: 2h", "soak: 2h\n    auto: true").rstrip("\n")

    # a newer artifact, soaked: the same pull request, updated
    git(repo.work, "pull", "-q", "--rebase", "origin", "main")
    repo.write("staging.yaml", staging("v3"))
    repo.push("staging: v3")
    daemon(*auto)
    age(state, timedelta(hours=3))
    daemon(*auto)
    [updated] = gh.pulls("acme", "deployments")
    assert updated["number"] == pull["number"] and updated["title"].endswith("api v3")
    assert repo.branch("slotkeeper/promote/production/api") != first
    assert "main" not in {
        ref.removeprefix("refs/heads/")
        for ref in git(repo.remote, "for-each-ref", "--format=%(refname)").splitlines()
        if ref.startswith("refs/heads/slotkeeper")
    }


def test_auto_promotion_as_a_github_app_opens_its_pull_request_with_the_installation_token(
    sk: Sk, repo: Repository, tmp_path: Path, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the promotion target authenticated as a GitHub App, the pull request is looked up
    and opened with an installation token the App minted (the App's JWT only finds the
    installation and mints it), and nothing is proposed before the soak is met."""
    credentials = gh.add_app()
    gh.add_installation(credentials, "acme")
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(credentials.private_key_pem)
    key_file.chmod(0o600)
    write_targets(
        target_document(
            "github",
            type="github",
            baseUrl=gh.base_url,
            auth={
                "app": {"clientId": credentials.client_id, "privateKey": {"file": str(key_file)}}
            },
        )
    )
    gh.add_repository("acme/deployments")
    gh.link_git("acme/deployments", repo.remote)
    monkeypatch.chdir(repo.work)
    state = tmp_path / "ledger.db"
    repo.write("staging.yaml", staging("v2"))  # production asks for v1, which staging never ran
    repo.write("production.yaml", PRODUCTION.format(auto="\n    auto: true"))
    repo.push("auto-promoted production")
    run = (
        *run_once(repo, tmp_path, state),
        "--promotion-target",
        "github",
        "--promotion-repository",
        "acme/deployments",
    )
    assert sk(*run).code == 0
    assert gh.pulls("acme", "deployments") == []  # v2 just reached staging: not soaked
    age(state, timedelta(hours=3))
    assert sk(*run).code == 0
    [pull] = gh.pulls("acme", "deployments")
    assert pull["title"] == "promote staging -> production: api v2"
    pulls = [r for r in gh.requests if "/pulls" in r.path]
    assert pulls and all(
        gh.issued_token(r.headers.get("authorization", "").removeprefix("Bearer ")) is not None
        for r in pulls
    )
