"""The deploy keys' delivery to Kubernetes Secrets: the Component deploy/kubernetes/key-delivery
and the Roles of deploy/kubernetes/key-delivery/rbac, checked offline.

The Component's patches are JSON 6902 operations. The tests apply them to base/ and postgres/
themselves, with the small RFC 6902 implementation below (add, remove, replace, test: what
the Component may use; anything else fails the tests), and check what comes out: valid
Kubernetes, and every guarantee of tests/test_deploy.py still true, plus the token, the
namespaces and the API server. Where a `kustomize` or `kubectl` binary is on PATH, the tests
also build with it (the Component on each variant, the README's overlays) and compare; without
one, those tests are skipped, and the Python application of the patches is all there is.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.test_deploy import (  # noqa: F401  (no_network: the fixture)
    BASE,
    CREDENTIALS_DIR,
    KEY_DELIVERY,
    KEY_DELIVERY_RBAC,
    KUBERNETES,
    POSTGRES,
    ROOT,
    VARIANTS,
    check_cli,
    credential_env_problems,
    credential_path_problem,
    documents,
    k8s_validate,
    manifest_files,
    mounted,
    network_policy_problems,
    no_network,
)

Doc = dict[str, Any]

#: the namespaces the shipped Roles and the daemon's list allow, Flux's and Argo CD's
DELIVERY_NAMESPACES = ("flux-system", "argocd")
#: what slotkeeper does to a Secret: read it, create it, replace it, patch it, revoke it
SECRET_VERBS = ("get", "create", "update", "patch", "delete")
ROLE_NAME = "slotkeeper-deploy-keys"
#: the RoleBindings' subject: the ServiceAccount `slotkeeper` of the documented namespace
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "slotkeeper", "namespace": "slotkeeper"}
RBAC_GROUP = "rbac.authorization.k8s.io"
NAMESPACES_ENV = "SLOTKEEPER_SECRET_NAMESPACES"
#: where lightkube's in-cluster configuration reads the token, the CA and the namespace
TOKEN_DIR = PurePosixPath("/var/run/secrets/kubernetes.io/serviceaccount")
#: the API server's ports: 443 (managed clusters), 6443 (kubeadm, k3s)
API_SERVER_PORTS = {("TCP", 443), ("TCP", 6443)}
#: the ranges the API server rule may reach: private ones; never link-local nor loopback
PRIVATE_RANGES = frozenset(
    {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"}
)
CLOSED_RANGES = ("169.254.0.0/16", "127.0.0.0/8", "fe80::/10", "::1/128")
README = KUBERNETES / "README.md"
SECTION = "## Delivering deploy keys to Flux and Argo CD"


@pytest.fixture(params=list(VARIANTS.values()), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Path:
    """base/ and postgres/ in turn: the Component applies to either."""
    directory: Path = request.param
    return directory


# --- an RFC 6902 JSON patch, as kustomize applies it ------------------------------------------


class PatchError(ValueError):
    """A JSON patch that does not apply: a missing path, or a `test` that fails."""


def pointer(path: str) -> list[str]:
    """The tokens of a JSON pointer (RFC 6901): ``/a/b~1c`` is ``["a", "b/c"]``."""
    if not path.startswith("/"):
        raise PatchError(f"{path!r} is not a JSON pointer")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def parent_of(doc: Any, path: str) -> tuple[Any, str]:
    """The container that holds the last token of ``path``, and that token."""
    *walk, last = pointer(path)
    node = doc
    for token in walk:
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PatchError(f"{path}: no {token!r}") from exc
    return node, last


def apply_json_patch(doc: Doc, operations: list[Doc]) -> Doc:
    """``doc`` with the operations applied in order, as a copy; add, remove, replace, test."""
    result = copy.deepcopy(doc)
    for operation in operations:
        op, path = operation["op"], operation["path"]
        node, last = parent_of(result, path)
        index: int | str = last
        if isinstance(node, list):
            if last == "-" and op == "add":
                index = len(node)
            elif not last.isdigit() or not 0 <= int(last) <= len(node) - (op != "add"):
                raise PatchError(f"{path}: no index {last} in a list of {len(node)}")
            else:
                index = int(last)
        elif op != "add" and last not in node:
            raise PatchError(f"{path}: no {last!r}")
        if op == "test":
            if node[index] != operation["value"]:
                raise PatchError(f"test failed: {path} is {node[index]!r}")
        elif op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(node, list):
                node.insert(index, value)
            else:
                node[index] = value
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[index]
        else:
            raise PatchError(f"{op}: not an operation the Component may use")
    return result


def test_json_patch_applies_and_refuses_like_rfc_6902() -> None:
    """The patch implementation the rendering relies on adds (at an index, at the end, a key),
    replaces, removes, passes a true `test` and stops at a false one or a missing path."""
    doc = {"a": [1, 2], "b/c": {"d": 1}}
    patched = apply_json_patch(
        doc,
        [
            {"op": "test", "path": "/a/1", "value": 2},
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "add", "path": "/a/0", "value": 0},
            {"op": "add", "path": "/b~1c/e", "value": {"f": 2}},
            {"op": "replace", "path": "/b~1c/d", "value": 5},
            {"op": "remove", "path": "/a/1"},
        ],
    )
    assert patched == {"a": [0, 2, 3], "b/c": {"d": 5, "e": {"f": 2}}}
    assert doc == {"a": [1, 2], "b/c": {"d": 1}}, "the original is left alone"
    for operations in (
        [{"op": "test", "path": "/a/0", "value": 2}],
        [{"op": "replace", "path": "/a/2", "value": 0}],
        [{"op": "add", "path": "/a/5", "value": 0}],
        [{"op": "add", "path": "/x/y", "value": 0}],
        [{"op": "remove", "path": "/z"}],
        [{"op": "move", "from": "/a", "path": "/b~1c"}],
    ):
        with pytest.raises(PatchError):
            apply_json_patch(doc, operations)


# --- the Component, applied ----------------------------------------------------------------------


def kustomization(directory: Path) -> Doc:
    doc: Doc = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    return doc


def component_patches() -> list[tuple[Doc, list[Doc]]]:
    """The Component's patches: (target, JSON 6902 operations). A strategic-merge patch (a
    mapping) fails here: the rendering below only applies JSON 6902."""
    patches = []
    for patch in kustomization(KEY_DELIVERY)["patches"]:
        operations = yaml.safe_load(patch["patch"])
        assert isinstance(operations, list), f"{patch['target']}: not a JSON 6902 patch"
        patches.append((patch["target"], operations))
    return patches


def targeted(doc: Doc, target: Doc) -> bool:
    """Whether kustomize's patch target (kind, name, namespace) selects ``doc``."""
    assert target.keys() <= {"kind", "name", "namespace"}, f"unsupported target {target}"
    metadata = doc["metadata"]
    return (
        doc["kind"] == target.get("kind", doc["kind"])
        and metadata["name"] == target.get("name", metadata["name"])
        and metadata.get("namespace") == target.get("namespace", metadata.get("namespace"))
    )


