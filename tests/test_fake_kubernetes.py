"""The Kubernetes Secrets fake, driven by lightkube's real client (and raw httpx where a client
would not send what a test needs).

Each test gets a running ``FakeKubernetes``, a kubeconfig it wrote and a ``lightkube.Client``
built from that file, as slotkeeper will build one. After each test no body may have been
refused or altered (``violations``) unless the test provoked it and cleared the list: so the
bodies lightkube sends for ordinary calls pass the schema and the server's validation.
"""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube import operators as op
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from tests.fakes.kubernetes import (
    APPLY_PATCH,
    DEFAULT_USER,
    KUBERNETES_VERSION,
    STRATEGIC_MERGE_PATCH,
    FakeKubernetes,
    StampedRequest,
    schema_validator,
    secret_schema_validator,
)
from tests.fakes.server import RecordedRequest

TOKEN = "k8s-test-token-0123456789"
SECRETS = "/api/v1/namespaces/default/secrets"


_SCHEMAS = {"Secret": "secret-v1", "SecretList": "secretlist-v1", "Status": "status-meta-v1"}


def schema_problems(requests: list[RecordedRequest]) -> list[str]:
    """What the fake answered outside the kubernetes-validate schemas (Secret, SecretList,
    Status), one line per problem."""
    problems: list[str] = []
    for request in requests:
        body = request.response_json()
        if not isinstance(body, dict) or body.get("kind") not in _SCHEMAS:
            problems.append(f"{request.method} {request.path}: not a Kubernetes object: {body}")
            continue
        for error in schema_validator(_SCHEMAS[body["kind"]]).iter_errors(body):
            problems.append(f"{request.method} {request.path}: {error.message}")
    return problems


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    """A running fake; at teardown every answer fits the schemas, and no body was refused
    or altered that the test did not expect (a test that provokes violations clears them)."""
    with FakeKubernetes(TOKEN) as server:
        yield server
        assert server.violations == []
        assert schema_problems(server.requests) == []


@pytest.fixture
def kubeconfig(fake: FakeKubernetes, tmp_path: Path) -> Path:
    """The kubeconfig the fake writes for itself (namespace ``default``)."""
    return fake.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def client(kubeconfig: Path) -> Iterator[Client]:
    """lightkube's sync client, configured from the kubeconfig file."""
    with Client(KubeConfig.from_file(kubeconfig)) as kube:
        yield kube


@pytest.fixture
def raw(fake: FakeKubernetes) -> Iterator[httpx.Client]:
    """httpx with the right token, for what lightkube would refuse to send."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=fake.origin, headers=headers, timeout=5) as http:
        yield http


def secret(name: str, **fields: Any) -> Secret:
    """A Secret model named ``name`` (labels via ``labels=``), other fields as given."""
    labels = fields.pop("labels", None)
    return Secret(metadata=ObjectMeta(name=name, labels=labels), **fields)


def b64(text: str) -> str:
    """Base64 of UTF-8 text, as ``data`` carries it."""
    return base64.b64encode(text.encode()).decode()


def status_of(excinfo: pytest.ExceptionInfo[ApiError]) -> tuple[int | None, str | None, str]:
    """code, reason and message of the Status lightkube raised."""
    status = excinfo.value.status
    return status.code, status.reason, status.message or ""


# -- create, read, list ----------------------------------------------------------------------


def test_create_sets_system_metadata_and_get_reads_it_back(
    fake: FakeKubernetes, client: Client
) -> None:
    """A create answers 201 with uid, resourceVersion and creationTimestamp set and type
    defaulted to Opaque; a get answers the same object; the test hooks see it."""
    created = client.create(secret("deploy-key", data={"identity": b64("PRIVATE")}))

    assert fake.requests[-1].status == 201
    assert created.metadata.uid
    assert created.metadata.resourceVersion == str(fake.revision)
    assert created.metadata.creationTimestamp is not None
    assert created.metadata.namespace == "default"
    assert created.type == "Opaque"
    fetched = client.get(Secret, "deploy-key")
    assert fetched.metadata.resourceVersion == created.metadata.resourceVersion
    assert fetched.data == {"identity": b64("PRIVATE")}
    assert fake.decoded("default", "deploy-key") == {"identity": "PRIVATE"}
    stored = fake.secret("default", "deploy-key")
    assert stored is not None
    assert stored["metadata"]["uid"] == created.metadata.uid


def test_create_of_an_existing_name_is_already_exists(client: Client) -> None:
    """A second create with the same name is 409 AlreadyExists, naming the secret."""
    client.create(secret("flux-system"))

    with pytest.raises(ApiError) as excinfo:
        client.create(secret("flux-system"))

    assert status_of(excinfo) == (409, "AlreadyExists", 'secrets "flux-system" already exists')
    assert excinfo.value.status.details is not None
    assert excinfo.value.status.details.kind == "secrets"


def test_get_of_a_missing_secret_is_a_not_found_status(
    fake: FakeKubernetes, client: Client
) -> None:
    """A missing Secret is 404 with the API server's Status body."""
    with pytest.raises(ApiError) as excinfo:
        client.get(Secret, "nothing")

    assert status_of(excinfo) == (404, "NotFound", 'secrets "nothing" not found')
    assert fake.requests[-1].response_json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets "nothing" not found',
        "reason": "NotFound",
        "details": {"name": "nothing", "kind": "secrets"},
        "code": 404,
    }


