"""Git history for changelogs, the commit-subject rules iftrue events are built from, and what a
failing git remote is reported as."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from slotkeeper.sources import DirectorySource, commits_between, git_revision, origin_url
from slotkeeper.targets.iftrue import fix_kind, pull_request_number
from tests.helpers import Run, git

Sk = Callable[..., Run]


def commit(repo: Path, subject: str) -> str:
    (repo / "f.txt").write_text(subject)
    git(repo, "add", "-A")
    git(
        repo,
        "-c",
        "user.name=Ada",
        "-c",
        "user.email=ada@example.com",
        "commit",
        "-q",
        "-m",
        subject,
    )
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def test_commits_between_two_revisions_newest_first(repo: Path) -> None:
    """The commits after one revision up to another, newest first, with subject and author."""
    first = commit(repo, "feat: one")
    commit(repo, "fix: two")
    last = commit(repo, "Merge pull request #7 from acme/x")
    commits = commits_between(repo, first, last)
    assert commits is not None
    assert [c.subject for c in commits] == ["Merge pull request #7 from acme/x", "fix: two"]
    assert commits[0].sha == last and commits[0].author == "Ada <ada@example.com>"


def test_without_a_previous_revision_only_the_commit_itself(repo: Path) -> None:
    """A first deployment's changelog is its own commit."""
    commit(repo, "feat: one")
    last = commit(repo, "feat: two")
    commits = commits_between(repo, None, last)
    assert commits is not None and [c.subject for c in commits] == ["feat: two"]


def test_unknown_history_is_none(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Outside a work tree or with an unknown sha, git cannot tell: None, not an error."""
    last = commit(repo, "feat: one")
    assert commits_between(repo, "0" * 40, last) is None
    assert commits_between(tmp_path_factory.mktemp("plain"), None, last) is None
    assert git_revision(tmp_path_factory.mktemp("plain2")) is None


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("Merge pull request #142 from acme/feature", 142),
        ("feat: faster api (#77)", 77),
        ("feat: no pr here", None),
        ("refs #12 in the middle", None),
    ],
)
def test_pull_request_number_from_merge_or_squash_subjects(
    subject: str, number: int | None
) -> None:
    """PR numbers come from GitHub's merge subject or a squash subject ending in (#N)."""
    assert pull_request_number(subject) == number


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("fix: off by one", "fix"),
        ("fix(api)!: breaking fix", "fix"),
        ("hotfix: revert", "hotfix"),
        ("feat: fix later", None),
        ("prefix: nothing", None),
    ],
)
def test_fix_and_hotfix_from_conventional_commit_prefixes(subject: str, kind: str | None) -> None:
    """Conventional-commit prefixes fix: and hotfix: (with scope or !) mark fixes."""
    assert fix_kind(subject) == kind


def _failure(run: Run) -> str:
    """The error of the one failed reconcile a ``run --once`` logged."""
    assert run.code == 1, run
    [event] = [json.loads(line) for line in run.err.splitlines() if "reconcile.failed" in line]
    return str(event["error"])


def test_git_fetch_error_keeps_every_line_that_says_what_failed(sk: Sk, workdir: Path) -> None:
    """A failed git fetch is reported with git's fatal lines and its hint, not its last line."""
    missing = workdir / "nowhere" / "deployments.git"
    error = _failure(sk("run", "--once", "--source", f"file://{missing}"))
    assert error.startswith(f"git fetch of file://{missing}#main:. failed: fatal: ")
    assert f"'{missing}' does not appear to be a git repository" in error
    assert (
        "fatal: Could not read from remote repository. Please make sure you have the correct "
        "access rights and the repository exists." in error
    )
    assert "\n" not in error


def test_git_fetch_error_is_bounded_in_length(sk: Sk, workdir: Path) -> None:
    """However long git's own message, the part kept of it stays within 500 characters."""
    missing = workdir.joinpath(*["x" * 200] * 6)
    error = _failure(sk("run", "--once", "--source", f"file://{missing}"))
    said = error.split(" failed: ", 1)[1]
    assert said.startswith("fatal: '") and said.endswith("…")
    assert 400 < len(said) <= 500


@pytest.mark.parametrize(
    ("userinfo", "secrets"),
    [
        ("deployer:ghp_inthe0url0token", ("ghp_inthe0url0token", "deployer")),
        ("deployer:p@ss0word-1", ("p@ss0word-1", "ss0word-1", "deployer")),
        ("ghp_onlyatoken0123", ("ghp_onlyatoken0123",)),
    ],
    ids=["user-and-token", "password-with-at", "token-only"],
)
def test_git_fetch_error_never_shows_a_credential(
    sk: Sk,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    userinfo: str,
    secrets: tuple[str, ...],
) -> None:
    """An unreachable https remote's error says why, with no part of any git credential."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN", "ghp_fromtheenvironment0123")
    run = sk("run", "--once", "--source", f"git+https://{userinfo}@127.0.0.1:{port}/acme/d.git")
    error = _failure(run)
    assert error.startswith(f"git fetch of https://***@127.0.0.1:{port}/acme/d.git#main:. failed: ")
    assert "fatal: unable to access" in error
    for secret in (*secrets, "ghp_fromtheenvironment0123"):
        assert secret not in run.out + run.err


def test_the_manifests_remote_for_links_never_carries_a_credential(repo: Path) -> None:
    """A watched directory's remote is its work tree's origin, credentials stripped (the
    dashboard links the manifests' commits there); outside a git work tree there is none."""
    git(
        repo,
        "remote",
        "add",
        "origin",
        "https://x-access-token:ghs_s3cret@github.com/acme/deploy.git",
    )
    assert DirectorySource(repo).remote() == "https://github.com/acme/deploy.git"
    assert origin_url(repo) == "https://github.com/acme/deploy.git"
    outside = repo.parent / "plain"
    outside.mkdir()
    assert DirectorySource(outside).remote() is None
