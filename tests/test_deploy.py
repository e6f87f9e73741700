"""The container image, the Kubernetes manifests and the CI examples, checked offline."""

from __future__ import annotations

import copy
import json
import re
import shlex
import socket
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from slotkeeper.cli import cli
from slotkeeper.cli.common import _lease
from slotkeeper.model import SecretRef, TargetDocument

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
POSTGRES = KUBERNETES / "postgres"
# Each self-contained kustomize directory: the SQLite base and the PostgreSQL variant.
VARIANTS = {"base": BASE, "postgres": POSTGRES}
# The deploy keys' delivery to Kubernetes Secrets (tests/test_deploy_key_delivery.py): a
# Component an overlay adds to either variant, and the Roles of the namespaces it writes to.
KEY_DELIVERY = KUBERNETES / "key-delivery"
KEY_DELIVERY_RBAC = KEY_DELIVERY / "rbac"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
PRE_COMMIT_CONFIG = ROOT / "examples" / "ci" / "pre-commit-config.yaml"

# The Kubernetes version the manifests must be valid for: the oldest minor that every
# kubernetes-validate release allowed by pyproject.toml (>=1.30) ships a schema for.
KUBERNETES_VERSION = "1.30"
UID = 10001
# The daemon's flags, from the `slotkeeper run` contract.
RUN_FLAGS = frozenset(
    {
        "--source",
        "--branch",
        "--path",
        "--poll-interval",
        "--resync-interval",
        "--listen",
        "--webhook-secret-file",
        "--cache-dir",
        "--once",
        "--state",
        "--secrets-dir",
        "--allow-decommission",
        "--allow-mass-decommission",
        "--concurrency",
    }
)
# Directories the daemon writes to; everything else may be a read-only root filesystem.
WRITABLE = ("/tmp", "/var/lib/slotkeeper", "/var/cache/slotkeeper")
# Credentials are files, never environment variables: the keys of one Secret, which the user
# creates (see the README), projected read-only into this directory.
CREDENTIALS_SECRET = "slotkeeper-credentials"
CREDENTIALS_DIR = PurePosixPath("/var/run/secrets/slotkeeper")
# Its keys the pod needs to start (the webhook's secret; the ledger's URL, with its password) ...
REQUIRED_KEYS = {
    BASE: frozenset({"webhook-secret"}),
    POSTGRES: frozenset({"webhook-secret", "state-url"}),
}
# ... and the ones each read only when something uses them (a target, a git+https source).
OPTIONAL_KEYS = frozenset(
    {"github-token", "chainloop-token", "unkey-root-key", "iftrue-token", "git-token"}
)
# Where the daemon is told to read its own credential files (a flag or an environment variable).
CREDENTIAL_FILES = {
    "--webhook-secret-file": "webhook-secret",
    "SLOTKEEPER_GIT_TOKEN_FILE": "git-token",
    "SLOTKEEPER_STATE_FILE": "state-url",
}
# Environment variables that would hold a credential itself: the ones the daemon reads (or read
# before), the targets' usual names, and anything named like a token, password or key.
CREDENTIAL_ENV = frozenset(
    {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "CHAINLOOP_TOKEN",
        "UNKEY_ROOT_KEY",
        "IFTRUE_JWT",
        "IFTRUE_TOKEN",
        "SLOTKEEPER_GIT_TOKEN",
        "SLOTKEEPER_WEBHOOK_SECRET",
        "PGPASSWORD",
    }
)
CREDENTIAL_ENV_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|ROOT_KEY|API_KEY|JWT)$")
# The operator's targets file: a ConfigMap key mounted into the pod, named by SLOTKEEPER_TARGETS.
TARGETS_CONFIGMAP = "slotkeeper-targets"
TARGETS_KEY = "targets.yaml"
TARGET_TYPES = frozenset({"github", "chainloop", "unkey", "iftrue"})
# Egress to the APIs may reach public addresses only: these ranges are cut out of it.
PRIVATE_V4 = frozenset(
    {
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
    }
)
PRIVATE_V6 = frozenset({"fc00::/7", "fe80::/10", "::1/128"})
HTTP_PORT = 8080

Doc = dict[str, Any]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test here that tries to reach the network (schemas must come from the package)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(params=list(VARIANTS.values()), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Path:
    """Each kustomize directory in turn: a check that takes it applies to every variant."""
    directory: Path = request.param
    return directory


# --- helpers -------------------------------------------------------------------------------


def manifest_files(directory: Path = KUBERNETES) -> list[Path]:
    return sorted(
        path
        for path in directory.rglob("*")
        if path.suffix in {".yaml", ".yml"} and path.name != "kustomization.yaml"
    )


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def all_documents(directory: Path) -> Iterator[tuple[Path, Doc]]:
    for path in manifest_files(directory):
        for doc in documents(path):
            yield path, doc


def kustomization(directory: Path) -> Doc:
    doc: Doc = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    return doc


def only(directory: Path, kind: str) -> Doc:
    found = [doc for _, doc in all_documents(directory) if doc["kind"] == kind]
    assert len(found) == 1, f"{directory.name}: expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(directory: Path) -> Doc:
    spec: Doc = only(directory, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(directory: Path) -> Doc:
    containers = pod_spec(directory)["containers"]
    assert len(containers) == 1
    main: Doc = containers[0]
    return main


def env_entries(directory: Path) -> dict[str, Doc]:
    """The container's env entries by name (a name set twice is an error: the last one wins)."""
    names = [item["name"] for item in container(directory)["env"]]
    assert len(names) == len(set(names)), f"{directory.name}: an env variable is set twice"
    return {item["name"]: item for item in container(directory)["env"]}


def k8s_validate(doc: Doc) -> None:
    """Validate strictly (unknown fields fail) against the pinned version, from local schemas."""
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def probes(directory: Path) -> dict[str, Doc]:
    main = container(directory)
    return {
        name: main[name]
        for name in ("livenessProbe", "readinessProbe", "startupProbe")
        if name in main
    }


def configmap(directory: Path, name: str) -> Doc:
    found = [
        doc
        for _, doc in all_documents(directory)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"{directory.name}: expected one ConfigMap {name}, found {len(found)}"
    return found[0]


def mounted(pod: Doc, path: str) -> tuple[Doc, Doc, str] | None:
    """The mount and the volume that hold the file ``path`` of the pod's (only) container, and
    the file's path inside the volume (the innermost mount wins), or None when none holds it."""
    file = PurePosixPath(path)
    (main,) = pod["containers"]
    mounts = [mount for mount in main["volumeMounts"] if file.is_relative_to(mount["mountPath"])]
    if not mounts:
        return None
    mount = max(mounts, key=lambda mount: len(PurePosixPath(mount["mountPath"]).parts))
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    return mount, volumes[mount["name"]], file.relative_to(mount["mountPath"]).as_posix()


def projected_keys(volume: Doc) -> dict[str, tuple[str, str]]:
    """A projected volume's files: path inside the volume -> (Secret, key)."""
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume.get("projected", {}).get("sources", [])
        for item in source.get("secret", {}).get("items", [])
    }


def credential_path_problem(pod: Doc, path: str, key: str | None = None) -> str | None:
    """Why the file ``path`` of the pod's container is not a credential file of the Secret
    slotkeeper-credentials (of key ``key``), or None when it is."""
    if PurePosixPath(path).parent != CREDENTIALS_DIR:
        return f"{path} is not a file in {CREDENTIALS_DIR}"
    found = mounted(pod, path)
    if found is None:
        return f"{path} is on no volume"
    mount, volume, inside = found
    if "projected" not in volume:
        return f"{path} is not on the projected credentials volume (volume {mount['name']})"
    if mount.get("readOnly") is not True:
        return f"{path}: the credentials volume is not mounted read-only"
    files = projected_keys(volume)
    if inside not in files:
        return f"{path}: no key of the Secret is projected there"
    secret, projected_key = files[inside]
    if secret != CREDENTIALS_SECRET:
        return f"{path} comes from Secret {secret}, not {CREDENTIALS_SECRET}"
    if key is not None and projected_key != key:
        return f"{path} holds the key {projected_key}, not {key}"
    if "/" not in inside:
        # The kubelet makes a volume's top-level entries symlinks into `..data`, and slotkeeper
        # refuses a credential file reached through a final symlink (O_NOFOLLOW).
        return f"{path} is a top-level entry of its volume: a symlink, which slotkeeper refuses"
    return None


def credential_env_problems(main: Doc) -> list[str]:
    """Why the container's environment carries a credential (empty when it carries none)."""
    problems = []
    for item in main.get("env", []):
        name = item["name"]
        if "secretKeyRef" in item.get("valueFrom", {}):
            problems.append(f"env {name} comes from a Secret")
        if name in CREDENTIAL_ENV or CREDENTIAL_ENV_NAME.search(name):
            problems.append(f"env {name} names a credential")
        if re.search(r"://[^/@\s]*:[^/@\s]*@", item.get("value", "")):
            problems.append(f"env {name} holds a URL with a password")
    for source in main.get("envFrom", []):
        if "secretRef" in source:
            problems.append(f"envFrom reads Secret {source['secretRef']['name']}")
    return problems


def target_documents(text: str) -> tuple[list[Doc], list[Doc]]:
    """The targets file's documents, and its commented-out examples (the comment lines from the
    first ``# ---`` on, uncommented)."""
    active = [doc for doc in yaml.safe_load_all(text) if doc]
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "# ---"), len(lines))
    commented = "\n".join(
        line.removeprefix("#").removeprefix(" ") for line in lines[start:] if line.startswith("#")
    )
    examples = [doc for doc in yaml.safe_load_all(commented) if doc]
    return active, examples