def test_list_filters_by_label_selector(fake: FakeKubernetes, client: Client) -> None:
    """A list answers a SecretList with the store's resourceVersion; equality, inequality,
    set-based and existence selectors pick the matching Secrets of that namespace only."""
    client.create(secret("argo-a", labels={"argocd.argoproj.io/secret-type": "repository"}))
    client.create(secret("argo-b", labels={"argocd.argoproj.io/secret-type": "repo-creds"}))
    client.create(secret("plain"))
    fake.put_secret("other", "argo-c", labels={"argocd.argoproj.io/secret-type": "repository"})
    key = "argocd.argoproj.io/secret-type"

    def names(labels: dict[str, Any]) -> list[str]:
        return [s.metadata.name or "" for s in client.list(Secret, labels=labels)]

    assert names({key: "repository"}) == ["argo-a"]
    assert names({key: op.not_equal("repository")}) == ["argo-b", "plain"]
    assert names({key: op.in_(["repository", "repo-creds"])}) == ["argo-a", "argo-b"]
    assert names({key: None}) == ["argo-a", "argo-b"]
    assert names({key: op.not_exists()}) == ["plain"]
    listing = fake.requests[-1].response_json()
    assert listing["kind"] == "SecretList"
    assert listing["metadata"]["resourceVersion"] == str(fake.revision)
    every = client.list(Secret, namespace="*", labels={key: "repository"})
    assert [(s.metadata.namespace, s.metadata.name) for s in every] == [
        ("default", "argo-a"),
        ("other", "argo-c"),
    ]


def test_list_pages_with_limit_and_continue_and_selects_fields(client: Client) -> None:
    """lightkube's chunked list follows ``continue`` to the end; a field selector on
    ``metadata.name`` or ``type`` narrows the list."""
    for name in ("a", "b", "c", "d", "e"):
        client.create(secret(name))
    client.create(secret("ssh", type="kubernetes.io/ssh-auth", data={"ssh-privatekey": b64("k")}))

    chunked = client.list(Secret, chunk_size=2)

    assert [s.metadata.name for s in chunked] == ["a", "b", "c", "d", "e", "ssh"]
    assert [s.metadata.name for s in client.list(Secret, fields={"metadata.name": "c"})] == ["c"]
    ssh = client.list(Secret, fields={"type": "kubernetes.io/ssh-auth"})
    assert [s.metadata.name for s in ssh] == ["ssh"]


# -- replace, patch, apply, delete -----------------------------------------------------------


def test_replace_with_the_current_resource_version_succeeds_and_bumps_it(
    client: Client,
) -> None:
    """A PUT carrying the current resourceVersion is applied and answers a newer one."""
    created = client.create(secret("key", data={"identity": b64("one")}))
    created.data = {"identity": b64("two")}

    replaced = client.replace(created)

    assert replaced.data == {"identity": b64("two")}
    assert int(replaced.metadata.resourceVersion or 0) > int(created.metadata.resourceVersion or 0)
    assert replaced.metadata.uid == created.metadata.uid
    assert replaced.metadata.creationTimestamp == created.metadata.creationTimestamp


