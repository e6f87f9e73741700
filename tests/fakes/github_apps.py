"""GitHub Apps in the fake GitHub: App JWTs, installations and their tokens, ``/meta`` and
``/rate_limit``.

``GitHubApps`` is a mixin of ``FakeGitHub`` (one fake class serves the whole GitHub API); it
holds the Apps a test registers and their installations, works out who sends each request
(``_identify``) and answers the operations of ``specs/github-apps-secrets.openapi.json`` that
are not Actions secrets (those are ``github_secrets.py``'s). The semantics come from
``specs/API-REFERENCE.md`` section 5 and GitHub's documentation:

- ``add_app`` registers an App: the fake makes an RSA 2048 key pair and keeps the public half;
  the test gets the private key (PEM, PKCS#1 as GitHub hands it out) in ``AppCredentials``.
  ``add_installation`` installs it on an account, on every repository of the account
  (``repositories=None``, including repositories created later) or on some, with permissions.
- An App authenticates with a JWT (``Authorization: Bearer <JWT>``), and only on the App
  endpoints: ``GET /app``, ``GET /repos/{owner}/{repo}/installation``,
  ``GET /orgs/{org}/installation`` and ``POST /app/installations/{id}/access_tokens``. The JWT
  must be RS256, signed with the App's key, ``iss`` the client ID (a string) or the App ID (a
  number or a numeric string), ``iat`` an integer at most 60 s ahead of the fake's ``clock``,
  ``exp`` after the clock, at most 10 minutes ahead of it and at most 10 minutes after
  ``iat`` (the reference's rule and the documentation's "no more than 10 minutes into the
  future", both). Refusals are 401 with GitHub's own messages (``JWT_*`` below; octokit's
  auth-app matches the ``exp``/``iat`` ones to correct clock skew). Anything else on an App
  endpoint (an installation token, a personal token, nothing) is 401 "A JSON web token could
  not be decoded"; a JWT anywhere else is 401 "Bad credentials", as for any credential GitHub
  does not take there.
- ``POST .../access_tokens`` answers 201 with a fresh installation token, ``ghs_`` and 36 to 116
  more letters and digits (random length: clients must not assume one), valid for
  ``token_lifetime`` seconds (an hour) by ``clock``. ``repositories``/``repository_ids``
  narrow it (422 "There is at least one repository that does not exist or is not accessible to
  the parent installation." otherwise) and ``permissions`` narrow it (422 "The permissions
  requested are not granted to this installation." when one exceeds the installation's). The
  token joins ``tokens`` with its permissions; it sees only its repositories (any other
  repository is a 404, as one the token cannot see is on GitHub). Once expired (by ``clock``,
  or all at once with ``expire_tokens()``) it is 401 "Bad credentials". ``tokens_issued``
  records (installation id, time) of each.
- Rate limits: every installation has its own budget (``installation_rate_limit(id)``, 5,000 an
  hour unless ``add_installation`` says otherwise), and so has each App's JWT traffic and
  anonymous access (60 an hour); personal tokens share the fake's own (``rate_limit*`` knobs).
  The ``X-RateLimit-*`` headers of an answer are those of the budget the request spent, and
  the secondary limit (``secondary_limit``) counts writes per budget too. ``GET /rate_limit``
  describes the caller's budget and, as GitHub documents, does not spend it.
- ``GET /meta`` is served to anyone, without a credential too: GitHub.com's published SSH host
  keys (``ssh_host_keys``, a knob: a test may give the fake other keys; the fingerprints follow
  them) and a few of its address ranges.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.github_wire import (
    LEVELS,
    REPO,
    Call,
    Caller,
    RateBudget,
    check_types,
    credential,
    error,
    invalid,
    iso,
    node_id,
    not_found,
    user,
)
from tests.fakes.server import Incoming, JsonObject, Refusal, Reply

#: GitHub.com's SSH host keys, as GitHub publishes them (docs.github.com/authentication/
#: keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints: SHA256 fingerprints
#: +DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU, p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM and
#: uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s; public facts, as in any known_hosts file)
GITHUB_SSH_HOST_KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7"
    "opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1g"
    "vwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/h"
    "WCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY"
    "7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT"
    "4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/"
    "YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=",
)
#: a few of GitHub.com's address ranges, as ``GET /meta`` lists them
GITHUB_RANGES = ("192.30.252.0/22", "185.199.108.0/22", "140.82.112.0/20", "143.55.64.0/20")

#: what an installation may do unless ``add_installation`` says otherwise: everything the fake
#: serves (``specs/API-REFERENCE.md`` section 5, "Permissions"), and metadata, which every App has
INSTALLATION_PERMISSIONS: Mapping[str, str] = {
    "deployments": "write",
    "administration": "write",
    "secrets": "write",
    "environments": "write",
    "metadata": "read",
    "contents": "read",
    "pull_requests": "write",
}
DEFAULT_APP_ID = 12345
TOKEN_LIFETIME = 3600.0
TOKEN_PREFIX = "ghs_"
TOKEN_LENGTHS = (40, 120)  # the whole token, prefix included
JWT_LIFETIME_MAX = 600
JWT_SKEW_MAX = 60
ANONYMOUS_LIMIT = 60

# GitHub's answers to App JWTs it refuses (401), word for word
JWT_UNDECODABLE = "A JSON web token could not be decoded"
JWT_EXPIRED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
JWT_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
JWT_IAT = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was "
    "issued"
)
# GitHub's 422 answers to an installation token it will not narrow, word for word
NOT_IN_INSTALLATION = (
    "There is at least one repository that does not exist or is not accessible to the parent "
    "installation."
)
NOT_GRANTED = "The permissions requested are not granted to this installation."

# (method, path pattern, name of the method that answers)
APP_ROUTES: list[tuple[str, str, str]] = [
    ("GET", r"/app", "_get_app"),
    ("POST", r"/app/installations/(?P<installation_id>\d+)/access_tokens", "_post_access_token"),
    ("GET", rf"{REPO}/installation", "_get_repo_installation"),
    ("GET", r"/orgs/(?P<org>[^/]+)/installation", "_get_org_installation"),
    ("GET", r"/meta", "_get_meta"),
    ("GET", r"/rate_limit", "_get_rate_limit"),
]
#: the operations an App's JWT is good for, and only it
JWT_ROUTES = frozenset(
    {"_get_app", "_post_access_token", "_get_repo_installation", "_get_org_installation"}
)
#: the operations GitHub serves without a credential
ANONYMOUS_ROUTES = frozenset({"_get_meta", "_get_rate_limit"})
#: "Accessing this endpoint does not count against your REST API rate limit."
UNMETERED_ROUTES = frozenset({"_get_rate_limit"})

_SIGNATURE_ONLY = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_iss": False,
    "verify_aud": False,
    "verify_sub": False,
    "verify_jti": False,
}


@dataclass(frozen=True)
class AppCredentials:
    """What registering a GitHub App gives its owner: its ids and its private key (PEM)."""

    app_id: int
    client_id: str
    slug: str
    private_key_pem: bytes


@dataclass
class _App:
    app_id: int
    client_id: str
    slug: str
    owner: str
    permissions: dict[str, str]
    public_key: rsa.RSAPublicKey
    budget: RateBudget
    created_at: str

    def issued(self, iss: Any) -> bool:
        """Whether a JWT's ``iss`` names this App: its client ID, or its App ID as a number or
        a numeric string."""
        if isinstance(iss, bool):
            return False
        if isinstance(iss, int):
            return iss == self.app_id
        return isinstance(iss, str) and iss in (self.client_id, str(self.app_id))


@dataclass
class _Installation:
    id: int
    app: _App
    account: str
    repositories: frozenset[str] | None  # lower-case names; None: every repository of account
    permissions: dict[str, str]
    budget: RateBudget
    created_at: str

    def sees(self, repo_key: tuple[str, str]) -> bool:
        owner, name = repo_key
        if owner != self.account.lower():
            return False
        return self.repositories is None or name in self.repositories


@dataclass
class IssuedToken:
    """An installation token the fake handed out: whose, what it sees, until when."""

    token: str
    installation: _Installation
    repositories: frozenset[tuple[str, str]] | None  # narrowed to these; None: the installation's
    permissions: dict[str, str]
    issued_at: float
    expires_at: float


def ssh_fingerprint(line: str) -> str:
    """``SHA256:<base64>`` of an OpenSSH public key line, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(line.split()[1], validate=True)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_key_fingerprints(lines: Iterable[str]) -> dict[str, str]:
    """``ssh_key_fingerprints`` of ``GET /meta``: ``SHA256_<TYPE>`` to the bare fingerprint."""
    labels = {"ssh-rsa": "SHA256_RSA", "ssh-dss": "SHA256_DSA", "ssh-ed25519": "SHA256_ED25519"}
    found: dict[str, str] = {}
    for line in lines:
        kind = line.split()[0]
        label = "SHA256_ECDSA" if kind.startswith("ecdsa-sha2-") else labels.get(kind)
        if label is not None:
            found[label] = ssh_fingerprint(line).removeprefix("SHA256:")
    return found


