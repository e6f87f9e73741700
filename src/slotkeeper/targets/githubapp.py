"""GitHub App authentication: a JWT buys installation tokens, one per installation, cached.

See tests/fakes/specs/API-REFERENCE.md, section 5. The App's private key (PEM) signs an RS256
JWT (``iat`` 60 s in the past for clock drift, ``exp`` 9 minutes later, under GitHub's 10-minute
ceiling, ``iss`` the client ID or App ID), which is good only for the ``/app…`` endpoints and the
installation lookup. Every other call carries an *installation token*:

- the installation of a repository is ``GET /repos/{owner}/{repo}/installation``, asked once
  per repository and kept (or the one the operator configured, for every repository);
- a token is minted with ``POST /app/installations/{id}/access_tokens``, kept per installation
  and minted again ``REFRESH_MARGIN`` before its ``expires_at``, and once more when GitHub
  answers 401 to a request that carried it (revoked, or a clock that disagrees): the request is
  sent again with the new token, once;
- nothing about a token is assumed (length, prefix): it is an opaque string;
- tokens and JWTs live only in this process's memory: never logged, never in the ledger, a plan
  or a message. The cache is process-wide (:data:`APP_TOKENS`), so a daemon mints a token an
  hour per installation, not one per reconcile.

Each installation is its own rate-limit budget at GitHub; the GitHub adapter keeps a write
budget and a conditional-request cache per installation (``targets.github``'s lanes).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from slotkeeper import metrics
from slotkeeper import observability as obs
from slotkeeper.errors import ConfigError, PermanentTargetError
from slotkeeper.targets.github import Lane
from slotkeeper.targets.http import ApiClient

Clock = Callable[[], datetime]

#: how far in the past ``iat`` is put, for a GitHub clock slightly behind ours
CLOCK_DRIFT = 60
#: a JWT's life after its ``iat`` (GitHub refuses more than 10 minutes)
JWT_LIFETIME = 540
#: a token is minted again when it has less than this left (they live one hour)
REFRESH_MARGIN = timedelta(minutes=5)


class AppKey:
    """The App's identity: who issues the JWT, and the private key that signs it."""

    def __init__(self, issuer: str, private_key_pem: str, *, owner: str) -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{owner}: not a readable private key (PEM, unencrypted, as GitHub issues it)"
            ) from exc
        if not isinstance(key, RSAPrivateKey):
            raise ConfigError(f"{owner}: a GitHub App's private key is RSA; this one is not")
        self.issuer = issuer
        self._key = key
        #: names the key in cache keys (a digest of its public half: nothing secret)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.digest = hashlib.sha256(public).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"AppKey(issuer={self.issuer!r})"

    def jwt(self, now: datetime) -> str:
        """A fresh JWT: ``iat`` ``CLOCK_DRIFT`` s ago, ``exp`` ``JWT_LIFETIME`` s after it."""
        import jwt  # only for a GitHub App target

        issued = int(now.timestamp()) - CLOCK_DRIFT
        claims = {"iat": issued, "exp": issued + JWT_LIFETIME, "iss": self.issuer}
        return jwt.encode(claims, self._key, algorithm="RS256")


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: datetime

    def __repr__(self) -> str:  # never the value
        return f"_Token(expires_at={self.expires_at.isoformat()})"


class AppTokens:
    """Installation ids by repository and installation tokens by installation, for every App
    this process authenticates as (keyed by base URL, issuer and key). Thread-safe; one mint
    at a time per installation, so concurrent workers share one token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._installations: dict[tuple[str, str], int] = {}
        self._tokens: dict[tuple[str, int], _Token] = {}
        self._minting: dict[tuple[str, int], threading.Lock] = {}
        #: the soonest expiry of each target's tokens, for the credential-expiry gauge
        self._targets: dict[str, set[tuple[str, int]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._installations.clear()
            self._tokens.clear()
            self._minting.clear()

    def installation(self, app: str, repository: str) -> int | None:
        with self._lock:
            return self._installations.get((app, repository.lower()))

    def remember_installation(self, app: str, repository: str, installation: int) -> None:
        with self._lock:
            self._installations[app, repository.lower()] = installation

    def minting(self, app: str, installation: int) -> threading.Lock:
        with self._lock:
            return self._minting.setdefault((app, installation), threading.Lock())

    def token(self, app: str, installation: int, now: datetime) -> _Token | None:
        """The kept token of an installation, unless it is within the refresh margin."""
        with self._lock:
            token = self._tokens.get((app, installation))
        if token is None or token.expires_at - REFRESH_MARGIN <= now:
            return None
        return token

    def keep(self, target: str, app: str, installation: int, token: _Token) -> None:
        with self._lock:
            self._tokens[app, installation] = token
            fresh = target not in self._targets
            self._targets.setdefault(target, set()).add((app, installation))
        if fresh:
            metrics.CREDENTIAL_EXPIRY.labels(target=target).set_function(
                lambda: self.seconds_left(target)
            )

    def drop(self, app: str, installation: int, value: str) -> None:
        """Forget a token GitHub refused (only that one: another thread may have minted)."""
        with self._lock:
            token = self._tokens.get((app, installation))
            if token is not None and token.value == value:
                del self._tokens[app, installation]

    def seconds_left(self, target: str) -> float:
        """Seconds until the soonest of ``target``'s kept tokens expires (0 when none is)."""
        with self._lock:
            ends = [
                token.expires_at
                for key in self._targets.get(target, ())
                if (token := self._tokens.get(key)) is not None
            ]
        if not ends:
            return 0.0
        return max(0.0, (min(ends) - datetime.now(UTC)).total_seconds())