def test_replace_with_a_stale_resource_version_is_a_conflict(
    fake: FakeKubernetes, client: Client
) -> None:
    """A PUT whose resourceVersion is not the current one is 409 Conflict with Kubernetes'
    message, and changes nothing."""
    stale = client.create(secret("key", data={"identity": b64("one")}))
    fake.put_secret("default", "key", {"identity": "changed by another writer"})
    stale.data = {"identity": b64("two")}

    with pytest.raises(ApiError) as excinfo:
        client.replace(stale)

    assert status_of(excinfo) == (
        409,
        "Conflict",
        'Operation cannot be fulfilled on secrets "key": the object has been modified; please '
        "apply your changes to the latest version and try again",
    )
    assert fake.decoded("default", "key") == {"identity": "changed by another writer"}


def test_replace_without_a_resource_version_is_unconditional(
    fake: FakeKubernetes, client: Client
) -> None:
    """A PUT without resourceVersion overwrites whatever is there, as Kubernetes allows for
    Secrets."""
    client.create(secret("key", data={"identity": b64("one")}))
    fake.put_secret("default", "key", {"identity": "changed by another writer"})

    replaced = client.replace(secret("key", data={"identity": b64("mine")}))

    assert replaced.data == {"identity": b64("mine")}
    assert fake.decoded("default", "key") == {"identity": "mine"}


def test_replace_of_a_missing_secret_is_not_found(client: Client) -> None:
    """PUT does not create a Secret."""
    with pytest.raises(ApiError) as excinfo:
        client.replace(secret("ghost"))

    assert status_of(excinfo)[:2] == (404, "NotFound")


def test_patch_defaults_to_strategic_merge_and_merges_maps(
    fake: FakeKubernetes, client: Client
) -> None:
    """lightkube's ``patch`` sends a strategic merge patch: data keys are merged, null
    removes one, labels merge the same way; a merge patch does the same."""
    client.create(secret("key", labels={"a": "1"}, data={"identity": b64("x"), "old": b64("y")}))

    patched = client.patch(
        Secret, "key", {"metadata": {"labels": {"b": "2"}}, "data": {"old": None}}
    )

    assert fake.requests[-1].headers["content-type"] == STRATEGIC_MERGE_PATCH
    assert patched.metadata.labels == {"a": "1", "b": "2"}
    assert patched.data == {"identity": b64("x")}
    merged = client.patch(
        Secret, "key", {"data": {"known_hosts": b64("h")}}, patch_type=PatchType.MERGE
    )
    assert merged.data == {"identity": b64("x"), "known_hosts": b64("h")}


def test_patch_with_a_stale_resource_version_is_a_conflict(client: Client) -> None:
    """A patch that carries a resourceVersion makes it a precondition: stale is 409."""
    client.create(secret("key"))

    with pytest.raises(ApiError) as excinfo:
        client.patch(Secret, "key", {"metadata": {"resourceVersion": "0"}, "data": {}})

    assert status_of(excinfo)[:2] == (409, "Conflict")


def test_json_patch_operations_apply(client: Client) -> None:
    """An RFC 6902 patch (add, replace, remove, test) applies to the stored object."""
    client.create(secret("key", data={"a": b64("1"), "b": b64("2")}))

    patched = client.patch(
        Secret,
        "key",
        [
            {"op": "test", "path": "/data/a", "value": b64("1")},
            {"op": "replace", "path": "/data/a", "value": b64("3")},
            {"op": "remove", "path": "/data/b"},
            {"op": "add", "path": "/data/c", "value": b64("4")},
        ],
        patch_type=PatchType.JSON,
    )

    assert patched.data == {"a": b64("3"), "c": b64("4")}