def _account_id(name: str) -> int:
    """A stable id for an account (organization) the tests name."""
    return 1_000_000 + int(hashlib.sha1(name.lower().encode()).hexdigest()[:6], 16)


def _organization(name: str) -> JsonObject:
    return user(name, _account_id(name), "Organization")


class GitHubApps:
    """The GitHub App half of ``FakeGitHub`` (see the module docstring).

    A mixin: ``FakeGitHub`` supplies the lock, ``clock``, ``tokens``, the repositories and the
    id and timestamp helpers, and calls ``_init_apps`` from its constructor."""

    # supplied by FakeGitHub
    _lock: threading.RLock
    clock: Callable[[], float]
    tokens: dict[str, dict[str, str]]
    _budget: RateBudget
    _refs: dict[tuple[str, str], Any]
    _repo_names: dict[tuple[str, str], tuple[str, str]]
    _repo_ids: dict[tuple[str, str], int]
    _next_id: Callable[[str], int]
    _tick: Callable[[], str]
    _repository: Callable[[str, str], tuple[str, str]]

    def _init_apps(self, seed: int) -> None:
        # Knobs and observations.
        self.token_lifetime: float = TOKEN_LIFETIME
        self.ssh_host_keys: list[str] = list(GITHUB_SSH_HOST_KEYS)
        self.tokens_issued: list[tuple[int, float]] = []
        self._apps: dict[int, _App] = {}
        self._installations: dict[int, _Installation] = {}
        self._issued: dict[str, IssuedToken] = {}
        self._anonymous_budget = RateBudget.fresh(ANONYMOUS_LIMIT, self.clock())
        # Apart from the fault knobs' generator, so that tokens do not shift their draws.
        self._token_rng = random.Random(f"installation-tokens-{seed}")

    # -- Apps and installations --------------------------------------------------------------

    def add_app(
        self,
        client_id: str | None = None,
        app_id: int | None = None,
        *,
        owner: str = "acme",
        slug: str | None = None,
        permissions: Mapping[str, str] | None = None,
        rate_limit: int = 5000,
    ) -> AppCredentials:
        """Register a GitHub App owned by ``owner``; returns its ids and private key. The first
        App gets App ID 12345 unless told otherwise, the next ones the following numbers; client
        IDs look like GitHub's (``Iv23li`` and 14 more characters). ``ValueError`` if an id is
        taken."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        with self._lock:
            number = app_id if app_id is not None else DEFAULT_APP_ID + len(self._apps)
            while app_id is None and number in self._apps:
                number += 1
            client = client_id or "Iv23li" + hashlib.sha1(f"app-{number}".encode()).hexdigest()[:14]
            if number in self._apps or any(a.client_id == client for a in self._apps.values()):
                raise ValueError(f"an App with id {number} or client id {client} exists")
            app = _App(
                app_id=number,
                client_id=client,
                slug=slug or f"slotkeeper-test-{number}",
                owner=owner,
                permissions=_levels(permissions or INSTALLATION_PERMISSIONS),
                public_key=key.public_key(),
                budget=RateBudget.fresh(rate_limit, self.clock()),
                created_at=self._tick(),
            )
            self._apps[number] = app
            return AppCredentials(number, client, app.slug, pem)

    def add_installation(
        self,
        app: AppCredentials | int,
        account: str = "acme",
        repositories: Iterable[str] | None = None,
        permissions: Mapping[str, str] | None = None,
        *,
        rate_limit: int = 5000,
    ) -> int:
        """Install an App (its credentials or App ID) on ``account``: on every repository of
        the account (``None``), or on the ones named (``"web"`` or ``"acme/web"``), with
        ``permissions`` (the App's unless told; metadata read is always added). Returns the
        installation id. ``KeyError`` for an unknown App, ``ValueError`` for a second
        installation on the same account (GitHub has one per account) or permissions beyond
        the App's."""
        with self._lock:
            found = self._apps[app if isinstance(app, int) else app.app_id]
            if any(
                i.app is found and i.account.lower() == account.lower()
                for i in self._installations.values()
            ):
                raise ValueError(f"App {found.app_id} is already installed on {account}")
            names = None
            if repositories is not None:
                names = frozenset(_repository_name(account, r) for r in repositories)
            granted = _levels(permissions if permissions is not None else found.permissions)
            granted.setdefault("metadata", "read")
            beyond = sorted(
                name
                for name, level in granted.items()
                if LEVELS[level] > LEVELS.get(found.permissions.get(name, ""), 0)
                and name != "metadata"
            )
            if beyond:
                raise ValueError(f"permissions beyond the App's: {', '.join(beyond)}")
            number = self._next_id("installation")
            self._installations[number] = _Installation(
                id=number,
                app=found,
                account=account,
                repositories=names,
                permissions=granted,
                budget=RateBudget.fresh(rate_limit, self.clock()),
                created_at=self._tick(),
            )
            return number

    def installation_rate_limit(self, installation_id: int) -> RateBudget:
        """The live budget of an installation (a knob: set ``remaining`` or ``reset``)."""
        with self._lock:
            return self._installations[installation_id].budget

    def issued_token(self, token: str) -> IssuedToken | None:
        """What the fake knows of an installation token it handed out (None for others)."""
        with self._lock:
            return self._issued.get(token)

    def expire_tokens(self) -> None:
        """Expire every installation token handed out so far, at once (as an hour passing
        would, but for them alone): their next use is 401 Bad credentials."""
        with self._lock:
            now = self.clock()
            for issued in self._issued.values():
                issued.expires_at = min(issued.expires_at, now)

    # -- who is calling (FakeGitHub._admit; the lock is held) -----------------------------------

    def _identify(
        self, incoming: Incoming, handler_name: str | None
    ) -> tuple[Caller, Reply | None]:
        """The caller of a request, and the 401 that refuses it, if it is refused."""
        authorization = incoming.headers.get("authorization", "")
        token = credential(authorization)
        fallback = Caller("token", self._budget, token=token)
        if handler_name in JWT_ROUTES:
            found: _App | str = JWT_UNDECODABLE
            if token is not None and token not in self.tokens:
                found = self._verify_jwt(token)
            if isinstance(found, str):
                return fallback, error(401, found)
            return Caller("app", found.budget, token=token, app=found), None
        if not authorization.strip() and handler_name in ANONYMOUS_ROUTES:
            return Caller("anonymous", self._anonymous_budget), None
        if token is None or token not in self.tokens:
            return fallback, error(401, "Bad credentials")
        issued = self._issued.get(token)
        if issued is None:
            return fallback, None
        caller = Caller(
            "installation",
            issued.installation.budget,
            token=token,
            installation=issued.installation,
            issued=issued,
        )
        if self.clock() >= issued.expires_at:
            return caller, error(401, "Bad credentials")
        return caller, None

    def _verify_jwt(self, token: str) -> _App | str:
        """The App a JWT authenticates, or GitHub's message refusing it."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return JWT_UNDECODABLE
        if header.get("alg") != "RS256":
            return JWT_UNDECODABLE
        app = next((a for a in self._apps.values() if a.issued(claims.get("iss"))), None)
        if app is None:
            return JWT_UNDECODABLE
        try:
            jwt.decode(token, app.public_key, algorithms=["RS256"], options=_SIGNATURE_ONLY)
        except jwt.PyJWTError:
            return JWT_UNDECODABLE
        now = self.clock()
        issued_at, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued_at, int) or isinstance(issued_at, bool):
            return JWT_IAT
        if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= now:
            return JWT_EXPIRED
        if issued_at > now + JWT_SKEW_MAX:
            return JWT_IAT
        if expires > now + JWT_LIFETIME_MAX or expires - issued_at > JWT_LIFETIME_MAX:
            return JWT_TOO_FAR
        return app

    def _exceeded(self, caller: Caller) -> str:
        """GitHub's message when the caller's primary budget is spent."""
        if caller.installation is not None:
            return f"API rate limit exceeded for installation ID {caller.installation.id}."
        if caller.app is not None:
            return f"API rate limit exceeded for app ID {caller.app.app_id}."
        if caller.kind == "anonymous":
            return (
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                "Authenticated requests get a higher rate limit. Check out the documentation "
                "for more details.)"
            )
        return "API rate limit exceeded for user ID 1."

    # -- routes ------------------------------------------------------------------------------

    def _get_app(self, call: Call) -> Reply:
        app = _app_of(call)
        count = sum(1 for i in self._installations.values() if i.app is app)
        return Reply(
            200,
            {
                "id": app.app_id,
                "slug": app.slug,
                "node_id": node_id("A_kwDO", app.app_id),
                "client_id": app.client_id,
                "owner": _organization(app.owner),
                "name": app.slug.replace("-", " ").title(),
                "description": "",
                "external_url": f"https://github.com/apps/{app.slug}",
                "html_url": f"https://github.com/apps/{app.slug}",
                "created_at": app.created_at,
                "updated_at": app.created_at,
                "permissions": dict(app.permissions),
                "events": [],
                "installations_count": count,
            },
        )

    def _get_repo_installation(self, call: Call) -> Reply:
        app = _app_of(call)
        repo_key = self._repository(call.owner, call.repo)
        for installation in self._installations.values():
            if installation.app is app and installation.sees(repo_key):
                return Reply(200, self._installation_body(installation))
        raise not_found()

    def _get_org_installation(self, call: Call) -> Reply:
        app = _app_of(call)
        org = call.args["org"].lower()
        for installation in self._installations.values():
            if installation.app is app and installation.account.lower() == org:
                return Reply(200, self._installation_body(installation))
        raise not_found()

    def _post_access_token(self, call: Call) -> Reply:
        app = _app_of(call)
        installation = self._installations.get(call.number("installation_id"))
        if installation is None or installation.app is not app:
            raise not_found()
        body = call.body if call.body is not None else {}
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        check_types(
            body, {"repositories": (list,), "repository_ids": (list,), "permissions": (dict,)}
        )
        chosen = self._narrowed_repositories(installation, body)
        permissions = _narrowed_permissions(installation, body.get("permissions"))
        now = self.clock()
        token = self._new_token()
        expires = now + self.token_lifetime
        issued = IssuedToken(token, installation, chosen, permissions, now, expires)
        self._issued[token] = issued
        self.tokens[token] = dict(permissions)
        self.tokens_issued.append((installation.id, now))
        answer: JsonObject = {
            "token": token,
            "expires_at": iso(issued.expires_at),
            "permissions": dict(permissions),
            "repository_selection": "all",
        }
        if chosen is not None or installation.repositories is not None:
            visible = sorted(
                key
                for key in self._refs
                if installation.sees(key) and (chosen is None or key in chosen)
            )
            answer["repository_selection"] = "selected"
            answer["repositories"] = [self._repository_body(key) for key in visible]
        return Reply(201, answer)

    def _get_meta(self, call: Call) -> Reply:
        keys = list(self.ssh_host_keys)
        ranges = list(GITHUB_RANGES)
        return Reply(
            200,
            {
                "verifiable_password_authentication": False,
                "ssh_key_fingerprints": host_key_fingerprints(keys),
                "ssh_keys": keys,
                "hooks": ranges,
                "web": ranges,
                "api": ranges,
                "git": ranges,
            },
        )

    def _get_rate_limit(self, call: Call) -> Reply:
        assert call.caller is not None
        budget = call.caller.budget
        budget.refill(self.clock())
        core = budget.as_json("core")
        minute = int(self.clock()) + 60
        resources = {
            "core": core,
            "search": {"limit": 30, "remaining": 30, "reset": minute, "used": 0},
            "code_search": {"limit": 10, "remaining": 10, "reset": minute, "used": 0},
            "graphql": {
                "limit": budget.limit,
                "remaining": budget.limit,
                "reset": budget.reset,
                "used": 0,
            },
        }
        for name, resource in resources.items():
            resource["resource"] = name
        return Reply(200, {"resources": resources, "rate": dict(core)})

    # -- helpers (callers hold the lock) -------------------------------------------------------

    def _narrowed_repositories(
        self, installation: _Installation, body: JsonObject
    ) -> frozenset[tuple[str, str]] | None:
        """The repositories a token is narrowed to (None: not narrowed; empty lists are not a
        narrowing), 422 when one is not the installation's."""
        names = body.get("repositories") or []
        ids = body.get("repository_ids") or []
        if not names and not ids:
            return None
        if not all(isinstance(name, str) for name in names):
            raise invalid("For 'items', repositories must hold strings.")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise invalid("For 'items', repository_ids must hold integers.")
        by_id = {number: key for key, number in self._repo_ids.items()}
        wanted = [(installation.account.lower(), name.lower()) for name in names]
        wanted += [by_id.get(number, ("", "")) for number in ids]
        if any(key not in self._refs or not installation.sees(key) for key in wanted):
            raise Refusal(error(422, NOT_IN_INSTALLATION))
        return frozenset(wanted)

    def _new_token(self) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            length = self._token_rng.randint(*TOKEN_LENGTHS) - len(TOKEN_PREFIX)
            token = TOKEN_PREFIX + "".join(self._token_rng.choice(alphabet) for _ in range(length))
            if token not in self.tokens:
                return token

    def _installation_body(self, installation: _Installation) -> JsonObject:
        base = self.base_url
        account = installation.account
        app = installation.app
        return {
            "id": installation.id,
            "account": _organization(account),
            "repository_selection": "all" if installation.repositories is None else "selected",
            "access_tokens_url": f"{base}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{base}/installation/repositories",
            "html_url": (
                f"https://github.com/organizations/{account}/settings/installations/"
                f"{installation.id}"
            ),
            "app_id": app.app_id,
            "client_id": app.client_id,
            "app_slug": app.slug,
            "target_id": _account_id(account),
            "target_type": "Organization",
            "permissions": dict(installation.permissions),
            "events": [],
            "created_at": installation.created_at,
            "updated_at": installation.created_at,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }

    def _repository_body(self, repo_key: tuple[str, str]) -> JsonObject:
        """A ``repository`` as GitHub renders one in an installation token's answer."""
        owner, name = self._repo_names[repo_key]
        number = self._repo_ids[repo_key]
        api = f"{self.base_url}/repos/{owner}/{name}"
        html = f"https://github.com/{owner}/{name}"
        templates = {
            "archive_url": "{archive_format}{/ref}",
            "assignees_url": "assignees{/user}",
            "blobs_url": "git/blobs{/sha}",
            "branches_url": "branches{/branch}",
            "collaborators_url": "collaborators{/collaborator}",
            "comments_url": "comments{/number}",
            "commits_url": "commits{/sha}",
            "compare_url": "compare/{base}...{head}",
            "contents_url": "contents/{+path}",
            "git_commits_url": "git/commits{/sha}",
            "git_refs_url": "git/refs{/sha}",
            "git_tags_url": "git/tags{/sha}",
            "issue_comment_url": "issues/comments{/number}",
            "issue_events_url": "issues/events{/number}",
            "issues_url": "issues{/number}",
            "keys_url": "keys{/key_id}",
            "labels_url": "labels{/name}",
            "milestones_url": "milestones{/number}",
            "notifications_url": "notifications{?since,all,participating}",
            "pulls_url": "pulls{/number}",
            "releases_url": "releases{/id}",
            "statuses_url": "statuses/{sha}",
            "trees_url": "git/trees{/sha}",
        }
        plain = (
            "contributors",
            "deployments",
            "downloads",
            "events",
            "forks",
            "hooks",
            "languages",
            "merges",
            "stargazers",
            "subscribers",
            "subscription",
            "tags",
            "teams",
        )
        body: JsonObject = {
            "id": number,
            "node_id": node_id("R_kgDO", number),
            "name": name,
            "full_name": f"{owner}/{name}",
            "owner": _organization(owner),
            "private": True,
            "html_url": html,
            "description": None,
            "fork": False,
            "url": api,
            **{field_: f"{api}/{tail}" for field_, tail in templates.items()},
            **{f"{tail}_url": f"{api}/{tail}" for tail in plain},
            "git_url": f"git://github.com/{owner}/{name}.git",
            "ssh_url": f"git@github.com:{owner}/{name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": "main",
            "open_issues": 0,
            "open_issues_count": 0,
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_downloads": True,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": None,
            "created_at": None,
            "updated_at": None,
        }
        return body


def _app_of(call: Call) -> _App:
    assert call.caller is not None and call.caller.app is not None  # JWT_ROUTES: admitted Apps
    return call.caller.app


def _levels(permissions: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``permissions``; ``ValueError`` for a level that is not read or write."""
    for name, level in permissions.items():
        if level not in LEVELS:
            raise ValueError(f"permission {name}: {level!r} is neither read nor write")
    return dict(permissions)


def _narrowed_permissions(installation: _Installation, asked: Any) -> dict[str, str]:
    """The permissions of a new token: the installation's, or the ones asked for when the
    installation holds each (at that level or above); 422 otherwise."""
    if asked is None:
        return dict(installation.permissions)
    for name, level in asked.items():
        held = LEVELS.get(installation.permissions.get(name, ""), 0)
        if not isinstance(level, str) or level not in LEVELS or LEVELS[level] > held:
            raise Refusal(error(422, NOT_GRANTED))
    granted = dict(asked)
    if "metadata" in installation.permissions:
        granted.setdefault("metadata", "read")
    return granted


def _repository_name(account: str, repository: str) -> str:
    """The lower-case name of an installation's repository, given as ``name`` or
    ``account/name``; ``ValueError`` for another account's."""
    owner, slash, name = repository.rpartition("/")
    if slash and owner.lower() != account.lower():
        raise ValueError(f"{repository} is not a repository of {account}")
    if not name:
        raise ValueError(f"not a repository name: {repository!r}")
    return name.lower()
