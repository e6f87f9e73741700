"""Deploy keys delivered to Kubernetes Secrets, in the format their consumer reads.

See tests/fakes/specs/API-REFERENCE.md, section 6. Three formats:

- ``flux`` (a ``GitRepository``'s ``secretRef``, SSH): ``identity`` (the private key, OpenSSH
  PEM), ``identity.pub`` and ``known_hosts`` (the Git host's SSH keys, from GitHub's
  ``GET /meta``);
- ``argocd`` (a declarative repository): the label ``argocd.argoproj.io/secret-type:
  repository`` and ``type: git``, ``url``, ``sshPrivateKey``;
- ``opaque``: ``identity`` and ``identity.pub``, for any other consumer.

Ownership: every Secret slotkeeper writes carries the label ``app.kubernetes.io/managed-by:
slotkeeper`` and annotations naming the deploy key (``slotkeeper.dev/deploy-key:
owner/repo/title``) and its fingerprint. A Secret that exists without that label, or that
another deploy key owns, is never overwritten nor deleted (:class:`SinkRefused`): a manifest must
not be able to replace another team's Secret.

Writes are conditional on the ``resourceVersion`` read just before; a 409 (someone wrote in
between) is read again and retried, up to ``CONFLICT_RETRIES`` times. A write is confirmed by
reading the Secret back: the private key in it must be the new key (its fingerprint).

The client is lightkube's, configured by the operator only: in a pod, the service account
(``KUBERNETES_SERVICE_HOST``, the token and CA under ``/var/run/secrets/kubernetes.io/``);
outside, a kubeconfig (``--kubeconfig``, or ``KUBECONFIG``, or ``~/.kube/config``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx2
from lightkube import ApiError, Client, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from slotkeeper.errors import ConfigError, SinkRefused, SlotkeeperError, TemporaryTargetError
from slotkeeper.keys import KeyPair, private_key_fingerprint

Format = Literal["flux", "argocd", "opaque"]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "slotkeeper"
KEY_ANNOTATION = "slotkeeper.dev/deploy-key"
FINGERPRINT_ANNOTATION = "slotkeeper.dev/fingerprint"
ARGOCD_LABEL = "argocd.argoproj.io/secret-type"
#: how often a write that met a conflict (409) is read again and retried
CONFLICT_RETRIES = 3
#: the data key holding the private half, by format
PRIVATE_KEY_FIELD: dict[str, str] = {
    "flux": "identity",
    "argocd": "sshPrivateKey",
    "opaque": "identity",
}


@dataclass(frozen=True)
class SecretPlace:
    """Where one deploy key's Secret lives and how its consumer reads it."""

    namespace: str
    name: str
    format: Format
    #: the repository URL Argo CD clones (``argocd`` format only)
    url: str | None = None

    @property
    def label(self) -> str:
        return f"kubernetes:{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Observed:
    """What a Secret holds, as far as slotkeeper cares."""

    exists: bool
    #: the deploy key (``owner/repo/title``) that owns it, when slotkeeper wrote it
    owner: str | None = None
    #: the fingerprint of the private key it holds (None: none, or unreadable)
    fingerprint: str | None = None
    resource_version: str | None = None

    def owned_by(self, key: str) -> bool:
        return self.exists and self.owner == key


def client_for(kubeconfig: Path | None = None, *, timeout: float = 10.0) -> Client:
    """lightkube's client: the kubeconfig given, else the pod's service account, else
    ``KUBECONFIG`` / ``~/.kube/config`` (lightkube's own order)."""
    try:
        config: KubeConfig | SingleConfig = (
            KubeConfig.from_file(kubeconfig) if kubeconfig is not None else KubeConfig.from_env()
        )
    except Exception as exc:  # lightkube raises ConfigError, OSError, YAML errors...
        where = str(kubeconfig) if kubeconfig else "the environment"
        raise ConfigError(
            f"no usable Kubernetes configuration from {where}: {type(exc).__name__}"
        ) from exc
    return Client(config=config, timeout=httpx2.Timeout(timeout), trust_env=False)


def secret_data(place: SecretPlace, pair: KeyPair, *, known_hosts: str) -> dict[str, str]:
    """The Secret's ``data`` (base64) in the consumer's format."""
    plain: dict[str, bytes]
    if place.format == "argocd":
        if not place.url:
            raise SinkRefused(f"{place.label}: the argocd format needs the repository url")
        plain = {"type": b"git", "url": place.url.encode(), "sshPrivateKey": pair.private_key}
    else:
        plain = {"identity": pair.private_key, "identity.pub": pair.public_key.encode() + b"\n"}
        if place.format == "flux":
            plain["known_hosts"] = known_hosts.encode()
    return {name: base64.b64encode(value).decode() for name, value in plain.items()}


