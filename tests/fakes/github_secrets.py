"""GitHub Actions secrets in the fake GitHub, for repositories and their environments.

``ActionsSecrets`` is a mixin of ``FakeGitHub``. It serves the eight secrets operations of
``specs/github-apps-secrets.openapi.json`` with the semantics of ``specs/API-REFERENCE.md``
section 5 and GitHub's guide "Encrypting secrets for the REST API":

- ``GET …/secrets/public-key`` answers ``{key_id, key}``: a real Curve25519 key (PyNaCl), one per
  repository and one per environment, made on first use; the fake keeps the private half.
  ``rotate_public_key`` replaces one (GitHub rotates them now and then): a value sealed for the
  old key is refused afterwards.
- ``PUT …/secrets/{secret_name}`` takes ``{encrypted_value, key_id}``: a libsodium sealed box for
  the current key, base64. The fake opens it and keeps the plaintext; 201 ``{}`` when the secret
  is new, 204 when it replaces one. ``created_at`` stays, ``updated_at`` moves on every write
  (strictly later each time, like every write stamp of the fake). 422 when ``key_id`` is not the
  current key's, when the value does not open with it (or is not UTF-8 text), when it exceeds
  GitHub's 48 KB, or when the name breaks GitHub's rules: letters, digits and ``_`` only, not
  starting with a digit, not starting with ``GITHUB_``.
- Names are case-insensitive, as on GitHub, which shows them in upper case: ``my_key`` and
  ``MY_KEY`` are one secret, named ``MY_KEY``.
- ``GET …/secrets/{secret_name}`` answers ``{name, created_at, updated_at}``, never the value;
  ``DELETE`` answers 204. Both are 404 when the secret is absent.
- Environment secrets need the environment (``PUT /repos/…/environments/{name}`` made it): 404
  otherwise, as for a repository that does not exist.
- Permissions (``specs/API-REFERENCE.md`` section 5): repository secrets need "Secrets" (read for
  GETs, write for PUT and DELETE), environment secrets "Environments"; the public-key GETs are
  reads. A token without them gets the fake's 403 with ``X-Accepted-GitHub-Permissions``.

Test hooks read and change secrets as someone else would, without a request:
``actions_secret`` (the plaintext), ``actions_secrets``, ``put_actions_secret``,
``delete_actions_secret`` and ``rotate_public_key``. Repositories are named ``owner/repo``.

GitHub does not document the wording of its 422s here; the fake's messages say what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from tests.fakes.github_wire import (
    REPO,
    Call,
    check_types,
    error,
    invalid,
    not_found,
    split_repository,
)
from tests.fakes.server import JsonObject, Refusal, Reply

_ENVIRONMENT = rf"{REPO}/environments/(?P<name>[^/]+)"
_SECRET = r"secrets/(?P<secret_name>[^/]+)"
# (method, path pattern, name of the method that answers); the public key before the names
SECRET_ROUTES: list[tuple[str, str, str]] = [
    ("GET", rf"{REPO}/actions/secrets/public-key", "_get_repo_public_key"),
    ("GET", rf"{REPO}/actions/{_SECRET}", "_get_repo_secret"),
    ("PUT", rf"{REPO}/actions/{_SECRET}", "_put_repo_secret"),
    ("DELETE", rf"{REPO}/actions/{_SECRET}", "_delete_repo_secret"),
    ("GET", rf"{_ENVIRONMENT}/secrets/public-key", "_get_environment_public_key"),
    ("GET", rf"{_ENVIRONMENT}/{_SECRET}", "_get_environment_secret"),
    ("PUT", rf"{_ENVIRONMENT}/{_SECRET}", "_put_environment_secret"),
    ("DELETE", rf"{_ENVIRONMENT}/{_SECRET}", "_delete_environment_secret"),
]
# The permission (and level) each operation needs, by the name of the method that answers it.
SECRET_NEEDS: dict[str, tuple[str, str]] = {
    "_get_repo_public_key": ("secrets", "read"),
    "_get_repo_secret": ("secrets", "read"),
    "_put_repo_secret": ("secrets", "write"),
    "_delete_repo_secret": ("secrets", "write"),
    "_get_environment_public_key": ("environments", "read"),
    "_get_environment_secret": ("environments", "read"),
    "_put_environment_secret": ("environments", "write"),
    "_delete_environment_secret": ("environments", "write"),
}
#: "Secrets can store values up to 48 KB in size" (docs.github.com, "Using secrets in GitHub
#: Actions", limits for secrets)
SECRET_VALUE_MAX = 48 * 1024
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# (owner, repo, environment), lower-case; the environment is "" for repository secrets
Scope = tuple[str, str, str]


def secret_name_problem(name: str) -> str | None:
    """Why GitHub refuses a secret name, or None (docs.github.com, "Using secrets in GitHub
    Actions", naming your secrets)."""
    if not _SECRET_NAME.fullmatch(name):
        return (
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or "
            "underscores (_), and must not start with a number."
        )
    if name.upper().startswith("GITHUB_"):
        return "Secret names must not start with the GITHUB_ prefix."
    return None


@dataclass
class _SealKey:
    key_id: str
    private: PrivateKey

    @property
    def public(self) -> str:
        return base64.b64encode(bytes(self.private.public_key)).decode()


@dataclass
class _Secret:
    name: str
    value: str
    created_at: str
    updated_at: str

    def body(self) -> JsonObject:
        return {"name": self.name, "created_at": self.created_at, "updated_at": self.updated_at}


class ActionsSecrets:
    """The Actions secrets of ``FakeGitHub`` (see the module docstring).

    A mixin: ``FakeGitHub`` supplies the lock, the repositories and environments and the write
    stamps, and calls ``_init_secrets`` from its constructor."""

    # supplied by FakeGitHub
    _lock: threading.RLock
    _environments: dict[tuple[str, str, str], JsonObject]
    _refs: dict[tuple[str, str], Any]
    _tick: Callable[[], str]
    _repository: Callable[[str, str], tuple[str, str]]

    def _init_secrets(self, seed: int) -> None:
        self._seal_keys: dict[Scope, _SealKey] = {}
        self._secrets: dict[Scope, dict[str, _Secret]] = {}
        self._key_ids = random.Random(f"actions-public-keys-{seed}")

    # -- observation and drift ---------------------------------------------------------------

    def actions_secret(
        self, repository: str, name: str, environment: str | None = None
    ) -> str | None:
        """The plaintext of a secret (None when there is none); ``KeyError`` when the
        repository or the environment does not exist."""
        with self._lock:
            secret = self._secrets.get(self._hook_scope(repository, environment), {}).get(
                name.upper()
            )
            return None if secret is None else secret.value

    def actions_secrets(self, repository: str, environment: str | None = None) -> dict[str, str]:
        """Every secret of a repository (or of one of its environments): name to plaintext."""
        with self._lock:
            found = self._secrets.get(self._hook_scope(repository, environment), {})
            return {name: secret.value for name, secret in sorted(found.items())}

    def actions_secret_metadata(
        self, repository: str, name: str, environment: str | None = None
    ) -> JsonObject | None:
        """What ``GET …/secrets/{name}`` would answer (None when there is no such secret)."""
        with self._lock:
            secret = self._secrets.get(self._hook_scope(repository, environment), {}).get(
                name.upper()
            )
            return None if secret is None else secret.body()

    def put_actions_secret(
        self, repository: str, name: str, value: str, environment: str | None = None
    ) -> None:
        """Create or replace a secret, as another team would (``ValueError`` for a name GitHub
        refuses, ``KeyError`` for a missing repository or environment)."""
        problem = secret_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        with self._lock:
            self._store(self._hook_scope(repository, environment), name, value)

    def delete_actions_secret(
        self, repository: str, name: str, environment: str | None = None
    ) -> None:
        """Remove a secret, as another team would (``KeyError`` if it is not there)."""
        with self._lock:
            secrets = self._secrets.get(self._hook_scope(repository, environment), {})
            del secrets[name.upper()]

    def rotate_public_key(self, repository: str, environment: str | None = None) -> str:
        """Give a repository (or environment) a new public key; returns its ``key_id``. A
        value sealed for the old key is refused from now on (422)."""
        with self._lock:
            scope = self._hook_scope(repository, environment)
            self._seal_keys.pop(scope, None)
            return self._seal_key(scope).key_id

    # -- routes ------------------------------------------------------------------------------

    def _get_repo_public_key(self, call: Call) -> Reply:
        key = self._seal_key(self._secret_scope(call))
        return Reply(200, {"key_id": key.key_id, "key": key.public})

    def _get_repo_secret(self, call: Call) -> Reply:
        secrets = self._secrets.get(self._secret_scope(call), {})
        secret = secrets.get(call.args["secret_name"].upper())
        if secret is None:
            raise not_found()
        return Reply(200, secret.body())

    def _put_repo_secret(self, call: Call) -> Reply:
        scope = self._secret_scope(call)
        name = call.args["secret_name"]
        problem = secret_name_problem(name)
        if problem is not None:
            raise Refusal(error(422, problem))
        body = call.body
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        check_types(
            body, {"encrypted_value": (str,), "key_id": (str,)}, required="encrypted_value key_id"
        )
        key = self._seal_key(scope)
        if body["key_id"] != key.key_id:
            raise Refusal(
                error(
                    422,
                    f"key_id {body['key_id']} is not the current public key's ({key.key_id}): "
                    "get the public key again and encrypt the value with it.",
                )
            )
        value = _unseal(key, body["encrypted_value"])
        created = self._store(scope, name, value)
        return Reply(201, {}) if created else Reply(204)

    def _delete_repo_secret(self, call: Call) -> Reply:
        secrets = self._secrets.get(self._secret_scope(call), {})
        if secrets.pop(call.args["secret_name"].upper(), None) is None:
            raise not_found()
        return Reply(204)

    # Environment secrets: the same, under an environment (the scope says which); distinct
    # names because they need another permission.
    _get_environment_public_key = _get_repo_public_key
    _get_environment_secret = _get_repo_secret
    _put_environment_secret = _put_repo_secret
    _delete_environment_secret = _delete_repo_secret

    # -- helpers (callers hold the lock) -------------------------------------------------------

    def _secret_scope(self, call: Call) -> Scope:
        """The repository (404 when missing) and environment (404 when missing) of a call."""
        owner, repo = self._repository(call.owner, call.repo)
        environment = call.args.get("name")
        if environment is None:
            return owner, repo, ""
        if (owner, repo, environment.lower()) not in self._environments:
            raise not_found()
        return owner, repo, environment.lower()

    def _hook_scope(self, repository: str, environment: str | None) -> Scope:
        owner, repo = (part.lower() for part in split_repository(repository))
        if (owner, repo) not in self._refs:
            raise KeyError(repository)
        if environment is None:
            return owner, repo, ""
        if (owner, repo, environment.lower()) not in self._environments:
            raise KeyError(f"{repository} environment {environment}")
        return owner, repo, environment.lower()

    def _seal_key(self, scope: Scope) -> _SealKey:
        key = self._seal_keys.get(scope)
        if key is None:
            key_id = str(self._key_ids.randrange(10**17, 10**18))
            key = self._seal_keys[scope] = _SealKey(key_id, PrivateKey.generate())
        return key

    def _store(self, scope: Scope, name: str, value: str) -> bool:
        """Create or replace a secret; True when it is new."""
        stamp = self._tick()
        secrets = self._secrets.setdefault(scope, {})
        existing = secrets.get(name.upper())
        if existing is not None:
            existing.value = value
            existing.updated_at = stamp
            return False
        secrets[name.upper()] = _Secret(name.upper(), value, stamp, stamp)
        return True


def _unseal(key: _SealKey, encrypted_value: str) -> str:
    """The plaintext of a sealed box for ``key``; 422 when it is not one."""
    try:
        sealed = base64.b64decode(encrypted_value, validate=True)
        value = SealedBox(key.private).decrypt(sealed).decode("utf-8")
    except (binascii.Error, CryptoError, UnicodeDecodeError):
        raise Refusal(
            error(
                422,
                f"encrypted_value is not a sealed box for the public key {key.key_id} "
                "(base64 of libsodium's crypto_box_seal).",
            )
        ) from None
    if len(value.encode("utf-8")) > SECRET_VALUE_MAX:
        raise Refusal(error(422, "Secret values are limited to 48 KB."))
    return value
