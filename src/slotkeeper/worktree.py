"""Whether a path would be picked up by git: private keys and the ledger never belong in a
commit, and a manifests repository is exactly where ``apply`` is run.

A path is *exposed* when it lies inside a git work tree and git does not ignore it: one
``git add -A`` away from being pushed. Writers of private keys (and of the ledger file) refuse
such paths, with the fix in the message.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from slotkeeper.errors import SecretError, SlotkeeperError

_GIT_TIMEOUT = 10.0


def exposed_in(path: Path) -> Path | None:
    """The work tree that would track ``path`` (absolute or not, existing or not), or None
    when it is outside every work tree, or ignored there, or git is not installed."""
    # Not cached: a long-running daemon must see a .gitignore added while it runs.
    path = path.absolute()
    git = shutil.which("git")
    if git is None:
        return None
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    top = _git(git, existing, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0 or not top.stdout.strip():
        return None
    root = Path(top.stdout.strip())
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    if relative.parts and relative.parts[0] == ".git":
        return None
    ignored = _git(git, root, "check-ignore", "-q", "--", str(relative))
    if ignored is None or ignored.returncode == 0:
        return None
    return root


def _git(git: str, where: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            [git, "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def refuse_if_exposed(
    path: Path, *, what: str, fix: str, error: type[SlotkeeperError] = SecretError
) -> None:
    """Raise ``error`` when ``path`` is exposed (see ``exposed_in``); ``what`` names the file
    for the message and ``fix`` the option that moves it."""
    root = exposed_in(path)
    if root is not None:
        raise error(
            f"refusing to write {what} at {path}: it is inside the git work tree {root} and "
            f"git does not ignore it (one `git add -A` from being pushed). Add the directory "
            f"to {root / '.gitignore'} or {fix}"
        )