class KubernetesSecrets:
    """Reads, writes and removes deploy-key Secrets through one API server."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def close(self) -> None:
        self._client.close()

    def observe(self, place: SecretPlace) -> Observed:
        found = self._get(place)
        return Observed(exists=False) if found is None else _observed(found, place)

    def write(self, place: SecretPlace, key: str, pair: KeyPair, *, known_hosts: str) -> Observed:
        """Make the Secret hold ``pair``'s private key for ``key`` (``owner/repo/title``),
        creating it or replacing one slotkeeper owns for that key; confirmed by reading back."""
        data = secret_data(place, pair, known_hosts=known_hosts)
        for _ in range(CONFLICT_RETRIES + 1):
            current = self._get(place)
            if current is not None:
                self._refuse_unowned(place, _observed(current, place), key)
            meta = (current.metadata if current is not None else None) or ObjectMeta()
            body = Secret(
                metadata=ObjectMeta(
                    name=place.name,
                    namespace=place.namespace,
                    labels=_labels(place, current),
                    annotations={
                        **(meta.annotations or {}),
                        KEY_ANNOTATION: key,
                        FINGERPRINT_ANNOTATION: pair.fingerprint,
                    },
                    resourceVersion=meta.resourceVersion,
                ),
                type=current.type if current is not None and current.type else "Opaque",
                data=data,
            )
            try:
                if current is None:
                    self._client.create(body)
                else:
                    self._client.replace(body)
            except ApiError as exc:
                if _code(exc) == 409:
                    continue  # another writer came between our read and our write: again
                raise self._failed(place, "write", exc) from exc
            written = self.observe(place)
            if written.fingerprint != pair.fingerprint:
                raise TemporaryTargetError(
                    f"{place.label}: the Secret read back does not hold the new key "
                    f"{pair.fingerprint} (it holds {written.fingerprint or 'no key'})"
                )
            return written
        raise TemporaryTargetError(
            f"{place.label}: still conflicting after {CONFLICT_RETRIES} retries (another writer "
            "keeps changing the Secret)",
            http_status=409,
        )

    def remove(self, place: SecretPlace, key: str, fingerprint: str) -> str:
        """Delete the Secret if slotkeeper wrote it for ``key`` and it still holds the key of
        ``fingerprint``; otherwise leave it. Says what was done."""
        found = self.observe(place)
        if not found.exists:
            return "already gone"
        if not found.owned_by(key) or found.fingerprint != fingerprint:
            return "left in place (it no longer holds this key)"
        try:
            self._client.delete(Secret, place.name, namespace=place.namespace)
        except ApiError as exc:
            if _code(exc) == 404:
                return "already gone"
            raise self._failed(place, "delete", exc) from exc
        return "deleted"

    def _get(self, place: SecretPlace) -> Secret | None:
        try:
            found: Secret = self._client.get(Secret, place.name, namespace=place.namespace)
        except ApiError as exc:
            if _code(exc) == 404:
                return None
            raise self._failed(place, "read", exc) from exc
        except httpx2.TransportError as exc:
            raise TemporaryTargetError(
                f"{place.label}: the Kubernetes API server did not answer ({type(exc).__name__})"
            ) from exc
        return found

    @staticmethod
    def _refuse_unowned(place: SecretPlace, observed: Observed, key: str) -> None:
        if observed.owner is None:
            raise SinkRefused(
                f"{place.label}: a Secret of that name exists and slotkeeper does not manage it "
                f"(no {MANAGED_BY_LABEL}: {MANAGED_BY} label): it is never overwritten. Choose "
                "another name, or delete or label it yourself"
            )
        if observed.owner != key:
            raise SinkRefused(
                f"{place.label}: the Secret holds deploy key {observed.owner}, not {key}: two "
                "keys cannot share one Secret"
            )

    @staticmethod
    def _failed(place: SecretPlace, what: str, exc: ApiError) -> SlotkeeperError:
        code = _code(exc)
        message = exc.status.message if exc.status is not None else str(code)
        if code in (401, 403):
            return SinkRefused(f"{place.label}: cannot {what} the Secret: {message}")
        return TemporaryTargetError(
            f"{place.label}: cannot {what} the Secret: {code} {message}", http_status=code
        )


def _code(exc: ApiError) -> int:
    status = exc.status
    return int(status.code) if status is not None and status.code is not None else 0


def _labels(place: SecretPlace, current: Secret | None) -> dict[str, str]:
    labels = dict((current.metadata.labels or {}) if current and current.metadata else {})
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if place.format == "argocd":
        labels[ARGOCD_LABEL] = "repository"
    return labels


def _observed(secret: Secret, place: SecretPlace) -> Observed:
    metadata = secret.metadata or ObjectMeta()
    labels = metadata.labels or {}
    annotations = metadata.annotations or {}
    owner = annotations.get(KEY_ANNOTATION) if labels.get(MANAGED_BY_LABEL) == MANAGED_BY else None
    private = (secret.data or {}).get(PRIVATE_KEY_FIELD[place.format])
    fingerprint = None
    if private:
        try:
            fingerprint = private_key_fingerprint(base64.b64decode(private))
        except ValueError:
            fingerprint = None
    return Observed(
        exists=True,
        owner=owner,
        fingerprint=fingerprint,
        resource_version=metadata.resourceVersion,
    )