def render(directory: Path) -> list[Doc]:
    """The variant's objects with the Component's patches applied; each patch selects exactly
    one object of the variant."""
    docs = [copy.deepcopy(doc) for path in manifest_files(directory) for doc in documents(path)]
    for target, operations in component_patches():
        matches = [index for index, doc in enumerate(docs) if targeted(doc, target)]
        assert len(matches) == 1, f"{directory.name}: {target} selects {len(matches)} objects"
        docs[matches[0]] = apply_json_patch(docs[matches[0]], operations)
    return docs


def one(docs: list[Doc], kind: str, name: str = "slotkeeper") -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_of(docs: list[Doc]) -> Doc:
    pod: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]
    return pod


def original(directory: Path) -> list[Doc]:
    return [doc for path in manifest_files(directory) for doc in documents(path)]


# --- the Roles ---------------------------------------------------------------------------------


def rbac_documents() -> list[Doc]:
    return [doc for path in manifest_files(KEY_DELIVERY_RBAC) for doc in documents(path)]


def rbac_problems(docs: list[Doc], subject: Doc = SERVICE_ACCOUNT) -> list[str]:
    """Why these RBAC objects grant more (or other) than the Secrets verbs to ``subject`` in
    named namespaces (empty when they grant exactly that): only Roles and RoleBindings, each
    in a namespace; each Role one rule, core `secrets`, exactly the five verbs; each
    RoleBinding the Role of its own namespace to ``subject`` alone; one of each per namespace."""
    problems = []
    roles: dict[str, set[str]] = {}
    bindings: dict[str, int] = {}
    for doc in docs:
        kind, metadata = doc["kind"], doc["metadata"]
        namespace = metadata.get("namespace")
        where = f"{kind} {metadata['name']} in {namespace}"
        if kind not in ("Role", "RoleBinding"):
            problems.append(f"{kind} {metadata['name']}: only Roles and RoleBindings")
            continue
        if doc["apiVersion"] != f"{RBAC_GROUP}/v1":
            problems.append(f"{where}: apiVersion {doc['apiVersion']}")
        if not namespace:
            problems.append(f"{where}: no namespace of its own (an overlay's would apply)")
            continue
        if kind == "Role":
            roles.setdefault(namespace, set()).add(metadata["name"])
            rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": list(SECRET_VERBS)}
            rules = doc.get("rules", [])
            if len(rules) != 1 or rules[0].keys() != rule.keys():
                problems.append(f"{where}: rules {rules}, not the one rule {rule}")
                continue
            if rules[0]["apiGroups"] != [""] or rules[0]["resources"] != ["secrets"]:
                problems.append(
                    f"{where}: grants {rules[0]['resources']} of {rules[0]['apiGroups']}"
                )
            if sorted(rules[0]["verbs"]) != sorted(SECRET_VERBS):
                problems.append(f"{where}: verbs {rules[0]['verbs']}, not {list(SECRET_VERBS)}")
        else:
            bindings[namespace] = bindings.get(namespace, 0) + 1
            ref = doc["roleRef"]
            if ref.get("kind") != "Role" or ref.get("apiGroup") != RBAC_GROUP:
                problems.append(f"{where}: roleRef {ref} is not a Role")
            elif ref["name"] not in {
                other["metadata"]["name"]
                for other in docs
                if other["kind"] == "Role" and other["metadata"].get("namespace") == namespace
            }:
                problems.append(f"{where}: roleRef {ref['name']} is no Role of {namespace}")
            if doc.get("subjects") != [subject]:
                problems.append(f"{where}: subjects {doc.get('subjects')}, not [{subject}]")
    if set(roles) != set(bindings):
        problems.append(f"Roles in {sorted(roles)}, RoleBindings in {sorted(bindings)}")
    for namespace, names in roles.items():
        if len(names) != 1 or bindings.get(namespace, 0) != 1:
            problems.append(
                f"{namespace}: {len(names)} Roles and {bindings.get(namespace)} bindings"
            )
    return problems