def targets_problems(text: str) -> list[str]:
    """Why the targets file (with its commented-out examples) is not what the Deployment needs:
    valid Target documents, an active github target, an example of every type, and every
    credential a file of the credentials volume."""
    try:
        active, examples = target_documents(text)
    except yaml.YAMLError as exc:
        return [f"not YAML: {exc}"]
    problems = []
    if not any(doc.get("spec", {}).get("type") == "github" for doc in active):
        problems.append("no github target is active")
    names: set[str] = set()
    types: set[str] = set()
    for doc in [*active, *examples]:
        try:
            target = TargetDocument.model_validate(doc)
        except ValidationError as exc:
            problems.append(f"not a Target document: {exc}")
            continue
        if target.metadata.name in names:
            problems.append(f"target {target.metadata.name} is declared twice")
        names.add(target.metadata.name)
        types.add(target.spec.type)
        for field, value in target.spec:
            if not isinstance(value, SecretRef):
                continue
            where = f"target {target.metadata.name} {field}"
            if value.file is None:
                problems.append(f"{where} reads the environment variable {value.env}")
            elif PurePosixPath(value.file).parent != CREDENTIALS_DIR:
                problems.append(f"{where}: {value.file} is not a file in {CREDENTIALS_DIR}")
            elif PurePosixPath(value.file).name not in OPTIONAL_KEYS:
                problems.append(f"{where}: {value.file} is not a key of {CREDENTIALS_SECRET}")
    if types != TARGET_TYPES:
        problems.append(f"examples of target types {sorted(types)}, not {sorted(TARGET_TYPES)}")
    return problems


def is_kube_dns(peer: Doc) -> bool:
    return peer.get("namespaceSelector", {}).get("matchLabels") == {
        "kubernetes.io/metadata.name": "kube-system"
    } and peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}


def public_only(peers: list[Doc]) -> list[str]:
    """Why the peers of an egress rule reach more than public addresses (empty when they do not):
    ipBlocks 0.0.0.0/0 and ::/0 that cut out the private, link-local and loopback ranges."""
    problems = []
    cidrs = set()
    for peer in peers:
        block = peer.get("ipBlock")
        if block is None or peer.keys() != {"ipBlock"}:
            problems.append(f"{peer} is not an ipBlock")
            continue
        cidrs.add(block["cidr"])
        excepted = set(block.get("except", []))
        private = {"0.0.0.0/0": PRIVATE_V4, "::/0": PRIVATE_V6}.get(block["cidr"])
        if private is None:
            problems.append(f"unexpected ipBlock {block['cidr']}")
        elif missing := private - excepted:
            problems.append(f"{block['cidr']} does not cut out {sorted(missing)}")
    if cidrs != {"0.0.0.0/0", "::/0"}:
        problems.append(f"public egress should cover 0.0.0.0/0 and ::/0, not {sorted(cidrs)}")
    return problems


def network_policy_problems(policy: Doc, pod_labels: dict[str, str], postgres: bool) -> list[str]:
    """Why the NetworkPolicy is not the expected one (empty when it is): it selects the pods,
    restricts both directions, lets in only the http port, and lets out only DNS to kube-dns,
    PostgreSQL (the postgres variant) and HTTPS/SSH to public addresses."""
    problems = []
    spec = policy["spec"]
    selector = spec.get("podSelector", {}).get("matchLabels", {})
    if not selector or not selector.items() <= pod_labels.items():
        problems.append(f"podSelector {selector} does not select the slotkeeper pods")
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        problems.append(
            f"policyTypes {spec.get('policyTypes')}: both directions must be restricted"
        )
    if not spec.get("ingress"):
        problems.append("no ingress rule: the hook and the probes would be cut off")
    for rule in spec.get("ingress", []):
        ports = rule.get("ports")
        if not ports:
            problems.append("an ingress rule allows every port")
        for port in ports or []:
            if port.get("port") not in (HTTP_PORT, "http") or "endPort" in port:
                problems.append(f"ingress on {port} (only the http port {HTTP_PORT})")
            if port.get("protocol", "TCP") != "TCP":
                problems.append(f"ingress on {port} is not TCP")
    allowed: set[tuple[str, int]] = set()
    for rule in spec.get("egress", []):
        ports = rule.get("ports")
        if not ports:
            problems.append(f"an egress rule allows every port: {rule}")
            continue
        peers = rule.get("to", [])
        for port in ports:
            number, protocol = port.get("port"), port.get("protocol", "TCP")
            if "endPort" in port or not isinstance(number, int):
                problems.append(f"egress port {port}: give one numeric port")
                continue
            allowed.add((protocol, number))
            if number == 53:
                if not peers or not all(is_kube_dns(peer) for peer in peers):
                    problems.append(f"DNS goes elsewhere than kube-dns: {peers}")
            elif number == 5432 and protocol == "TCP":
                if not postgres:
                    problems.append("egress to PostgreSQL in the SQLite variant")
            elif number in (443, 22) and protocol == "TCP":
                problems.extend(public_only(peers))
            else:
                problems.append(f"unexpected egress on {protocol} {number}")
    expected = {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 22)}
    if postgres:
        expected.add(("TCP", 5432))
    if allowed != expected:
        problems.append(f"egress allows {sorted(allowed)}, not {sorted(expected)}")
    return problems


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def docker(keyword: str) -> list[str]:
    return [rest for instruction, rest in dockerfile() if instruction == keyword]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in docker("ENV"):
        for item in shlex.split(rest):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def check_cli(argv: list[str]) -> None:
    """Parse ``slotkeeper ARGV`` with the real CLI (options and choices), without running it."""
    index = next(i for i, arg in enumerate(argv) if arg in cli.every_command)
    name = argv[index]
    with cli.make_context("slotkeeper", [*argv[:index], name]) as parent:
        cli.every_command[name].make_context(name, argv[index + 1 :], parent=parent).close()


