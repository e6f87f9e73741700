"""What the fake GitHub's modules share: GitHub's error bodies, users, timestamps, the routed
call, who is calling and the rate-limit budget a call spends.

``github.py`` (deployments, statuses, deploy keys, environments), ``github_apps.py`` (App JWTs,
installations and their tokens, ``/meta``, ``/rate_limit``), ``github_secrets.py`` (Actions
secrets) and ``github_pulls.py`` (pull requests) make up one fake, ``FakeGitHub``; this module
holds what they all use, so that none of them imports another's internals.
"""

from __future__ import annotations

import base64
import json
import struct
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.server import JsonObject, Refusal, Reply

if TYPE_CHECKING:
    from tests.fakes.github_apps import IssuedToken, _App, _Installation

DOCS = "https://docs.github.com/rest"
#: a permission level: write includes read
LEVELS = {"read": 1, "write": 2}
#: the path of a repository, as every repository route starts
REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
#: GitHub's primary limits last an hour from the first request of the window
LIMIT_WINDOW = 3600


@dataclass
class RateBudget:
    """One primary rate-limit budget (GitHub's ``core`` resource) and the window of writes its
    secondary limit counts. Personal access tokens share the fake's own budget; each App
    installation has its own, and so has each App (its JWT requests) and anonymous access.

    The fields are knobs like the fake's others: a test may set ``remaining`` to 0 or move
    ``reset`` while the server runs."""

    limit: int
    remaining: int
    reset: int
    writes: deque[float] = field(default_factory=deque, repr=False)

    @classmethod
    def fresh(cls, limit: int, now: float) -> RateBudget:
        """A full budget whose window ends an hour from ``now``."""
        return cls(limit, limit, int(now) + LIMIT_WINDOW)

    @property
    def used(self) -> int:
        return max(self.limit - max(self.remaining, 0), 0)

    def refill(self, now: float) -> None:
        """Start a new window once the reset time has passed."""
        if now >= self.reset:
            self.remaining = self.limit
            self.reset = int(now) + LIMIT_WINDOW

    def as_json(self, resource: str = "core") -> JsonObject:
        """The ``rate-limit`` object of ``GET /rate_limit``."""
        return {
            "limit": self.limit,
            "remaining": max(self.remaining, 0),
            "reset": self.reset,
            "used": self.used,
            "resource": resource,
        }

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers every API answer carries."""
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(self.remaining, 0)),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": "core",
        }


@dataclass
class Caller:
    """Who sent a request, as the fake worked it out before routing it.

    ``kind`` is ``"token"`` (a personal access token of ``tokens``: sees every repository),
    ``"installation"`` (an installation token: sees its installation's repositories, or the
    ones it was narrowed to), ``"app"`` (a verified App JWT: only the App endpoints) or
    ``"anonymous"`` (no credential, where GitHub allows it)."""

    kind: str
    budget: RateBudget
    token: str | None = None
    app: _App | None = None
    installation: _Installation | None = None
    issued: IssuedToken | None = None
    spent: bool = False  # the request took one from ``budget`` (a 304 gives it back)

    def sees(self, repo_key: tuple[str, str]) -> bool:
        """Whether the repository (lower-cased owner and name) is visible to this caller."""
        if self.kind != "installation" or self.installation is None:
            return True
        if not self.installation.sees(repo_key):
            return False
        narrowed = self.issued.repositories if self.issued is not None else None
        return narrowed is None or repo_key in narrowed

    def not_accessible(self) -> str:
        """GitHub's 403 message for an operation this caller may not do."""
        if self.kind == "installation":
            return "Resource not accessible by integration"
        return "Resource not accessible by personal access token"


@dataclass(frozen=True)
class Call:
    """A routed request: path parameters (URL-decoded), query, parsed JSON body, caller."""

    path: str
    args: dict[str, str]
    query: dict[str, str]
    body: Any
    caller: Caller | None = None

    @property
    def owner(self) -> str:
        return self.args["owner"]

    @property
    def repo(self) -> str:
        return self.args["repo"]

    def number(self, name: str) -> int:
        return int(self.args[name])


def error(status: int, message: str, **extra: Any) -> Reply:
    """GitHub's error body: message, details, documentation_url and the status as a string."""
    body = {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}
    return Reply(status, body)


def not_found() -> Refusal:
    return Refusal(error(404, "Not Found"))


def invalid(message: str) -> Refusal:
    return Refusal(error(422, f"Invalid request.\n\n{message}"))


def validation_failed(resource: str, field_: str, message: str, code: str = "custom") -> Refusal:
    details = {"resource": resource, "code": code, "field": field_, "message": message}
    return Refusal(error(422, "Validation Failed", errors=[details]))


def check_types(body: JsonObject, types: dict[str, tuple[type, ...]], required: str = "") -> None:
    """GitHub's JSON-schema style 422 for a missing or mistyped body field (each name in
    ``required``, space-separated, must be present)."""
    for name in required.split():
        if name not in body:
            raise invalid(f'"{name}" wasn\'t supplied.')
    for name, value in body.items():
        expected = types.get(name)
        if expected is not None and not isinstance(value, expected):
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
            raise invalid(f"For 'properties/{name}', {json.dumps(value)} is not a {kinds}.")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(prefix: str, number: int) -> str:
    return prefix + base64.urlsafe_b64encode(struct.pack(">Q", number)).decode().rstrip("=")


def user(login: str = "octocat", user_id: int = 1, kind: str = "User") -> JsonObject:
    """A ``simple-user``: a user, or an organization (``kind="Organization"``) as GitHub
    renders an account in the same shape."""
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id("U_kgDO" if kind == "User" else "O_kgDO", user_id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "site_admin": False,
        "user_view_type": "public",
    }


def credential(authorization: str) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (or GitHub's older ``token <token>``)."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        return None
    return value.strip()


def split_repository(repository: str) -> tuple[str, str]:
    """``owner/repo`` as (owner, repo); ``ValueError`` when it is not that."""
    owner, slash, repo = repository.partition("/")
    if not slash or not owner or not repo or "/" in repo:
        raise ValueError(f"not owner/repo: {repository!r}")
    return owner, repo