def test_apply_creates_then_merges_and_needs_a_field_manager(
    fake: FakeKubernetes, client: Client, raw: httpx.Client
) -> None:
    """Server-side apply (``application/apply-patch+yaml`` with ``fieldManager``) creates the
    Secret (201), then merges into it (200); without a field manager the server refuses."""
    applied = client.apply(secret("key", stringData={"identity": "one"}), field_manager="sk")

    first = fake.requests[-1]
    assert (first.headers["content-type"], first.query, first.status) == (
        APPLY_PATCH,
        {"fieldManager": "sk"},
        201,
    )
    assert applied.data == {"identity": b64("one")}
    again = client.apply(secret("key", stringData={"known_hosts": "h"}), field_manager="sk")
    assert fake.requests[-1].status == 200
    assert again.data == {"identity": b64("one"), "known_hosts": b64("h")}
    response = raw.patch(
        f"{SECRETS}/key",
        content=b'{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key"}}',
        headers={"content-type": APPLY_PATCH},
    )
    assert response.status_code == 422
    assert response.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
        "apply patch"
    )


def test_delete_answers_a_success_status_and_the_secret_is_gone(
    fake: FakeKubernetes, client: Client
) -> None:
    """DELETE answers 200 with a Success Status naming the secret and its uid (what the
    server's registry returns for Secrets); a get is then 404, a second delete too."""
    created = client.create(secret("key"))
    before = fake.revision

    client.delete(Secret, "key")

    assert fake.requests[-1].response_json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "key", "kind": "secrets", "uid": created.metadata.uid},
    }
    assert fake.revision == before + 1
    assert fake.secret("default", "key") is None
    with pytest.raises(ApiError) as excinfo:
        client.delete(Secret, "key")
    assert status_of(excinfo)[:2] == (404, "NotFound")


def test_delete_preconditions_guard_against_a_concurrent_change(
    fake: FakeKubernetes, client: Client, raw: httpx.Client
) -> None:
    """A DELETE with ``preconditions.resourceVersion`` that is stale is 409 and deletes
    nothing; with the current one it deletes."""
    created = client.create(secret("key"))
    fake.put_secret("default", "key", {"identity": "rotated"})
    body = {"kind": "DeleteOptions", "apiVersion": "v1"}

    stale = {**body, "preconditions": {"resourceVersion": created.metadata.resourceVersion}}
    refused = raw.request("DELETE", f"{SECRETS}/key", json=stale)

    assert refused.status_code == 409
    assert "Precondition failed: ResourceVersion in precondition" in refused.json()["message"]
    current = {**body, "preconditions": {"resourceVersion": str(fake.revision)}}
    assert raw.request("DELETE", f"{SECRETS}/key", json=current).status_code == 200
    assert fake.secret("default", "key") is None


# -- stringData, type, immutability ----------------------------------------------------------


def test_string_data_is_merged_into_data_and_never_returned(
    fake: FakeKubernetes, client: Client
) -> None:
    """stringData is encoded into data (overriding a data key of the same name) and is
    neither stored nor answered."""
    created = client.create(
        secret(
            "key", data={"identity": b64("old"), "keep": b64("k")}, stringData={"identity": "new"}
        )
    )

    assert created.data == {"identity": b64("new"), "keep": b64("k")}
    assert created.stringData is None
    stored = fake.secret("default", "key")
    assert stored is not None
    assert "stringData" not in stored
    assert "stringData" not in fake.requests[-1].response_json()
    assert "stringData" not in client.get(Secret, "key").to_dict()


def test_type_is_immutable(fake: FakeKubernetes, client: Client) -> None:
    """Changing a Secret's type is 422 Invalid, ``field is immutable``; a PUT that omits the
    type of a typed Secret defaults it to Opaque, which is such a change."""
    client.create(secret("key", type="kubernetes.io/ssh-auth", data={"ssh-privatekey": b64("k")}))

    with pytest.raises(ApiError) as excinfo:
        client.patch(Secret, "key", {"type": "Opaque"})
    assert status_of(excinfo) == (
        422,
        "Invalid",
        'Secret "key" is invalid: type: Invalid value: "Opaque": field is immutable',
    )
    with pytest.raises(ApiError) as untyped:
        client.replace(secret("key", data={"ssh-privatekey": b64("k2")}))
    assert status_of(untyped)[:2] == (422, "Invalid")
    stored = fake.secret("default", "key")
    assert stored is not None
    assert stored["type"] == "kubernetes.io/ssh-auth"
    assert fake.decoded("default", "key") == {"ssh-privatekey": "k"}
    assert len(fake.violations) == 2
    fake.violations.clear()


