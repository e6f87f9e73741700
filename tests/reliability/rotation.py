"""SIGKILL at every step of a deploy-key rotation that delivers the key to a Flux Secret, an
Argo CD Secret and an Actions secret: no consumer ever holds a key GitHub does not know.

The real CLI runs as a subprocess against the fake GitHub and the fake Kubernetes API (both in
this process, on loopback). One undisturbed ``keys rotate`` is counted first: its requests to
both fakes are the steps. Then, for each step N, a ``keys rotate`` is SIGKILLed as the fakes
finish its N-th request, and ``apply`` runs until the plan is empty. Both fakes check the
invariant at every request they receive (``on_request``): each consumer's key is registered on
GitHub. After each round: exactly one key is registered, and every consumer holds it.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from slotkeeper.keys import fingerprint, private_key_fingerprint
from tests.fakes.github import ALL_PERMISSIONS, FakeGitHub
from tests.fakes.kubernetes import FakeKubernetes
from tests.helpers import environment, image, target_document

TOKEN = "ghp_rotationreliability0123456789"
KUBE_TOKEN = "kube-rotation-reliability-0123"
KEY = "acme/platform/gitops"
PLACES = [
    {"kubernetes": {"namespace": "flux-system", "name": "flux-system", "format": "flux"}},
    {"kubernetes": {"namespace": "argocd", "name": "repo-platform", "format": "argocd"}},
    {"githubActions": {"repository": "acme/ci", "name": "PLATFORM_DEPLOY_KEY"}},
]
ALLOW = ("--secret-namespaces", "flux-system,argocd", "--secret-repositories", "acme/ci")
MAX_APPLIES = 6


@dataclass
class RotationFigures:
    steps: int = 0
    kills: int = 0
    rounds: int = 0
    applies: int = 0
    checks: int = 0
    violations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.failures

    def as_json(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "kills": self.kills,
            "rounds": self.rounds,
            "applies": self.applies,
            "checks": self.checks,
            "violations": self.violations,
            "failures": self.failures,
            "ok": self.ok,
        }

    def table(self) -> str:
        rows = [
            ("requests of one rotation (steps)", self.steps),
            ("rotations SIGKILLed at a step", self.kills),
            ("rounds converged", self.rounds),
            ("applies after the kills", self.applies),
            ("invariant checks (one per request)", self.checks),
            ("consumer holding an unregistered key", len(self.violations)),
            ("other failures", len(self.failures)),
        ]
        return "\n".join(f"{name:<40} {value}" for name, value in rows)


class _World:
    def __init__(self, root: Path, gh: FakeGitHub, kube: FakeKubernetes) -> None:
        self.root, self.gh, self.kube = root, gh, kube
        self._lock = threading.Lock()

    def registered(self) -> set[str]:
        return {fingerprint(key["key"]) for key in self.gh.keys("acme", "platform")}

    def held(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for label, (namespace, name, field_) in {
            "flux": ("flux-system", "flux-system", "identity"),
            "argocd": ("argocd", "repo-platform", "sshPrivateKey"),
        }.items():
            value = ((self.kube.secret(namespace, name) or {}).get("data") or {}).get(field_)
            found[label] = private_key_fingerprint(base64.b64decode(value)) if value else None
        secret = self.gh.actions_secret("acme/ci", "PLATFORM_DEPLOY_KEY")
        found["actions"] = private_key_fingerprint(secret.encode()) if secret else None
        return found

    def requests(self) -> int:
        return len(self.gh.requests) + len(self.kube.requests)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(
            GITHUB_TOKEN=TOKEN,
            KUBECONFIG=str(self.root / "kubeconfig"),
            SLOTKEEPER_TARGETS=str(self.root / "targets.yaml"),
            NO_COLOR="1",
        )
        return env

    def start(self, *args: str, out: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "slotkeeper", "--log-format", "json", *args, *ALLOW]
        return subprocess.Popen(
            command, cwd=self.root, env=self.env(), stdout=out, stderr=subprocess.PIPE
        )

    def run(self, *args: str) -> tuple[int, str]:
        process = self.start(*args, out=subprocess.PIPE)
        out, err = process.communicate(timeout=300)
        return process.returncode, (out + err).decode(errors="replace")


def _set_up(root: Path, gh: FakeGitHub, kube: FakeKubernetes) -> None:
    gh.tokens[TOKEN] = {**ALL_PERMISSIONS, "secrets": "write", "environments": "write"}
    kube.kubeconfig(root / "kubeconfig")
    env = environment(
        "production",
        {"api": image()},
        repository="acme/platform",
        targets=["github"],
        deployKeys=[{"repository": "acme/platform", "title": "gitops", "secrets": PLACES}],
    )
    env["spec"]["slots"]["api"]["ref"] = "main"
    (root / "m").mkdir(parents=True)
    (root / "m" / "envs.yaml").write_text(yaml.safe_dump(env, sort_keys=False))
    target = target_document(
        "github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"}
    )
    (root / "targets.yaml").write_text(yaml.safe_dump(target, sort_keys=False))


def _converge(world: _World, figures: RotationFigures, where: str) -> None:
    for _ in range(MAX_APPLIES):
        code, err = world.run("apply", "--yes", "-m", "m", "--lock-timeout", "30")
        figures.applies += 1
        if "Traceback" in err:
            figures.failures.append(f"{where}: a traceback: {err[-300:]}")
        planned, plan_err = world.run("plan", "-m", "m", "--detailed-exitcode")
        if code == 0 and planned == 0:
            break
    else:
        figures.failures.append(
            f"{where}: not converged after {MAX_APPLIES} applies (apply {code}, plan {planned}: "
            f"{(err + plan_err)[-600:]})"
        )
        return
    keys = world.registered()
    held = world.held()
    if len(keys) != 1 or set(held.values()) != keys:
        figures.failures.append(f"{where}: converged to keys {keys}, consumers hold {held}")
    figures.rounds += 1


def rotation_scenario(
    root: Path,
    figures: RotationFigures,
    *,
    steps: Iterable[int] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Kill a rotation at each step of ``steps`` (default: every step), converge, check."""
    root.mkdir(parents=True, exist_ok=True)
    with (
        FakeGitHub(token=TOKEN, repositories=["acme/platform", "acme/ci"]) as gh,
        FakeKubernetes(KUBE_TOKEN) as kube,
    ):
        _set_up(root, gh, kube)
        world = _World(root, gh, kube)
        lock = threading.Lock()

        def check(_: object) -> None:
            with lock:
                figures.checks += 1
                known = world.registered()
                for consumer, key in world.held().items():
                    if key is not None and key not in known:
                        figures.violations.append(
                            f"request {figures.checks}: {consumer} holds unregistered {key}"
                        )

        gh.on_request = check
        kube.on_request = check
        _converge(world, figures, "the first apply")
        before = world.requests()
        code, err = world.run("keys", "rotate", KEY, "-m", "m", "--yes")
        if code != 0:
            figures.failures.append(f"an undisturbed rotation failed: {err[-300:]}")
            return
        figures.steps = world.requests() - before
        say(f"one rotation sends {figures.steps} requests")
        for step in steps if steps is not None else range(1, figures.steps + 1):
            start = world.requests()
            process = world.start("keys", "rotate", KEY, "-m", "m", "--yes")
            deadline = time.monotonic() + 120
            while process.poll() is None and time.monotonic() < deadline:
                if world.requests() - start >= step:
                    process.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.0005)
            process.communicate(timeout=60)
            if process.returncode == -signal.SIGKILL:
                figures.kills += 1
            _converge(world, figures, f"after a kill at step {step}")
            say(f"step {step}: killed={process.returncode == -signal.SIGKILL}")
