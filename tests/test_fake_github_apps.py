"""The fake GitHub as a GitHub App sees it: JWTs, installation tokens, Actions secrets, /meta.

Everything goes through real HTTP (httpx) and real libraries: PyJWT signs the App's JWTs with
the private key the fake handed out, PyNaCl seals secret values for the public key the fake
serves. Time is the fake's ``clock``, a ``Clock`` the tests move (no sleeping): JWT lifetimes,
token expiry and rate-limit windows follow it. Every exchange is checked at teardown against
GitHub's two vendored descriptions (``_every_exchange_matches_the_spec``); a request the spec
forbids on purpose carries ``x-test-invalid``, one off the spec's routes ``x-test-off-spec``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.public import PrivateKey, PublicKey, SealedBox

from tests.fakes.github import (
    ALL_PERMISSIONS,
    INSTALLATION_PERMISSIONS,
    AppCredentials,
    FakeGitHub,
)
from tests.fakes.github_apps import (
    GITHUB_SSH_HOST_KEYS,
    JWT_EXPIRED,
    JWT_IAT,
    JWT_TOO_FAR,
    JWT_UNDECODABLE,
    NOT_GRANTED,
    NOT_IN_INSTALLATION,
    host_key_fingerprints,
    ssh_fingerprint,
)
from tests.fakes.spec import OpenApiChecker, check_recorded

TOKEN = "ghp_testtoken0123456789"
INVALID = {"x-test-invalid": "1"}
OFF_SPEC = {"x-test-off-spec": "1"}
START = 1_780_000_000.0  # 2026-05-28: the tests' clock starts here
#: GitHub's published fingerprints of its host keys (docs.github.com, "GitHub's SSH key
#: fingerprints")
GITHUB_FINGERPRINTS = {
    "SHA256_RSA": "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
    "SHA256_ECDSA": "p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM",
    "SHA256_ED25519": "+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
}


@dataclass
class Clock:
    """A clock the test moves: the fake's ``clock`` knob."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """The fake's time, starting at ``START``."""
    return Clock()


@pytest.fixture
def github(clock: Clock) -> Iterator[FakeGitHub]:
    """A fake GitHub on the test clock with acme/web (environment production), acme/api and
    other/tools, and the personal token ``TOKEN``."""
    with FakeGitHub(
        TOKEN, repositories=["acme/web", "acme/api", "other/tools"], clock=clock
    ) as fake:
        fake.tokens[TOKEN] = {**ALL_PERMISSIONS, "secrets": "write"}
        yield fake


@pytest.fixture(autouse=True)
def _every_exchange_matches_the_spec(
    github: FakeGitHub, github_spec: OpenApiChecker
) -> Iterator[None]:
    yield
    check_recorded(github.requests, github_spec)


@pytest.fixture
def app(github: FakeGitHub) -> AppCredentials:
    """A GitHub App registered with the fake (App ID 12345)."""
    return github.add_app()


@pytest.fixture
def installation(github: FakeGitHub, app: AppCredentials) -> int:
    """The App installed on every repository of acme, with every permission it has."""
    return github.add_installation(app, "acme")


def client(fake: FakeGitHub, credential: str | None) -> httpx.Client:
    """An httpx client for the fake with GitHub's headers and ``credential`` as the bearer."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "slotkeeper-tests",
    }
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    return httpx.Client(base_url=fake.base_url, headers=headers, timeout=5)


def app_jwt(
    credentials: AppCredentials,
    clock: Clock,
    *,
    iat: float = -60,
    exp: float = 540,
    iss: Any = None,
    key: bytes | None = None,
) -> str:
    """An App JWT signed with PyJWT: ``iat`` and ``exp`` relative to the clock (as GitHub
    advises, 60 s in the past and 10 minutes after that), ``iss`` the client ID."""
    claims = {
        "iat": int(clock.now + iat),
        "exp": int(clock.now + exp),
        "iss": credentials.client_id if iss is None else iss,
    }
    return jwt.encode(claims, key or credentials.private_key_pem, algorithm="RS256")


def signed(claims: dict[str, Any], credentials: AppCredentials) -> str:
    """A JWT whose claims PyJWT's ``encode`` would not write (a numeric ``iss``, a missing
    ``exp``): the payload signed as it is."""
    return jwt.api_jws.encode(
        json.dumps(claims).encode(), credentials.private_key_pem, algorithm="RS256"
    )


def installation_token(
    fake: FakeGitHub, credentials: AppCredentials, clock: Clock, installation_id: int, **body: Any
) -> dict[str, Any]:
    """Trade a fresh JWT for an installation token (201 expected); the answer's body."""
    with client(fake, app_jwt(credentials, clock)) as as_app:
        answer = as_app.post(
            f"/app/installations/{installation_id}/access_tokens", json=body or None
        )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def seal(public_key: str, value: str) -> str:
    """A secret value as GitHub asks for it: a sealed box for the base64 key, base64."""
    box = SealedBox(PublicKey(base64.b64decode(public_key)))
    return base64.b64encode(box.encrypt(value.encode())).decode()


