"""A stateful fake of GitHub's deployments, deployment statuses, deploy keys and environments,
and of the GitHub App, Actions secrets, pull request, ``/meta`` and ``/rate_limit`` operations.

``FakeGitHub`` serves real HTTP/1.1 (keep-alive) on 127.0.0.1 from a daemon thread (the
plumbing is ``server.py``'s), so the adapter under test goes through httpx, sockets, timeouts
and connection pools exactly as in production. It models the semantics a schema cannot say,
from ``tests/fakes/specs/API-REFERENCE.md`` section 1: 202 auto-merge and 409 status-check answers
on create, ``auto_inactive``, the delete rule, deploy-key uniqueness across all repositories,
pagination with ``Link``, ``ETag`` / 304, and the primary and secondary rate limits. Every
response is meant to match ``tests/fakes/specs/github-deployments.openapi.json`` or, for the
operations of ``API-REFERENCE.md`` section 5,
``tests/fakes/specs/github-apps-secrets.openapi.json``, or, for pull requests,
``tests/fakes/specs/github-pulls-checks.openapi.json``; ``tests/test_fake_github.py``,
``tests/test_fake_github_apps.py`` and ``tests/test_fake_github_pulls.py`` check that.

One class serves it all; the App half (App JWTs, installations and their tokens,
per-installation rate limits, ``/meta``, ``/rate_limit``) is the mixin
``github_apps.GitHubApps``, the Actions secrets the mixin ``github_secrets.ActionsSecrets`` and
the pull requests the mixin ``github_pulls.GitHubPulls``, each documented in its module;
``github_wire.py`` holds what the four modules share. Time is
the ``clock`` knob (``time.time`` unless a test passes a clock it moves): write stamps, primary
rate-limit resets, App JWT and installation token expiry, the ``Date`` header and each recorded
request's ``arrived_at`` follow it. ``on_request``, when set, is called with the fake after
every request that reached its operation, under the lock: a place for invariant checks (what it
raises fails the test when the fake stops).

Faults are knobs, public attributes that may be changed while the server runs: ``latency``,
``error_rate`` (5xx instead of processing), ``drop_rate`` (process, then close the connection
without answering), ``stall_rate``/``stall_seconds`` (process, then answer late),
``rate_limit_remaining``, ``secondary_limit``, ``forbidden`` and ``next_link`` (every list
answer's ``Link: rel="next"``, as a hostile server would send). Randomness comes from
``random.Random(seed)``.

Repositories exist only once a test creates them, as on GitHub, where every call under
``/repos/{owner}/{repo}`` to a repository that does not exist (or that the credential cannot see)
answers 404 ``Not Found`` (docs.github.com/rest/using-the-rest-api/troubleshooting-the-rest-api,
"404 Not Found for an existing resource"; every operation of
``specs/github-deployments.openapi.json`` takes ``owner`` and ``repo`` as path parameters).
``add_repository`` (or the ``repositories`` argument) creates one; seeding a ref with
``add_branch``, ``add_tag`` or ``add_commit`` creates the repository too, when it is new, so a
test that seeds a tag need not declare its repository twice.

A request without a ``User-Agent`` header is refused before anything else, as GitHub does:
``specs/API-REFERENCE.md`` section 1 lists "a ``User-Agent``" among the headers every request
sends, and GitHub's documentation ("User agent required", docs.github.com/rest/using-the-rest-api/
getting-started-with-the-rest-api) shows the answer: 403, ``Content-Type: text/html``,
``Connection: close``, "Request forbidden by administrative rules. Please make sure your request
has a User-Agent header", with none of the API's headers. The fake answers the same (an empty
value counts as none).

Tokens carry permissions, as fine-grained personal access tokens and GitHub App installations
do: ``tokens`` maps each accepted token to its repository permissions, ``{"deployments":
"write", "administration": "write", "contents": "read", "pull_requests": "write"}`` by default
(``ALL_PERMISSIONS``; ``contents`` read answers ``compare`` and ``commits/{ref}``; a level is
``"read"`` or ``"write"``, and write includes read). ``specs/API-REFERENCE.md`` section 1,
"Scopes": the "Deployments" permission, read for GETs and write for POST/DELETE, covers
deployments and their statuses; section 5, "Permissions": "Administration read & write (deploy
keys)", and section 1, "Environments": creating or updating an environment needs admin. Listing
and reading environments needs only read access to the repository (the spec's description of
``repos/get-all-environments``). "Pull requests" (``pull_requests``), read for the GETs and
write for POST/PATCH, covers pull requests (GitHub's "Permissions required for fine-grained
personal access tokens"); an App installation holds it too unless ``add_installation`` says
otherwise (``INSTALLATION_PERMISSIONS``). A token without the permission an operation needs gets
GitHub's documented answer, 403 "Resource not accessible by personal access token" ("by
integration" for an installation token) with the ``X-Accepted-GitHub-Permissions`` header naming
what was needed (docs.github.com, "Choosing permissions for a GitHub App": "If your app makes a
REST API request with insufficient permissions, the API will return a 403 response"); a
repository that does not exist is a 404 whatever the token holds. ``tokens`` is a knob like the
others (add, remove or narrow a token while the server runs; ``token`` only names the one the
fake was made with).

Refs are per repository, as on GitHub: a deployment's ``ref`` must be a branch, a tag or a
commit of *that* repository (``refs/heads/X`` and ``refs/tags/X`` too; a tag wins over a branch
of the same name, as in git; an abbreviated SHA of 7 or more hex digits names the one known
commit it starts), else the create is refused with 422 "No ref found for: X". Tests seed refs
with ``add_repository``, ``add_branch``, ``add_tag`` and ``add_commit``. A pull request's head
and base are branches too: the seeded ones, or, once ``link_git`` backs the repository by a real
git directory, the branches git has there (``github_pulls.py``; deployments, ``compare`` and
``commits/{ref}`` still read the seeded refs). GitHub's other documented refusals are kept, each
a 422: a deploy key of a type GitHub no longer takes (DSA, ``ssh-dss``, see ``KEY_TYPES``), a
status ``description`` over 140 characters, and an environment name that is empty, longer than
255 characters or holds a control character (on a deployment, a status or an environment). A
deployment's ``payload`` is a JSON object or a string of JSON text (the spec's request schema
for ``repos/create-deployment``: ``oneOf`` object or string, default ``""``; its description:
"It is a JSON text field"; ``API-REFERENCE.md`` section 1, "Create deployment": "JSON object or
JSON-encoded string"): any other value, or a non-empty string that does not parse as JSON, is a
422. GitHub does not document how it answers a string that is not JSON; the fake holds clients
to the documented contract, and a string payload is kept as sent (a string), as GitHub does.

Simplifications: repository names are case-insensitive (the API answers with the spelling the
repository was created with); a repository created without refs has one branch, ``main``, at a
deterministic fake commit (``sha_of``), and no tags; a branch or tag seeded without a commit
points at a deterministic fake one. Every personal token sees every repository (an
installation token sees its installation's), and acts as one user (octocat, ID 1); write
timestamps advance by at least one second per write so ``updated_at`` (and thus every ETag)
changes on each write, even within the same wall-clock second.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlencode

from tests.fakes.github_apps import (
    APP_ROUTES,
    INSTALLATION_PERMISSIONS,
    UNMETERED_ROUTES,
    AppCredentials,
    GitHubApps,
    IssuedToken,
)
from tests.fakes.github_pulls import PULL_NEEDS, PULL_ROUTES, GitHubPulls
from tests.fakes.github_secrets import SECRET_NEEDS, SECRET_ROUTES, ActionsSecrets
from tests.fakes.github_wire import DOCS, Caller, RateBudget
from tests.fakes.github_wire import LEVELS as _LEVELS
from tests.fakes.github_wire import REPO as _REPO
from tests.fakes.github_wire import Call as _Call
from tests.fakes.github_wire import check_types as _check_types
from tests.fakes.github_wire import credential as _credential
from tests.fakes.github_wire import error as _error
from tests.fakes.github_wire import invalid as _invalid
from tests.fakes.github_wire import iso as _iso
from tests.fakes.github_wire import node_id as _node_id
from tests.fakes.github_wire import not_found as _not_found
from tests.fakes.github_wire import split_repository as _split
from tests.fakes.github_wire import user as _user
from tests.fakes.github_wire import validation_failed as _validation_failed
from tests.fakes.server import (
    ALL_METHODS,
    WRITE_METHODS,
    Decision,
    FakeServer,
    Incoming,
    JsonObject,
    RecordedRequest,
    Refusal,
    Reply,
)

# ALL_METHODS and RecordedRequest lived here before server.py; tests import them from here.
__all__ = [
    "ALL_METHODS",
    "ALL_PERMISSIONS",
    "DOCS",
    "INSTALLATION_PERMISSIONS",
    "KEY_TYPES",
    "NO_USER_AGENT",
    "STATES",
    "WRITE_METHODS",
    "AppCredentials",
    "FakeGitHub",
    "IssuedToken",
    "JsonObject",
    "RateBudget",
    "RecordedRequest",
    "key_blob",
    "sha_of",
]

STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
#: the key types GitHub accepts for a new key. DSA (``ssh-dss``) is not among them since
#: 2022-03-15: "DSA keys (ssh-dss) are no longer supported. You cannot add new DSA keys"
#: (docs.github.com/authentication/connecting-to-github-with-ssh/checking-for-existing-ssh-keys;
#: the vendored descriptions are silent on key types)
KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
#: what a token holds unless a test says otherwise: all that deployments, their statuses, deploy
#: keys, environments and pull requests need (Actions secrets need more:
#: ``INSTALLATION_PERMISSIONS`` holds it)
ALL_PERMISSIONS: Mapping[str, str] = {
    "deployments": "write",
    "administration": "write",
    "contents": "read",
    "pull_requests": "write",
}
# OpenSSH public key types ``key_blob`` can read, the refused DSA included
_OPENSSH_TYPES = KEY_TYPES | {"ssh-dss"}
_FIRST_IDS = {
    "deployment": 1001,
    "status": 50001,
    "key": 700001,
    "environment": 8000001,
    "rule": 90000001,
    "installation": 50000001,
    "repository": 400000001,
    "pull": 2000000001,
}
#: GitHub's answer to a request without a User-Agent, as its edge sends it (HTML, not JSON)
NO_USER_AGENT = (
    b"Request forbidden by administrative rules. Please make sure your request has a User-Agent "
    b"header (http://developer.github.com/v3/#user-agent-required). Check "
    b"https://developer.github.com for other possible causes.\n"
)
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_SHORT_SHA = re.compile(r"[0-9a-fA-F]{7,39}")
#: GitHub's documented longest environment name
ENVIRONMENT_NAME_MAX = 255
_DEPLOYMENT = rf"{_REPO}/deployments/(?P<deployment_id>\d+)"
# (method, path pattern, name of the FakeGitHub method that answers)
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("GET", rf"{_REPO}/deployments", "_list_deployments"),
        ("POST", rf"{_REPO}/deployments", "_post_deployment"),
        ("GET", _DEPLOYMENT, "_get_deployment"),
        ("DELETE", _DEPLOYMENT, "_delete_deployment"),
        ("GET", rf"{_DEPLOYMENT}/statuses", "_list_statuses"),
        ("POST", rf"{_DEPLOYMENT}/statuses", "_post_status"),
        ("GET", rf"{_DEPLOYMENT}/statuses/(?P<status_id>\d+)", "_get_status"),
        ("GET", rf"{_REPO}/keys", "_list_keys"),
        ("POST", rf"{_REPO}/keys", "_post_key"),
        ("GET", rf"{_REPO}/keys/(?P<key_id>\d+)", "_get_key"),
        ("DELETE", rf"{_REPO}/keys/(?P<key_id>\d+)", "_delete_key"),
        ("GET", rf"{_REPO}/compare/(?P<basehead>[^/]+\.\.\.[^/]+)", "_compare"),
        ("GET", rf"{_REPO}/commits/(?P<ref>[^/]+)", "_get_commit"),
        ("GET", rf"{_REPO}/environments", "_list_environments"),
        ("GET", rf"{_REPO}/environments/(?P<name>[^/]+)", "_get_environment"),
        ("PUT", rf"{_REPO}/environments/(?P<name>[^/]+)", "_put_environment"),
        *APP_ROUTES,
        *SECRET_ROUTES,
        *PULL_ROUTES,
    )
]
# The permission (and level) each operation needs, by the name of the method that answers it;
# reading environments needs none beyond access to the repository.
_NEEDS: dict[str, tuple[str, str]] = {
    "_list_deployments": ("deployments", "read"),
    "_post_deployment": ("deployments", "write"),
    "_get_deployment": ("deployments", "read"),
    "_delete_deployment": ("deployments", "write"),
    "_list_statuses": ("deployments", "read"),
    "_compare": ("contents", "read"),
    "_get_commit": ("contents", "read"),
    "_post_status": ("deployments", "write"),
    "_get_status": ("deployments", "read"),
    "_list_keys": ("administration", "read"),
    "_post_key": ("administration", "write"),
    "_get_key": ("administration", "read"),
    "_delete_key": ("administration", "write"),
    "_put_environment": ("administration", "write"),
    **SECRET_NEEDS,
    **PULL_NEEDS,
}


@dataclass
class _Deployment:
    repo: tuple[str, str]  # lower-cased (owner, repo)
    body: JsonObject
    statuses: list[JsonObject] = field(default_factory=list)  # oldest first

    @property
    def state(self) -> str | None:
        return self.statuses[-1]["state"] if self.statuses else None


@dataclass
class _Refs:
    """What a repository's refs name: branches and tags (name -> sha), and its commits."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)
    #: a linear history (oldest first) of commits with their dates and messages, which
    #: ``compare`` and ``commits/{ref}`` answer from (seeded with ``add_history``; a ref
    #: outside it is a commit of ``SEEDED_DATE`` for ``commits/{ref}``, and two such refs
    #: compare as having no commit between them)
    history: list[JsonObject] = field(default_factory=list)

    def resolve(self, ref: str) -> str | None:
        """The commit ``ref`` names in this repository, or None."""
        if ref.startswith("refs/tags/"):
            return self.tags.get(ref.removeprefix("refs/tags/"))
        if ref.startswith("refs/heads/"):
            return self.branches.get(ref.removeprefix("refs/heads/"))
        found = self.tags.get(ref) or self.branches.get(ref)
        if found is not None:
            return found
        if _HEX40.fullmatch(ref):
            return ref.lower() if ref.lower() in self.commits else None
        if _SHORT_SHA.fullmatch(ref):
            matches = [sha for sha in self.commits if sha.startswith(ref.lower())]
            return matches[0] if len(matches) == 1 else None
        return None


