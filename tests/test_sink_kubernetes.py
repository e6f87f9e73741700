"""Deploy keys written to Kubernetes Secrets (``slotkeeper.sinks.kubernetes``), through
lightkube against the fake API server: each format as its consumer reads it, ownership (never
another's Secret), conflicts retried, RBAC refusals named, removal only of what is ours."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotkeeper.errors import TemporaryTargetError
from slotkeeper.keys import generate_key, private_key_fingerprint
from slotkeeper.sinks.kubernetes import (
    ARGOCD_LABEL,
    FINGERPRINT_ANNOTATION,
    KEY_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    KubernetesSecrets,
    SecretPlace,
    SinkRefused,
    client_for,
)
from tests.fakes.kubernetes import FakeKubernetes
from tests.test_fake_kubernetes import schema_problems

TOKEN = "sink-test-token-abcdef"
KEY = "acme/platform/flux"
HOSTS = (
    "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
)
FLUX = SecretPlace("flux-system", "flux-system", "flux")


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKubernetes]:
    """The fake API server; at the end no body was refused and every answer fits the
    schemas."""
    with FakeKubernetes(TOKEN) as fake:
        yield fake
        assert fake.violations == []
        assert schema_problems(fake.requests) == []


@pytest.fixture
def secrets(kube: FakeKubernetes, tmp_path: Path) -> Iterator[KubernetesSecrets]:
    """slotkeeper's Secret writer, configured from a kubeconfig as an operator gives it."""
    sink = KubernetesSecrets(client_for(kube.kubeconfig(tmp_path / "kubeconfig")))
    yield sink
    sink.close()


