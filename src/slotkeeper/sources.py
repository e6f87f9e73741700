"""Where manifests come from, and the git revision they were read at."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from slotkeeper.model import Revision
from slotkeeper.targets.base import Commit

_FIELD = "%x1f"


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def git_revision(manifests: Path) -> Revision | None:
    """The commit the manifests at ``manifests`` were read at, or None outside a git work tree.

    ``dirty`` is set when the manifests themselves (not the rest of the work tree) differ from
    that commit, so a record can be told apart from one made from committed files.
    """
    directory = manifests if manifests.is_dir() else manifests.parent
    directory = directory.resolve()
    log = _git(directory, "log", "-1", f"--format=%H{_FIELD}%an <%ae>{_FIELD}%aI{_FIELD}%B")
    if not log:
        return None
    sha, author, timestamp, message = log.split("\x1f", 3)
    branch = _git(directory, "symbolic-ref", "--short", "-q", "HEAD")
    status = _git(directory, "status", "--porcelain", "--", str(manifests.resolve()))
    return Revision(
        sha=sha,
        message=message.strip(),
        author=author,
        timestamp=datetime.fromisoformat(timestamp.strip()),
        branch=branch.strip() if branch else None,
        dirty=bool(status and status.strip()),
    )


def commits_between(manifests: Path, since: str | None, until: str) -> tuple[Commit, ...] | None:
    """Commits after ``since`` up to ``until`` (newest first), or just ``until`` when there is
    no ``since``; None when git cannot tell (not a work tree, unknown or shallow history)."""
    directory = (manifests if manifests.is_dir() else manifests.parent).resolve()
    selection = f"{since}..{until}" if since else f"-1 {until}"
    log = _git(directory, "log", f"--format=%H{_FIELD}%an <%ae>{_FIELD}%s", *selection.split())
    if log is None:
        return None
    commits = []
    for line in log.splitlines():
        if line.strip():
            sha, author, subject = line.split("\x1f", 2)
            commits.append(Commit(sha=sha, subject=subject, author=author))
    return tuple(commits)