def role_namespaces(docs: list[Doc]) -> set[str]:
    return {doc["metadata"]["namespace"] for doc in docs if doc["kind"] == "Role"}


def namespaces_setting(value: str) -> set[str]:
    """SLOTKEEPER_SECRET_NAMESPACES as the daemon splits it: comma-separated names."""
    return {item for item in value.replace(",", " ").split() if item}


# --- the token ---------------------------------------------------------------------------------


def token_problems(pod: Doc, service_account: Doc) -> list[str]:
    """Why the pod's container would not find the ServiceAccount's token, CA and namespace in
    /var/run/secrets/kubernetes.io/serviceaccount/ (empty when it would). With automount on
    (the pod's setting, else the ServiceAccount's, else true) the kubelet mounts a volume of its
    own there, which fails inside a read-only volume mounted above it; off, the files must come
    from a projected volume, from the sources the kubelet's own volume has."""
    problems = []
    automount = pod.get(
        "automountServiceAccountToken", service_account.get("automountServiceAccountToken", True)
    )
    if automount:
        (main,) = pod["containers"]
        for mount in main.get("volumeMounts", []):
            above = PurePosixPath(mount["mountPath"])
            if above != TOKEN_DIR and TOKEN_DIR.is_relative_to(above):
                problems.append(
                    f"automount: the kubelet's token volume would be mounted inside volume "
                    f"{mount['name']} at {above}, read-only: the runtime cannot create the "
                    f"mount point (read-only file system) and the pod does not start"
                )
        return problems
    for name, source_for in TOKEN_SOURCES.items():
        found = mounted(pod, str(TOKEN_DIR / name))
        if found is None:
            problems.append(f"{TOKEN_DIR / name} is on no volume")
            continue
        _, volume, inside = found
        sources = volume.get("projected", {}).get("sources", [])
        if sources.count(source_for(inside)) != 1:
            problems.append(f"{TOKEN_DIR / name}: not projected as {source_for(inside)}")
    return problems


#: the sources of the kubelet's own token volume (kube-api-access-*), by file: a token of 3607
#: seconds (which the API server treats as the kubelet's), the cluster's CA, the namespace
TOKEN_SOURCES: dict[str, Callable[[str], Doc]] = {
    "token": lambda path: {"serviceAccountToken": {"path": path, "expirationSeconds": 3607}},
    "ca.crt": lambda path: {
        "configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": path}]}
    },
    "namespace": lambda path: {
        "downwardAPI": {
            "items": [
                {"path": path, "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
            ]
        }
    },
}


# --- kustomize, when a binary is there -----------------------------------------------------------


def kustomize_command() -> list[str] | None:
    """``kustomize build`` or ``kubectl kustomize``, whichever is on PATH (None: neither)."""
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return None


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    """kustomize run on ``directory`` (the test is skipped without a binary)."""
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: the Python rendering stands")
    return subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )


def kustomize_build(directory: Path) -> list[Doc]:
    """What kustomize builds from ``directory``."""
    done = kustomize(directory)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def copy_tree(destination: Path) -> Path:
    """base/, postgres/ and key-delivery/ copied into ``destination`` (as deploy/kubernetes/
    is laid out), for overlays written next to them."""
    for name in ("base", "postgres", "key-delivery"):
        shutil.copytree(KUBERNETES / name, destination / name)
    return destination


def without_common_labels(doc: Doc) -> Doc:
    """``doc`` without the labels the kustomizations' `labels:` add (the tests render the files
    as written, kustomize with those labels)."""
    doc = copy.deepcopy(doc)
    added = {"app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}
    holders = [doc["metadata"]]
    if doc["kind"] == "Deployment":
        holders.append(doc["spec"]["template"]["metadata"])
    for metadata in holders:
        labels = {k: v for k, v in metadata.get("labels", {}).items() if k not in added}
        metadata["labels"] = labels
    return doc


def by_identity(docs: list[Doc]) -> dict[tuple[str, str | None, str], Doc]:
    identities = {
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]): doc
        for doc in docs
    }
    assert len(identities) == len(docs), "two objects share kind, namespace and name"
    return identities


# --- the README's overlay ------------------------------------------------------------------------


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def readme_blocks() -> dict[str, str]:
    """The section's YAML blocks by the path their first line names: ``# PATH`` (a file) or
    ``# add to PATH`` (keys to add to that file)."""
    blocks = {}
    for block in re.findall(r"^```yaml\n(.*?)^```", readme_section(), re.MULTILINE | re.DOTALL):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# ((?:add to )?overlays/\S+)", first)
        assert match, f"a YAML block of the section names no file: {first!r}"
        blocks[match[1]] = block
    return blocks


def readme_overlay(destination: Path, *, additions: tuple[str, ...] = ()) -> Path:
    """The README's overlays/production written under ``destination`` (beside copies of the
    manifests), with the README's ``# add to`` blocks named in ``additions`` merged in (their
    lists appended to the file's); returns the overlay's top directory."""
    copy_tree(destination)
    blocks = readme_blocks()
    files = {path: text for path, text in blocks.items() if not path.startswith("add to ")}
    for path, text in files.items():
        (destination / path).parent.mkdir(parents=True, exist_ok=True)
        (destination / path).write_text(text, encoding="utf-8")
    for addition in additions:
        path = addition.removeprefix("add to ")
        doc = yaml.safe_load((destination / path).read_text(encoding="utf-8"))
        for key, values in yaml.safe_load(blocks[addition]).items():
            doc.setdefault(key, []).extend(values)
        (destination / path).write_text(yaml.safe_dump(doc), encoding="utf-8")
    return destination / "overlays" / "production"