def put_secret(http: httpx.Client, path: str, value: str, **headers: str) -> httpx.Response:
    """PUT ``value`` to ``path`` (``…/secrets/{name}``) as a client does: get the public key
    beside it, seal the value for that key, send it with the key's id."""
    base, _, _name = path.rpartition("/")
    key = http.get(f"{base}/public-key").json()
    body = {"encrypted_value": seal(key["key"], value), "key_id": key["key_id"]}
    return http.put(path, json=body, headers=headers)


def deploy_body() -> dict[str, Any]:
    """A deployment a careful client asks for."""
    return {"ref": "main", "auto_merge": False, "required_contexts": []}


# -- the App: JWTs and installations ----------------------------------------------------------


def test_an_app_jwt_reads_the_app_and_finds_its_installations(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """With a JWT, GET /app describes the App; the repository and organization lookups answer
    the installation (with its permissions and token URL); where the App is not installed,
    404."""
    with client(github, app_jwt(app, clock)) as as_app:
        me = as_app.get("/app")
        by_repo = as_app.get("/repos/acme/web/installation")
        by_org = as_app.get("/orgs/ACME/installation")
        elsewhere = [
            as_app.get("/repos/other/tools/installation"),
            as_app.get("/orgs/other/installation"),
        ]

    assert me.status_code == 200
    assert (me.json()["id"], me.json()["client_id"]) == (12345, app.client_id)
    assert me.json()["slug"] == app.slug
    assert me.json()["installations_count"] == 1
    assert by_repo.status_code == by_org.status_code == 200
    assert by_repo.json() == by_org.json()
    found = by_repo.json()
    assert (found["id"], found["app_id"], found["account"]["login"]) == (
        installation,
        12345,
        "acme",
    )
    assert found["repository_selection"] == "all"
    assert found["permissions"] == dict(INSTALLATION_PERMISSIONS)
    assert found["access_tokens_url"] == (
        f"{github.base_url}/app/installations/{installation}/access_tokens"
    )
    assert [answer.status_code for answer in elsewhere] == [404, 404]


def test_the_issuer_is_the_client_id_or_the_app_id_as_a_number_or_a_string(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """``iss`` may name the App by its client ID or its App ID (number or numeric string);
    another App's ids, or none, make the JWT undecodable."""
    now = int(clock.now)
    good = [
        app_jwt(app, clock),
        app_jwt(app, clock, iss=str(app.app_id)),
        signed({"iat": now - 60, "exp": now + 540, "iss": app.app_id}, app),
    ]
    bad = [
        app_jwt(app, clock, iss="Iv23liSomeoneElse0000"),
        app_jwt(app, clock, iss="54321"),
        signed({"iat": now - 60, "exp": now + 540}, app),
        signed({"iat": now - 60, "exp": now + 540, "iss": True}, app),
    ]
    for token in good:
        with client(github, token) as as_app:
            assert as_app.get("/app").status_code == 200
    for token in bad:
        with client(github, token) as as_app:
            refused = as_app.get("/app")
        assert refused.status_code == 401
        assert refused.json()["message"] == JWT_UNDECODABLE


def test_jwts_github_refuses_are_401_with_its_messages(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """A wrong signature, another algorithm or garbage cannot be decoded; an ``exp`` more than
    10 minutes ahead (or after ``iat``) is too far; a past or missing ``exp`` is expired; an
    ``iat`` over 60 s ahead or not an integer is refused; each as GitHub words it."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger_pem = stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = int(clock.now)
    cases = {
        app_jwt(app, clock, key=stranger_pem): JWT_UNDECODABLE,
        jwt.encode({"iat": now, "exp": now + 60, "iss": app.client_id}, "s" * 32): JWT_UNDECODABLE,
        "not.a.jwt": JWT_UNDECODABLE,
        app_jwt(app, clock, iat=0, exp=601): JWT_TOO_FAR,
        app_jwt(app, clock, iat=-60, exp=570): JWT_TOO_FAR,  # 630 s after iat
        app_jwt(app, clock, iat=-600, exp=0): JWT_EXPIRED,
        app_jwt(app, clock, iat=-700, exp=-100): JWT_EXPIRED,
        signed({"iat": now - 60, "iss": app.client_id}, app): JWT_EXPIRED,
        signed({"iat": now - 60, "exp": "soon", "iss": app.client_id}, app): JWT_EXPIRED,
        app_jwt(app, clock, iat=61, exp=300): JWT_IAT,
        signed({"iat": "now", "exp": now + 300, "iss": app.client_id}, app): JWT_IAT,
        signed({"iat": now - 1.5, "exp": now + 300, "iss": app.client_id}, app): JWT_IAT,
    }
    for token, message in cases.items():
        with client(github, token) as as_app:
            refused = as_app.post(f"/app/installations/{50000001}/access_tokens")
        assert refused.status_code == 401, (token, refused.text)
        assert refused.json()["message"] == message, token
    assert github.tokens_issued == []

    ahead = app_jwt(app, clock, iat=60, exp=600)  # the most skew and lifetime GitHub takes
    with client(github, ahead) as as_app:
        assert as_app.get("/app").status_code == 200


def test_a_jwt_expires_as_the_clock_passes_its_exp(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """The same JWT works until the fake's clock reaches ``exp``, then is refused as
    expired: no sleeping, the test moves the clock."""
    token = app_jwt(app, clock)
    with client(github, token) as as_app:
        assert as_app.get("/app").status_code == 200
        clock.advance(539)
        assert as_app.get("/app").status_code == 200
        clock.advance(1)
        expired = as_app.get("/app")

    assert expired.status_code == 401
    assert expired.json()["message"] == JWT_EXPIRED


def test_a_jwt_is_only_good_for_the_app_endpoints(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """A JWT elsewhere is 401 Bad credentials; on the App endpoints, an installation token,
    a personal token or no credential at all is 401 "A JSON web token could not be decoded"."""
    token = installation_token(github, app, clock, installation)["token"]
    with client(github, app_jwt(app, clock)) as as_app:
        elsewhere = [
            as_app.get("/repos/acme/web/deployments"),
            as_app.get("/repos/acme/web/actions/secrets/public-key"),
            as_app.get("/meta"),
        ]
    for answer in elsewhere:
        assert answer.status_code == 401
        assert answer.json()["message"] == "Bad credentials"
    for credential in (token, TOKEN, None):
        with client(github, credential) as http:
            answers = [
                http.get("/app"),
                http.post(f"/app/installations/{installation}/access_tokens"),
                http.get("/repos/acme/web/installation"),
            ]
        for answer in answers:
            assert answer.status_code == 401, credential
            assert answer.json()["message"] == JWT_UNDECODABLE
    assert len(github.tokens_issued) == 1


# -- installation tokens ----------------------------------------------------------------------


def test_an_installation_token_is_201_for_an_hour_and_works_on_the_installation(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """201 with a ``ghs_`` token of 40 to 120 characters, ``expires_at`` an hour later by the
    fake's clock, the installation's permissions and selection; the token joins ``tokens`` and
    creates a deployment in an acme repository."""
    issued = installation_token(github, app, clock, installation)

    token = issued["token"]
    assert token.startswith("ghs_")
    assert 40 <= len(token) <= 120
    assert issued["expires_at"] == datetime.fromtimestamp(START + 3600, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert issued["permissions"] == dict(INSTALLATION_PERMISSIONS)
    assert issued["repository_selection"] == "all"
    assert "repositories" not in issued
    assert github.tokens[token] == dict(INSTALLATION_PERMISSIONS)
    assert github.tokens_issued == [(installation, START)]
    found = github.issued_token(token)
    assert found is not None and found.installation.id == installation
    with client(github, token) as as_installation:
        created = as_installation.post("/repos/acme/web/deployments", json=deploy_body())
    assert created.status_code == 201
    assert len(github.deployments("acme", "web")) == 1


def test_installation_tokens_are_opaque_strings_of_varying_length(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """Ten tokens: all distinct, all ``ghs_`` and letters or digits, between 40 and 120
    characters, not all of one length (a client must not assume GitHub's old 40)."""
    tokens = [installation_token(github, app, clock, installation)["token"] for _ in range(10)]

    assert len(set(tokens)) == 10
    assert all(t.startswith("ghs_") and t[4:].isalnum() for t in tokens)
    assert all(40 <= len(t) <= 120 for t in tokens)
    assert len({len(t) for t in tokens}) > 1
    assert [entry[0] for entry in github.tokens_issued] == [installation] * 10


def test_a_token_narrowed_to_repositories_sees_only_them(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """``repositories`` (names) or ``repository_ids`` narrow a token: the answer lists them,
    selection "selected"; the token gets 404 on the installation's other repositories."""
    by_name = installation_token(github, app, clock, installation, repositories=["WEB"])
    web_id = by_name["repositories"][0]["id"]
    by_id = installation_token(github, app, clock, installation, repository_ids=[web_id])

    for issued in (by_name, by_id):
        assert issued["repository_selection"] == "selected"
        assert [r["full_name"] for r in issued["repositories"]] == ["acme/web"]
        with client(github, issued["token"]) as narrowed:
            assert narrowed.get("/repos/acme/web/deployments").status_code == 200
            hidden = narrowed.get("/repos/acme/api/deployments")
        assert hidden.status_code == 404
        assert hidden.json()["message"] == "Not Found"


def test_an_installation_sees_its_repositories_only(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """An installation on some repositories lists them in its tokens and sees no other; one on
    every repository of its account sees repositories created after the token, and never
    another account's."""
    some = github.add_installation(app, "acme", repositories=["web"])
    whole = github.add_installation(app, "other")
    selected = installation_token(github, app, clock, some)
    everything = installation_token(github, app, clock, whole)

    assert [r["name"] for r in selected["repositories"]] == ["web"]
    with client(github, selected["token"]) as as_some:
        assert as_some.get("/repos/acme/web/keys").status_code == 200
        assert as_some.get("/repos/acme/api/keys").status_code == 404
        assert as_some.get("/repos/other/tools/keys").status_code == 404
    github.add_repository("other/later")
    with client(github, everything["token"]) as as_whole:
        assert as_whole.get("/repos/other/later/keys").status_code == 200
        assert as_whole.get("/repos/acme/web/keys").status_code == 404


def test_narrowing_outside_the_installation_is_422(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """A repository the installation lacks (another account's, a missing one, an unknown id)
    or a permission beyond the installation's is 422 with GitHub's words, and no token."""
    installation = github.add_installation(
        app, "acme", repositories=["web"], permissions={"deployments": "read"}
    )
    refusals = {
        json.dumps({"repositories": ["api"]}): NOT_IN_INSTALLATION,
        json.dumps({"repositories": ["ghost"]}): NOT_IN_INSTALLATION,
        json.dumps({"repositories": ["web", "tools"]}): NOT_IN_INSTALLATION,
        json.dumps({"repository_ids": [1]}): NOT_IN_INSTALLATION,
        json.dumps({"permissions": {"deployments": "write"}}): NOT_GRANTED,
        json.dumps({"permissions": {"secrets": "read"}}): NOT_GRANTED,
    }
    with client(github, app_jwt(app, clock)) as as_app:
        for body, message in refusals.items():
            answer = as_app.post(
                f"/app/installations/{installation}/access_tokens",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 422, body
            assert answer.json()["message"] == message
        foreign = as_app.post("/app/installations/999/access_tokens")
    assert foreign.status_code == 404
    assert github.tokens_issued == []


def test_a_token_narrowed_in_permissions_gets_the_integration_403(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """``permissions`` narrow a token (metadata read stays): beyond them GitHub's 403 for
    integrations names the permission needed, and nothing changes."""
    issued = installation_token(
        github, app, clock, installation, permissions={"deployments": "read"}
    )

    assert issued["permissions"] == {"deployments": "read", "metadata": "read"}
    with client(github, issued["token"]) as narrowed:
        assert narrowed.get("/repos/acme/web/deployments").status_code == 200
        refused = narrowed.post("/repos/acme/web/deployments", json=deploy_body())
        keys = narrowed.get("/repos/acme/web/keys")
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"
    assert refused.headers["x-accepted-github-permissions"] == "deployments=write"
    assert keys.headers["x-accepted-github-permissions"] == "administration=read"
    assert github.deployments("acme", "web") == []


def test_an_installation_token_expires_after_an_hour_by_the_clock(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """The token works for 3,599 s, then is 401 Bad credentials (with GitHub's documentation
    URL); a new JWT trades for a new token that works."""
    token = installation_token(github, app, clock, installation)["token"]
    with client(github, token) as as_installation:
        clock.advance(3599)
        assert as_installation.get("/repos/acme/web/deployments").status_code == 200
        clock.advance(1)
        expired = as_installation.get("/repos/acme/web/deployments")
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"
    assert expired.json()["documentation_url"].startswith("https://docs.github.com/")

    fresh = installation_token(github, app, clock, installation)["token"]
    with client(github, fresh) as as_installation:
        assert as_installation.get("/repos/acme/web/deployments").status_code == 200
    assert github.tokens_issued == [(installation, START), (installation, START + 3600)]


def test_expire_tokens_ends_every_issued_token_at_once(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """``expire_tokens()`` (a token expiring mid-apply): every installation token handed out
    so far is 401 from the next request; personal tokens and later tokens are untouched."""
    first = installation_token(github, app, clock, installation)["token"]
    second = installation_token(github, app, clock, installation, repositories=["api"])["token"]
    github.expire_tokens()
    later = installation_token(github, app, clock, installation)["token"]

    for token, status in ((first, 401), (second, 401), (later, 200), (TOKEN, 200)):
        with client(github, token) as http:
            assert http.get("/repos/acme/api/deployments").status_code == status, token


# -- rate limits ------------------------------------------------------------------------------


def test_each_installation_has_its_own_rate_limit_budget(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """Two installations, two budgets: each answer's X-RateLimit-* headers are its
    installation's, spending one leaves the other (and the personal tokens') alone, and an
    exhausted one is 403 for its installation only, until its reset."""
    acme = github.add_installation(app, "acme", rate_limit=3)
    other = github.add_installation(app, "other", rate_limit=4)
    acme_token = installation_token(github, app, clock, acme)["token"]
    other_token = installation_token(github, app, clock, other)["token"]

    with client(github, acme_token) as as_acme, client(github, other_token) as as_other:
        first = as_acme.get("/repos/acme/web/deployments")
        assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
            "3",
            "2",
        )
        theirs = as_other.get("/repos/other/tools/deployments")
        assert (theirs.headers["x-ratelimit-limit"], theirs.headers["x-ratelimit-remaining"]) == (
            "4",
            "3",
        )
        as_acme.get("/repos/acme/web/deployments")
        last = as_acme.get("/repos/acme/web/deployments")
        refused = as_acme.get("/repos/acme/web/deployments")
        still = as_other.get("/repos/other/tools/deployments")
        assert last.headers["x-ratelimit-remaining"] == "0"
        assert refused.status_code == 403
        assert refused.json()["message"] == f"API rate limit exceeded for installation ID {acme}."
        assert refused.headers["x-ratelimit-used"] == "3"
        assert int(refused.headers["x-ratelimit-reset"]) == int(START) + 3600
        assert (still.status_code, still.headers["x-ratelimit-remaining"]) == (200, "2")
        assert github.installation_rate_limit(acme).remaining == 0
        assert github.rate_limit_remaining == github.rate_limit == 5000

        github.installation_rate_limit(acme).reset = int(clock.now)  # its window ends
        refilled = as_acme.get("/repos/acme/web/deployments")
    assert (refilled.status_code, refilled.headers["x-ratelimit-remaining"]) == (200, "2")


def test_the_secondary_limit_counts_each_installations_writes(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """With ``secondary_limit`` one write per minute, each installation gets its write; a
    second one from the same installation is 403 with retry-after."""
    acme = installation_token(github, app, clock, github.add_installation(app, "acme"))["token"]
    other = installation_token(github, app, clock, github.add_installation(app, "other"))["token"]
    github.secondary_limit = (1, 60.0)

    with client(github, acme) as as_acme, client(github, other) as as_other:
        assert as_acme.post("/repos/acme/web/deployments", json=deploy_body()).status_code == 201
        assert (
            as_other.post("/repos/other/tools/deployments", json=deploy_body()).status_code == 201
        )
        refused = as_acme.post("/repos/acme/web/deployments", json=deploy_body())
    assert refused.status_code == 403
    assert "secondary rate limit" in refused.json()["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_get_rate_limit_describes_the_callers_budget_without_spending_it(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """GET /rate_limit answers the caller's core budget (an installation's, the personal
    tokens', anonymous access's 60) and does not count against it."""
    token = installation_token(github, app, clock, installation)["token"]
    github.installation_rate_limit(installation).remaining = 1234

    with client(github, token) as as_installation:
        first = as_installation.get("/rate_limit")
        second = as_installation.get("/rate_limit")
    with client(github, TOKEN) as personal:
        mine = personal.get("/rate_limit").json()
    with client(github, None) as anonymous:
        nobody = anonymous.get("/rate_limit").json()

    core = first.json()["resources"]["core"]
    assert (core["limit"], core["remaining"], core["used"]) == (5000, 1234, 3766)
    assert first.json()["rate"] == core
    assert second.json()["resources"]["core"]["remaining"] == 1234
    assert first.headers["x-ratelimit-remaining"] == "1234"
    assert mine["resources"]["core"]["limit"] == 5000
    assert mine["resources"]["core"]["remaining"] == github.rate_limit_remaining
    assert (nobody["resources"]["core"]["limit"], nobody["resources"]["core"]["remaining"]) == (
        60,
        60,
    )


# -- Actions secrets --------------------------------------------------------------------------


def test_a_repository_secret_is_sealed_stored_read_back_as_metadata_and_deleted(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """The public key is a real Curve25519 key; a value sealed for it is 201 {} and stored as
    plaintext (the fake opens it); GET shows only name and dates; a second PUT is 204 and moves
    updated_at only; DELETE is 204, then GET and DELETE are 404."""
    token = installation_token(github, app, clock, installation)["token"]
    path = "/repos/acme/web/actions/secrets/DEPLOY_KEY"
    with client(github, token) as http:
        key = http.get("/repos/acme/web/actions/secrets/public-key").json()
        created = put_secret(http, path, "-----BEGIN OPENSSH PRIVATE KEY-----\nfirst\n")
        first = http.get(path).json()
        clock.advance(0.2)  # the same second: updated_at still moves on
        updated = put_secret(http, path, "second")
        second = http.get(path).json()
        deleted = http.delete(path)
        gone = http.get(path)
        again = http.delete(path)

    assert len(base64.b64decode(key["key"])) == 32
    assert key["key_id"].isdigit()
    assert (created.status_code, created.json()) == (201, {})
    assert set(first) == {"name", "created_at", "updated_at"}
    assert first["name"] == "DEPLOY_KEY"
    assert first["created_at"] == first["updated_at"]
    assert (updated.status_code, updated.content) == (204, b"")
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert deleted.status_code == 204
    assert gone.status_code == again.status_code == 404
    assert github.actions_secret("acme/web", "DEPLOY_KEY") is None


def test_the_fake_keeps_the_plaintext_for_the_tests(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """``actions_secret`` gives the decrypted value a client sealed; names are
    case-insensitive and shown in upper case, as GitHub shows them."""
    token = installation_token(github, app, clock, installation)["token"]
    with client(github, token) as http:
        assert (
            put_secret(http, "/repos/acme/web/actions/secrets/deploy_key", "s3cret").status_code
            == 201
        )
        assert (
            put_secret(http, "/repos/acme/web/actions/secrets/Deploy_Key", "again").status_code
            == 204
        )
        shown = http.get("/repos/acme/web/actions/secrets/deploy_KEY").json()

    assert shown["name"] == "DEPLOY_KEY"
    assert github.actions_secret("acme/web", "deploy_key") == "again"
    assert github.actions_secrets("acme/web") == {"DEPLOY_KEY": "again"}
    assert github.actions_secret("acme/api", "DEPLOY_KEY") is None


def test_environment_secrets_need_the_environment_and_have_their_own_key(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """Under an environment that does not exist every secrets operation is 404; once it
    exists it has its own public key and its own secrets, apart from the repository's."""
    token = installation_token(github, app, clock, installation)["token"]
    base = "/repos/acme/web/environments/production/secrets"
    with client(github, token) as http:
        assert http.get(f"{base}/public-key").status_code == 404
        somebody = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
        sealed = {"encrypted_value": seal(somebody, "x"), "key_id": "1"}
        assert http.put(f"{base}/DEPLOY_KEY", json=sealed).status_code == 404
        assert http.get(f"{base}/DEPLOY_KEY").status_code == 404
        assert http.delete(f"{base}/DEPLOY_KEY").status_code == 404

        assert http.put("/repos/acme/web/environments/production", json={}).status_code == 200
        environment_key = http.get(f"{base}/public-key").json()
        repository_key = http.get("/repos/acme/web/actions/secrets/public-key").json()
        assert put_secret(http, f"{base}/DEPLOY_KEY", "for production").status_code == 201
        assert http.get(f"{base}/DEPLOY_KEY").json()["name"] == "DEPLOY_KEY"
        assert http.get("/repos/acme/web/actions/secrets/DEPLOY_KEY").status_code == 404

    assert environment_key["key_id"] != repository_key["key_id"]
    assert environment_key["key"] != repository_key["key"]
    assert github.actions_secret("acme/web", "DEPLOY_KEY", environment="production") == (
        "for production"
    )
    assert github.actions_secret("acme/web", "DEPLOY_KEY") is None


def test_a_stale_key_id_or_a_value_that_does_not_open_is_422(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """A key_id that is not the current key's (after ``rotate_public_key`` too), a value
    sealed for another key, or base64 that is no sealed box: 422, nothing stored."""
    token = installation_token(github, app, clock, installation)["token"]
    path = "/repos/acme/web/actions/secrets/DEPLOY_KEY"
    with client(github, token) as http:
        old = http.get("/repos/acme/web/actions/secrets/public-key").json()
        sealed_old = seal(old["key"], "value")
        new_id = github.rotate_public_key("acme/web")
        new = http.get("/repos/acme/web/actions/secrets/public-key").json()
        stranger = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
        answers = [
            http.put(path, json={"encrypted_value": sealed_old, "key_id": old["key_id"]}),
            http.put(path, json={"encrypted_value": sealed_old, "key_id": new["key_id"]}),
            http.put(path, json={"encrypted_value": seal(stranger, "v"), "key_id": new_id}),
            http.put(path, json={"encrypted_value": "c2VjcmV0", "key_id": new_id}),
        ]
        stored = put_secret(http, path, "value")

    assert new["key_id"] == new_id != old["key_id"]
    assert new["key"] != old["key"]
    for answer in answers:
        assert answer.status_code == 422
        assert answer.json()["message"]
    assert "not the current public key" in answers[0].json()["message"]
    assert stored.status_code == 201
    assert github.actions_secret("acme/web", "DEPLOY_KEY") == "value"


def test_secret_names_github_refuses_are_422(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """Letters, digits and ``_`` only, no leading digit, no ``GITHUB_`` prefix (in any case):
    the others are 422 and nothing is stored; the drift hook refuses them too."""
    token = installation_token(github, app, clock, installation)["token"]
    with client(github, token) as http:
        for name in ("1KEY", "DEPLOY-KEY", "GITHUB_TOKEN", "github_x", "KEY%20TWO"):
            answer = put_secret(http, f"/repos/acme/web/actions/secrets/{name}", "v")
            assert answer.status_code == 422, name
            assert "Secret names" in answer.json()["message"]
        assert put_secret(http, "/repos/acme/web/actions/secrets/_KEY_2", "v").status_code == 201

    assert github.actions_secrets("acme/web") == {"_KEY_2": "v"}
    with pytest.raises(ValueError, match="GITHUB_"):
        github.put_actions_secret("acme/web", "GITHUB_X", "v")


def test_a_malformed_secret_body_fails_the_spec_and_is_422(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """Without key_id, or with encrypted_value that is not base64, the request breaks the
    spec's schema (the checker says so) and the fake answers 422."""
    token = installation_token(github, app, clock, installation)["token"]
    path = "/repos/acme/web/actions/secrets/DEPLOY_KEY"
    with client(github, token) as http:
        key_id = http.get("/repos/acme/web/actions/secrets/public-key").json()["key_id"]
        missing = http.put(path, json={"encrypted_value": "c2VjcmV0"}, headers=INVALID)
        not_base64 = http.put(
            path, json={"encrypted_value": "not base64!", "key_id": key_id}, headers=INVALID
        )
    assert missing.status_code == not_base64.status_code == 422
    assert github.actions_secrets("acme/web") == {}


def test_secrets_need_the_secrets_or_environments_permission(
    github: FakeGitHub, app: AppCredentials, clock: Clock
) -> None:
    """Repository secrets need "Secrets" (read for the GETs, write for PUT and DELETE),
    environment secrets "Environments": without them 403 naming the permission; the default
    personal token (deployments and administration) has neither."""
    installation = github.add_installation(
        app, "acme", permissions={"secrets": "read", "administration": "write"}
    )
    token = installation_token(github, app, clock, installation)["token"]
    github.tokens["ghp_plain"] = dict(ALL_PERMISSIONS)
    with client(github, token) as http:
        assert http.put("/repos/acme/web/environments/staging", json={}).status_code == 200
        read = http.get("/repos/acme/web/actions/secrets/public-key")
        key = read.json()
        body = {"encrypted_value": seal(key["key"], "v"), "key_id": key["key_id"]}
        write = http.put("/repos/acme/web/actions/secrets/K", json=body)
        delete = http.delete("/repos/acme/web/actions/secrets/K")
        environment = http.get("/repos/acme/web/environments/staging/secrets/public-key")
    with client(github, "ghp_plain") as plain:
        personal = plain.get("/repos/acme/web/actions/secrets/public-key")

    assert read.status_code == 200
    for answer, needed in (
        (write, "secrets=write"),
        (delete, "secrets=write"),
        (environment, "environments=read"),
    ):
        assert answer.status_code == 403
        assert answer.json()["message"] == "Resource not accessible by integration"
        assert answer.headers["x-accepted-github-permissions"] == needed
    assert personal.status_code == 403
    assert personal.json()["message"] == "Resource not accessible by personal access token"
    assert github.actions_secrets("acme/web") == {}


def test_drift_hooks_change_secrets_as_another_team_would(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """``put_actions_secret`` and ``delete_actions_secret`` act without a request, and the API
    shows it; unknown repositories and environments are ``KeyError``."""
    token = installation_token(github, app, clock, installation)["token"]
    github.put_actions_secret("acme/web", "SHARED", "theirs")
    with client(github, token) as http:
        assert http.get("/repos/acme/web/actions/secrets/SHARED").status_code == 200
        github.delete_actions_secret("acme/web", "shared")
        assert http.get("/repos/acme/web/actions/secrets/SHARED").status_code == 404

    with pytest.raises(KeyError):
        github.delete_actions_secret("acme/web", "SHARED")
    with pytest.raises(KeyError):
        github.put_actions_secret("acme/ghost", "X", "v")
    with pytest.raises(KeyError):
        github.actions_secret("acme/web", "X", environment="nowhere")
    assert github.actions_secret_metadata("acme/web", "SHARED") is None


# -- /meta ------------------------------------------------------------------------------------


def test_meta_serves_githubs_ssh_host_keys_to_anyone(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """Without a credential, with a personal or an installation token: GitHub's published
    host keys and their fingerprints (as GitHub publishes them); a wrong token is 401."""
    token = installation_token(github, app, clock, installation)["token"]
    answers = []
    for credential in (None, TOKEN, token):
        with client(github, credential) as http:
            answers.append(http.get("/meta"))
    with client(github, "ghp_wrong") as wrong:
        refused = wrong.get("/meta")

    for answer in answers:
        assert answer.status_code == 200
        meta = answer.json()
        assert meta["ssh_keys"] == list(GITHUB_SSH_HOST_KEYS)
        assert meta["ssh_key_fingerprints"] == GITHUB_FINGERPRINTS
        assert meta["verifiable_password_authentication"] is False
    assert [line.split()[0] for line in answers[0].json()["ssh_keys"]] == [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ssh-rsa",
    ]
    assert answers[0].headers["x-ratelimit-limit"] == "60"
    assert refused.status_code == 401


def test_the_host_keys_are_a_knob_and_the_fingerprints_follow(github: FakeGitHub) -> None:
    """``ssh_host_keys`` replaces the keys /meta serves (a GHES with its own keys); the
    fingerprints are computed from them, as ``ssh-keygen -l`` would print them."""
    line = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    github.ssh_host_keys = [line]
    with client(github, None) as anonymous:
        meta = anonymous.get("/meta").json()

    assert meta["ssh_keys"] == [line]
    assert meta["ssh_key_fingerprints"] == {
        "SHA256_ED25519": ssh_fingerprint(line).removeprefix("SHA256:")
    }
    assert host_key_fingerprints(GITHUB_SSH_HOST_KEYS) == GITHUB_FINGERPRINTS


# -- clock, hooks, prefix and the checker -------------------------------------------------------


def test_requests_carry_their_arrival_time_and_the_date_header_follows_the_clock(
    github: FakeGitHub, clock: Clock
) -> None:
    """Each recorded request has its arrival time by the fake's clock, and answers are dated
    by it (a client may correct its clock skew with ``Date``)."""
    with client(github, TOKEN) as http:
        first = http.get("/meta")
        clock.advance(90)
        http.get("/meta")

    assert [r.arrived_at for r in github.requests] == [START, START + 90]
    assert parsedate_to_datetime(first.headers["date"]).timestamp() == START


def test_on_request_runs_after_each_processed_request_under_the_lock(
    github: FakeGitHub, app: AppCredentials, installation: int, clock: Clock
) -> None:
    """``on_request`` sees the state each processed request left (here: every secret a
    test-visible plaintext), and not the requests refused before processing."""
    token = installation_token(github, app, clock, installation)["token"]
    seen: list[dict[str, str]] = []

    def invariant(fake: FakeGitHub) -> None:
        seen.append(fake.actions_secrets("acme/web"))

    github.on_request = invariant
    with client(github, token) as http:
        put_secret(http, "/repos/acme/web/actions/secrets/ONE", "1")
        put_secret(http, "/repos/acme/web/actions/secrets/TWO", "2")
    with client(github, "ghp_wrong") as wrong:
        wrong.get("/repos/acme/web/actions/secrets/ONE")

    assert seen == [{}, {"ONE": "1"}, {"ONE": "1"}, {"ONE": "1", "TWO": "2"}]


def test_an_invariant_that_breaks_fails_the_test_when_the_fake_stops(clock: Clock) -> None:
    """What ``on_request`` raises is kept like a bug in the fake: the answer still goes out,
    and leaving the ``with`` block raises ``AssertionError`` chained to it."""

    def broken(fake: FakeGitHub) -> None:
        raise RuntimeError("invariant broken")

    with pytest.raises(AssertionError) as failed, FakeGitHub(TOKEN, clock=clock) as fake:
        fake.on_request = broken
        with client(fake, None) as anonymous:
            assert anonymous.get("/meta").status_code == 200
    assert isinstance(failed.value.__cause__, RuntimeError)


def test_apps_tokens_and_secrets_work_under_the_api_v3_prefix(
    github_spec: OpenApiChecker, clock: Clock
) -> None:
    """Under GitHub Enterprise Server's ``/api/v3``: the App finds its installation, trades
    a JWT for a token (whose URLs name the prefix), writes a secret and reads /meta; nothing
    answers outside the prefix, and every exchange matches GitHub's descriptions."""
    with FakeGitHub(TOKEN, repositories=["acme/web"], clock=clock, prefix="/api/v3") as fake:
        credentials = fake.add_app()
        installation = fake.add_installation(credentials, "acme")
        with client(fake, app_jwt(credentials, clock)) as as_app:
            found = as_app.get("/repos/acme/web/installation").json()
            token = as_app.post(found["access_tokens_url"]).json()["token"]
        with client(fake, token) as http:
            written = put_secret(http, "/repos/acme/web/actions/secrets/DEPLOY_KEY", "v")
            meta = http.get("/meta")
        outside = httpx.get(
            f"{fake.origin}/meta", headers={"User-Agent": "t", "Authorization": f"Bearer {TOKEN}"}
        )

        assert found["id"] == installation
        assert found["access_tokens_url"].startswith(f"{fake.origin}/api/v3/app/installations/")
        assert written.status_code == 201
        assert meta.status_code == 200
        assert outside.status_code == 404
        assert fake.actions_secret("acme/web", "DEPLOY_KEY") == "v"
        inside = [r for r in fake.requests if r.url.startswith(f"{fake.origin}/api/v3/")]
        assert len(inside) == len(fake.requests) - 1
        for recorded in inside:
            url = fake.origin + recorded.path
            github_spec.check_request(recorded.method, url, recorded.headers, recorded.body)
            assert recorded.status is not None
            github_spec.check_response(
                recorded.method,
                url,
                recorded.headers,
                recorded.status,
                recorded.response_headers,
                recorded.response_body,
            )


def test_the_checker_picks_the_description_whose_paths_match(
    github: FakeGitHub, github_spec: OpenApiChecker
) -> None:
    """One checker holds the three GitHub descriptions: an installation token without
    ``token``, a secret without ``updated_at``, a deployment without ``sha`` and a pull request
    without ``head`` each fail against their own file; a path no file has is "no such
    operation"; the three files are loaded."""
    base = github.base_url
    json_headers = {"content-type": "application/json; charset=utf-8"}

    def response(method: str, path: str, status: int, body: Any) -> Callable[[], None]:
        data = json.dumps(body).encode()
        return lambda: github_spec.check_response(
            method, f"{base}{path}", {}, status, json_headers, data
        )

    failing = {
        "token": response("POST", "/app/installations/1/access_tokens", 201, {"expires_at": "x"}),
        "updated_at": response(
            "GET",
            "/repos/a/b/actions/secrets/K",
            200,
            {"name": "K", "created_at": "2026-01-01T00:00:00Z"},
        ),
        "sha": response("GET", "/repos/a/b/deployments/1", 200, {"id": 1}),
        "head": response("GET", "/repos/a/b/pulls/1", 200, {"number": 1}),
        "no such operation": response("GET", "/app/installations", 200, []),
    }
    for expected, check in failing.items():
        with pytest.raises(AssertionError, match=expected):
            check()
    with pytest.raises(AssertionError, match="github-apps-secrets"):
        github_spec.check_request("GET", f"{base}/app/installations/abc/access_tokens", {}, None)
    assert [path.name for path in github_spec.spec_paths] == [
        "github-deployments.openapi.json",
        "github-apps-secrets.openapi.json",
        "github-pulls-checks.openapi.json",
    ]