#: the date of a commit the fake was seeded with outside ``add_history``
SEEDED_DATE = "2026-01-01T00:00:00Z"


def _commit_body(repository: str, sha: str, when: str, message: str) -> JsonObject:
    """A commit as the commits and compare endpoints show it (the fields slotkeeper reads and
    the ones the description requires)."""
    person = {"name": "Ada", "email": "ada@example.com", "date": when}
    api = f"https://api.github.com/repos/{repository}"
    return {
        "sha": sha,
        "node_id": f"C_{sha[:20]}",
        "url": f"{api}/commits/{sha}",
        "html_url": f"https://github.com/{repository}/commit/{sha}",
        "comments_url": f"{api}/commits/{sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{sha}",
            "author": person,
            "committer": person,
            "message": message,
            "comment_count": 0,
            "tree": {"sha": sha, "url": f"{api}/git/trees/{sha}"},
        },
        "author": _user("octocat", 1),
        "committer": _user("octocat", 1),
        "parents": [],
    }


def sha_of(repository: str, name: str) -> str:
    """The deterministic fake commit a seeded-without-sha branch or tag ``name`` points at."""
    return hashlib.sha1(f"{repository}@{name}".lower().encode()).hexdigest()


def _environment_name_problem(name: Any) -> str | None:
    """Why GitHub refuses an environment name (empty, over 255 characters, a control
    character), or None."""
    if not isinstance(name, str) or not name:
        return "environment can't be blank"
    if len(name) > ENVIRONMENT_NAME_MAX:
        return f"environment is too long (maximum is {ENVIRONMENT_NAME_MAX} characters)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "environment is invalid"
    return None


