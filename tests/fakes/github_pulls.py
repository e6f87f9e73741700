"""Pull requests in the fake GitHub: list, create, get and update.

``GitHubPulls`` is a mixin of ``FakeGitHub``. It serves the four pull request operations of
``specs/github-pulls-checks.openapi.json`` (``pulls/list``, ``pulls/create``, ``pulls/get``,
``pulls/update``; the file's issue comment and check run operations are not served) with what
GitHub's documentation ("REST API endpoints for pull requests") and its answers say:

- ``POST …/pulls`` takes ``head`` and ``base`` (required), ``title`` (required, as the fake
  converts no issue), ``body``, ``draft`` and ``maintainer_can_modify``, and answers 201 with the
  pull request and a ``Location`` header. Numbers count from 1 in each repository. ``head`` is
  ``branch`` or ``owner:branch``; the fake models no forks, so the owner must be the
  repository's. GitHub's refusals, each a 422 "Validation Failed" whose ``errors`` say why, as
  GitHub words them: a head or base branch that does not exist
  (``{"resource": "PullRequest", "field": "head", "code": "invalid"}``, ``base`` alike); a head
  with nothing the base lacks, which a head equal to the base always is (``"No commits between
  BASE and HEAD"``, code ``custom``); an open pull request for the same head and base (``"A pull
  request already exists for owner:branch."``, code ``custom``); no ``title`` (``missing_field``).
  An ``issue`` to convert or a ``head_repo`` other than the repository is refused as invalid.
- ``GET …/pulls`` lists them as ``pull-request-simple`` objects: ``state`` ``open`` (the
  default), ``closed`` or ``all``; ``base`` a branch name; ``head`` as ``owner:branch``. A
  ``head`` without the owner filters nothing, as on GitHub, which ignores it (a classic client
  bug: PyGithub/PyGithub#1566, x-motemen/git-pr-release#48). ``sort`` ``created`` (the default)
  or ``updated`` (``popularity`` and ``long-running`` sort as ``created``: the fake has no
  comments), ``direction`` ``desc`` by default for ``created``, else ``asc``; ``per_page`` and
  ``page`` with GitHub's ``Link`` header, like the fake's other lists. A ``state``, ``sort`` or
  ``direction`` outside the description's values is a 422 "Invalid request." (the fake's
  choice: GitHub does not document its answer).
- ``GET …/pulls/{pull_number}`` answers the full ``pull-request``; 404 for a number the
  repository does not have. ``PATCH`` changes ``title``, ``body``, ``state`` (``open`` or
  ``closed``: ``closed_at`` follows), ``base`` and ``maintainer_can_modify``. A ``base`` in a
  PATCH that finds or leaves the pull request closed is 422 "Cannot change the base branch of a
  closed pull request." (``field`` ``base``), the same value included, as GitHub answers
  (google/go-github#1251 and #3456); a new base must exist and have something to pull, and
  reopening, or moving the base onto a head and base an open pull request already has, is the
  create's "already exists".
- Branches are the repository's: ``add_branch`` seeds them, or ``link_git`` backs a repository
  by a real git directory, where a branch exists when ``git --git-dir PATH rev-parse --verify
  refs/heads/BRANCH`` succeeds and points at that commit. "No commits between" is then git's own
  answer (the head is an ancestor of the base, or the same commit); without a link, two branches
  at one commit. While a pull request is open its ``head.sha`` and ``base.sha`` follow the
  branches (a push shows in the next answer); once closed they stay. With a link, ``commits``,
  ``additions``, ``deletions`` and ``changed_files`` are git's (``rev-list --count``,
  ``diff --numstat`` from the merge base); without, 1, 0, 0, 0.
- Mergeability, as GitHub computes it in the background: the create's answer has ``mergeable``
  and ``rebaseable`` null and ``mergeable_state`` ``unknown``; later answers have them true and
  ``clean`` (``draft`` for a draft). Nothing is ever merged (``merged`` false).
- Permissions: "Pull requests", read for the GETs and write for POST and PATCH (GitHub's
  "Permissions required for fine-grained personal access tokens"); a token without it gets the
  fake's 403 with ``X-Accepted-GitHub-Permissions``.

The fake's knobs apply as to its other operations: latency and faults, the rate limits,
``forbidden``, ``next_link``, ETags and 304, the request log (``requests``, ``writes()``).
``pulls(owner, repo)`` shows a repository's pull requests (all, oldest first) as ``GET`` would
render them. The author is the fake's one user, octocat.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.github_wire import (
    REPO,
    Call,
    check_types,
    error,
    invalid,
    node_id,
    not_found,
    split_repository,
    user,
)
from tests.fakes.server import JsonObject, Refusal, Reply

_PULL = rf"{REPO}/pulls/(?P<pull_number>\d+)"
# (method, path pattern, name of the method that answers)
PULL_ROUTES: list[tuple[str, str, str]] = [
    ("GET", rf"{REPO}/pulls", "_list_pulls"),
    ("POST", rf"{REPO}/pulls", "_post_pull"),
    ("GET", _PULL, "_get_pull"),
    ("PATCH", _PULL, "_patch_pull"),
]
# The permission (and level) each operation needs, by the name of the method that answers it.
PULL_NEEDS: dict[str, tuple[str, str]] = {
    "_list_pulls": ("pull_requests", "read"),
    "_post_pull": ("pull_requests", "write"),
    "_get_pull": ("pull_requests", "read"),
    "_patch_pull": ("pull_requests", "write"),
}
PULL_STATES = ("open", "closed")
#: GitHub's answer to a base in a PATCH of a closed pull request, word for word
CLOSED_BASE = "Cannot change the base branch of a closed pull request."
# characters and sequences git never allows in a branch name (``git check-ref-format``): such
# a name is no branch, and never reaches git's command line
_NOT_A_BRANCH = re.compile(r"(^-)|(\.\.)|(@\{)|[\x00-\x20~^:?*\[\\\x7f]")


@dataclass
class _Pull:
    repo: tuple[str, str]  # lower-cased (owner, repo)
    number: int
    id: int
    title: str
    body: str | None
    head: str  # branch names
    base: str
    head_sha: str  # as last seen (followed while open)
    base_sha: str
    draft: bool
    maintainer_can_modify: bool
    created_at: str
    updated_at: str
    state: str = "open"
    closed_at: str | None = None


class GitHubPulls:
    """The pull requests of ``FakeGitHub`` (see the module docstring).

    A mixin: ``FakeGitHub`` supplies the lock, the repositories and their seeded branches, the
    repository rendering (``GitHubApps``), ids, write stamps and pagination, and calls
    ``_init_pulls`` from its constructor."""

    # supplied by FakeGitHub
    _lock: threading.RLock
    _refs: dict[tuple[str, str], Any]
    _repo_names: dict[tuple[str, str], tuple[str, str]]
    _next_id: Callable[[str], int]
    _tick: Callable[[], str]
    _repository: Callable[[str, str], tuple[str, str]]
    _seeded_refs: Callable[[str], Any]
    _repository_body: Callable[[tuple[str, str]], JsonObject]
    _paginate: Callable[[list[Any], Call], tuple[list[Any], dict[str, str]]]

    def _init_pulls(self) -> None:
        self._pulls: dict[tuple[str, str], list[_Pull]] = {}
        self._git_dirs: dict[tuple[str, str], Path] = {}

    # -- observation and set-up --------------------------------------------------------------

    def pulls(self, owner: str, repo: str) -> list[JsonObject]:
        """Every pull request of a repository, oldest first, as ``GET …/pulls/{n}`` renders
        it."""
        with self._lock:
            found = self._pulls.get((owner.lower(), repo.lower()), [])
            return [self._pull_body(pull) for pull in found]

    def link_git(self, owner_repo: str, path: Path) -> None:
        """Back the branches of ``owner/repo`` (created when new) by the git directory at
        ``path`` (a bare repository, or a work tree whose ``.git`` it takes): a branch exists
        when git resolves ``refs/heads/BRANCH`` there. ``ValueError`` when ``path`` is not a
        git directory."""
        git_dir = Path(path)
        if (git_dir / ".git").is_dir():
            git_dir = git_dir / ".git"
        if _git(git_dir, "rev-parse", "--git-dir") is None:
            raise ValueError(f"not a git directory: {path}")
        with self._lock:
            self._seeded_refs(owner_repo)
            owner, repo = split_repository(owner_repo)
            self._git_dirs[owner.lower(), repo.lower()] = git_dir.resolve()

    # -- routes ------------------------------------------------------------------------------

    def _list_pulls(self, call: Call) -> Reply:
        repo_key = self._repository(call.owner, call.repo)
        query = call.query
        state = query.get("state") or "open"
        if state not in (*PULL_STATES, "all"):
            raise invalid(f"For 'state', {state!r} is not one of open, closed, all.")
        sort = query.get("sort") or "created"
        if sort not in ("created", "updated", "popularity", "long-running"):
            raise invalid(f"For 'sort', {sort!r} is not one of created, updated, popularity.")
        direction = query.get("direction") or ("desc" if sort == "created" else "asc")
        if direction not in ("asc", "desc"):
            raise invalid(f"For 'direction', {direction!r} is not one of asc, desc.")
        head_owner, colon, head_branch = (query.get("head") or "").partition(":")
        owner_name = self._repo_names[repo_key][0]
        found = [
            pull
            for pull in self._pulls.get(repo_key, [])
            if (state == "all" or pull.state == state)
            and (not query.get("base") or pull.base == query["base"])
            # GitHub ignores a head without its owner
            and (
                not colon or (head_owner.lower() == owner_name.lower() and pull.head == head_branch)
            )
        ]
        if sort == "updated":
            found.sort(key=lambda pull: (pull.updated_at, pull.number))
        if direction == "desc":
            found.reverse()
        page, headers = self._paginate(found, call)
        return Reply(200, [self._pull_body(pull, simple=True) for pull in page], headers)

    def _get_pull(self, call: Call) -> Reply:
        return Reply(200, self._pull_body(self._pull(call)))

    def _post_pull(self, call: Call) -> Reply:
        repo_key = self._repository(call.owner, call.repo)
        body = call.body
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        check_types(
            body,
            {
                "title": (str,),
                "head": (str,),
                "head_repo": (str,),
                "base": (str,),
                "body": (str,),
                "maintainer_can_modify": (bool,),
                "draft": (bool,),
                "issue": (int,),
            },
            required="head base",
        )
        owner, repo = self._repo_names[repo_key]
        if "issue" in body:  # the fake has no issues to convert
            raise _refused(field="issue", code="invalid")
        if "title" not in body:
            raise _refused(field="title", code="missing_field")
        head_owner, colon, head = body["head"].rpartition(":")
        head_repo = body.get("head_repo")
        if (colon and head_owner.lower() != owner.lower()) or (
            head_repo is not None and head_repo.lower() != f"{owner}/{repo}".lower()
        ):
            raise _refused(field="head", code="invalid")  # another owner's: no forks here
        base = body["base"]
        problems = [
            {"field": name, "code": "invalid"}
            for name, branch in (("base", base), ("head", head))
            if self._branch(repo_key, branch) is None
        ]
        if problems:
            raise Refusal(error(422, "Validation Failed", errors=[_detail(**p) for p in problems]))
        self._check_commits(repo_key, base, head)
        self._check_unique(repo_key, head, base, None)
        stamp = self._tick()
        pulls = self._pulls.setdefault(repo_key, [])
        head_sha, base_sha = self._branch(repo_key, head), self._branch(repo_key, base)
        assert head_sha is not None and base_sha is not None  # checked above
        pull = _Pull(
            repo=repo_key,
            number=len(pulls) + 1,
            id=self._next_id("pull"),
            title=body["title"],
            body=body.get("body"),
            head=head,
            base=base,
            head_sha=head_sha,
            base_sha=base_sha,
            draft=body.get("draft", False),
            maintainer_can_modify=body.get("maintainer_can_modify", False),
            created_at=stamp,
            updated_at=stamp,
        )
        pulls.append(pull)
        created = self._pull_body(pull)
        # GitHub works out mergeability after answering the create
        created.update(mergeable=None, rebaseable=None, mergeable_state="unknown")
        return Reply(201, created, {"location": created["url"]})

    def _patch_pull(self, call: Call) -> Reply:
        pull = self._pull(call)
        body = call.body if call.body is not None else {}
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        check_types(
            body,
            {
                "title": (str,),
                "body": (str,),
                "state": (str,),
                "base": (str,),
                "maintainer_can_modify": (bool,),
            },
        )
        state = body.get("state", pull.state)
        if state not in PULL_STATES:
            raise invalid(f"For 'properties/state', {state!r} is not one of open, closed.")
        base = body.get("base", pull.base)
        if "base" in body:
            if pull.state == "closed" or state == "closed":
                raise _refused(field="base", code="invalid", message=CLOSED_BASE)
            if self._branch(pull.repo, base) is None:
                raise _refused(field="base", code="invalid")
            if base != pull.base:
                self._check_commits(pull.repo, base, pull.head)
        if state == "open" and (pull.state == "closed" or base != pull.base):
            self._check_unique(pull.repo, pull.head, base, pull)
        self._follow(pull)  # a pull request closed now keeps the commits it has now
        stamp = self._tick()
        pull.title = body.get("title", pull.title)
        pull.body = body.get("body", pull.body)
        pull.maintainer_can_modify = body.get("maintainer_can_modify", pull.maintainer_can_modify)
        pull.base = base
        if state != pull.state:
            pull.closed_at = stamp if state == "closed" else None
        pull.state = state
        pull.updated_at = stamp
        return Reply(200, self._pull_body(pull))

    # -- helpers (callers hold the lock) -------------------------------------------------------

    def _pull(self, call: Call) -> _Pull:
        """The pull request a call names; 404 when the repository has no such number."""
        repo_key = self._repository(call.owner, call.repo)
        pulls = self._pulls.get(repo_key, [])
        number = call.number("pull_number")
        if not 1 <= number <= len(pulls):
            raise not_found()
        return pulls[number - 1]

    def _branch(self, repo_key: tuple[str, str], name: str) -> str | None:
        """The commit a branch of the repository points at, or None when there is no such
        branch: git's answer for a linked repository, the seeded branches otherwise."""
        git_dir = self._git_dirs.get(repo_key)
        if git_dir is None:
            found: str | None = self._refs[repo_key].branches.get(name)
            return found
        if not name or _NOT_A_BRANCH.search(name):
            return None
        return _git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}")

    def _check_commits(self, repo_key: tuple[str, str], base: str, head: str) -> None:
        """422 "No commits between" when the head has nothing the base lacks."""
        head_sha, base_sha = self._branch(repo_key, head), self._branch(repo_key, base)
        empty = head == base or head_sha == base_sha
        git_dir = self._git_dirs.get(repo_key)
        if not empty and git_dir is not None and head_sha and base_sha:
            # an ancestor of the base (or the base itself) has nothing to pull
            empty = _git(git_dir, "merge-base", "--is-ancestor", head_sha, base_sha) is not None
        if empty:
            raise _refused(code="custom", message=f"No commits between {base} and {head}")

    def _check_unique(
        self, repo_key: tuple[str, str], head: str, base: str, other_than: _Pull | None
    ) -> None:
        """422 when another open pull request has this head and base."""
        for pull in self._pulls.get(repo_key, []):
            if (
                pull is not other_than
                and pull.state == "open"
                and (pull.head, pull.base) == (head, base)
            ):
                owner = self._repo_names[repo_key][0]
                message = f"A pull request already exists for {owner}:{head}."
                raise _refused(code="custom", message=message)

    def _follow(self, pull: _Pull) -> None:
        """An open pull request's head and base commits are its branches' (while they exist)."""
        if pull.state != "open":
            return
        pull.head_sha = self._branch(pull.repo, pull.head) or pull.head_sha
        pull.base_sha = self._branch(pull.repo, pull.base) or pull.base_sha

    def _stats(self, pull: _Pull) -> dict[str, int]:
        """``commits``, ``additions``, ``deletions`` and ``changed_files``: git's, with a link."""
        git_dir = self._git_dirs.get(pull.repo)
        stats = {"commits": 1, "additions": 0, "deletions": 0, "changed_files": 0}
        if git_dir is None:
            return stats
        span = f"{pull.base_sha}..{pull.head_sha}"
        count = _git(git_dir, "rev-list", "--count", span)
        numstat = _git(git_dir, "diff", "--numstat", f"{pull.base_sha}...{pull.head_sha}")
        if count is not None:
            stats["commits"] = int(count)
        for line in (numstat or "").splitlines():
            added, deleted, _ = line.split("\t", 2)
            stats["changed_files"] += 1
            stats["additions"] += int(added) if added.isdigit() else 0  # "-" for binary
            stats["deletions"] += int(deleted) if deleted.isdigit() else 0
        return stats

    def _pull_body(self, pull: _Pull, simple: bool = False) -> JsonObject:
        """A ``pull-request`` as GitHub renders it (``pull-request-simple`` when ``simple``)."""
        self._follow(pull)
        owner, repo = self._repo_names[pull.repo]
        api = f"{self.base_url}/repos/{owner}/{repo}"
        html = f"https://github.com/{owner}/{repo}/pull/{pull.number}"
        url = f"{api}/pulls/{pull.number}"
        repository = self._repository_body(pull.repo)
        links = {
            "self": url,
            "html": html,
            "issue": f"{api}/issues/{pull.number}",
            "comments": f"{api}/issues/{pull.number}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": f"{api}/statuses/{pull.head_sha}",
        }

        def side(ref: str, sha: str) -> JsonObject:
            return {
                "label": f"{owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": copy.deepcopy(repository["owner"]),
                "repo": copy.deepcopy(repository),
            }

        body: JsonObject = {
            "url": url,
            "id": pull.id,
            "node_id": node_id("PR_kwDO", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": user(),
            "body": pull.body,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": side(pull.head, pull.head_sha),
            "base": side(pull.base, pull.base_sha),
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": "OWNER" if owner.lower() == "octocat" else "MEMBER",
            "auto_merge": None,
            "draft": pull.draft,
        }
        if simple:
            return body
        body.update(
            merged=False,
            mergeable=True,
            rebaseable=True,
            mergeable_state="draft" if pull.draft else "clean",
            merged_by=None,
            comments=0,
            review_comments=0,
            maintainer_can_modify=pull.maintainer_can_modify,
            **self._stats(pull),
        )
        return body


def _detail(**fields: str) -> JsonObject:
    return {"resource": "PullRequest", **fields}


def _refused(**fields: str) -> Refusal:
    """GitHub's 422 "Validation Failed" with one error about a pull request."""
    return Refusal(error(422, "Validation Failed", errors=[_detail(**fields)]))


def _git(git_dir: Path, *args: str) -> str | None:
    """What ``git --git-dir GIT_DIR ARGS…`` prints (stripped), or None when it fails. The
    caller's ``GIT_*`` variables (a hook's ``GIT_DIR``, say) are left out."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "--git-dir", str(git_dir), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
