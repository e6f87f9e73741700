"""Git history for changelogs, and the commit-subject rules iftrue events are built from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slotkeeper.sources import commits_between, git_revision
from slotkeeper.targets.iftrue import fix_kind, pull_request_number


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


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