@dataclass
class _Key:
    repo: tuple[str, str]
    blob: str  # "type base64": what makes a key unique across GitHub
    body: JsonObject


def _team(team_id: int) -> JsonObject:
    api = f"https://api.github.com/teams/{team_id}"
    return {
        "id": team_id,
        "node_id": _node_id("T_kwDO", team_id),
        "url": api,
        "html_url": f"https://github.com/orgs/acme/teams/team-{team_id}",
        "name": f"team-{team_id}",
        "slug": f"team-{team_id}",
        "description": None,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": f"{api}/members{{/member}}",
        "repositories_url": f"{api}/repos",
        "parent": None,
        "type": "organization",
    }


def key_blob(key: str) -> str:
    """The identity of an OpenSSH public key: ``type base64`` without the comment.

    Raises ``ValueError`` when the text is not an OpenSSH public key.
    """
    parts = key.strip().split()
    if len(parts) < 2 or parts[0] not in _OPENSSH_TYPES:
        raise ValueError("not an OpenSSH public key")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise ValueError("key body is not base64") from exc
    # The blob starts with the length-prefixed key type again.
    if len(raw) < 4:
        raise ValueError("key body is too short")
    (length,) = struct.unpack(">I", raw[:4])
    if raw[4 : 4 + length] != parts[0].encode():
        raise ValueError("key body does not match its type")
    return f"{parts[0]} {parts[1]}"