#: the process's App credentials: installation ids and tokens outlive one reconcile
APP_TOKENS = AppTokens()


class JwtAuth(httpx.Auth):
    """Every request carries a fresh App JWT (``/app…`` endpoints, installation lookups)."""

    def __init__(self, key: AppKey, clock: Clock) -> None:
        self._key = key
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.jwt(self._clock())}"
        yield request


class App:
    """One App on one GitHub (base URL), as one target uses it: finds installations, mints
    and keeps their tokens in :data:`APP_TOKENS`."""

    def __init__(
        self,
        *,
        target: str,
        key: AppKey,
        api: ApiClient,
        installation_id: int | None,
        clock: Clock,
        tokens: AppTokens = APP_TOKENS,
    ) -> None:
        self._target = target
        self._key = key
        self._api = api  # authenticated with JwtAuth
        self._fixed = installation_id
        self._clock = clock
        self._tokens = tokens
        self._app = f"{api.base_url} {key.issuer} {key.digest}"

    @property
    def base_url(self) -> str:
        return self._api.base_url

    @property
    def key(self) -> str:
        """Names this App at this GitHub in cache keys (no secret in it)."""
        return self._app

    def close(self) -> None:
        self._api.close()

    def installation_of(self, repository: str) -> int:
        """The installation that reaches ``repository`` (configured, kept, or asked)."""
        if self._fixed is not None:
            return self._fixed
        known = self._tokens.installation(self._app, repository)
        if known is not None:
            return known
        response = self._api.send("GET", f"repos/{repository}/installation", accept=(200, 301, 404))
        if response.status_code != 200:
            raise PermanentTargetError(
                f"{self._target}: the GitHub App {self._key.issuer} is not installed on "
                f"{repository} (or the installation cannot see it): install it there, or give "
                "auth.app.installationId",
                http_status=response.status_code,
            )
        installation = int(response.json()["id"])
        self._tokens.remember_installation(self._app, repository, installation)
        return installation

    def token(self, installation: int, *, refused: str | None = None) -> str:
        """A token of ``installation`` with more than ``REFRESH_MARGIN`` left; a new one when
        ``refused`` (a token GitHub just answered 401 to) is the kept one."""
        if refused is not None:
            self._tokens.drop(self._app, installation, refused)
        with self._tokens.minting(self._app, installation):
            kept = self._tokens.token(self._app, installation, self._clock())
            if kept is not None:
                return kept.value
            minted = self._mint(installation)
            self._tokens.keep(self._target, self._app, installation, minted)
            return minted.value

    def _mint(self, installation: int) -> _Token:
        started = time.monotonic()
        response = self._api.send(
            "POST", f"app/installations/{installation}/access_tokens", accept=(201,)
        )
        body = response.json()
        try:
            token = _Token(str(body["token"]), _timestamp(str(body["expires_at"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentTargetError(
                f"{self._target}: GitHub's answer to the installation token request of "
                f"installation {installation} has no token and expires_at"
            ) from exc
        obs.get_logger().info(
            "github.installation_token",
            target=self._target,
            installation=installation,
            expires_at=token.expires_at.isoformat(),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return token


def _timestamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class InstallationAuth(httpx.Auth):
    """Every request carries the installation's token; a 401 mints a new one and sends the
    request once more (a 401 means GitHub did not act on it, so sending again is safe)."""

    def __init__(self, app: App, installation: int) -> None:
        self._app = app
        self._installation = installation

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._app.token(self._installation)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = self._app.token(self._installation, refused=token)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request


class InstallationLanes:
    """The GitHub adapter's lanes for an App: one per installation, made on first use by
    ``make`` (each with its own write budget and conditional-request cache, as each
    installation is its own rate-limit budget at GitHub)."""

    def __init__(self, app: App, make: Callable[[int], Lane]) -> None:
        self._app = app
        self._make = make
        self._lanes: dict[int, Lane] = {}
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self._app.base_url

    def lane(self, repository: str) -> Lane:
        installation = self._app.installation_of(repository)
        with self._lock:
            lane = self._lanes.get(installation)
            if lane is None:
                lane = self._lanes[installation] = self._make(installation)
            return lane

    def close(self) -> None:
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.api.close()
        self._app.close()