# === the Component ===============================================================================


def test_component_is_inline_patches_to_slotkeepers_own_objects() -> None:
    """key-delivery/ is a kustomize Component (v1alpha1) of inline JSON 6902 patches only: no
    resource, no namespace, no generator; its one other entry is the directory rbac/. Each
    patch targets an object of slotkeeper's own namespace by kind and name."""
    doc = kustomization(KEY_DELIVERY)
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert doc["kind"] == "Component"
    assert doc.keys() == {"apiVersion", "kind", "patches"}
    assert {path.name for path in KEY_DELIVERY.iterdir()} == {"kustomization.yaml", "rbac"}
    targets = [target for target, _ in component_patches()]
    assert targets == [
        {"kind": "ConfigMap", "name": "slotkeeper"},
        {"kind": "Deployment", "name": "slotkeeper"},
        {"kind": "NetworkPolicy", "name": "slotkeeper"},
    ]
    for patch in doc["patches"]:
        assert patch.keys() == {"target", "patch"}, "inline patches only (no file to validate)"


def test_component_patches_apply_to_both_variants(variant: Path) -> None:
    """Each patch selects exactly one object of base/ and of postgres/, and every operation
    applies there, its `test`s included (the volume and container indexes it relies on)."""
    docs = render(variant)
    assert len(docs) == len(original(variant))
    tests = [op for _, operations in component_patches() for op in operations if op["op"] == "test"]
    assert {op["path"] for op in tests} == {
        "/spec/template/spec/containers/0/name",
        "/spec/template/spec/volumes/3/name",
    }


def test_component_test_operations_stop_a_shifted_index() -> None:
    """Were the credentials volume to move in a variant, the `test` stops the patch instead of
    adding the token to another volume."""
    (_, operations), *_ = [p for p in component_patches() if p[0]["kind"] == "Deployment"]
    deployment = copy.deepcopy(one(original(BASE), "Deployment"))
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    volumes.insert(0, volumes.pop())  # the targets volume first: index 3 is another one
    with pytest.raises(PatchError, match="test failed"):
        apply_json_patch(deployment, operations)


def test_rendered_manifests_are_valid_kubernetes(variant: Path) -> None:
    """Every object of the variant with the Component applied validates strictly and offline
    against the pinned Kubernetes version."""
    for doc in render(variant):
        k8s_validate(doc)


def test_component_changes_nothing_else(variant: Path) -> None:
    """Rendered, the variant differs from itself only by the namespaces' setting (ConfigMap and
    env), the three token sources of the credentials volume and the API server rule: the
    args, security contexts, mounts, probes, Secret sources and every other object stay."""
    before, after = original(variant), render(variant)
    expected = copy.deepcopy(before)
    one(expected, "ConfigMap")["data"][NAMESPACES_ENV] = ",".join(DELIVERY_NAMESPACES)
    pod = pod_of(expected)
    pod["containers"][0]["env"].append(
        {
            "name": NAMESPACES_ENV,
            "valueFrom": {"configMapKeyRef": {"name": "slotkeeper", "key": NAMESPACES_ENV}},
        }
    )
    credentials = next(v for v in pod["volumes"] if v["name"] == "credentials")
    prefix = "kubernetes.io/serviceaccount/"
    credentials["projected"]["sources"] += [
        source_for(prefix + name) for name, source_for in TOKEN_SOURCES.items()
    ]
    (rule,) = api_server_rules(one(after, "NetworkPolicy"))
    one(expected, "NetworkPolicy")["spec"]["egress"].append(rule)
    assert after == expected


# === the daemon's namespaces ======================================================================


def test_namespaces_come_from_the_configmap_and_match_the_roles(variant: Path) -> None:
    """SLOTKEEPER_SECRET_NAMESPACES is a key of the ConfigMap `slotkeeper`, read into the
    container's env by a configMapKeyRef (the Deployment reads no envFrom), set once; its
    namespaces are exactly those the Roles of rbac/ are in, flux-system and argocd."""
    docs = render(variant)
    assert NAMESPACES_ENV not in one(original(variant), "ConfigMap")["data"]
    value = one(docs, "ConfigMap")["data"][NAMESPACES_ENV]
    assert value == "flux-system,argocd"
    assert (
        namespaces_setting(value) == set(DELIVERY_NAMESPACES) == role_namespaces(rbac_documents())
    )
    (main,) = pod_of(docs)["containers"]
    assert "envFrom" not in main
    entries = [item for item in main["env"] if item["name"] == NAMESPACES_ENV]
    assert entries == [
        {
            "name": NAMESPACES_ENV,
            "valueFrom": {"configMapKeyRef": {"name": "slotkeeper", "key": NAMESPACES_ENV}},
        }
    ]
    names = [item["name"] for item in main["env"]]
    assert len(names) == len(set(names))
    assert credential_env_problems(main) == []