def shell_commands(script: str) -> list[list[str]]:
    """Each `slotkeeper ...` command of a shell script, as words, up to a redirection or ||."""
    joined = script.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "slotkeeper":
            end = next(
                (i for i, word in enumerate(words) if word in {">", "||", "&&", "|"}), len(words)
            )
            commands.append(words[1:end])
    return commands


def workflow() -> Doc:
    doc: Doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return doc


def run_steps(job: Doc) -> str:
    return "\n".join(step["run"] for step in job["steps"] if "run" in step)


# --- Kubernetes: schema validation -----------------------------------------------------------


@pytest.mark.parametrize(
    "path", manifest_files(), ids=[str(p.relative_to(KUBERNETES)) for p in manifest_files()]
)
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    """Every document of the file validates strictly and offline against the pinned version."""
    docs = documents(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        k8s_validate(doc)


def test_every_variant_is_validated() -> None:
    """The validation above covers every file of both directories and of the key-delivery
    Roles (a new variant needs its own checks here, a new directory its own test file)."""
    validated = set(manifest_files())
    for directory in [*VARIANTS.values(), KEY_DELIVERY_RBAC]:
        assert manifest_files(directory), f"{directory.name} holds no manifest"
        assert set(manifest_files(directory)) <= validated
    directories = {path.parent for path in KUBERNETES.rglob("kustomization.yaml")}
    assert directories == {*VARIANTS.values(), KEY_DELIVERY, KEY_DELIVERY_RBAC}


def broken_deployments() -> Iterator[Any]:
    for name, directory in VARIANTS.items():
        good = only(directory, "Deployment")
        unknown = json.loads(json.dumps(good))
        unknown["spec"]["replicaz"] = 1
        yield pytest.param(unknown, id=f"{name}-unknown-field")
        wrong_type = json.loads(json.dumps(good))
        wrong_type["spec"]["replicas"] = "one"
        yield pytest.param(wrong_type, id=f"{name}-wrong-type")
        no_containers = json.loads(json.dumps(good))
        del no_containers["spec"]["template"]["spec"]["containers"]
        yield pytest.param(no_containers, id=f"{name}-missing-required")


@pytest.mark.parametrize("doc", list(broken_deployments()))
def test_validator_rejects_a_broken_deployment(doc: Doc) -> None:
    """The validation above can fail: unknown fields, wrong types and missing fields are errors."""
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(doc)


def test_validator_rejects_an_unknown_kind() -> None:
    """A kind with no schema is an error, not a silent pass."""
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        k8s_validate({"apiVersion": "v1", "kind": "NoSuchKind", "metadata": {"name": "x"}})


# --- Kubernetes: the kustomize directories ---------------------------------------------------


def test_kustomization_lists_exactly_the_manifest_files() -> None:
    """Every resource a kustomization names exists, and every manifest file is named by one.
    Each is a Kustomization, but key-delivery/, a Component of inline patches only."""
    kustomizations = sorted(KUBERNETES.rglob("kustomization.yaml"))
    assert BASE / "kustomization.yaml" in kustomizations
    assert POSTGRES / "kustomization.yaml" in kustomizations
    listed: set[Path] = set()
    for path in kustomizations:
        kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.parent == KEY_DELIVERY:
            assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
            assert kustomization["kind"] == "Component"
            assert "resources" not in kustomization
            continue
        assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
        assert kustomization["kind"] == "Kustomization"
        resources = kustomization["resources"]
        assert len(resources) == len(set(resources)), f"{path}: a resource is listed twice"
        for resource in resources:
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: {resource} is listed but does not exist"
            listed.add(target)
        listed.update(
            (path.parent / patch["path"]).resolve()
            for patch in kustomization.get("patches", [])
            if "path" in patch
        )
    unlisted = [str(p.relative_to(KUBERNETES)) for p in manifest_files() if p not in listed]
    assert not unlisted, f"manifest files no kustomization lists: {unlisted}"


def test_kustomization_is_self_contained(variant: Path) -> None:
    """The directory's kustomization lists exactly its own files and reaches nowhere else (the
    postgres variant does not build on ../base), so each directory works on its own."""
    kustomization_doc = kustomization(variant)
    assert not {"bases", "components", "namespace"} & kustomization_doc.keys()
    listed = set()
    for resource in kustomization_doc["resources"]:
        target = (variant / resource).resolve()
        assert target.parent == variant, f"{variant.name}: {resource} is outside the directory"
        assert target.is_file(), f"{variant.name}: {resource} is not a manifest file"
        listed.add(target)
    for patch in kustomization_doc.get("patches", []):
        if "path" in patch:
            assert (variant / patch["path"]).resolve().parent == variant
            listed.add((variant / patch["path"]).resolve())
    assert listed == set(manifest_files(variant))
    kinds = sorted(doc["kind"] for _, doc in all_documents(variant))
    expected = [
        "ConfigMap",  # the settings
        "ConfigMap",  # the targets file
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    if variant == BASE:
        expected.append("PersistentVolumeClaim")
    assert kinds == sorted(expected)


def test_base_leaves_the_namespace_to_overlays(variant: Path) -> None:
    """Neither the kustomization nor any manifest sets a namespace."""
    assert "namespace" not in kustomization(variant)
    for path, doc in all_documents(variant):
        assert "namespace" not in doc["metadata"], f"{path}: {doc['kind']} sets a namespace"


def test_selectors_match_the_pod_labels(variant: Path) -> None:
    """The Deployment, Service and PodDisruptionBudget all select the Deployment's pods."""
    deployment = only(variant, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": only(variant, "Service")["spec"]["selector"],
        "PodDisruptionBudget": only(variant, "PodDisruptionBudget")["spec"]["selector"][
            "matchLabels"
        ],
    }
    for kind, selector in selectors.items():
        assert selector, f"{kind} has an empty selector"
        assert selector.items() <= labels.items(), f"{kind} selector {selector} misses the pods"


# --- Kubernetes: the daemon's contract ---------------------------------------------------------


def test_probe_paths_are_daemon_endpoints(variant: Path) -> None:
    """Probe, scrape and HEALTHCHECK paths are endpoints that slotkeeper.daemon serves."""
    from slotkeeper.daemon import ENDPOINTS

    assert isinstance(ENDPOINTS, frozenset)
    found = probes(variant)
    assert {"livenessProbe", "readinessProbe"} <= found.keys()
    assert found["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert found["readinessProbe"]["httpGet"]["path"] == "/readyz"
    paths = {probe["httpGet"]["path"] for probe in found.values()}
    annotations = only(variant, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/path" in annotations:
        paths.add(annotations["prometheus.io/path"])
    for healthcheck in docker("HEALTHCHECK"):
        paths.update(re.findall(r"https?://[^/\s'\"]+(/[^\s'\"]*)", healthcheck))
    assert paths, "no probe path found"
    assert paths <= ENDPOINTS, f"not served by the daemon: {sorted(paths - ENDPOINTS)}"


def test_probe_ports_name_a_declared_container_port(variant: Path) -> None:
    """Probes and the Service's targetPort name the container's port `http` (8080)."""
    ports = {port["name"]: port["containerPort"] for port in container(variant)["ports"]}
    assert ports == {"http": 8080}
    for name, probe in probes(variant).items():
        assert probe["httpGet"]["port"] in ports, f"{name} port is not a declared port"
    for port in only(variant, "Service")["spec"]["ports"]:
        assert port["targetPort"] in ports
    assert only(variant, "Service")["spec"]["type"] == "ClusterIP"
    annotations = only(variant, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) in ports.values()


def test_security_context_is_locked_down(variant: Path) -> None:
    """Non-root uid 10001, fsGroup, read-only root, no escalation, no capabilities, seccomp."""
    pod = pod_spec(variant)["securityContext"]
    main = container(variant)["securityContext"]
    merged = {**pod, **main}  # a container's settings override the pod's
    assert merged["runAsNonRoot"] is True
    assert merged["runAsUser"] == UID
    assert pod["fsGroup"] == UID
    assert main["readOnlyRootFilesystem"] is True
    assert main["allowPrivilegeEscalation"] is False
    assert main["capabilities"]["drop"] == ["ALL"]
    assert "add" not in main["capabilities"]
    assert merged["seccompProfile"] == {"type": "RuntimeDefault"}
    assert main.get("privileged", False) is False
    assert pod_spec(variant)["automountServiceAccountToken"] is False
    assert only(variant, "ServiceAccount")["automountServiceAccountToken"] is False
    assert (
        pod_spec(variant)["serviceAccountName"]
        == only(variant, "ServiceAccount")["metadata"]["name"]
    )


def test_writable_paths_and_resources(variant: Path) -> None:
    """Only /tmp and the data dirs are writable; a grace period for the action in flight;
    requests and limits; the secrets directory on the /var/lib/slotkeeper volume."""
    assert pod_spec(variant)["terminationGracePeriodSeconds"] >= 35  # the daemon needs ~30 s
    volumes = {volume["name"]: volume for volume in pod_spec(variant)["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container(variant)["volumeMounts"]}
    assert set(WRITABLE) <= mounts.keys()
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly", False)}
    assert writable == set(WRITABLE)
    for mount in mounts.values():
        assert mount["name"] in volumes, f"{mount['mountPath']}: volume {mount['name']} missing"
    for path in ("/tmp", "/var/cache/slotkeeper"):
        assert "emptyDir" in volumes[mounts[path]["name"]]
    env = {name: item.get("value") for name, item in env_entries(variant).items()}
    assert env["SLOTKEEPER_SECRETS_DIR"].startswith("/var/lib/slotkeeper/")
    assert env["HOME"] == "/var/lib/slotkeeper"
    resources = container(variant)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_one_writer_and_writable_paths() -> None:
    """Base: one replica, Recreate, the state on the PVC; only /tmp and the data dirs are
    writable."""
    deployment = only(BASE, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod_spec(BASE)["terminationGracePeriodSeconds"] >= 35  # the daemon needs ~30 s
    volumes = {volume["name"]: volume for volume in pod_spec(BASE)["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container(BASE)["volumeMounts"]}
    assert set(WRITABLE) <= mounts.keys()
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly", False)}
    assert writable == set(WRITABLE)
    state = volumes[mounts["/var/lib/slotkeeper"]["name"]]
    claim = state["persistentVolumeClaim"]["claimName"]
    pvc = only(BASE, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    for path in ("/tmp", "/var/cache/slotkeeper"):
        assert "emptyDir" in volumes[mounts[path]["name"]]
    env = {item["name"]: item.get("value") for item in container(BASE)["env"]}
    assert env["SLOTKEEPER_STATE"] == "sqlite:////var/lib/slotkeeper/state.db"
    assert env["SLOTKEEPER_SECRETS_DIR"].startswith("/var/lib/slotkeeper/")
    resources = container(BASE)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_pod_disruption_budget_never_blocks_a_drain() -> None:
    """Base: with one replica the budget must allow an eviction: maxUnavailable >= 1 or
    minAvailable 0."""
    spec = only(BASE, "PodDisruptionBudget")["spec"]
    assert only(BASE, "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    if "minAvailable" in spec:
        assert spec["minAvailable"] in (0, "0%")
    else:
        assert spec["maxUnavailable"] in (1, "100%")


def test_args_use_the_daemon_flags_and_defined_variables(variant: Path) -> None:
    """Arguments are `run` with contract flags; every $(VAR) is a variable defined in env."""
    args = container(variant)["args"]
    assert "command" not in container(variant), "keep the image's entrypoint"
    run = args.index("run")
    global_flags = {opt for param in cli.params for opt in param.opts}
    for arg in args[:run]:
        assert not arg.startswith("-") or arg in global_flags, f"unknown global option {arg}"
    for arg in args[run + 1 :]:
        assert not arg.startswith("-") or arg in RUN_FLAGS, f"{arg} is not a `run` flag"
    env_names = [item["name"] for item in container(variant)["env"]]
    for arg in args:
        for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
            assert name in env_names, f"$({name}) is not defined in env (it would stay literal)"
    # The webhook secret file is a file of the credentials volume (see the checks below).
    webhook_secret = args[args.index("--webhook-secret-file") + 1]
    assert credential_path_problem(pod_spec(variant), webhook_secret, "webhook-secret") is None
    assert args[args.index("--listen") + 1].endswith(":8080")
    # The ledger and the secrets directory are not in the args: `run` reads them from env (the
    # ledger's URL, with its password, from a file in the postgres variant).
    assert "--state" not in args
    assert "--secrets-dir" not in args
    run_envvars = {param.envvar for param in cli.every_command["run"].params}
    assert {"SLOTKEEPER_STATE", "SLOTKEEPER_SECRETS_DIR"} <= run_envvars
    state = "SLOTKEEPER_STATE_FILE" if variant == POSTGRES else "SLOTKEEPER_STATE"
    assert {state, "SLOTKEEPER_SECRETS_DIR"} <= set(env_names)


def test_daemon_command_lines_parse_with_the_real_cli(variant: Path) -> None:
    """The Deployment's args (settings filled in) and the image's CMD are valid `run` commands."""
    settings = configmap(variant, "slotkeeper")["data"]
    args = [
        re.sub(r"\$\((\w+)\)", lambda match: settings[match[1]], arg)
        for arg in container(variant)["args"]
    ]
    for name in ("SLOTKEEPER_POLL_INTERVAL", "SLOTKEEPER_RESYNC_INTERVAL"):
        assert re.fullmatch(r"\d+[smh]", settings[name]), f"{name}: use 30s, 5m or 1h"
    check_cli(args)
    check_cli(json.loads(docker("CMD")[-1]))


def test_configmap_references_are_defined(variant: Path) -> None:
    """Each ConfigMap the Deployment reads is in its directory and holds every key it reads."""
    configmaps = {
        doc["metadata"]["name"]: doc.get("data", {})
        for _, doc in all_documents(variant)
        if doc["kind"] == "ConfigMap"
    }
    refs = [
        item["valueFrom"]["configMapKeyRef"]
        for item in container(variant)["env"]
        if "configMapKeyRef" in item.get("valueFrom", {})
    ]
    assert refs, "the settings should come from the ConfigMap"
    for ref in refs:
        assert ref["name"] in configmaps, f"ConfigMap {ref['name']} is not defined"
        assert ref.get("optional") or ref["key"] in configmaps[ref["name"]]
    for source in container(variant).get("envFrom", []):
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] in configmaps
    for volume in pod_spec(variant)["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps
            for item in volume["configMap"].get("items", []):
                assert item["key"] in configmaps[volume["configMap"]["name"]]
    data = configmaps["slotkeeper"]
    assert data["SLOTKEEPER_SOURCE"] == "git+https://github.com/acme/deployments.git"
    assert data["SLOTKEEPER_LOG_FORMAT"] == "json"
    assert all(isinstance(value, str) for value in data.values())


def test_secret_references_are_documented(variant: Path) -> None:
    """The Deployment reads one Secret, slotkeeper-credentials, only through the projected
    credentials volume; it is not committed, and the README names it and each of its keys."""
    readme = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    secrets: dict[str, set[str]] = {}
    for item in container(variant)["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secrets.setdefault(ref["name"], set()).add(ref["key"])
    for source in container(variant).get("envFrom", []):
        if "secretRef" in source:
            secrets.setdefault(source["secretRef"]["name"], set())
    for volume in pod_spec(variant)["volumes"]:
        if "secret" in volume:
            keys = {item["key"] for item in volume["secret"].get("items", [])}
            secrets.setdefault(volume["secret"]["secretName"], set()).update(keys)
        for secret, key in projected_keys(volume).values():
            secrets.setdefault(secret, set()).add(key)
    assert secrets == {CREDENTIALS_SECRET: REQUIRED_KEYS[variant] | OPTIONAL_KEYS}
    defined = {
        doc["metadata"]["name"] for _, doc in all_documents(variant) if doc["kind"] == "Secret"
    }
    for name, keys in secrets.items():
        assert name not in defined, "secrets are created by the user, not committed"
        assert f"`{name}`" in readme, f"README does not tell to create Secret {name}"
        for key in keys:
            assert f"`{key}`" in readme, f"README does not name key {key} of {name}"
    # The Secrets of the former layout are gone from the instructions too.
    for old in ("slotkeeper-webhook", "slotkeeper-ledger", "GITHUB_TOKEN", "IFTRUE_JWT"):
        assert old not in readme, f"README still mentions {old}"
    assert "https://HOST/hooks/github" in readme
    assert f"`{variant.name}/`" in readme, f"README does not describe {variant.name}/"


# --- Kubernetes: credentials, the targets file and the network policy -------------------------


def test_no_credential_in_the_environment(variant: Path) -> None:
    """No env entry comes from a Secret or names a credential, no envFrom reads a Secret, and no
    value is a URL with a password: credentials are files (environment variables leak into
    child processes, /proc and crash reports)."""
    assert credential_env_problems(container(variant)) == []
    assert "secretKeyRef" not in json.dumps(only(variant, "Deployment"))


def tampered_environments() -> Iterator[Any]:
    main = container(BASE)
    from_secret = {"valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": "x"}}}
    yield pytest.param({"env": [*main["env"], {"name": "SLOTKEEPER_X", **from_secret}]}, id="ref")
    yield pytest.param({"env": [*main["env"], {"name": "GITHUB_TOKEN", "value": "x"}]}, id="name")
    yield pytest.param({"env": [*main["env"], {"name": "NPM_TOKEN", "value": "x"}]}, id="pattern")
    url = {"name": "SLOTKEEPER_STATE", "value": "postgresql://sk:hunter2@db:5432/sk"}
    yield pytest.param({"env": [*main["env"], url]}, id="password-url")
    yield pytest.param({"envFrom": [{"secretRef": {"name": CREDENTIALS_SECRET}}]}, id="envFrom")


@pytest.mark.parametrize("main", list(tampered_environments()))
def test_credential_env_check_can_fail(main: Doc) -> None:
    """The check above finds a credential in the environment."""
    assert credential_env_problems(main)


def test_credentials_volume(variant: Path) -> None:
    """One projected volume, read-only at /var/run/secrets, mode 0440 for the pod's fsGroup
    10001: the required keys (the pod does not start without them) in one source, the others in
    an optional one, all from slotkeeper-credentials, each a file in /var/run/secrets/slotkeeper/
    (below the volume's top level, so not one of the kubelet's symlinks)."""
    found = mounted(pod_spec(variant), str(CREDENTIALS_DIR / "webhook-secret"))
    assert found is not None
    mount, volume, _ = found
    assert mount["readOnly"] is True
    assert mount["mountPath"] == str(CREDENTIALS_DIR.parent)
    assert "subPath" not in mount, "a subPath mount would not follow the Secret's updates"
    projected = volume["projected"]
    assert projected["defaultMode"] == 0o440
    assert pod_spec(variant)["securityContext"]["fsGroup"] == UID
    by_optional: dict[bool, set[str]] = {}
    for source in projected["sources"]:
        assert source.keys() == {"secret"}, f"unexpected source {source}"
        secret = source["secret"]
        assert secret["name"] == CREDENTIALS_SECRET
        assert "optional" in secret, "say whether the pod may start without these keys"
        keys = by_optional.setdefault(secret["optional"], set())
        for item in secret["items"]:
            assert "mode" not in item, f"{item['key']}: the volume's mode 0440 applies"
            assert item["path"] == f"{CREDENTIALS_DIR.name}/{item['key']}"
            keys.add(item["key"])
    assert by_optional == {False: set(REQUIRED_KEYS[variant]), True: set(OPTIONAL_KEYS)}
    # The only Secret-backed volume: nothing else projects or mounts a credential.
    for other in pod_spec(variant)["volumes"]:
        if other["name"] != volume["name"]:
            assert "secret" not in other and "projected" not in other, other["name"]


def test_credential_paths_lie_in_the_credentials_volume(variant: Path) -> None:
    """Every credential file the daemon is told to read (the webhook secret, the git token, the
    ledger URL of the postgres variant, each `file:` of the targets file) is a file of that
    volume, projected from the right key."""
    args = container(variant)["args"]
    env = {name: item.get("value") for name, item in env_entries(variant).items()}
    paths = {
        args[args.index("--webhook-secret-file") + 1]: CREDENTIAL_FILES["--webhook-secret-file"]
    }
    paths[env["SLOTKEEPER_GIT_TOKEN_FILE"]] = CREDENTIAL_FILES["SLOTKEEPER_GIT_TOKEN_FILE"]
    if variant == POSTGRES:
        paths[env["SLOTKEEPER_STATE_FILE"]] = CREDENTIAL_FILES["SLOTKEEPER_STATE_FILE"]
    else:
        assert "SLOTKEEPER_STATE_FILE" not in env
    active, examples = target_documents(configmap(variant, TARGETS_CONFIGMAP)["data"][TARGETS_KEY])
    for doc in [*active, *examples]:
        for _, value in TargetDocument.model_validate(doc).spec:
            if isinstance(value, SecretRef) and value.file is not None:
                paths[value.file] = PurePosixPath(value.file).name
    assert set(paths.values()) == REQUIRED_KEYS[variant] | OPTIONAL_KEYS
    for path, key in paths.items():
        assert credential_path_problem(pod_spec(variant), path, key) is None, path


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/etc/slotkeeper/webhook/secret", None),  # the former Secret volume, gone
        (str(CREDENTIALS_DIR / "no-such-key"), None),  # no key projected there
        (str(CREDENTIALS_DIR / "git-token"), "github-token"),  # another key's file
        ("/etc/slotkeeper/targets/targets.yaml", None),  # not a credential
        ("/var/run/secrets/kubernetes.io/serviceaccount/token", None),
    ],
)
def test_credential_path_check_can_fail(path: str, key: str | None) -> None:
    """The check above refuses a path that is not the key's file in the credentials volume."""
    assert credential_path_problem(pod_spec(BASE), path, key) is not None


def test_credential_path_check_refuses_a_top_level_symlink() -> None:
    """A key projected at the volume's top level is a kubelet symlink: refused."""
    deployment = json.loads(json.dumps(only(BASE, "Deployment")))
    pod = deployment["spec"]["template"]["spec"]
    for mount in pod["containers"][0]["volumeMounts"]:
        if mount["name"] == "credentials":
            mount["mountPath"] = str(CREDENTIALS_DIR)
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            for item in source["secret"]["items"]:
                item["path"] = item["key"]
    k8s_validate(deployment)  # valid Kubernetes, but its files are symlinks
    problem = credential_path_problem(pod, str(CREDENTIALS_DIR / "git-token"), "git-token")
    assert problem is not None and "symlink" in problem


def test_targets_file(variant: Path) -> None:
    """The ConfigMap slotkeeper-targets holds targets.yaml, mounted read-only where
    SLOTKEEPER_TARGETS points; its documents (and its commented-out examples) are valid Target
    documents whose credentials are files of the credentials volume."""
    text = configmap(variant, TARGETS_CONFIGMAP)["data"][TARGETS_KEY]
    assert targets_problems(text) == []
    path = env_entries(variant)["SLOTKEEPER_TARGETS"]["value"]
    assert path == "/etc/slotkeeper/targets/targets.yaml"
    found = mounted(pod_spec(variant), path)
    assert found is not None
    mount, volume, inside = found
    assert mount["readOnly"] is True
    items = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
    assert volume["configMap"]["name"] == TARGETS_CONFIGMAP
    assert items == {inside: TARGETS_KEY}
    assert "/" in inside, "a regular file, not the kubelet's top-level symlink"
    # One way in: the variable, beside the mount it names (no flag repeating the path).
    assert "--targets" not in container(variant)["args"]
    assert configmap(variant, TARGETS_CONFIGMAP) == configmap(BASE, TARGETS_CONFIGMAP)


def test_the_targets_configmap_is_a_targets_file_slotkeeper_reads(
    sk: Callable[..., Any], workdir: Path
) -> None:
    """What the ConfigMap mounts is read by `validate --targets`: manifests naming github pass,
    and naming a target it does not configure fails."""
    targets = workdir / "targets.yaml"
    targets.write_text(configmap(BASE, TARGETS_CONFIGMAP)["data"][TARGETS_KEY])
    manifests = workdir / "m"
    manifests.mkdir()
    env = "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: production}\n"
    (manifests / "envs.yaml").write_text(env + "spec: {targets: [github]}\n")
    valid = sk("validate", "-m", "m", "--targets", str(targets))
    assert valid.code == 0, valid.err
    (manifests / "envs.yaml").write_text(env + "spec: {targets: [github, chainloop]}\n")
    invalid = sk("validate", "-m", "m", "--targets", str(targets))
    assert invalid.code == 1 and "'chainloop', which the operator has not configured" in invalid.err


GITHUB = """apiVersion: slotkeeper/v1
kind: Target
metadata: {name: github}
spec:
  type: github
  token: {file: /var/run/secrets/slotkeeper/github-token}
"""


@pytest.mark.parametrize(
    ("text", "examples", "problem"),
    [
        pytest.param(GITHUB, True, None, id="good"),
        pytest.param(GITHUB, False, "examples of target types", id="no-examples"),
        pytest.param(
            GITHUB.replace("{file: /var/run/secrets/slotkeeper/github-token}", "{env: GH_TOKEN}"),
            True,
            "reads the environment variable",
            id="env",
        ),
        pytest.param(
            GITHUB.replace("/var/run/secrets/slotkeeper/", "/tmp/"),
            True,
            "not a file in",
            id="elsewhere",
        ),
        pytest.param(
            GITHUB.replace("github-token}", "other-token}"), True, "not a key of", id="other-key"
        ),
        pytest.param(
            GITHUB.replace("token:", "tokn:"), True, "not a Target document", id="unknown-field"
        ),
        pytest.param(
            GITHUB.replace("type: github", "type: gitlab"),
            True,
            "not a Target document",
            id="unknown-type",
        ),
        pytest.param(
            GITHUB.replace("type: github", "type: chainloop"),
            True,
            "no github target",
            id="no-github",
        ),
        pytest.param(GITHUB + "---\n" + GITHUB, True, "declared twice", id="twice"),
        pytest.param(GITHUB + "  baseUrl: [\n", True, "not YAML", id="not-yaml"),
    ],
)
def test_targets_check_can_fail(text: str, examples: bool, problem: str | None) -> None:
    """The check above refuses a targets file that is not what the Deployment needs (the real
    file's commented-out examples appended, or not)."""
    shipped = configmap(BASE, TARGETS_CONFIGMAP)["data"][TARGETS_KEY]
    if examples:
        text += shipped[shipped.index("# ---") :]
    problems = targets_problems(text)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in found for found in problems), problems


def test_network_policy(variant: Path) -> None:
    """Listed in the kustomization: ingress on the http port only; egress to DNS (kube-dns), to
    PostgreSQL (the postgres variant only) and HTTPS/SSH to public addresses only, the private,
    link-local (metadata) and loopback ranges cut out."""
    assert "networkpolicy.yaml" in kustomization(variant)["resources"]
    policy = only(variant, "NetworkPolicy")
    k8s_validate(policy)
    labels = only(variant, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert network_policy_problems(policy, labels, postgres=variant == POSTGRES) == []
    assert {port["containerPort"] for port in container(variant)["ports"]} == {HTTP_PORT}


def public_rules(spec: Doc) -> list[Doc]:
    return [rule for rule in spec["egress"] if {"port": 443, "protocol": "TCP"} in rule["ports"]]


def reach(cidr: str) -> Any:
    """A change of a policy's spec: the public egress no longer cuts ``cidr`` out."""

    def change(spec: Doc) -> None:
        for rule in public_rules(spec):
            for peer in rule["to"]:
                block = peer["ipBlock"]
                block["except"] = [other for other in block.get("except", []) if other != cidr]

    return change


def without_port(port: int) -> Any:
    """A change of a policy's spec: no egress rule for ``port``."""

    def change(spec: Doc) -> None:
        spec["egress"] = [r for r in spec["egress"] if all(p["port"] != port for p in r["ports"])]

    return change


# Changes to the shipped policy (applied to a copy at test time), each one the check must refuse.
TAMPERED_POLICIES = {
    "metadata-reachable": (BASE, reach("169.254.0.0/16")),
    "private-reachable": (BASE, reach("10.0.0.0/8")),
    "ula-reachable": (BASE, reach("fc00::/7")),
    "extra-private-block": (
        BASE,
        lambda spec: [
            rule["to"].append({"ipBlock": {"cidr": "10.0.0.0/8"}}) for rule in public_rules(spec)
        ],
    ),
    "other-pods": (BASE, lambda spec: spec.update(podSelector={})),
    "ingress-only": (BASE, lambda spec: spec.update(policyTypes=["Ingress"])),
    "any-port-in": (BASE, lambda spec: [rule.pop("ports", None) for rule in spec["ingress"]]),
    "other-port-in": (BASE, lambda spec: spec["ingress"].append({"ports": [{"port": 22}]})),
    "no-dns": (BASE, without_port(53)),
    "dns-anywhere": (
        BASE,
        lambda spec: spec["egress"].append({"ports": [{"port": 53, "protocol": "UDP"}]}),
    ),
    "any-port-out": (BASE, lambda spec: spec["egress"].append({"to": []})),
    "http-out": (
        BASE,
        lambda spec: [rule["ports"].append({"port": 80}) for rule in public_rules(spec)],
    ),
    "postgres-in-sqlite": (BASE, lambda spec: spec["egress"].append({"ports": [{"port": 5432}]})),
    "no-postgres": (POSTGRES, without_port(5432)),
}


@pytest.mark.parametrize("name", list(TAMPERED_POLICIES))
def test_network_policy_check_can_fail(name: str) -> None:
    """The check above refuses a policy that lets more (or less) through."""
    directory, change = TAMPERED_POLICIES[name]
    policy = json.loads(json.dumps(only(directory, "NetworkPolicy")))
    change(policy["spec"])
    labels = only(directory, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert network_policy_problems(policy, labels, postgres=directory == POSTGRES)


def test_readme_documents_credentials_targets_and_network_policy() -> None:
    """The README says how to create the Secret from files (and check the webhook secret is not
    empty), how to edit the targets file, and what the NetworkPolicy allows."""
    readme = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    for phrase in (
        f"create secret generic {CREDENTIALS_SECRET}",
        "--from-file=github-token=",
        "--from-file=webhook-secret=",
        "openssl rand -hex 32 > webhook-secret",
        "test -s webhook-secret",
        str(CREDENTIALS_DIR) + "/",
        f"`{TARGETS_CONFIGMAP}`",
        f"`{TARGETS_KEY}`",
        "`SLOTKEEPER_TARGETS`",
        "`SLOTKEEPER_GIT_TOKEN_FILE`",
        "`SLOTKEEPER_STATE_FILE`",
        "`SLOTKEEPER_EGRESS_ALLOW`",
        "NetworkPolicy",
        "169.254.0.0/16",
        "kube-dns",
    ):
        assert phrase in readme, f"the README does not mention {phrase}"


# --- Kubernetes: the PostgreSQL variant ----------------------------------------------------------


def test_postgres_runs_two_replicas_with_rolling_updates() -> None:
    """Two replicas (one leader writes, the other stands by), so a RollingUpdate is safe."""
    spec = only(POSTGRES, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
    }
    assert pod_spec(POSTGRES)["terminationGracePeriodSeconds"] == 45


def test_postgres_state_comes_from_the_credentials_file() -> None:
    """The ledger's URL (with its password) is the file SLOTKEEPER_STATE_FILE names: the key
    `state-url`, in the required source of the credentials volume (without it the pod would fall
    back to the image's SQLite default, one ledger per replica). SLOTKEEPER_STATE is not set."""
    env = env_entries(POSTGRES)
    assert "SLOTKEEPER_STATE" not in env
    path = env["SLOTKEEPER_STATE_FILE"]["value"]
    assert credential_path_problem(pod_spec(POSTGRES), path, "state-url") is None
    assert "state-url" in REQUIRED_KEYS[POSTGRES]
    # Nothing else may set it (envFrom would lose to env, but keep the one source obvious).
    assert not container(POSTGRES).get("envFrom")
    assert "sqlite" not in json.dumps(only(POSTGRES, "Deployment"))


def test_postgres_has_no_persistent_volume_claim() -> None:
    """No PVC anywhere in the directory: every writable path is an emptyDir."""
    for path in sorted(POSTGRES.rglob("*.y*ml")):
        for doc in documents(path):
            assert doc.get("kind") != "PersistentVolumeClaim", f"{path} holds a PVC"
    spec = only(POSTGRES, "Deployment")["spec"]
    assert "volumeClaimTemplates" not in spec
    volumes = {volume["name"]: volume for volume in pod_spec(POSTGRES)["volumes"]}
    for name, volume in volumes.items():
        assert "persistentVolumeClaim" not in volume, f"volume {name} uses a claim"
        assert volume.keys() - {"name"} <= {"emptyDir", "projected", "configMap"}, name
    mounts = {mount["mountPath"]: mount for mount in container(POSTGRES)["volumeMounts"]}
    for path in WRITABLE:
        assert "emptyDir" in volumes[mounts[path]["name"]], f"{path} is not an emptyDir"


def test_postgres_spreads_replicas_across_nodes_softly() -> None:
    """A preferred (not required) anti-affinity per node, selecting the Deployment's own pods."""
    pod = pod_spec(POSTGRES)
    labels = only(POSTGRES, "Deployment")["spec"]["template"]["metadata"]["labels"]
    anti = pod["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (preferred,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selector = term["labelSelector"]["matchLabels"]
    assert selector
    assert selector.items() <= labels.items()


def test_postgres_pod_disruption_budget_keeps_one_replica() -> None:
    """minAvailable 1 out of 2 replicas: one eviction at a time, never a drain blocked for good
    while both replicas are healthy."""
    pdb = only(POSTGRES, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    assert only(POSTGRES, "Deployment")["spec"]["replicas"] > pdb["spec"]["minAvailable"]


#: the writer lease's settings, which only the PostgreSQL variant has
LEASE_SETTINGS = (
    "SLOTKEEPER_LEASE_DURATION",
    "SLOTKEEPER_RENEW_DEADLINE",
    "SLOTKEEPER_RETRY_PERIOD",
)


def test_postgres_shows_the_lease_settings_and_they_are_valid() -> None:
    """The PostgreSQL variant passes the lease settings from its ConfigMap to `run`, as the
    variables `run` reads, with client-go's defaults; the CLI accepts them together."""
    settings = configmap(POSTGRES, "slotkeeper")["data"]
    entries = env_entries(POSTGRES)
    for name in LEASE_SETTINGS:
        assert entries[name]["valueFrom"]["configMapKeyRef"]["key"] == name
        assert name in {param.envvar for param in cli.every_command["run"].params}
    assert [settings[name] for name in LEASE_SETTINGS] == ["15s", "10s", "2s"]
    assert not set(LEASE_SETTINGS) & set(env_entries(BASE))
    lease = _lease(*(settings[name] for name in LEASE_SETTINGS))
    assert (lease.duration, lease.renew_deadline, lease.retry_period) == (15, 10, 2)


def test_postgres_keeps_the_base_pod_where_only_the_ledger_differs() -> None:
    """The container, probes, resources, security, settings, targets and network policy are the
    base's: only the ledger (and its credential and port), the replicas, the strategy, the
    scheduling and the data volume differ."""
    base, postgres = container(BASE), container(POSTGRES)
    for key in (
        "image",
        "imagePullPolicy",
        "args",
        "ports",
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ):
        assert postgres.get(key) == base.get(key), f"container {key} differs from the base"
    ledger = {"SLOTKEEPER_STATE", "SLOTKEEPER_STATE_FILE", *LEASE_SETTINGS}
    base_env = {name: item for name, item in env_entries(BASE).items() if name not in ledger}
    postgres_env = {
        name: item for name, item in env_entries(POSTGRES).items() if name not in ledger
    }
    assert postgres_env == base_env
    for key in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
        "securityContext",
    ):
        assert pod_spec(POSTGRES)[key] == pod_spec(BASE)[key], f"pod {key} differs from the base"

    def mounts(directory: Path) -> dict[str, bool]:
        return {
            m["mountPath"]: m.get("readOnly", False) for m in container(directory)["volumeMounts"]
        }

    assert mounts(POSTGRES) == mounts(BASE)
    base_volumes = {volume["name"]: volume for volume in pod_spec(BASE)["volumes"]}
    for volume in pod_spec(POSTGRES)["volumes"]:
        if volume["name"] in ("cache", "tmp", "targets"):
            assert volume == base_volumes[volume["name"]]
    # The credentials: the base's, and the ledger's URL.
    files = projected_keys(next(v for v in pod_spec(POSTGRES)["volumes"] if "projected" in v))
    base_files = projected_keys(next(v for v in pod_spec(BASE)["volumes"] if "projected" in v))
    assert files == {**base_files, "slotkeeper/state-url": (CREDENTIALS_SECRET, "state-url")}
    template = only(POSTGRES, "Deployment")["spec"]["template"]["metadata"]
    assert template == only(BASE, "Deployment")["spec"]["template"]["metadata"]
    for kind in ("Service", "ServiceAccount"):
        assert only(POSTGRES, kind) == only(BASE, kind), f"{kind} differs from the base"
    assert configmap(POSTGRES, TARGETS_CONFIGMAP) == configmap(BASE, TARGETS_CONFIGMAP)
    settings = copy.deepcopy(configmap(POSTGRES, "slotkeeper"))
    for name in LEASE_SETTINGS:  # the lease's settings are the PostgreSQL variant's own
        del settings["data"][name]
    assert settings == configmap(BASE, "slotkeeper"), "ConfigMap slotkeeper differs"
    # The network policy: the base's, and PostgreSQL.
    policy = only(POSTGRES, "NetworkPolicy")
    postgres_rules = [r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 5432]
    assert len(postgres_rules) == 1
    policy["spec"]["egress"].remove(postgres_rules[0])
    assert policy == only(BASE, "NetworkPolicy")
    assert kustomization(POSTGRES)["labels"] == kustomization(BASE)["labels"]


def test_readme_documents_the_postgres_trade_offs() -> None:
    """The README says when to choose the variant and where the deploy keys' private halves go."""
    readme = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The PostgreSQL variant") :]
    for phrase in (
        "`state-url`",
        "`SLOTKEEPER_STATE_FILE`",
        "ReadWriteMany",
        "`emptyDir`",
        "leader",
    ):
        assert phrase in section, f"the PostgreSQL section does not mention {phrase}"
    assert "`base/`: never scale above one replica" in readme


# --- the container image -----------------------------------------------------------------------


def test_dockerfile_base_user_entrypoint_and_port() -> None:
    """Slim Python 3.11 base, non-root USER 10001, ENTRYPOINT slotkeeper, EXPOSE = containerPort."""
    froms = docker("FROM")
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", froms[0].split()[0])
    users = docker("USER")
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0"}
    assert int(user) == UID
    assert not group or int(group) == UID
    assert json.loads(docker("ENTRYPOINT")[-1]) == ["slotkeeper"]
    command = json.loads(docker("CMD")[-1])
    assert command[0] == "run"
    assert command[command.index("--listen") + 1] == "0.0.0.0:8080"
    # Not the default source: that is the working directory, the state volume.
    assert "--source" in command
    assert command[command.index("--cache-dir") + 1] == "/var/cache/slotkeeper"
    exposed = {int(port.split("/")[0]) for rest in docker("EXPOSE") for port in rest.split()}
    for directory in VARIANTS.values():
        assert exposed == {port["containerPort"] for port in container(directory)["ports"]}
    assert docker("WORKDIR")[-1] == "/var/lib/slotkeeper"


def test_dockerfile_environment_and_volumes() -> None:
    """The image's ledger, secrets and data directories agree with the Deployment's."""
    env = docker_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["SLOTKEEPER_STATE"] == "sqlite:////var/lib/slotkeeper/state.db"
    assert env["SLOTKEEPER_SECRETS_DIR"] == "/var/lib/slotkeeper/secrets"
    deployment_env = {item["name"]: item.get("value") for item in container(BASE)["env"]}
    for name in ("SLOTKEEPER_STATE", "SLOTKEEPER_SECRETS_DIR"):
        assert deployment_env[name] == env[name]
    # The PostgreSQL variant overrides the ledger only (from a Secret, see above).
    postgres_env = {item["name"]: item.get("value") for item in container(POSTGRES)["env"]}
    for name in ("SLOTKEEPER_SECRETS_DIR", "HOME"):
        assert postgres_env[name] == env[name]
    volumes = {path for rest in docker("VOLUME") for path in json.loads(rest)}
    assert volumes == {"/var/lib/slotkeeper", "/var/cache/slotkeeper"}
    runs = " ".join(docker("RUN"))
    assert "--no-install-recommends git" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "pip install --no-cache-dir" in runs
    assert f"--uid {UID}" in runs
    assert f"chown {UID}:{UID} /var/lib/slotkeeper /var/cache/slotkeeper" in runs


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    """The build context leaves out the venv, git data, local ledgers and caches."""
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".slotkeeper", "**/__pycache__"} <= ignored
    # What the wheel is built from must stay in the context.
    assert not ignored & {"src", "pyproject.toml", "README.md"}


# --- CI examples ------------------------------------------------------------------------------


def test_github_actions_workflow() -> None:
    """PR plans as a markdown comment, applies on main that never overlap, state from a secret,
    target credentials from secrets in the apply job only."""
    doc = workflow()
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert triggers["pull_request"]["paths"] == ["environments/**"]
    assert triggers["push"]["branches"] == ["main"]
    assert "secrets.SLOTKEEPER_STATE" in doc["env"]["SLOTKEEPER_STATE"]
    plan, apply = doc["jobs"]["plan"], doc["jobs"]["apply"]
    for name in ("GITHUB_TOKEN", "CHAINLOOP_TOKEN", "UNKEY_ROOT_KEY", "IFTRUE_JWT"):
        assert "secrets." in apply["env"][name]
        assert name not in doc["env"] and name not in plan.get("env", {})

    assert "pull_request" in plan["if"]
    assert plan["permissions"]["pull-requests"] == "write"
    plan_script = run_steps(plan)
    assert "slotkeeper validate -m environments" in plan_script
    plan_commands = [words for words in shell_commands(plan_script) if "plan" in words]
    assert len(plan_commands) == 1
    words = plan_commands[0]
    assert words[words.index("--format") + 1] == "markdown"
    assert "--detailed-exitcode" in words
    assert re.search(r"slotkeeper [^\n]*plan [^\n]*> plan\.md", plan_script.replace("\\\n", ""))
    assert '"$code" -ne 2' in plan_script, "exit code 2 (changes) must not fail the job"
    comment = next(step for step in plan["steps"] if "gh pr comment" in step.get("run", ""))
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert "--body-file plan.md --edit-last" in comment["run"]

    assert apply["concurrency"] == {"group": "slotkeeper-apply", "cancel-in-progress": False}
    assert "refs/heads/main" in apply["if"]
    apply_script = run_steps(apply)
    apply_commands = shell_commands(apply_script)
    assert apply_commands == [["apply", "--yes", "--detailed-exitcode", "-m", "environments"]]
    # 2 (applied) passes, 3 (something held) fails the job with an error annotation
    assert '"$status" -ne 2' in apply_script and '"$status" -eq 3' in apply_script
    assert "::error::" in apply_script


def test_workflow_commands_parse_with_the_real_cli() -> None:
    """Every slotkeeper command in the workflow is accepted by the CLI (options, choices, order)."""
    commands = [
        words for job in workflow()["jobs"].values() for words in shell_commands(run_steps(job))
    ]
    assert len(commands) == 3
    for words in commands:
        check_cli(words)


def test_check_cli_rejects_a_misplaced_global_option() -> None:
    """The CLI check above can fail: --no-color belongs before the command."""
    with pytest.raises(click.UsageError, match="--no-color"):
        check_cli(["plan", "-m", "environments", "--no-color"])


def test_pre_commit_hook_runs_a_declared_console_script() -> None:
    """The hook's entry is a [project.scripts] command, and the example config uses the hook."""
    hooks = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    hook = next(hook for hook in hooks if hook["id"] == "slotkeeper-validate")
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    assert "args" not in hook
    assert re.search(hook["files"], "environments/prod.yaml")
    assert re.search(hook["files"], "environments/prod.yml")
    assert not re.search(hook["files"], "README.md")
    script, *arguments = shlex.split(hook["entry"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert script in scripts

    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text(encoding="utf-8"))
    used = [
        used_hook
        for repo in config["repos"]
        for used_hook in repo["hooks"]
        if used_hook["id"] == hook["id"]
    ]
    assert len(used) == 1
    assert used[0]["args"] == ["-m", "environments"]
    assert re.search(used[0]["files"], "environments/prod.yaml")
    check_cli([*arguments, *used[0]["args"]])