class FakeGitHub(GitHubApps, ActionsSecrets, GitHubPulls, FakeServer):
    """GitHub's deployment, App, Actions secrets and pull request APIs for tokens with
    permissions, in memory, over HTTP on loopback."""

    server_software: ClassVar[str] = "GitHub.com"
    content_type: ClassVar[str] = "application/json; charset=utf-8"

    def __init__(
        self,
        token: str = "ghp_testtoken0123456789",
        *,
        tokens: Mapping[str, Mapping[str, str]] | None = None,
        repositories: Iterable[str] = (),
        seed: int = 0,
        rate_limit: int = 5000,
        clock: Callable[[], float] = time.time,
        prefix: str = "",
    ) -> None:
        super().__init__(token, seed=seed, prefix=prefix)
        # Knobs beyond server.py's (latency, error/drop/stall rates, knob_methods).
        # What every expiry and write stamp reads (App JWTs, installation tokens, rate-limit
        # resets, ``Date``): a test may pass a clock it moves itself.
        self.clock = clock
        # Every accepted token and its permissions; ``token`` holds them all unless ``tokens``
        # says otherwise. Installation tokens join it when they are issued.
        self.tokens: dict[str, dict[str, str]] = {token: dict(ALL_PERMISSIONS)}
        for name, permissions in (tokens or {}).items():
            self.tokens[name] = dict(permissions)
        # The personal tokens' budget (``rate_limit``, ``rate_limit_remaining`` and
        # ``rate_limit_reset`` are its fields); installations have their own.
        self._budget = RateBudget.fresh(rate_limit, clock())
        self.secondary_limit: tuple[int, float] | None = None
        self.forbidden: bool = False
        self.next_link: str | None = None
        # Commit-status contexts that pass on every ref; others named in required_contexts fail.
        self.passing_contexts: set[str] = set()
        # Answer every deployment creation 202 "Auto-merged ..." (nothing created), even with
        # auto_merge false: GitHub's merged-branch answer, as if a merge were under way.
        self.merge_in_progress: bool = False
        # Called with the fake after each request that reached its operation, under the lock
        # (state is as the request left it): a place for invariant checks. What it raises
        # fails the test when the fake stops, as a bug in the fake would.
        self.on_request: Callable[[FakeGitHub], None] | None = None

        self._caller = Caller("token", self._budget)  # the request being served
        self._deployments: dict[int, _Deployment] = {}
        self._keys: dict[int, _Key] = {}
        self._environments: dict[tuple[str, str, str], JsonObject] = {}
        self._repo_names: dict[tuple[str, str], tuple[str, str]] = {}
        self._refs: dict[tuple[str, str], _Refs] = {}
        self._repo_ids: dict[tuple[str, str], int] = {}
        self._ids: dict[str, int] = {}
        self._last_tick = 0
        self._served = 0
        self._init_apps(seed)
        self._init_secrets(seed)
        self._init_pulls()
        for repository in repositories:
            self.add_repository(repository)

    # -- the personal tokens' rate limit (knobs) -----------------------------------------------

    @property
    def rate_limit(self) -> int:
        """The personal tokens' hourly budget."""
        return self._budget.limit

    @rate_limit.setter
    def rate_limit(self, value: int) -> None:
        self._budget.limit = value

    @property
    def rate_limit_remaining(self) -> int:
        """What is left of it (0: every request is refused until ``rate_limit_reset``)."""
        return self._budget.remaining

    @rate_limit_remaining.setter
    def rate_limit_remaining(self, value: int) -> None:
        self._budget.remaining = value

    @property
    def rate_limit_reset(self) -> int:
        """When it is refilled (epoch seconds, by ``clock``)."""
        return self._budget.reset

    @rate_limit_reset.setter
    def rate_limit_reset(self, value: int) -> None:
        self._budget.reset = value

    # -- observation -------------------------------------------------------------------------

    def deployments(
        self, owner: str, repo: str, environment: str | None = None
    ) -> list[JsonObject]:
        """The deployments of a repository, newest first, as the API would render them."""
        with self._lock:
            return [
                copy.deepcopy(d.body)
                for d in self._repo_deployments(owner, repo)
                if environment is None or d.body["environment"] == environment
            ]

    def statuses(self, deployment_id: int) -> list[JsonObject]:
        """The statuses of a deployment, newest first."""
        with self._lock:
            deployment = self._deployments[deployment_id]
            return copy.deepcopy(deployment.statuses[::-1])

    def latest_state(self, deployment_id: int) -> str | None:
        """The state of a deployment's newest status (None when it has none)."""
        with self._lock:
            return self._deployments[deployment_id].state

    def keys(self, owner: str, repo: str) -> list[JsonObject]:
        """The deploy keys of a repository, oldest first."""
        with self._lock:
            repo_key = (owner.lower(), repo.lower())
            return [copy.deepcopy(k.body) for k in self._keys.values() if k.repo == repo_key]

    def environments(self, owner: str, repo: str) -> list[JsonObject]:
        """The environments of a repository, by name."""
        with self._lock:
            return copy.deepcopy(self._repo_environments(owner, repo))

    # -- refs: what a repository's branches, tags and commits are ------------------------------

    def add_repository(
        self,
        repository: str,
        *,
        branches: Iterable[str] | Mapping[str, str] = ("main",),
        tags: Iterable[str] | Mapping[str, str] = (),
        commits: Iterable[str] = (),
    ) -> None:
        """Create ``owner/repo`` (or replace the refs it had). Branches and tags are names
        (pointing at ``sha_of`` commits) or a mapping of name to commit sha."""
        with self._lock:
            names = _split(repository)
            repo_key = (names[0].lower(), names[1].lower())
            self._refs[repo_key] = _Refs()
            self._repo_names.setdefault(repo_key, names)
            if repo_key not in self._repo_ids:
                self._repo_ids[repo_key] = self._next_id("repository")
        for name, sha in _named(branches):
            self.add_branch(repository, name, sha)
        for name, sha in _named(tags):
            self.add_tag(repository, name, sha)
        for sha in commits:
            self.add_commit(repository, sha)

    def add_branch(self, repository: str, name: str, sha: str | None = None) -> str:
        """Add (or move) a branch of ``owner/repo``; returns the commit it points at."""
        with self._lock:
            commit = (sha or sha_of(repository, name)).lower()
            refs = self._seeded_refs(repository)
            refs.branches[name] = commit
            refs.commits.add(commit)
            return commit

    def add_tag(self, repository: str, name: str, sha: str | None = None) -> str:
        """Add (or move) a tag of ``owner/repo``; returns the commit it points at."""
        with self._lock:
            commit = (sha or sha_of(repository, f"refs/tags/{name}")).lower()
            refs = self._seeded_refs(repository)
            refs.tags[name] = commit
            refs.commits.add(commit)
            return commit

    def add_commit(self, repository: str, sha: str) -> str:
        """Make a commit (40 hex digits) known to ``owner/repo``; returns it."""
        if not _HEX40.fullmatch(sha):
            raise ValueError(f"not a commit sha: {sha!r}")
        with self._lock:
            self._seeded_refs(repository).commits.add(sha.lower())
            return sha.lower()

    def add_history(self, repository: str, commits: Iterable[tuple[str, str, str]]) -> None:
        """Append commits ``(sha, ISO time, message)`` to ``owner/repo``'s linear history
        (author and committer time alike), making each known."""
        with self._lock:
            refs = self._seeded_refs(repository)
            for sha, when, message in commits:
                refs.commits.add(sha.lower())
                refs.history.append(_commit_body(repository, sha.lower(), when, message))

    # -- drift: change state as someone else would, without a request --------------------------

    def delete_deployment(self, owner: str, repo: str, deployment_id: int) -> None:
        """Remove a deployment whatever its state (``KeyError`` if it is not there)."""
        with self._lock:
            self._deployment(owner, repo, deployment_id, missing=KeyError)
            del self._deployments[deployment_id]

    def add_status(
        self,
        owner: str,
        repo: str,
        deployment_id: int,
        state: str,
        *,
        description: str = "",
        auto_inactive: bool = False,
    ) -> JsonObject:
        """Append a status to a deployment; no auto-inactivation unless asked."""
        if state not in STATES:
            raise ValueError(f"unknown deployment state {state!r}")
        with self._lock:
            deployment = self._deployment(owner, repo, deployment_id, missing=KeyError)
            status = self._append_status(
                deployment, {"state": state, "description": description}, self._tick()
            )
            if auto_inactive and state == "success":
                self._auto_inactivate(deployment, status["created_at"])
            return copy.deepcopy(status)

    def delete_key(self, owner: str, repo: str, key_id: int) -> None:
        """Remove a deploy key (``KeyError`` if it is not there)."""
        with self._lock:
            key = self._keys.get(key_id)
            if key is None or key.repo != (owner.lower(), repo.lower()):
                raise KeyError(key_id)
            del self._keys[key_id]

    def add_key(
        self, owner: str, repo: str, key: str, title: str, read_only: bool = True
    ) -> JsonObject:
        """Register a deploy key (``KeyError`` if the repository does not exist,
        ``ValueError`` if the key is malformed or already in use anywhere)."""
        with self._lock:
            if (owner.lower(), repo.lower()) not in self._refs:
                raise KeyError(f"{owner}/{repo}")
            try:
                created = self._create_key(
                    owner, repo, {"key": key, "title": title, "read_only": read_only}
                )
            except Refusal as refusal:
                raise ValueError(refusal.reply.body) from None
            return copy.deepcopy(created)

    # -- the request pipeline ----------------------------------------------------------------

    def _admit(self, incoming: Incoming) -> Reply | None:
        """A User-Agent, who is calling (``_identify``: a personal token, an installation token,
        an App's JWT where only it is good, nobody where GitHub allows it), then the caller's
        primary limit, ``forbidden``, the secondary limit, whether the repository exists and the
        caller sees it, and whether the caller may do this."""
        self._caller = Caller("token", self._budget)
        if _no_user_agent(incoming):
            headers = {"content-type": "text/html", "connection": "close"}
            return Reply(403, NO_USER_AGENT, headers)
        matched = _match(incoming)
        handler_name, args = matched if matched is not None else (None, {})
        self._caller, refusal = self._identify(incoming, handler_name)
        if refusal is not None:
            return refusal
        caller = self._caller
        budget = caller.budget
        budget.refill(self.clock())
        if handler_name not in UNMETERED_ROUTES:
            if budget.remaining <= 0:
                return _error(403, self._exceeded(caller))
            budget.remaining -= 1  # given back in _decide if the answer is a 304
            caller.spent = True
        if self.forbidden:
            return _error(403, caller.not_accessible())
        if incoming.method in WRITE_METHODS and (refusal := self._secondary_refusal(budget)):
            return refusal
        if handler_name is None:
            return None
        if "owner" in args:
            try:
                repo_key = self._repository(args["owner"], args["repo"])
            except Refusal as missing:
                return missing.reply
            if caller.kind == "installation" and not caller.sees(repo_key):
                return _error(404, "Not Found")
        return self._permission_refusal(handler_name, caller)

    def _permission_refusal(self, handler_name: str, caller: Caller) -> Reply | None:
        """GitHub's 403 when the token lacks the permission the operation needs."""
        needs = _NEEDS.get(handler_name)
        if needs is None:
            return None
        permission, level = needs
        held = self.tokens.get(caller.token or "", {})
        if _LEVELS.get(held.get(permission, ""), 0) >= _LEVELS[level]:
            return None
        reply = _error(403, caller.not_accessible())
        reply.headers["x-accepted-github-permissions"] = f"{permission}={level}"
        return reply

    def _decide(self, incoming: Incoming) -> Decision:
        decision = super()._decide(incoming)
        if decision.reply.status == 304 and self._caller.spent:
            self._caller.budget.remaining += 1
        if decision.processed and self.on_request is not None:
            try:
                self.on_request(self)
            except Exception as exc:  # an invariant broke: fail the test when the fake stops
                self.internal_errors.append(exc)
        return decision

    def _unauthorized(self, incoming: Incoming) -> Reply:
        return _error(401, "Bad credentials")

    def _server_error(self) -> Reply:
        status = self._rng.choice((502, 503))
        return _error(status, "Server Error" if status == 502 else "Service Unavailable")

    def _internal_error(self, exc: Exception) -> Reply:
        return _error(500, f"fake internal error: {exc!r}")

    def _authorized(self, authorization: str) -> bool:
        credential = _credential(authorization)
        if credential is None or credential not in self.tokens:
            return False
        issued = self._issued.get(credential)
        return issued is None or self.clock() < issued.expires_at

    def _now(self) -> float:
        return self.clock()

    def _secondary_refusal(self, budget: RateBudget) -> Reply | None:
        """403 with ``retry-after`` when the budget's writes fill ``secondary_limit``."""
        if self.secondary_limit is None:
            return None
        most, window = self.secondary_limit
        writes = budget.writes
        now = time.monotonic()
        while writes and writes[0] <= now - window:
            writes.popleft()
        if len(writes) >= most:
            wait = max(1, math.ceil(writes[0] + window - now))
            reply = _error(
                403,
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again.",
            )
            reply.headers["retry-after"] = str(wait)
            return reply
        writes.append(now)
        return None

    def _headers(self, reply: Reply, body: bytes, incoming: Incoming) -> dict[str, str]:
        if _no_user_agent(incoming):  # refused at the edge: none of the API's headers
            return {**reply.headers, "content-length": str(len(body))}
        request = incoming.headers
        with self._lock:
            self._served += 1
            headers = {
                **self._caller.budget.headers(),
                "x-github-request-id": f"FA4E:{self._served:06X}:{id(self) & 0xFFFFFF:06X}",
                "x-github-api-version-selected": request.get("x-github-api-version", "2022-11-28"),
                "x-github-media-type": "github.v3; format=json",
            }
        if reply.status not in (204, 304):
            headers["content-type"] = "application/json; charset=utf-8"
            headers["content-length"] = str(len(body))
        headers.update(reply.headers)
        return headers

    # -- routes ------------------------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        matched = _match(incoming)
        if matched is None:
            raise _not_found()
        handler_name, args = matched
        handler: Callable[[_Call], Reply] = getattr(self, handler_name)
        body: Any = None
        if incoming.method in WRITE_METHODS and incoming.body:
            try:
                body = json.loads(incoming.body)
            except ValueError:
                raise Refusal(_error(400, "Problems parsing JSON")) from None
        reply = handler(_Call(incoming.path, args, incoming.query, body, self._caller))
        if incoming.method == "GET" and reply.status == 200:
            return self._conditional(reply, incoming.headers)
        return reply

    def _conditional(self, reply: Reply, headers: dict[str, str]) -> Reply:
        # GitHub's ETags depend on the token as well as the body.
        credential = _credential(headers.get("authorization", "")) or ""
        digest = hashlib.sha256(credential.encode() + json.dumps(reply.body).encode())
        etag = f'W/"{digest.hexdigest()}"'
        reply.headers["etag"] = etag
        reply.headers["cache-control"] = "private, max-age=60, s-maxage=60"
        reply.headers["vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
        wanted = {
            tag.strip().removeprefix("W/") for tag in headers.get("if-none-match", "").split(",")
        }
        if etag.removeprefix("W/") in wanted or "*" in wanted:
            return Reply(
                304,
                None,
                {
                    "etag": etag,
                    "cache-control": reply.headers["cache-control"],
                    "vary": reply.headers["vary"],
                },
            )
        return reply

    def _paginate(self, items: list[Any], call: _Call) -> tuple[list[Any], dict[str, str]]:
        """One page of ``items`` and, when there are several pages, GitHub's ``Link`` header."""
        per_page = _positive(call.query.get("per_page"), 30, most=100)
        page = _positive(call.query.get("page"), 1)
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        if self.next_link is not None:
            return chunk, {"link": f'<{self.next_link}>; rel="next"'}
        if last == 1:
            return chunk, {}

        def link(number: int, rel: str) -> str:
            params = {**call.query, "page": str(number)}
            return f'<{self.base_url}{call.path}?{urlencode(params)}>; rel="{rel}"'

        rels: list[str] = []
        if page > 1:
            rels.append(link(min(page - 1, last), "prev"))
        if page < last:
            rels.append(link(page + 1, "next"))
            rels.append(link(last, "last"))
        if page > 1:
            rels.append(link(1, "first"))
        return chunk, {"link": ", ".join(rels)}

    # deployments

    def _list_deployments(self, call: _Call) -> Reply:
        found = [
            d.body
            for d in self._repo_deployments(call.owner, call.repo)
            if all(
                not call.query.get(name) or d.body[name] == call.query[name]
                for name in ("sha", "ref", "task", "environment")
            )
        ]
        page, headers = self._paginate(found, call)
        return Reply(200, copy.deepcopy(page), headers)

    def _post_deployment(self, call: _Call) -> Reply:
        body = call.body
        if not isinstance(body, dict):
            raise _invalid("Body must be a JSON object.")
        _check_types(
            body,
            {
                "ref": (str,),
                "task": (str,),
                "auto_merge": (bool,),
                "required_contexts": (list,),
                "payload": (dict, str),
                "environment": (str,),
                "description": (str, type(None)),
                "transient_environment": (bool,),
                "production_environment": (bool,),
            },
            required="ref",
        )
        payload = body.get("payload")
        if isinstance(payload, str) and payload and not _is_json(payload):
            raise _invalid(f"For 'properties/payload', {json.dumps(payload)} is not JSON text.")
        ref: str = body["ref"]
        sha = self._refs[self._repository(call.owner, call.repo)].resolve(ref)
        if sha is None:
            raise Refusal(_error(422, f"No ref found for: {ref}"))
        if "environment" in body and (problem := _environment_name_problem(body["environment"])):
            raise _validation_failed("Deployment", "environment", problem, "invalid")
        contexts = body.get("required_contexts")
        if contexts is not None and not all(isinstance(c, str) for c in contexts):
            raise _invalid("For 'items', required_contexts must hold strings.")
        if self.merge_in_progress or body.get("auto_merge", True) is not False:
            return Reply(202, {"message": f"Auto-merged main into {ref} on deployment."})
        if contexts is None or any(c not in self.passing_contexts for c in contexts):
            message = f"Conflict: Commit status checks failed for {ref}."
            raise Refusal(_error(409, message))
        created = self._create_deployment(call.owner, call.repo, body, sha)
        return Reply(201, copy.deepcopy(created), {"location": created["url"]})

    def _create_deployment(self, owner: str, repo: str, body: JsonObject, sha: str) -> JsonObject:
        repo_key = self._repository(owner, repo)
        owner, repo = self._repo_names[repo_key]
        number = self._next_id("deployment")
        stamp = self._tick()
        ref: str = body["ref"]
        environment: str = body.get("environment", "production")
        repo_url = f"{self.base_url}/repos/{owner}/{repo}"
        deployment = {
            "url": f"{repo_url}/deployments/{number}",
            "id": number,
            "node_id": _node_id("DE_kwDO", number),
            "sha": sha,
            "ref": ref,
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "original_environment": environment,
            "environment": environment,
            "description": body.get("description", ""),
            "creator": _user(),
            "created_at": stamp,
            "updated_at": stamp,
            "statuses_url": f"{repo_url}/deployments/{number}/statuses",
            "repository_url": repo_url,
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get(
                "production_environment", environment == "production"
            ),
            "performed_via_github_app": None,
        }
        self._deployments[number] = _Deployment(repo_key, deployment)
        return deployment

    def _get_deployment(self, call: _Call) -> Reply:
        deployment = self._deployment(call.owner, call.repo, call.number("deployment_id"))
        return Reply(200, copy.deepcopy(deployment.body))

    def _delete_deployment(self, call: _Call) -> Reply:
        number = call.number("deployment_id")
        deployment = self._deployment(call.owner, call.repo, number)
        alone = len(self._repo_deployments(call.owner, call.repo)) == 1
        if deployment.state != "inactive" and not alone:
            message = (
                "We cannot delete an active deployment unless it is the only deployment "
                "in a given repository. Mark the deployment as inactive before deleting it."
            )
            raise Refusal(_error(422, message))
        del self._deployments[number]
        return Reply(204)

    # statuses

    def _list_statuses(self, call: _Call) -> Reply:
        deployment = self._deployment(call.owner, call.repo, call.number("deployment_id"))
        page, headers = self._paginate(deployment.statuses[::-1], call)
        return Reply(200, copy.deepcopy(page), headers)

    def _get_status(self, call: _Call) -> Reply:
        deployment = self._deployment(call.owner, call.repo, call.number("deployment_id"))
        for status in deployment.statuses:
            if status["id"] == call.number("status_id"):
                return Reply(200, copy.deepcopy(status))
        raise _not_found()

    def _post_status(self, call: _Call) -> Reply:
        body = call.body
        deployment = self._deployment(call.owner, call.repo, call.number("deployment_id"))
        if not isinstance(body, dict):
            raise _invalid("Body must be a JSON object.")
        text = (str,)
        _check_types(
            body,
            {
                "state": text,
                "target_url": text,
                "log_url": text,
                "description": text,
                "environment": text,
                "environment_url": text,
                "auto_inactive": (bool,),
            },
            required="state",
        )
        if body["state"] not in STATES:
            raise _invalid(
                f"For 'properties/state', {json.dumps(body['state'])} is not one of "
                f"{', '.join(STATES)}."
            )
        if len(body.get("description", "")) > 140:
            raise _validation_failed(
                "DeploymentStatus",
                "description",
                "description is too long (maximum is 140 characters)",
            )
        if "environment" in body and (problem := _environment_name_problem(body["environment"])):
            raise _validation_failed("DeploymentStatus", "environment", problem, "invalid")
        status = self._append_status(deployment, body, self._tick())
        if body["state"] == "success" and body.get("auto_inactive", True):
            self._auto_inactivate(deployment, status["created_at"])
        return Reply(201, copy.deepcopy(status), {"location": status["url"]})

    def _append_status(self, deployment: _Deployment, body: JsonObject, stamp: str) -> JsonObject:
        number = self._next_id("status")
        previous = deployment.statuses[-1]["environment"] if deployment.statuses else None
        environment = body.get("environment") or previous or deployment.body["environment"]
        log_url = body.get("log_url") or body.get("target_url") or ""
        status = {
            "url": f"{deployment.body['url']}/statuses/{number}",
            "id": number,
            "node_id": _node_id("DES_kwDO", number),
            "state": body["state"],
            "creator": _user(),
            "description": body.get("description", ""),
            "environment": environment,
            "target_url": log_url,
            "created_at": stamp,
            "updated_at": stamp,
            "deployment_url": deployment.body["url"],
            "repository_url": deployment.body["repository_url"],
            "environment_url": body.get("environment_url", ""),
            "log_url": log_url,
            "performed_via_github_app": None,
        }
        deployment.statuses.append(status)
        deployment.body["environment"] = environment
        deployment.body["updated_at"] = stamp
        return status

    def _auto_inactivate(self, current: _Deployment, stamp: str) -> None:
        """Mark other successful non-transient, non-production deployments of the env inactive."""
        environment = current.body["environment"]
        for other in list(self._deployments.values()):
            if (
                other is not current
                and other.repo == current.repo
                and other.body["environment"] == environment
                and not other.body["transient_environment"]
                and not other.body["production_environment"]
                and other.state == "success"
            ):
                self._append_status(other, {"state": "inactive"}, stamp)

    # deploy keys

    def _history(self, call: _Call) -> _Refs:
        return self._seeded_refs(f"{call.owner}/{call.repo}")

    def _compare(self, call: _Call) -> Reply:
        """``compare/BASE...HEAD`` over the linear history: the commits after BASE up to HEAD,
        oldest first, ``total_commits`` all of them, ``commits`` one page (``per_page``)."""
        refs = self._history(call)
        base_ref, _, head_ref = call.args["basehead"].partition("...")
        base, head = refs.resolve(base_ref), refs.resolve(head_ref)
        if base is None or head is None:
            raise _not_found()
        order = [c["sha"] for c in refs.history]
        if base not in order or head not in order:
            # refs seeded without history: the fake knows no commit between them
            seeded = _commit_body(f"{call.owner}/{call.repo}", base, SEEDED_DATE, "seeded")
            refs = _Refs(history=[seeded])
            order = [base]
            head = base
        start, end = order.index(base), order.index(head)
        ahead = refs.history[start + 1 : end + 1] if end > start else []
        behind = end - start if end < start else 0
        page, headers = self._paginate(ahead, call)
        status = "identical" if start == end else "ahead" if end > start else "behind"
        web = f"https://github.com/{call.owner}/{call.repo}/compare/{call.args['basehead']}"
        api = f"https://api.github.com/repos/{call.owner}/{call.repo}"
        return Reply(
            200,
            {
                "url": f"{api}/compare/{call.args['basehead']}",
                "html_url": web,
                "permalink_url": web,
                "diff_url": f"{web}.diff",
                "patch_url": f"{web}.patch",
                "base_commit": copy.deepcopy(refs.history[start]),
                "merge_base_commit": copy.deepcopy(refs.history[min(start, end)]),
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": -behind if behind else 0,
                "total_commits": len(ahead),
                "commits": copy.deepcopy(page),
                "files": [],
            },
            headers,
        )

    def _get_commit(self, call: _Call) -> Reply:
        refs = self._history(call)
        found = refs.resolve(call.args["ref"])
        if found is None:
            raise _not_found()
        body = next((c for c in refs.history if c["sha"] == found), None)
        if body is None:  # a seeded ref without history: a commit of a fixed, old date
            body = _commit_body(f"{call.owner}/{call.repo}", found, SEEDED_DATE, "seeded")
        return Reply(200, copy.deepcopy(body))

    def _list_keys(self, call: _Call) -> Reply:
        repo_key = (call.owner.lower(), call.repo.lower())
        found = [k.body for k in self._keys.values() if k.repo == repo_key]
        page, headers = self._paginate(found, call)
        return Reply(200, copy.deepcopy(page), headers)

    def _get_key(self, call: _Call) -> Reply:
        key = self._keys.get(call.number("key_id"))
        if key is None or key.repo != (call.owner.lower(), call.repo.lower()):
            raise _not_found()
        return Reply(200, copy.deepcopy(key.body))

    def _post_key(self, call: _Call) -> Reply:
        if not isinstance(call.body, dict):
            raise _invalid("Body must be a JSON object.")
        created = self._create_key(call.owner, call.repo, call.body)
        return Reply(201, copy.deepcopy(created), {"location": created["url"]})

    def _create_key(self, owner: str, repo: str, body: JsonObject) -> JsonObject:
        _check_types(body, {"key": (str,), "title": (str,), "read_only": (bool,)})
        if "key" not in body:
            raise _validation_failed("PublicKey", "key", "key can't be blank", "missing_field")
        try:
            blob = key_blob(body["key"])
        except ValueError:
            raise _validation_failed(
                "PublicKey",
                "key",
                "key is invalid. You must supply a key in OpenSSH public key format",
            ) from None
        if blob.split()[0] not in KEY_TYPES:
            # GitHub's wording for a key of a type it does not take (as it answered before DSA
            # was dropped, with ssh-dss then in the list)
            *others, last = (f"'{kind}'" for kind in sorted(KEY_TYPES))
            raise _validation_failed(
                "PublicKey",
                "key",
                f"key is invalid. It must begin with {', '.join(others)}, or {last}. "
                "Check that you're copying the public half of the key",
            )
        if any(k.blob == blob for k in self._keys.values()):
            raise _validation_failed("PublicKey", "key", "key is already in use")
        repo_key = self._repository(owner, repo)
        owner, repo = self._repo_names[repo_key]
        number = self._next_id("key")
        comment = body["key"].split(maxsplit=2)[2:]
        key = {
            "id": number,
            "key": blob,
            "url": f"{self.base_url}/repos/{owner}/{repo}/keys/{number}",
            "title": body.get("title") or (comment[0].strip() if comment else ""),
            "verified": True,
            "created_at": self._tick(),
            "read_only": body.get("read_only", False),
            "added_by": "octocat",
            "last_used": None,
            "enabled": True,
        }
        self._keys[number] = _Key(repo_key, blob, key)
        return key

    def _delete_key(self, call: _Call) -> Reply:
        key = self._keys.get(call.number("key_id"))
        if key is None or key.repo != (call.owner.lower(), call.repo.lower()):
            raise _not_found()
        del self._keys[call.number("key_id")]
        return Reply(204)

    # environments

    def _list_environments(self, call: _Call) -> Reply:
        found = self._repo_environments(call.owner, call.repo)
        page, headers = self._paginate(found, call)
        body = {"total_count": len(found), "environments": copy.deepcopy(page)}
        return Reply(200, body, headers)

    def _get_environment(self, call: _Call) -> Reply:
        key = (call.owner.lower(), call.repo.lower(), call.args["name"].lower())
        environment = self._environments.get(key)
        if environment is None:
            raise _not_found()
        return Reply(200, copy.deepcopy(environment))

    def _put_environment(self, call: _Call) -> Reply:
        body = call.body
        name = call.args["name"]
        settings: JsonObject = body if isinstance(body, dict) else {}
        if body is not None and not isinstance(body, dict):
            raise _invalid("Body must be a JSON object or null.")
        if _environment_name_problem(name) is not None:
            raise Refusal(_error(422, "Invalid environment name."))
        _check_types(
            settings,
            {
                "wait_timer": (int,),
                "prevent_self_review": (bool,),
                "reviewers": (list, type(None)),
                "deployment_branch_policy": (dict, type(None)),
            },
        )
        unknown = sorted(
            set(settings)
            - {"wait_timer", "prevent_self_review", "reviewers", "deployment_branch_policy"}
        )
        if unknown:
            raise _invalid(f"{unknown[0]!r} is not a permitted key.")
        wait_timer = settings.get("wait_timer", 0)
        if isinstance(wait_timer, bool) or not 0 <= wait_timer <= 43200:
            raise Refusal(_error(422, "Wait timer must be between 0 and 43200."))
        policy = settings.get("deployment_branch_policy")
        if policy is not None and (
            set(policy) != {"protected_branches", "custom_branch_policies"}
            or policy["protected_branches"] == policy["custom_branch_policies"]
        ):
            message = "Exactly one of protected_branches and custom_branch_policies must be true."
            raise Refusal(_error(422, message))
        reviewers = settings.get("reviewers") or []
        for reviewer in reviewers:
            if (
                not isinstance(reviewer, dict)
                or reviewer.get("type") not in ("User", "Team")
                or not isinstance(reviewer.get("id"), int)
            ):
                raise _invalid("Each reviewer needs a type (User or Team) and an integer id.")

        repo_key = self._repository(call.owner, call.repo)
        owner, repo = self._repo_names[repo_key]
        stamp = self._tick()
        existing = self._environments.get((*repo_key, name.lower()))
        if existing is None:
            number = self._next_id("environment")
            name_in_url = quote(name, safe="")
            existing = {
                "id": number,
                "node_id": _node_id("EN_kwDO", number),
                "name": name,
                "url": f"{self.base_url}/repos/{owner}/{repo}/environments/{name_in_url}",
                "html_url": (
                    f"https://github.com/{owner}/{repo}/deployments/activity_log"
                    f"?environments_filter={name_in_url}"
                ),
                "created_at": stamp,
            }
        rules: list[JsonObject] = []
        if wait_timer:
            rules.append(self._rule("wait_timer", wait_timer=wait_timer))
        if reviewers:
            rules.append(
                self._rule(
                    "required_reviewers",
                    prevent_self_review=settings.get("prevent_self_review", False),
                    reviewers=[
                        {
                            "type": r["type"],
                            "reviewer": _user(f"user{r['id']}", r["id"])
                            if r["type"] == "User"
                            else _team(r["id"]),
                        }
                        for r in reviewers
                    ],
                )
            )
        if policy is not None:
            rules.append(self._rule("branch_policy"))
        existing.update(
            updated_at=stamp,
            protection_rules=rules,
            deployment_branch_policy=copy.deepcopy(policy),
        )
        self._environments[(*repo_key, name.lower())] = existing
        return Reply(200, copy.deepcopy(existing))

    def _rule(self, kind: str, **fields: Any) -> JsonObject:
        number = self._next_id("rule")
        return {"id": number, "node_id": _node_id("GA_kwDO", number), "type": kind, **fields}

    # -- state helpers (callers hold the lock) ------------------------------------------------

    def _seeded_refs(self, repository: str) -> _Refs:
        """The refs of ``owner/repo``, creating the repository (with ``main``) when it is new."""
        owner, repo = _split(repository)
        if (owner.lower(), repo.lower()) not in self._refs:
            self.add_repository(repository)
        return self._refs[owner.lower(), repo.lower()]

    def _repository(self, owner: str, repo: str) -> tuple[str, str]:
        """The key of an existing repository; 404 Not Found when nobody created it."""
        repo_key = (owner.lower(), repo.lower())
        if repo_key not in self._refs:
            raise _not_found()
        return repo_key

    def _repo_deployments(self, owner: str, repo: str) -> list[_Deployment]:
        repo_key = (owner.lower(), repo.lower())
        found = [d for d in self._deployments.values() if d.repo == repo_key]
        return sorted(found, key=lambda d: d.body["id"], reverse=True)

    def _repo_environments(self, owner: str, repo: str) -> list[JsonObject]:
        repo_key = (owner.lower(), repo.lower())
        found = [env for key, env in self._environments.items() if key[:2] == repo_key]
        return sorted(found, key=lambda env: str(env["name"]).lower())

    def _deployment(
        self,
        owner: str,
        repo: str,
        number: int,
        missing: Callable[[int], Exception] | None = None,
    ) -> _Deployment:
        deployment = self._deployments.get(number)
        if deployment is None or deployment.repo != (owner.lower(), repo.lower()):
            raise missing(number) if missing is not None else _not_found()
        return deployment

    def _next_id(self, kind: str) -> int:
        # Disjoint ranges per kind, so a client that mixes up kinds of ids gets a 404.
        self._ids[kind] = self._ids.get(kind, _FIRST_IDS[kind] - 1) + 1
        return self._ids[kind]

    def _tick(self) -> str:
        """A write timestamp: wall-clock seconds, but strictly later than the previous one."""
        self._last_tick = max(int(self.clock()), self._last_tick + 1)
        return _iso(self._last_tick)


def _no_user_agent(incoming: Incoming) -> bool:
    return not incoming.headers.get("user-agent", "").strip()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _match(incoming: Incoming) -> tuple[str, dict[str, str]] | None:
    """The name of the method that answers a request and its path parameters (URL-decoded),
    or None when no route matches."""
    for method, pattern, handler_name in _ROUTES:
        match = pattern.fullmatch(incoming.path)
        if match is not None and method == incoming.method:
            return handler_name, {name: unquote(v) for name, v in match.groupdict().items()}
    return None


def _positive(value: str | None, default: int, most: int | None = None) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    if number < 1:
        number = default
    return min(number, most) if most is not None else number


def _named(refs: Iterable[str] | Mapping[str, str]) -> list[tuple[str, str | None]]:
    if isinstance(refs, Mapping):
        return list(refs.items())
    return [(name, None) for name in refs]
