"""The container image, the Kubernetes manifests and the CI examples, checked offline."""

from __future__ import annotations

import json
import re
import shlex
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from slotkeeper.cli import cli

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
POSTGRES = KUBERNETES / "postgres"
# Each self-contained kustomize directory: the SQLite base and the PostgreSQL variant.
VARIANTS = {"base": BASE, "postgres": POSTGRES}
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
# The credentials every variant reads, each optional, from the Secret slotkeeper-credentials.
CREDENTIALS = frozenset(
    {"GITHUB_TOKEN", "CHAINLOOP_TOKEN", "UNKEY_ROOT_KEY", "IFTRUE_JWT", "SLOTKEEPER_GIT_TOKEN"}
)
# The Secrets (and their keys) each variant reads; the user creates them (see the README).
SECRETS = {
    BASE: {"slotkeeper-credentials": CREDENTIALS, "slotkeeper-webhook": {"secret"}},
    POSTGRES: {
        "slotkeeper-credentials": CREDENTIALS,
        "slotkeeper-webhook": {"secret"},
        "slotkeeper-ledger": {"url"},
    },
}

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
    index = next(i for i, arg in enumerate(argv) if arg in cli.commands)
    name = argv[index]
    with cli.make_context("slotkeeper", [*argv[:index], name]) as parent:
        cli.commands[name].make_context(name, argv[index + 1 :], parent=parent).close()


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
    """The validation above covers every file of both directories (a new variant needs its own
    checks here)."""
    validated = set(manifest_files())
    for directory in VARIANTS.values():
        assert manifest_files(directory), f"{directory.name} holds no manifest"
        assert set(manifest_files(directory)) <= validated
    directories = {path.parent for path in KUBERNETES.rglob("kustomization.yaml")}
    assert directories == set(VARIANTS.values())


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
    """Every resource a kustomization names exists, and every manifest file is named by one."""
    kustomizations = sorted(KUBERNETES.rglob("kustomization.yaml"))
    assert BASE / "kustomization.yaml" in kustomizations
    assert POSTGRES / "kustomization.yaml" in kustomizations
    listed: set[Path] = set()
    for path in kustomizations:
        kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
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
    expected = ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
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
    # The webhook secret file is where the Secret volume puts it.
    secret_file = Path(args[args.index("--webhook-secret-file") + 1])
    mount = next(m for m in container(variant)["volumeMounts"] if m["name"] == "webhook-secret")
    volume = next(v for v in pod_spec(variant)["volumes"] if v["name"] == "webhook-secret")
    items = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert secret_file.parent == Path(mount["mountPath"])
    assert items[secret_file.name] == "secret"
    assert args[args.index("--listen") + 1].endswith(":8080")
    # The ledger and the secrets directory are not in the args: `run` reads them from env.
    assert "--state" not in args
    assert "--secrets-dir" not in args
    run_envvars = {param.envvar for param in cli.commands["run"].params}
    assert {"SLOTKEEPER_STATE", "SLOTKEEPER_SECRETS_DIR"} <= run_envvars
    assert {"SLOTKEEPER_STATE", "SLOTKEEPER_SECRETS_DIR"} <= set(env_names)


def test_daemon_command_lines_parse_with_the_real_cli(variant: Path) -> None:
    """The Deployment's args (settings filled in) and the image's CMD are valid `run` commands."""
    settings = only(variant, "ConfigMap")["data"]
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
    data = configmaps["slotkeeper"]
    assert data["SLOTKEEPER_SOURCE"] == "git+https://github.com/acme/deployments.git"
    assert data["SLOTKEEPER_LOG_FORMAT"] == "json"
    assert all(isinstance(value, str) for value in data.values())


def test_secret_references_are_documented(variant: Path) -> None:
    """Each Secret the Deployment reads, and each of its keys, is listed in the README."""
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
    assert secrets.keys() >= {"slotkeeper-credentials", "slotkeeper-webhook"}
    assert secrets == SECRETS[variant]
    assert secrets["slotkeeper-credentials"] == {
        "GITHUB_TOKEN",
        "CHAINLOOP_TOKEN",
        "UNKEY_ROOT_KEY",
        "IFTRUE_JWT",
        "SLOTKEEPER_GIT_TOKEN",
    }
    defined = {
        doc["metadata"]["name"] for _, doc in all_documents(variant) if doc["kind"] == "Secret"
    }
    for name, keys in secrets.items():
        assert name not in defined, "secrets are created by the user, not committed"
        assert f"`{name}`" in readme, f"README does not tell to create Secret {name}"
        for key in keys:
            assert f"`{key}`" in readme, f"README does not name key {key} of {name}"
    assert "https://HOST/hooks/github" in readme
    assert f"`{variant.name}/`" in readme, f"README does not describe {variant.name}/"
    for item in container(variant)["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] == "slotkeeper-credentials":
            assert ref.get("optional") is True, f"{ref['key']} should be optional"
        elif ref:
            assert ref.get("optional", False) is False, f"{ref['name']} must not be optional"


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


def test_postgres_state_comes_from_the_ledger_secret() -> None:
    """SLOTKEEPER_STATE is the `url` key of the Secret slotkeeper-ledger, not optional: without
    it the pod would fall back to the image's SQLite default (one ledger per replica)."""
    state = env_entries(POSTGRES)["SLOTKEEPER_STATE"]
    assert "value" not in state
    ref = state["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "slotkeeper-ledger"
    assert ref["key"] == "url"
    assert ref.get("optional", False) is False
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
        assert volume.keys() - {"name"} <= {"emptyDir", "secret"}, f"volume {name}: {volume}"
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


def test_postgres_keeps_the_base_pod_where_only_the_ledger_differs() -> None:
    """The container, probes, resources, security and settings are the base's: only the
    ledger, the replicas, the strategy, the scheduling and the data volume differ."""
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
    base_env = {
        name: item for name, item in env_entries(BASE).items() if name != "SLOTKEEPER_STATE"
    }
    postgres_env = {
        name: item for name, item in env_entries(POSTGRES).items() if name != "SLOTKEEPER_STATE"
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
        if volume["name"] in ("cache", "tmp", "webhook-secret"):
            assert volume == base_volumes[volume["name"]]
    template = only(POSTGRES, "Deployment")["spec"]["template"]["metadata"]
    assert template == only(BASE, "Deployment")["spec"]["template"]["metadata"]
    for kind in ("ConfigMap", "Service", "ServiceAccount"):
        assert only(POSTGRES, kind) == only(BASE, kind), f"{kind} differs from the base"
    assert kustomization(POSTGRES)["labels"] == kustomization(BASE)["labels"]


def test_readme_documents_the_postgres_trade_offs() -> None:
    """The README says when to choose the variant and where the deploy keys' private halves go."""
    readme = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The PostgreSQL variant") :]
    for phrase in ("`slotkeeper-ledger`", "`url`", "ReadWriteMany", "`emptyDir`", "leader"):
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
    apply_commands = shell_commands(run_steps(apply))
    assert apply_commands == [["apply", "--yes", "-m", "environments"]]


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