def test_rendered_command_line_parses_with_the_real_cli(
    variant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The namespaces are an environment variable, not a flag: the args are the variant's own,
    and with the settings filled in and SLOTKEEPER_SECRET_NAMESPACES set as the ConfigMap
    sets it, they are a `run` command the real CLI accepts."""
    docs = render(variant)
    (main,) = pod_of(docs)["containers"]
    assert main["args"] == pod_of(original(variant))["containers"][0]["args"]
    assert "--secret-namespaces" not in main["args"]
    settings = one(docs, "ConfigMap")["data"]
    monkeypatch.setenv(NAMESPACES_ENV, settings[NAMESPACES_ENV])
    check_cli([re.sub(r"\$\((\w+)\)", lambda m: settings[m[1]], arg) for arg in main["args"]])


# === the token ===================================================================================


def test_token_is_projected_into_the_credentials_volume(variant: Path) -> None:
    """Rendered, the container finds the token, the CA and the namespace where lightkube reads
    them, projected into the read-only credentials volume from the kubelet's own sources, while
    automountServiceAccountToken stays false on the pod and the ServiceAccount (the kubelet's
    volume could not be mounted inside the credentials volume)."""
    docs = render(variant)
    pod, account = pod_of(docs), one(docs, "ServiceAccount")
    assert pod["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"] == SERVICE_ACCOUNT["name"]
    assert token_problems(pod, account) == []
    found = mounted(pod, str(TOKEN_DIR / "token"))
    assert found is not None
    mount, volume, inside = found
    assert volume["name"] == "credentials" and mount["readOnly"] is True
    assert inside == "kubernetes.io/serviceaccount/token", "below the volume's top level"
    # The credential files are where they were, from the same keys.
    args = pod["containers"][0]["args"]
    webhook = args[args.index("--webhook-secret-file") + 1]
    assert credential_path_problem(pod, webhook, "webhook-secret") is None
    assert credential_path_problem(pod, str(CREDENTIALS_DIR / "git-token"), "git-token") is None


def test_the_variants_alone_mount_no_token(variant: Path) -> None:
    """Without the Component, base/ and postgres/ keep no token in the pod: automount off, and
    no token source anywhere (the check above finds none)."""
    docs = original(variant)
    pod, account = pod_of(docs), one(docs, "ServiceAccount")
    assert pod["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    assert "serviceAccountToken" not in json.dumps(pod)
    assert token_problems(pod, account) != []


def automount(where: str) -> Callable[[Doc, Doc], None]:
    def change(pod: Doc, account: Doc) -> None:
        if where == "pod":
            pod["automountServiceAccountToken"] = True
        else:
            del pod["automountServiceAccountToken"]
            account["automountServiceAccountToken"] = True

    return change


def drop_source(kind: str) -> Callable[[Doc, Doc], None]:
    def change(pod: Doc, account: Doc) -> None:
        for volume in pod["volumes"]:
            if "projected" in volume:
                sources = volume["projected"]["sources"]
                volume["projected"]["sources"] = [s for s in sources if kind not in s]

    return change


def token_path(path: str) -> Callable[[Doc, Doc], None]:
    def change(pod: Doc, account: Doc) -> None:
        for volume in pod["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                if "serviceAccountToken" in source:
                    source["serviceAccountToken"]["path"] = path

    return change


def token_expiration(seconds: int) -> Callable[[Doc, Doc], None]:
    def change(pod: Doc, account: Doc) -> None:
        for volume in pod["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                if "serviceAccountToken" in source:
                    source["serviceAccountToken"]["expirationSeconds"] = seconds

    return change


TAMPERED_TOKENS = {
    # What turning automount on (on the pod, or on the ServiceAccount the pod defers to) does:
    # the kubelet's volume nests in the read-only credentials volume, and the pod fails.
    "automount-pod": (automount("pod"), "read-only file system"),
    "automount-service-account": (automount("account"), "read-only file system"),
    "no-token": (drop_source("serviceAccountToken"), "token: not projected"),
    "no-ca": (drop_source("configMap"), "ca.crt: not projected"),
    "no-namespace": (drop_source("downwardAPI"), "namespace: not projected"),
    "token-elsewhere": (token_path("slotkeeper/token"), "token: not projected"),
    "token-lives-long": (token_expiration(86400), "token: not projected"),
}


@pytest.mark.parametrize("name", list(TAMPERED_TOKENS))
def test_token_check_can_fail(name: str) -> None:
    """The check above refuses a pod whose token would not be there, or would keep it from
    starting."""
    change, problem = TAMPERED_TOKENS[name]
    docs = render(BASE)
    pod, account = pod_of(docs), one(docs, "ServiceAccount")
    change(pod, account)
    problems = token_problems(pod, account)
    assert any(problem in found for found in problems), problems


# === the NetworkPolicy =========================================================================


def api_server_rules(policy: Doc) -> list[Doc]:
    return [
        rule
        for rule in policy["spec"]["egress"]
        if any(port["port"] == 6443 for port in rule["ports"])
    ]


def api_server_rule_problems(rule: Doc) -> list[str]:
    """Why the API server rule lets more through than TCP 443 and 6443 to private addresses
    (empty when it does not)."""
    problems = []
    ports = {(port.get("protocol", "TCP"), port["port"]) for port in rule.get("ports", [])}
    if ports != API_SERVER_PORTS or any("endPort" in port for port in rule["ports"]):
        problems.append(f"ports {sorted(ports)}, not {sorted(API_SERVER_PORTS)}")
    peers = rule.get("to", [])
    if not peers:
        problems.append("no `to:`: any address")
    for peer in peers:
        block = peer.get("ipBlock")
        if block is None or peer.keys() != {"ipBlock"}:
            problems.append(f"{peer} is not an ipBlock")
            continue
        cidr = block["cidr"]
        if cidr not in PRIVATE_RANGES:
            problems.append(f"{cidr} is not a private range")
        network = ipaddress.ip_network(cidr)
        for closed in map(ipaddress.ip_network, CLOSED_RANGES):
            if network.version == closed.version and network.overlaps(closed):
                problems.append(f"{cidr} reaches {closed}")
    return problems


def test_network_policy_adds_the_api_server_and_nothing_more(variant: Path) -> None:
    """Rendered, the policy is the variant's (which passes every check of test_deploy.py) plus
    one egress rule: TCP 443 and 6443 to private ranges, never link-local nor loopback."""
    policy = one(render(variant), "NetworkPolicy")
    (rule,) = api_server_rules(policy)
    assert api_server_rule_problems(rule) == []
    assert {block["ipBlock"]["cidr"] for block in rule["to"]} == PRIVATE_RANGES
    policy["spec"]["egress"].remove(rule)
    assert policy == one(original(variant), "NetworkPolicy")
    labels = one(original(variant), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert network_policy_problems(policy, labels, postgres=variant == POSTGRES) == []


TAMPERED_API_RULES: dict[str, Callable[[Doc], None]] = {
    "anywhere": lambda rule: rule.pop("to"),
    "metadata": lambda rule: rule["to"].append({"ipBlock": {"cidr": "169.254.0.0/16"}}),
    "everything": lambda rule: rule["to"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
    "loopback-v6": lambda rule: rule["to"].append({"ipBlock": {"cidr": "::1/128"}}),
    "any-pod": lambda rule: rule["to"].append({"namespaceSelector": {}}),
    "http": lambda rule: rule["ports"].append({"port": 80, "protocol": "TCP"}),
    "port-range": lambda rule: rule["ports"][0].update(endPort=8443),
    "no-6443": lambda rule: rule["ports"].pop(),
}


@pytest.mark.parametrize("name", list(TAMPERED_API_RULES))
def test_api_server_rule_check_can_fail(name: str) -> None:
    """The check above refuses an API server rule that reaches more (or other) than it should."""
    (rule,) = api_server_rules(one(render(BASE), "NetworkPolicy"))
    TAMPERED_API_RULES[name](rule)
    assert api_server_rule_problems(rule)


# === the Roles ==================================================================================


def test_rbac_kustomization_lists_exactly_its_files_and_sets_no_namespace() -> None:
    """rbac/ is a Kustomization without `namespace:` (which would move its Roles), listing
    exactly its files, one per namespace and named after it, in the order of the daemon's
    list; its `labels:` are the variants' own."""
    doc = kustomization(KEY_DELIVERY_RBAC)
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    assert doc.keys() == {"apiVersion", "kind", "resources", "labels"}
    assert doc["resources"] == [f"{namespace}.yaml" for namespace in DELIVERY_NAMESPACES]
    assert {KEY_DELIVERY_RBAC / name for name in doc["resources"]} == set(
        manifest_files(KEY_DELIVERY_RBAC)
    )
    assert [label["pairs"] for label in doc["labels"]] == [
        label["pairs"] for label in kustomization(BASE)["labels"]
    ]
    for name in doc["resources"]:
        for manifest in documents(KEY_DELIVERY_RBAC / name):
            assert manifest["metadata"]["namespace"] == name.removesuffix(".yaml")


def test_rbac_manifests_are_valid_kubernetes() -> None:
    """Every Role and RoleBinding validates strictly and offline (also covered, file by file, by
    test_deploy.py's validation of every manifest)."""
    docs = rbac_documents()
    assert docs
    for doc in docs:
        k8s_validate(doc)


def test_roles_grant_exactly_the_secret_verbs_in_named_namespaces() -> None:
    """In flux-system and in argocd, and nowhere else: a Role granting get, create, update,
    patch and delete on core `secrets` (no list, no watch, no other resource), and a
    RoleBinding of that Role to the ServiceAccount slotkeeper of the namespace slotkeeper."""
    docs = rbac_documents()
    assert rbac_problems(docs) == []
    assert role_namespaces(docs) == set(DELIVERY_NAMESPACES)
    assert {doc["metadata"]["name"] for doc in docs} == {ROLE_NAME}
    assert sorted(doc["kind"] for doc in docs) == ["Role", "Role", "RoleBinding", "RoleBinding"]


def tampered(change: Callable[[list[Doc]], Any]) -> list[Doc]:
    docs = copy.deepcopy(rbac_documents())
    change(docs)
    return docs


def first(kind: str) -> Callable[[list[Doc]], Doc]:
    return lambda docs: next(doc for doc in docs if doc["kind"] == kind)


role, binding = first("Role"), first("RoleBinding")

TAMPERED_RBAC: dict[str, Callable[[list[Doc]], Any]] = {
    "list": lambda docs: role(docs)["rules"][0]["verbs"].append("list"),
    "watch": lambda docs: role(docs)["rules"][0]["verbs"].append("watch"),
    "any-verb": lambda docs: role(docs)["rules"][0].update(verbs=["*"]),
    "no-delete": lambda docs: role(docs)["rules"][0]["verbs"].remove("delete"),
    "configmaps": lambda docs: role(docs)["rules"][0]["resources"].append("configmaps"),
    "any-group": lambda docs: role(docs)["rules"][0].update(apiGroups=["*"]),
    "second-rule": lambda docs: role(docs)["rules"].append(copy.deepcopy(role(docs)["rules"][0])),
    "another-field": lambda docs: role(docs)["rules"][0].update(resourceNames=["x"]),
    "cluster-role": lambda docs: role(docs).update(kind="ClusterRole"),
    "to-cluster-role": lambda docs: binding(docs)["roleRef"].update(kind="ClusterRole"),
    "cluster-binding": lambda docs: binding(docs).update(kind="ClusterRoleBinding"),
    "no-namespace": lambda docs: role(docs)["metadata"].pop("namespace"),
    "role-of-another-namespace": lambda docs: binding(docs)["roleRef"].update(name="other"),
    "other-account": lambda docs: binding(docs)["subjects"][0].update(name="default"),
    "other-account-namespace": lambda docs: binding(docs)["subjects"][0].update(namespace="x"),
    "a-group": lambda docs: binding(docs)["subjects"].append(
        {"kind": "Group", "name": "system:authenticated", "apiGroup": RBAC_GROUP}
    ),
    "binding-without-role": lambda docs: binding(docs)["metadata"].update(namespace="kube-system"),
    "role-without-binding": lambda docs: docs.remove(binding(docs)),
}


@pytest.mark.parametrize("name", list(TAMPERED_RBAC))
def test_rbac_check_can_fail(name: str) -> None:
    """The check above refuses Roles and bindings that grant more, less or to someone else."""
    assert rbac_problems(tampered(TAMPERED_RBAC[name]))


def yaml_files_under_deploy() -> list[Path]:
    return sorted(path for path in (ROOT / "deploy").rglob("*") if path.suffix in {".yaml", ".yml"})


def test_nothing_cluster_wide_anywhere_in_deploy() -> None:
    """No ClusterRole or ClusterRoleBinding in any YAML file under deploy/, kustomizations and
    the Component's inline patches included; the only RBAC objects are those of
    key-delivery/rbac; no Role grants list or watch."""
    assert yaml_files_under_deploy()
    for path in yaml_files_under_deploy():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"kind:\s*ClusterRole", text), f"{path}: a ClusterRole"
        for doc in documents(path):
            kind = doc.get("kind", "")
            assert "ClusterRole" not in kind, f"{path}: {kind}"
            if kind in ("Role", "RoleBinding"):
                assert path.parent == KEY_DELIVERY_RBAC, f"{path}: RBAC outside rbac/"
    for _, operations in component_patches():
        assert "ClusterRole" not in json.dumps(operations)
    for doc in rbac_documents():
        for rule in doc.get("rules", []):
            assert not {"list", "watch", "*"} & set(rule["verbs"])