def test_an_immutable_secret_refuses_data_changes(fake: FakeKubernetes, client: Client) -> None:
    """With ``immutable: true`` a change of data is 422 Forbidden; labels may still change."""
    client.create(secret("key", immutable=True, data={"a": b64("1")}))

    with pytest.raises(ApiError) as excinfo:
        client.patch(Secret, "key", {"data": {"a": b64("2")}})

    assert status_of(excinfo)[2] == (
        'Secret "key" is invalid: data: Forbidden: field is immutable when `immutable` is set'
    )
    relabelled = client.patch(Secret, "key", {"metadata": {"labels": {"x": "y"}}})
    assert relabelled.metadata.labels == {"x": "y"}
    fake.violations.clear()


# -- body validation --------------------------------------------------------------------------


def test_an_invalid_body_is_422_naming_each_problem(
    fake: FakeKubernetes, raw: httpx.Client
) -> None:
    """Names, label keys and values, annotation keys and data keys are checked with the API
    server's rules: 422 Invalid naming every problem, with causes, recorded in violations."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "Bad_Name",
            "labels": {"bad key": "ok", "ok": "bad value!"},
            "annotations": {"a/b/c": "x"},
        },
        "data": {"bad key": b64("x")},
    }

    response = raw.post(SECRETS, json=body)

    assert response.status_code == 422
    status = response.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Invalid", 422)
    assert status["message"].startswith('Secret "Bad_Name" is invalid: [metadata.name: ')
    fields = [cause["field"] for cause in status["details"]["causes"]]
    assert fields == [
        "metadata.name",
        "metadata.labels",
        "metadata.labels",
        "metadata.annotations",
        "data[bad key]",
    ]
    assert status["details"]["kind"] == "Secret"
    assert (
        'metadata.labels: Invalid value: "bad value!": a valid label must be' in (status["message"])
    )
    assert len(fake.violations) == 5
    assert all(v.startswith(f"POST {SECRETS}: ") for v in fake.violations)
    assert fake.secrets() == []
    fake.violations.clear()


def test_a_typed_secret_needs_its_keys(fake: FakeKubernetes, client: Client) -> None:
    """A ``kubernetes.io/ssh-auth`` Secret without ``ssh-privatekey`` is 422 Required."""
    with pytest.raises(ApiError) as excinfo:
        client.create(secret("key", type="kubernetes.io/ssh-auth", data={"identity": b64("k")}))

    assert status_of(excinfo)[2] == (
        'Secret "key" is invalid: data[ssh-privatekey]: Required value'
    )
    fake.violations.clear()


def test_data_that_is_not_base64_is_a_bad_request(fake: FakeKubernetes, raw: httpx.Client) -> None:
    """``data`` values must be base64: the API server cannot decode the body, 400 BadRequest
    ``cannot be handled as a Secret``, recorded in violations; a PATCH answers 422."""
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key"}}

    response = raw.post(SECRETS, json={**body, "data": {"identity": "not base64!"}})

    assert response.status_code == 400
    assert response.json()["reason"] == "BadRequest"
    assert response.json()["message"] == (
        'Secret in version "v1" cannot be handled as a Secret: data[identity]: illegal base64 '
        "data at input byte 3"
    )
    assert raw.post(SECRETS, json=body).status_code == 201
    patched = raw.patch(
        f"{SECRETS}/key",
        json={"data": {"identity": "%%%"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert (patched.status_code, patched.json()["reason"]) == (422, "Invalid")
    assert len(fake.violations) == 2
    fake.violations.clear()


def test_wrong_types_and_unknown_fields_follow_field_validation(
    fake: FakeKubernetes, raw: httpx.Client
) -> None:
    """A value of the wrong type is 400; an unknown field is dropped with a Warning header
    (the server's default), refused with ``fieldValidation=Strict``; each is a violation."""
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key"}}

    wrong = raw.post(SECRETS, json={**body, "data": {"identity": 42}})
    assert wrong.status_code == 400
    warned = raw.post(SECRETS, json={**body, "stringdata": {"identity": "x"}})
    assert warned.status_code == 201
    assert warned.headers["warning"] == '299 - "unknown field \\"stringdata\\""'
    assert "stringdata" not in warned.json()
    strict = raw.post(
        SECRETS,
        params={"fieldValidation": "Strict"},
        json={**body, "metadata": {"name": "other", "nmae": "x"}},
    )
    assert strict.status_code == 400
    assert 'strict decoding error: unknown field "metadata.nmae"' in strict.json()["message"]
    assert fake.violations == [
        f"POST {SECRETS}: data.identity: 42 is not of type 'string', 'null'",
        f'POST {SECRETS}: unknown field "stringdata"',
        f'POST {SECRETS}: unknown field "metadata.nmae"',
    ]
    fake.violations.clear()


def test_create_checks_namespace_and_resource_version(
    fake: FakeKubernetes, raw: httpx.Client
) -> None:
    """A body naming another namespace is 400; a resourceVersion on create is the server's
    500 (and a violation); a missing name is 422 Required."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret"}

    other = raw.post(SECRETS, json={**body, "metadata": {"name": "k", "namespace": "flux-system"}})
    versioned = raw.post(SECRETS, json={**body, "metadata": {"name": "k", "resourceVersion": "7"}})
    unnamed = raw.post(SECRETS, json={**body, "metadata": {}})

    assert other.status_code == 400
    assert other.json()["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )
    assert versioned.status_code == 500
    assert versioned.json()["message"] == (
        "resourceVersion should not be set on objects to be created"
    )
    assert unnamed.status_code == 422
    assert unnamed.json()["message"] == (
        'Secret "" is invalid: metadata.name: Required value: name or generateName is required'
    )
    assert len(fake.violations) == 2
    fake.violations.clear()


def test_generate_name_draws_a_suffix(client: Client) -> None:
    """``generateName`` gets a five-character suffix from the server."""
    created = client.create(Secret(metadata=ObjectMeta(generateName="deploy-key-")))

    name = created.metadata.name or ""
    assert name.startswith("deploy-key-")
    assert len(name) == len("deploy-key-") + 5


def test_valid_bodies_from_lightkube_leave_no_violation(
    fake: FakeKubernetes, client: Client
) -> None:
    """Flux's and Argo CD's Secret shapes sent through every lightkube write pass the
    kubernetes-validate schema and the server's rules: violations stay empty."""
    flux = secret(
        "flux-deploy-key",
        stringData={"identity": "PEM", "identity.pub": "ssh-ed25519 AAAA", "known_hosts": "h"},
    )
    argo = secret(
        "argo-repo",
        labels={"argocd.argoproj.io/secret-type": "repository"},
        stringData={"type": "git", "url": "git@github.com:acme/web.git", "sshPrivateKey": "PEM"},
    )
    client.create(flux)
    client.create(argo)
    client.replace(client.get(Secret, "flux-deploy-key"))
    client.patch(Secret, "argo-repo", {"stringData": {"sshPrivateKey": "PEM2"}})
    client.apply(argo, field_manager="slotkeeper")
    client.delete(Secret, "flux-deploy-key")

    assert fake.violations == []
    assert secret_schema_validator().is_valid(client.get(Secret, "argo-repo").to_dict())
    assert KUBERNETES_VERSION.startswith("1.3")


# -- authentication and authorization --------------------------------------------------------


def test_a_wrong_or_missing_token_is_401(fake: FakeKubernetes, tmp_path: Path) -> None:
    """A kubeconfig with another token gets 401 Unauthorized; so does a request without one."""
    config = KubeConfig.from_file(fake.kubeconfig(tmp_path / "wrong", token="not-the-token"))

    with Client(config) as kube, pytest.raises(ApiError) as excinfo:
        kube.get(Secret, "anything")

    assert status_of(excinfo) == (401, "Unauthorized", "Unauthorized")
    assert httpx.get(f"{fake.origin}{SECRETS}").status_code == 401


def test_rbac_refuses_a_missing_verb_per_namespace(fake: FakeKubernetes, client: Client) -> None:
    """With ``permissions`` set, a verb the namespace lacks is 403 with the API server's
    wording (``secrets "x"`` when the URL names one, ``secrets`` for list and create); the
    same verb in a namespace that has it succeeds; a namespace not listed grants nothing."""
    fake.permissions = {"flux-system": {"get", "create", "update"}, "kube-system": {"get"}}
    fake.put_secret("kube-system", "key")
    current = client.get(Secret, "key", namespace="kube-system")

    with pytest.raises(ApiError) as update:
        client.replace(current, namespace="kube-system")
    with pytest.raises(ApiError) as listing:
        next(iter(client.list(Secret, namespace="kube-system")))
    with pytest.raises(ApiError) as elsewhere:
        client.create(secret("key"), namespace="argocd")

    user = f'User "{DEFAULT_USER}"'
    assert status_of(update) == (
        403,
        "Forbidden",
        f'secrets "key" is forbidden: {user} cannot update resource "secrets" in API group "" '
        'in the namespace "kube-system"',
    )
    assert status_of(listing)[2] == (
        f'secrets is forbidden: {user} cannot list resource "secrets" in API group "" in the '
        'namespace "kube-system"'
    )
    assert status_of(elsewhere)[2].startswith(f"secrets is forbidden: {user} cannot create")
    created = client.create(secret("key"), namespace="flux-system")
    assert created.metadata.namespace == "flux-system"


def test_rbac_is_checked_before_existence_and_apply_needs_create(
    fake: FakeKubernetes, client: Client
) -> None:
    """A 403 comes before a 404 (it does not reveal whether the Secret exists); an apply that
    would create the Secret also needs the create verb."""
    fake.permissions = {"default": {"patch"}}

    with pytest.raises(ApiError) as hidden:
        client.get(Secret, "missing")
    with pytest.raises(ApiError) as apply:
        client.apply(secret("new", stringData={"a": "b"}), field_manager="sk")

    assert status_of(hidden)[:2] == (403, "Forbidden")
    assert status_of(apply)[2].startswith('secrets "new" is forbidden: ')
    assert "cannot create resource" in status_of(apply)[2]


def test_a_missing_namespace_is_not_found_on_create(fake: FakeKubernetes, client: Client) -> None:
    """With ``namespaces`` set, a create elsewhere is 404 ``namespaces "x" not found``."""
    fake.namespaces = {"default"}

    with pytest.raises(ApiError) as excinfo:
        client.create(secret("key"), namespace="flux-system")

    assert status_of(excinfo) == (404, "NotFound", 'namespaces "flux-system" not found')


# -- test hooks ------------------------------------------------------------------------------


def test_out_of_band_writes_bump_the_resource_version(fake: FakeKubernetes, client: Client) -> None:
    """``put_secret`` creates or replaces as another writer would (same uid, new version);
    ``delete_secret`` removes; both bump the revision a client then sees."""
    first = fake.put_secret("default", "key", {"identity": "one"}, labels={"team": "infra"})
    second = fake.put_secret("default", "key", {"identity": b"two"})

    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert (
        int(second["metadata"]["resourceVersion"]) == int(first["metadata"]["resourceVersion"]) + 1
    )
    assert (
        client.get(Secret, "key").metadata.resourceVersion == second["metadata"]["resourceVersion"]
    )
    assert fake.decoded("default", "key") == {"identity": "two"}
    assert fake.delete_secret("default", "key") is True
    assert fake.delete_secret("default", "key") is False
    with pytest.raises(KeyError):
        fake.decoded("default", "key")


def test_conflict_next_answers_409_after_bumping_the_version(
    fake: FakeKubernetes, client: Client
) -> None:
    """``conflict_next(1)``: the next PUT of an existing Secret is 409 and its version moved
    on; a retry from a fresh read then succeeds."""
    created = client.create(secret("key"))
    fake.conflict_next(1)

    with pytest.raises(ApiError) as excinfo:
        client.replace(created)

    assert status_of(excinfo)[:2] == (409, "Conflict")
    fresh = client.get(Secret, "key")
    assert fresh.metadata.resourceVersion != created.metadata.resourceVersion
    assert client.replace(fresh).metadata.resourceVersion == str(fake.revision)


def test_fail_next_answers_the_status_then_recovers(fake: FakeKubernetes, client: Client) -> None:
    """``fail_next(2, 503)``: the next two requests are 503 Status bodies (unprocessed), the
    third is served."""
    fake.fail_next(2, status=503)

    for _ in range(2):
        with pytest.raises(ApiError) as excinfo:
            client.create(secret("key"))
        assert status_of(excinfo)[:2] == (503, "ServiceUnavailable")

    assert client.create(secret("key")).metadata.name == "key"
    assert [r.processed for r in fake.requests] == [False, False, True]


def test_every_request_is_stamped_and_the_hook_sees_each(
    fake: FakeKubernetes, client: Client
) -> None:
    """Each record carries its arrival and decision times and the revision after it; the
    ``on_request`` hook runs after each request, with that request already recorded."""
    seen: list[tuple[str, int | None, int]] = []

    def hook(server: FakeKubernetes) -> None:
        last = server.requests[-1]
        seen.append((last.method, last.status, server.revision))

    fake.on_request = hook
    client.create(secret("key"))
    client.get(Secret, "key")
    client.delete(Secret, "key")

    assert seen == [("POST", 201, 1), ("GET", 200, 1), ("DELETE", 200, 2)]
    timeline = fake.timeline()
    assert all(isinstance(r, StampedRequest) for r in timeline)
    assert [r.revision for r in timeline] == [1, 1, 2]
    arrivals = [r.arrived for r in timeline]
    assert arrivals == sorted(arrivals)
    assert all(r.arrived <= r.answered for r in timeline)


def test_a_failing_hook_fails_the_test_at_exit(tmp_path: Path) -> None:
    """An exception in ``on_request`` (a broken invariant) does not change the answer but
    makes leaving the ``with`` block raise."""

    def invariant(server: FakeKubernetes) -> None:
        raise ValueError("invariant broken")

    with (
        pytest.raises(AssertionError, match="the fake itself failed"),
        FakeKubernetes(TOKEN) as fake,
    ):
        fake.on_request = invariant
        config = KubeConfig.from_file(fake.kubeconfig(tmp_path))
        with Client(config) as kube:
            assert kube.create(secret("key")).metadata.name == "key"


def test_kubeconfig_points_at_the_fake(fake: FakeKubernetes, kubeconfig: Path) -> None:
    """The kubeconfig names the fake's plain-HTTP address, the token, one current context
    with a default namespace, and is readable by its owner only."""
    config = yaml.safe_load(kubeconfig.read_text())

    assert config["clusters"][0]["cluster"]["server"] == fake.origin
    assert fake.origin.startswith("http://127.0.0.1:")
    assert config["users"][0]["user"]["token"] == TOKEN
    assert config["current-context"] == config["contexts"][0]["name"]
    assert config["contexts"][0]["context"]["namespace"] == "default"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert KubeConfig.from_file(kubeconfig).get().namespace == "default"


def test_dry_run_checks_without_storing(fake: FakeKubernetes, client: Client) -> None:
    """``dry_run=True`` answers the object that would be created and stores nothing."""
    answered = client.create(secret("key", stringData={"a": "b"}), dry_run=True)

    assert answered.data == {"a": b64("b")}
    assert fake.secret("default", "key") is None
    assert fake.revision == 0


def test_the_schema_check_of_answers_can_fail() -> None:
    """The teardown check is not vacuous: an answer with an unknown field or of another kind
    is reported."""
    fake_record = RecordedRequest(
        method="GET",
        path=SECRETS,
        url="",
        query={},
        headers={},
        json=None,
        body=b"",
        status=200,
        response_headers={},
        response_body=b'{"kind": "Secret", "apiVersion": "v1", "metadata": {}, "extra": 1}',
        dropped=False,
        processed=True,
    )
    other = RecordedRequest(**{**fake_record.__dict__, "response_body": b'{"kind": "Pod"}'})

    assert len(schema_problems([fake_record, other])) == 2
