"""Where manifests come from, and the git revision they were read at."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from urllib.parse import unquote, urlsplit

from slotkeeper.credentials import private_dirs, read_credential_file
from slotkeeper.errors import ConfigError, SlotkeeperError
from slotkeeper.lined import is_yaml_name
from slotkeeper.model import CommitInfo, Revision
from slotkeeper.redact import redact_text, without_userinfo
from slotkeeper.targets.base import Commit

_FIELD = "%x1f"
#: the branches slotkeeper pushes its proposals (auto-promotion) to: nothing else
PROPOSAL_PREFIX = "slotkeeper/"


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
    # The configured URL, not the one insteadOf rewrites it to: that names the repository.
    origin = _git(directory, "config", "--get", "remote.origin.url")
    return Revision(
        sha=sha,
        message=message.strip(),
        author=author,
        timestamp=datetime.fromisoformat(timestamp.strip()),
        branch=branch.strip() if branch else None,
        dirty=bool(status and status.strip()),
        repository=repository_of(origin.strip()) if origin else None,
    )


def origin_url(manifests: Path) -> str | None:
    """The git remote ``origin`` of the work tree holding ``manifests`` (None outside one)."""
    directory = manifests if manifests.is_dir() else manifests.parent
    found = _git(directory.resolve(), "config", "--get", "remote.origin.url")
    return without_userinfo(found.strip()) if found and found.strip() else None


_OWNER_REPO = re.compile(r"([A-Za-z0-9_.-]{1,100})/([A-Za-z0-9_.-]{1,100})")


def repository_of(url: str) -> str | None:
    """``owner/repo`` of a git remote URL on a git host, or None when it names none.

    Understood: ``https://host/owner/repo(.git)``, ``ssh://git@host(:port)/owner/repo(.git)``,
    ``git@host:owner/repo(.git)`` and the ``git+https``/``git+ssh`` forms. Credentials in the URL
    are never kept. Local paths and ``file://`` URLs name no hosted repository.
    """
    url = url.strip().removeprefix("git+")
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return None
        path = parts.path
    else:
        # scp-like syntax: [user@]host:path, where host holds no slash
        host, colon, path = url.partition(":")
        if not colon or not host or "/" in host or "\\" in url:
            return None
    match = _OWNER_REPO.fullmatch(path.strip("/").removesuffix(".git"))
    if match is None or {match.group(1), match.group(2)} & {".", ".."}:
        return None
    return f"{match.group(1)}/{match.group(2)}"


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


def is_work_tree(manifests: Path) -> bool:
    """Whether ``manifests`` lie in a git work tree."""
    directory = (manifests if manifests.is_dir() else manifests.parent).resolve()
    return (_git(directory, "rev-parse", "--is-inside-work-tree") or "").strip() == "true"


def commit_infos(manifests: Path, base: str | None, head: str) -> tuple[CommitInfo, ...] | None:
    """The commits a deployment at ``head`` brings after one at ``base`` (``head`` alone for a
    slot's first deployment), oldest first, with their author and committer times, when both
    refs resolve in the git repository of ``manifests`` (a monorepo); None when they do not."""
    directory = (manifests if manifests.is_dir() else manifests.parent).resolve()
    selection = [f"{base}..{head}"] if base else ["-1", head]
    log = _git(
        directory,
        "log",
        "--reverse",
        f"--format=%H{_FIELD}%aI{_FIELD}%cI{_FIELD}%s",
        *selection,
        "--",
    )
    if log is None:
        return None
    found = []
    for line in log.splitlines():
        if line.strip():
            sha, authored, committed, subject = line.split("\x1f", 3)
            found.append(
                CommitInfo(
                    sha=sha,
                    authored_at=datetime.fromisoformat(authored),
                    committed_at=datetime.fromisoformat(committed),
                    subject=subject,
                )
            )
    return tuple(found)


class SourceError(SlotkeeperError):
    """The manifest source cannot be read (a git fetch failed, a directory is gone)."""


@dataclass(frozen=True)
class Checkout:
    """Manifests at one exact revision: where they are and which revision it is."""

    manifests: Path
    #: a stable identity of this revision (git sha, or a digest of the files for a directory)
    version: str


class DirectorySource:
    """A local directory; watched with watchfiles by the daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def remote(self) -> str | None:
        """Where the manifests come from, as a git URL without credentials (for links)."""
        return origin_url(self.path) if self.path.exists() else None

    def fetch(self) -> Checkout:
        if not self.path.exists():
            raise SourceError(f"manifest directory {self.path} does not exist")
        revision = git_revision(self.path)
        return Checkout(self.path, revision.sha if revision else _digest_tree(self.path))

    def watch(self, stop: threading.Event, changed: Callable[[], None]) -> None:
        """Call ``changed`` after each burst of changes to manifest files (debounced) until
        ``stop``. Other files are not watched: a ledger or a secrets directory inside the tree
        changes at every reconcile and would trigger the next one."""
        import watchfiles  # the daemon's alone: a one-shot command never watches

        root = self.path.absolute()
        for _ in watchfiles.watch(
            self.path,
            stop_event=stop,
            debounce=400,
            step=50,
            raise_interrupt=False,
            watch_filter=lambda _change, path: is_manifest_path(root, Path(path)),
        ):
            changed()


def is_manifest_path(root: Path, path: Path) -> bool:
    """Whether a change at ``path`` can change the manifests under ``root``: a YAML file (any
    case of the suffix) outside hidden directories, or a directory."""
    try:
        parts = path.absolute().relative_to(root).parts
    except ValueError:
        return False
    if any(part.startswith(".") for part in parts):
        return False
    if is_yaml_name(path):
        return True
    # a directory, or a deleted one (a deleted path without a suffix): it may have held some
    return path.is_dir() or (not path.suffix and not path.exists())


class GitSource:
    """A git remote (https, ssh or file), fetched shallowly into a cache directory and polled.

    HTTPS credentials come from ``SLOTKEEPER_GIT_TOKEN`` (or the file named by
    ``SLOTKEEPER_GIT_TOKEN_FILE``) and reach git through its environment (GIT_CONFIG_*), never
    its command line, so they show up in no process listing or log. SSH remotes use the usual
    ssh configuration (e.g. ``GIT_SSH_COMMAND`` with a deploy key).
    """

    def __init__(
        self, url: str, *, branch: str, path: str, cache_dir: Path, depth: int = 50
    ) -> None:
        self.url = url.removeprefix("git+")
        self.branch = branch
        self.subpath = path
        self.cache = cache_dir / hashlib.sha256(f"{self.url}#{branch}".encode()).hexdigest()[:16]
        self.depth = depth

    def describe(self) -> str:
        return f"{redact_text(self.url)}#{self.branch}:{self.subpath}"

    def remote(self) -> str | None:
        """Where the manifests come from, as a git URL without credentials (for links)."""
        return without_userinfo(self.url)

    def fetch(self) -> Checkout:
        private_dirs(self.cache)
        if not (self.cache / ".git").exists():
            self._run("init", "-q")
        # Recorded as origin (credentials stripped) so that the revision names its repository;
        # fetches use the URL itself.
        self._run("config", "remote.origin.url", without_userinfo(self.url))
        self._run(
            "fetch",
            "-q",
            "--depth",
            str(self.depth),
            "--force",
            self.url,
            f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}",
        )
        self._run("checkout", "-q", "--force", "-B", self.branch, f"origin/{self.branch}")
        sha = self._run("rev-parse", "HEAD").strip()
        manifests = (self.cache / self.subpath).resolve()
        if not manifests.is_relative_to(self.cache.resolve()):
            raise SourceError(f"--path {self.subpath!r} leaves the repository")
        if not manifests.exists():
            raise SourceError(f"{self.describe()}: no such path in the repository at {sha[:12]}")
        return Checkout(manifests, sha)

    def peek(self) -> str:
        """The sha the followed branch points at on the remote, without touching the checkout."""
        private_dirs(self.cache)
        out = self._run("ls-remote", self.url, f"refs/heads/{self.branch}")
        if not out.strip():
            raise SourceError(f"{self.describe()}: branch {self.branch!r} not found")
        return out.split()[0]

    def push_change(
        self, branch: str, files: Mapping[Path, str], message: str, *, author: tuple[str, str]
    ) -> str | None:
        """Commit ``files`` (paths in the checkout, their new text) on top of the followed
        branch as fetched, and force-push that commit to ``branch`` of the remote; the commit's
        sha, or None when ``branch`` already holds exactly that change on that base. The
        checkout is not touched (a separate index), and the followed branch is never pushed."""
        if branch == self.branch or not branch.startswith(PROPOSAL_PREFIX):
            raise SourceError(
                f"refused to push to {branch!r}: proposals go to {PROPOSAL_PREFIX}* branches, "
                f"never to the followed branch {self.branch!r}"
            )
        base = self._run("rev-parse", f"origin/{self.branch}").strip()
        index = self.cache / ".git" / "slotkeeper-proposal-index"
        staged = {"GIT_INDEX_FILE": str(index)}
        self._run("read-tree", base, extra=staged)
        root = self.cache.resolve()
        for path, text in sorted(files.items()):
            blob = self._run("hash-object", "-w", "--stdin", stdin=text).strip()
            name = path.resolve().relative_to(root).as_posix()
            self._run("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", extra=staged)
        tree = self._run("write-tree", extra=staged).strip()
        index.unlink(missing_ok=True)
        remote = self._run("ls-remote", self.url, f"refs/heads/{branch}").split()
        if remote:
            self._run("fetch", "-q", "--depth", "1", self.url, f"refs/heads/{branch}")
            # the raw object: a shallow fetch hides the parent from `git show`, not from it
            raw = self._run("cat-file", "commit", "FETCH_HEAD").split("\n\n", 1)[0]
            if f"tree {tree}" in raw.splitlines() and f"parent {base}" in raw.splitlines():
                return None
        name, email = author
        signed = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        commit = self._run("commit-tree", tree, "-p", base, "-F", "-", stdin=message, extra=signed)
        sha = commit.strip()
        self._run("push", "-q", "--force", self.url, f"{sha}:refs/heads/{branch}")
        return sha

    def _run(
        self, *args: str, stdin: str | None = None, extra: Mapping[str, str] | None = None
    ) -> str:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", **(extra or {}))
        token = _git_token()
        if token and self.url.startswith("https://"):
            basic = _basic(f"x-access-token:{token}")
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        try:
            result = subprocess.run(
                ["git", "-C", str(self.cache), *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            # Never str(exc): it quotes the command line, and with it a URL's credentials.
            raise SourceError(
                f"git {args[0]} of {self.describe()} failed: timed out after {exc.timeout:g} s"
            ) from exc
        except OSError as exc:
            raise SourceError(
                f"git {args[0]} of {self.describe()} failed: {exc.strerror or type(exc).__name__}"
            ) from exc
        if result.returncode != 0:
            message = _git_failure(result.stderr, secrets=_credentials(token, self.url))
            message = message or f"exit code {result.returncode}"
            raise SourceError(f"git {args[0]} of {self.describe()} failed: {message}")
        return result.stdout


def open_source(
    spec: str, *, branch: str, path: str, cache_dir: Path
) -> DirectorySource | GitSource:
    """``git+https://…``, ``git+ssh://…``, ``ssh://…`` or ``file://…`` are git remotes; anything
    else is a local directory."""
    if spec.startswith(("git+", "file://", "ssh://")):
        return GitSource(spec, branch=branch, path=path, cache_dir=cache_dir)
    return DirectorySource(Path(spec))


def _git_token() -> str | None:
    """``SLOTKEEPER_GIT_TOKEN``, or the content of the file ``SLOTKEEPER_GIT_TOKEN_FILE`` names."""
    if os.environ.get("SLOTKEEPER_GIT_TOKEN"):
        return os.environ["SLOTKEEPER_GIT_TOKEN"]
    path = os.environ.get("SLOTKEEPER_GIT_TOKEN_FILE")
    if path:
        try:
            return (
                read_credential_file(Path(path), owner="SLOTKEEPER_GIT_TOKEN_FILE").strip() or None
            )
        except ConfigError as exc:
            raise SourceError(str(exc)) from exc
    return None


#: the longest git failure kept in a message (git's own lines rarely pass 200 characters)
MAX_GIT_MESSAGE = 500
#: messages git (or ssh) prints that do not say what failed
_GIT_NOISE = ("hint:", "warning:")


def _git_failure(stderr: str, *, secrets: tuple[str | None, ...]) -> str:
    """What a failed git command said, on one line: each message (``fatal: …``, ``error: …``,
    the server's ``remote: …``, ssh's ``git@host: Permission denied …``) with the lines that
    continue it (git's "Please make sure you have the correct access rights / and the
    repository exists."), joined by "; ", hints and warnings left out, repeated messages once,
    credentials redacted (before it is cut, so no cut leaves part of one), at most
    ``MAX_GIT_MESSAGE`` characters."""
    messages: list[str] = []
    for raw in stderr.splitlines():
        line = " ".join(raw.split())
        if not line:
            continue
        if messages and not re.match(r"\S+: ", line):
            messages[-1] += f" {line}"  # no "prefix: " of its own: it continues the last one
        else:
            messages.append(line)
    problems = [m for m in messages if not m.lower().startswith(_GIT_NOISE)] or messages
    text = redact_text("; ".join(dict.fromkeys(problems)), secrets=secrets)
    if len(text) > MAX_GIT_MESSAGE:
        text = text[: MAX_GIT_MESSAGE - 1].rstrip() + "…"
    return text


def _basic(userinfo: str) -> str:
    """The credential of ``Authorization: Basic`` for ``user:password``."""
    return base64.b64encode(userinfo.encode()).decode()


def _credentials(token: str | None, url: str) -> tuple[str, ...]:
    """Every form in which a fetch's credentials may come back in git's words: the token, the
    URL's password (as written and decoded), and the ``Basic`` credential git sends for each —
    a server or proxy may quote the request in its error page, which git prints."""
    found = [token, _basic(f"x-access-token:{token}")] if token else []
    userinfo = re.match(r"[a-z][a-z0-9+.-]*://([^/?#\s]*)@", url, re.IGNORECASE)
    password = _password(url)
    if userinfo is not None and password:
        found += [password, unquote(password), _basic(unquote(userinfo.group(1)))]
    return tuple(found)


def _password(url: str) -> str | None:
    """The credential in a URL's ``user:password@`` (or ``token@``), if any."""
    match = re.match(r"[a-z][a-z0-9+.-]*://([^/?#\s]*)@", url, re.IGNORECASE)
    if match is None:
        return None
    user, _, password = match.group(1).partition(":")
    return password or user


def _digest_tree(root: Path) -> str:
    """A version of a directory that is no git work tree: its manifest files' names, sizes and
    modification times (a write changes them; the files are read once, by the load)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if is_yaml_name(path) and not any(
            part.startswith(".") for part in path.relative_to(root).parts
        ):
            try:
                stat = path.stat()
            except OSError:
                continue
            if S_ISREG(stat.st_mode):
                digest.update(
                    f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
                )
    return digest.hexdigest()[:16]