# === with kustomize itself ======================================================================


def test_kustomize_builds_what_the_tests_render(variant: Path, tmp_path: Path) -> None:
    """kustomize, given an overlay of the variant with the Component, builds the objects the
    Python application of the patches gives (the kustomization's common labels aside)."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(variant, overlay)],
                "components": [os.path.relpath(KEY_DELIVERY, overlay)],
            }
        ),
        encoding="utf-8",
    )
    built = by_identity([without_common_labels(doc) for doc in kustomize_build(overlay)])
    rendered = by_identity([without_common_labels(doc) for doc in render(variant)])
    assert built.keys() == rendered.keys()
    for identity, doc in rendered.items():
        assert built[identity] == doc, f"{identity}: kustomize builds another object"


def test_readme_overlay_keeps_every_object_in_its_namespace(tmp_path: Path) -> None:
    """The README's overlay, built: the daemon's objects in `slotkeeper`, each Role and
    RoleBinding in its own namespace, bound to the ServiceAccount kustomize deployed, and the
    daemon's namespaces those of the Roles."""
    docs = kustomize_build(readme_overlay(tmp_path))
    rbac = [doc for doc in docs if doc["kind"] in ("Role", "RoleBinding")]
    daemon = [doc for doc in docs if doc not in rbac]
    assert {doc["metadata"]["namespace"] for doc in daemon} == {"slotkeeper"}
    assert rbac_problems(rbac) == []
    assert role_namespaces(rbac) == set(DELIVERY_NAMESPACES)
    assert_consistent(docs)