def test_a_flux_secret_holds_identity_public_key_and_known_hosts(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """Flux's GitRepository reads identity, identity.pub and known_hosts; the Secret says who
    manages it and which key it holds."""
    pair = generate_key("slotkeeper:flux")
    written = secrets.write(FLUX, KEY, pair, known_hosts=HOSTS)
    data = kube.decoded("flux-system", "flux-system")
    assert set(data) == {"identity", "identity.pub", "known_hosts"}
    assert private_key_fingerprint(data["identity"].encode()) == pair.fingerprint
    assert data["identity.pub"].strip() == pair.public_key and data["known_hosts"] == HOSTS
    stored = kube.secret("flux-system", "flux-system")
    assert stored is not None
    assert stored["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}
    assert stored["metadata"]["annotations"] == {
        KEY_ANNOTATION: KEY,
        FINGERPRINT_ANNOTATION: pair.fingerprint,
    }
    assert written.fingerprint == pair.fingerprint and written.owned_by(KEY)


def test_an_argocd_secret_is_a_labelled_repository_with_url_and_ssh_private_key(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """Argo CD's declarative repository: the secret-type label, type git, url, sshPrivateKey."""
    place = SecretPlace("argocd", "repo-platform", "argocd", url="git@github.com:acme/platform")
    pair = generate_key("slotkeeper:argo")
    secrets.write(place, KEY, pair, known_hosts=HOSTS)
    data = kube.decoded("argocd", "repo-platform")
    assert data["type"] == "git" and data["url"] == "git@github.com:acme/platform"
    assert private_key_fingerprint(data["sshPrivateKey"].encode()) == pair.fingerprint
    stored = kube.secret("argocd", "repo-platform")
    assert stored is not None and stored["metadata"]["labels"][ARGOCD_LABEL] == "repository"


def test_a_secret_slotkeeper_does_not_manage_is_never_overwritten(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """Another team's Secret of that name: refused, named, and not one write is sent."""
    kube.put_secret("flux-system", "flux-system", {"identity": "theirs"})
    before = kube.secret("flux-system", "flux-system")
    kube.reset_log()
    with pytest.raises(SinkRefused, match="slotkeeper does not manage it") as refused:
        secrets.write(FLUX, KEY, generate_key("k"), known_hosts=HOSTS)
    assert "kubernetes:flux-system/flux-system" in str(refused.value)
    assert kube.secret("flux-system", "flux-system") == before
    assert [r.method for r in kube.requests] == ["GET"]


def test_a_secret_of_another_deploy_key_is_not_taken_over(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """Two keys declared into one Secret: the second is refused, the first keeps it."""
    first = generate_key("a")
    secrets.write(FLUX, "acme/platform/a", first, known_hosts=HOSTS)
    with pytest.raises(SinkRefused, match="holds deploy key acme/platform/a"):
        secrets.write(FLUX, "acme/platform/b", generate_key("b"), known_hosts=HOSTS)
    assert secrets.observe(FLUX).fingerprint == first.fingerprint


def test_a_rotation_replaces_the_key_and_keeps_labels_someone_added(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """The second write is a conditional replace of our own Secret; a label a person added
    to it stays."""
    secrets.write(FLUX, KEY, generate_key("old"), known_hosts=HOSTS)
    stored = kube.secret("flux-system", "flux-system")
    assert stored is not None
    kube.put_secret(
        "flux-system",
        "flux-system",
        {k: base64.b64decode(v).decode() for k, v in stored["data"].items()},
        labels={**stored["metadata"]["labels"], "team": "platform"},
        annotations=stored["metadata"]["annotations"],
    )
    new = generate_key("new")
    secrets.write(FLUX, KEY, new, known_hosts=HOSTS)
    replaced = kube.secret("flux-system", "flux-system")
    assert replaced is not None and replaced["metadata"]["labels"]["team"] == "platform"
    assert secrets.observe(FLUX).fingerprint == new.fingerprint
    puts = [r for r in kube.requests if r.method == "PUT"]
    assert puts and all(r.json["metadata"]["resourceVersion"] for r in puts)


def test_a_conflict_is_read_again_and_retried_and_a_lasting_one_fails(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """A 409 (someone wrote between our read and our write) is retried after a fresh read;
    one that never ends is a temporary failure, never a blind overwrite."""
    secrets.write(FLUX, KEY, generate_key("one"), known_hosts=HOSTS)
    kube.conflict_next(2)
    second = generate_key("two")
    secrets.write(FLUX, KEY, second, known_hosts=HOSTS)
    assert secrets.observe(FLUX).fingerprint == second.fingerprint
    assert sum(1 for r in kube.requests if r.status == 409) == 2
    kube.conflict_next(10)
    with pytest.raises(TemporaryTargetError, match="still conflicting"):
        secrets.write(FLUX, KEY, generate_key("three"), known_hosts=HOSTS)
    assert secrets.observe(FLUX).fingerprint == second.fingerprint


def test_a_namespace_the_service_account_may_not_write_is_refused_with_the_rbac_message(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """A 403 names the verb the Role lacks: the operator sees what to grant."""
    kube.permissions = {"flux-system": {"get", "list"}}
    with pytest.raises(SinkRefused, match='cannot create resource "secrets"') as refused:
        secrets.write(FLUX, KEY, generate_key("k"), known_hosts=HOSTS)
    assert 'in the namespace "flux-system"' in str(refused.value)
    assert kube.secret("flux-system", "flux-system") is None


def test_removal_deletes_only_our_secret_still_holding_that_key(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """Revocation deletes the Secret it wrote; one that now holds another key, or someone
    else's, is left where it is."""
    pair = generate_key("k")
    secrets.write(FLUX, KEY, pair, known_hosts=HOSTS)
    assert (
        secrets.remove(FLUX, KEY, "SHA256:another") == "left in place (it no longer holds this key)"
    )
    assert kube.secret("flux-system", "flux-system") is not None
    assert secrets.remove(FLUX, KEY, pair.fingerprint) == "deleted"
    assert kube.secret("flux-system", "flux-system") is None
    assert secrets.remove(FLUX, KEY, pair.fingerprint) == "already gone"
    kube.put_secret("flux-system", "flux-system", {"identity": "theirs"})
    assert secrets.remove(FLUX, KEY, pair.fingerprint).startswith("left in place")


def test_an_opaque_secret_holds_the_key_pair_only(
    kube: FakeKubernetes, secrets: KubernetesSecrets
) -> None:
    """`opaque`: identity and identity.pub, no known_hosts and no Argo CD label."""
    place = SecretPlace("ci", "deploy-key", "opaque")
    pair = generate_key("slotkeeper:ci")
    secrets.write(place, KEY, pair, known_hosts=HOSTS)
    data = kube.decoded("ci", "deploy-key")
    assert set(data) == {"identity", "identity.pub"}
    assert private_key_fingerprint(data["identity"].encode()) == pair.fingerprint
    stored = kube.secret("ci", "deploy-key")
    assert stored is not None and ARGOCD_LABEL not in stored["metadata"]["labels"]
