"""GitHub Actions secrets (repository or environment) and GitHub's SSH host keys, through a
GitHub target's credential (token or App installation) and write budget.

See tests/fakes/specs/API-REFERENCE.md, section 5:

- a value is sealed client-side (libsodium sealed box, PyNaCl) with the repository's (or
  environment's) public key, ``GET …/secrets/public-key`` → ``{key_id, key}``, and sent as
  ``PUT …/secrets/{name}`` ``{encrypted_value, key_id}`` (201 created, 204 updated);
- a value can never be read back: a write is confirmed by the secret's ``updated_at``, read
  after the write, which must be newer than before it;
- ``GET /meta``'s ``ssh_keys`` are the host's SSH keys, for a ``known_hosts`` line.

Only the sealed value crosses the wire; the plain value is never logged or kept.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from slotkeeper.errors import PermanentTargetError, TemporaryTargetError
from slotkeeper.targets.github import GitHubTarget


@dataclass(frozen=True)
class ActionsPlace:
    """One Actions secret: repository-wide, or of one deployment environment."""

    repository: str
    name: str
    environment: str | None = None

    @property
    def label(self) -> str:
        where = f"{self.repository}/{self.environment}" if self.environment else self.repository
        return f"githubActions:{where}/{self.name}"

    @property
    def collection(self) -> str:
        """The API path of the secrets this one belongs to."""
        if self.environment is None:
            return f"repos/{self.repository}/actions/secrets"
        return f"repos/{self.repository}/environments/{quote(self.environment, safe='')}/secrets"


@dataclass(frozen=True)
class ActionsObserved:
    exists: bool
    updated_at: str | None = None


class ActionsSecrets:
    """Actions secrets of the repositories a GitHub target reaches."""

    def __init__(self, target: GitHubTarget) -> None:
        self._target = target

    def observe(self, place: ActionsPlace) -> ActionsObserved:
        api = self._target.api_for(place.repository)
        response = api.send("GET", f"{place.collection}/{place.name}", accept=(200, 404))
        if response.status_code == 404:
            return ActionsObserved(exists=False)
        return ActionsObserved(exists=True, updated_at=str(response.json().get("updated_at")))

    def write(self, place: ActionsPlace, value: bytes) -> ActionsObserved:
        """Seal and store ``value``; confirmed by a newer ``updated_at``. The caller has
        checked that slotkeeper may write there (it owns the secret, or there is none)."""
        from nacl.public import PublicKey, SealedBox  # only when a secret is written

        api = self._target.api_for(place.repository)
        before = self.observe(place)
        answer = api.send("GET", f"{place.collection}/public-key").json()
        try:
            sealed = SealedBox(PublicKey(base64.b64decode(str(answer["key"])))).encrypt(value)
            key_id = str(answer["key_id"])
        except (KeyError, ValueError, TypeError) as exc:
            raise PermanentTargetError(
                f"{self._target.name}: {place.label}: GitHub's public key answer is unusable"
            ) from exc
        api.send(
            "PUT",
            f"{place.collection}/{place.name}",
            json={"encrypted_value": base64.b64encode(sealed).decode(), "key_id": key_id},
            write=True,
            idempotent=True,  # the same value again changes nothing that matters
            accept=(201, 204),
        )
        after = self.observe(place)
        if not after.exists or (
            before.exists and (after.updated_at or "") <= (before.updated_at or "")
        ):
            raise TemporaryTargetError(
                f"{self._target.name}: {place.label}: the write was not confirmed (updated_at "
                f"{after.updated_at or 'absent'}, before it {before.updated_at or 'absent'})"
            )
        return after

    def remove(self, place: ActionsPlace) -> str:
        api = self._target.api_for(place.repository)
        response = api.send(
            "DELETE",
            f"{place.collection}/{place.name}",
            write=True,
            idempotent=True,
            accept=(204, 404),
        )
        return "already gone" if response.status_code == 404 else "deleted"


def known_hosts(target: GitHubTarget, repository: str) -> str:
    """``known_hosts`` lines for the Git host of ``target`` (github.com for api.github.com, the
    server's own host for GitHub Enterprise Server), from ``GET /meta``'s ``ssh_keys``."""
    api = target.api_for(repository)
    keys = api.send("GET", "meta").json().get("ssh_keys")
    if not isinstance(keys, list) or not keys:
        raise PermanentTargetError(f"{target.name}: GET /meta lists no ssh_keys")
    host = git_host(target.base_url)
    return "".join(f"{host} {key}\n" for key in keys if isinstance(key, str))


def git_host(base_url: str) -> str:
    """The host Git clones over SSH from, for an API base URL."""
    host = urlsplit(base_url).hostname or "github.com"
    if host == "api.github.com":
        return "github.com"
    if host.startswith("api.") and host.endswith(".ghe.com"):
        return host.removeprefix("api.")
    return host