def assert_consistent(docs: list[Doc]) -> None:
    """The RoleBindings name the ServiceAccount the Deployment runs as, in its namespace; the
    daemon's list of namespaces is the Roles'; the pod gets its token; all valid."""
    account = one(docs, "ServiceAccount")
    deployment = one(docs, "Deployment")
    subject = {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }
    assert deployment["metadata"]["namespace"] == subject["namespace"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == subject["name"]
    rbac = [doc for doc in docs if doc["kind"] in ("Role", "RoleBinding")]
    assert rbac_problems(rbac, subject) == []
    setting = one(docs, "ConfigMap")["data"][NAMESPACES_ENV]
    assert namespaces_setting(setting) == role_namespaces(rbac)
    assert token_problems(deployment["spec"]["template"]["spec"], account) == []
    for doc in docs:
        k8s_validate(doc)


def test_a_flat_overlay_would_move_the_roles(tmp_path: Path) -> None:
    """Why the README's overlay has two directories: kustomize's `namespace:` sets the namespace
    of every namespaced object. With both Roles in a flat overlay the build stops (both become
    slotkeeper/slotkeeper-deploy-keys); with one, it silently lands in slotkeeper's own
    namespace, granting it its own Secrets and nothing in flux-system."""
    copy_tree(tmp_path)
    flat = tmp_path / "overlays" / "flat"
    flat.mkdir(parents=True)
    head = "namespace: slotkeeper\ncomponents: [../../key-delivery]\n"
    (flat / "kustomization.yaml").write_text(
        head + "resources: [../../base, ../../key-delivery/rbac]\n", encoding="utf-8"
    )
    stopped = kustomize(flat)
    assert stopped.returncode != 0 and "ID conflict" in stopped.stderr
    shutil.copy(KEY_DELIVERY_RBAC / "flux-system.yaml", flat)
    (flat / "kustomization.yaml").write_text(
        head + "resources: [../../base, flux-system.yaml]\n", encoding="utf-8"
    )
    rbac = [doc for doc in kustomize_build(flat) if doc["kind"] in ("Role", "RoleBinding")]
    assert {doc["metadata"]["namespace"] for doc in rbac} == {"slotkeeper"}


def test_readme_additions_build_a_third_namespace_and_another_home(tmp_path: Path) -> None:
    """The README's additions, built: with tenant-a.yaml listed and the namespaces' setting
    replaced, a third Role and binding in tenant-a and the daemon allowed there; with
    slotkeeper in the namespace `platform` and the subject patch, the bindings name the
    ServiceAccount of `platform`."""
    top = readme_overlay(
        tmp_path,
        additions=(
            "add to overlays/production/kustomization.yaml",
            "add to overlays/production/slotkeeper/kustomization.yaml",
        ),
    )
    (top / "tenant-a.yaml").write_text(readme_blocks()["overlays/production/tenant-a.yaml"])
    overlay = yaml.safe_load((top / "kustomization.yaml").read_text(encoding="utf-8"))
    overlay["resources"].append("tenant-a.yaml")
    (top / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    inner = yaml.safe_load((top / "slotkeeper" / "kustomization.yaml").read_text())
    inner["namespace"] = "platform"
    (top / "slotkeeper" / "kustomization.yaml").write_text(yaml.safe_dump(inner))
    docs = kustomize_build(top)
    assert role_namespaces(docs) == {*DELIVERY_NAMESPACES, "tenant-a"}
    assert one(docs, "Deployment")["metadata"]["namespace"] == "platform"
    assert_consistent(docs)


# === the README ================================================================================


def test_readme_overlay_is_two_directories_that_resolve() -> None:
    """The README's overlay, read as written (from deploy/kubernetes/overlays/production): a top
    directory without `namespace:` listing the daemon's subdirectory and key-delivery/rbac, and
    a subdirectory with the namespace, a variant and the Component; every path exists."""
    blocks = readme_blocks()
    top = yaml.safe_load(blocks["overlays/production/kustomization.yaml"])
    inner = yaml.safe_load(blocks["overlays/production/slotkeeper/kustomization.yaml"])
    assert "namespace" not in top
    assert top["resources"] == ["slotkeeper", "../../key-delivery/rbac"]
    assert inner["namespace"] == SERVICE_ACCOUNT["namespace"]
    assert inner["resources"] == ["../../../base"]
    assert inner["components"] == ["../../../key-delivery"]
    here = KUBERNETES / "overlays" / "production"
    assert (here / top["resources"][1]).resolve() == KEY_DELIVERY_RBAC
    assert (here / "slotkeeper" / inner["resources"][0]).resolve() == BASE
    assert (here / "slotkeeper" / inner["components"][0]).resolve() == KEY_DELIVERY
    assert inner["images"][0]["name"] == "slotkeeper"


def test_readme_additions_are_what_they_say() -> None:
    """The README's third namespace is a Role and binding that pass the RBAC check in
    tenant-a, and the daemon's list it sets includes it; its subject patch, applied to the
    shipped RoleBindings, moves only their subject's namespace."""
    blocks = readme_blocks()
    tenant = list(yaml.safe_load_all(blocks["overlays/production/tenant-a.yaml"]))
    assert rbac_problems(tenant) == []
    assert role_namespaces(tenant) == {"tenant-a"}
    for doc in tenant:
        k8s_validate(doc)
    (setting,) = yaml.safe_load(blocks["add to overlays/production/slotkeeper/kustomization.yaml"])[
        "patches"
    ]
    configmap = apply_json_patch(one(render(BASE), "ConfigMap"), yaml.safe_load(setting["patch"]))
    assert namespaces_setting(configmap["data"][NAMESPACES_ENV]) == {
        *DELIVERY_NAMESPACES,
        "tenant-a",
    }
    (subject,) = yaml.safe_load(blocks["add to overlays/production/kustomization.yaml"])["patches"]
    moved = SERVICE_ACCOUNT | {"namespace": "platform"}
    patched = [
        apply_json_patch(doc, yaml.safe_load(subject["patch"]))
        if targeted(doc, subject["target"])
        else doc
        for doc in rbac_documents()
    ]
    assert rbac_problems(patched, moved) == []


def test_readme_documents_key_delivery() -> None:
    """The README's section gives the overlay with the Component, what each verb is for, how to
    add a namespace and move slotkeeper, that nothing is allowed beyond the listed namespaces,
    and why the token is projected and how the API server is reached."""
    section = readme_section()
    for phrase in (
        "components:",
        "../../key-delivery/rbac",
        "`SLOTKEEPER_SECRET_NAMESPACES",
        *(f"| `{verb}` |" for verb in SECRET_VERBS),
        "no `list` or `watch`",
        "nothing beyond the listed namespaces",
        "no ClusterRole, no ClusterRoleBinding",
        "### Adding a namespace",
        "/subjects/0/namespace",
        "`automountServiceAccountToken` stays `false`",
        "read-only file system",
        "6443",
        "kubernetes.io/service-name=kubernetes",
    ):
        assert phrase in section, f"the section does not mention {phrase}"
    for namespace in DELIVERY_NAMESPACES:
        assert f"`{namespace}`" in section


def test_the_rbac_files_checked_are_the_ones_validated() -> None:
    """The files the RBAC checks above read are every manifest under key-delivery/, which
    test_deploy.py validates one by one: a Role and a RoleBinding per namespace."""
    validated = {path for path in manifest_files() if path.is_relative_to(KEY_DELIVERY)}
    assert validated == set(manifest_files(KEY_DELIVERY_RBAC))
    assert len(rbac_documents()) == 2 * len(DELIVERY_NAMESPACES)
