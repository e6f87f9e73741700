"""Synthetic manifest trees for the benchmarks: environments x slots, artifacts and deploy keys.

``Tree`` describes one tree; ``write`` lays it out as one file per environment (as a team with
many environments would), plus the operator's targets file beside it (``targets_file``) when
targets are wanted; ``manifest_args`` gives the arguments that read both. The tree is
deterministic: the same figures always give the same bytes, so both sides of a comparison read
exactly the same files. ``bump`` and ``drop`` derive the next revision of a tree (new artifact
versions in some slots, some slots removed), for the write-economy and daemon benchmarks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

#: slot names, cycled: realistic service and chart names rather than slot-0001
_SERVICES = (
    "api",
    "web",
    "worker",
    "scheduler",
    "gateway",
    "auth",
    "billing",
    "search",
    "ingest",
    "notifier",
    "reports",
    "admin",
    "cache-warmer",
    "exporter",
    "frontend",
    "payments",
)


@dataclass(frozen=True)
class Tree:
    environments: int
    slots_per_environment: int
    #: repositories the environments are spread over (environment i uses repository i % n)
    repositories: int = 10
    #: the accounts that own the repositories (repository r belongs to owner r % len(owners)):
    #: several owners are several GitHub App installations
    owners: tuple[str, ...] = ("acme",)
    #: deploy keys per environment (each one on the environment's repository)
    keys_per_environment: int = 1
    #: Target documents to write and to name in every environment (e.g. ("github",))
    targets: tuple[str, ...] = ()
    #: target settings: name -> spec fields (baseUrl, token, allowInsecureHttp, ...)
    target_specs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the git ref every slot declares (GitHub needs one when the tree is not a git work tree)
    ref: str | None = None
    #: slot index -> version generation (0 when absent): ``bump`` raises it
    generations: Mapping[tuple[int, int], int] = field(default_factory=dict)
    #: (environment, slot) indexes left out: ``drop`` adds to it
    dropped: frozenset[tuple[int, int]] = frozenset()

    @property
    def slots(self) -> int:
        return self.environments * self.slots_per_environment - len(self.dropped)

    def environment_name(self, e: int) -> str:
        return f"env-{e:04d}"

    def repository(self, e: int) -> str:
        number = e % self.repositories
        return f"{self.owners[number % len(self.owners)]}/repo-{number:03d}"

    def repository_names(self) -> list[str]:
        """Every repository the environments name, once each (a fake GitHub must hold them)."""
        return sorted({self.repository(e) for e in range(self.environments)})

    def slot_name(self, s: int) -> str:
        return f"{_SERVICES[s % len(_SERVICES)]}-{s:04d}"

    def slot_indexes(self) -> Iterator[tuple[int, int]]:
        for e in range(self.environments):
            for s in range(self.slots_per_environment):
                if (e, s) not in self.dropped:
                    yield e, s

    def bump(self, count: int) -> Tree:
        """The next revision: a new artifact version in the first ``count`` present slots."""
        generations = dict(self.generations)
        for index, _ in zip(self.slot_indexes(), range(count), strict=False):
            generations[index] = generations.get(index, 0) + 1
        return replace(self, generations=generations)

    def drop(self, count: int) -> Tree:
        """The next revision: the last ``count`` present slots removed (decommissioned)."""
        present = list(self.slot_indexes())
        return replace(self, dropped=self.dropped | frozenset(present[len(present) - count :]))


def _digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def artifact(tree: Tree, e: int, s: int) -> dict[str, Any]:
    """Images mostly, one slot in eight a Helm chart; every artifact pinned by digest."""
    generation = tree.generations.get((e, s), 0)
    service = tree.slot_name(s).rsplit("-", 1)[0]
    version = f"{1 + s % 3}.{s % 17}.{generation}"
    if s % 8 == 7:
        return {
            "kind": "HELM_CHART",
            "name": f"oci://ghcr.io/acme/charts/{service}",
            "version": version,
            "digest": _digest("chart", service, version),
        }
    return {
        "kind": "CONTAINER_IMAGE",
        "name": f"ghcr.io/acme/{service}",
        "version": f"v{version}",
        "digest": _digest("image", service, version),
    }


def environment_document(tree: Tree, e: int) -> dict[str, Any]:
    name = tree.environment_name(e)
    spec: dict[str, Any] = {"repository": tree.repository(e), "production": e % 10 == 0}
    if tree.targets:
        spec["targets"] = list(tree.targets)
    spec["slots"] = {
        tree.slot_name(s): {"artifact": artifact(tree, e, s)}
        | ({"ref": tree.ref} if tree.ref else {})
        for s in range(tree.slots_per_environment)
        if (e, s) not in tree.dropped
    }
    if tree.keys_per_environment:
        spec["deployKeys"] = [
            {
                "repository": tree.repository(e),
                "title": f"{name}-deployer-{k}",
                "readOnly": True,
                "rotateAfter": "30d",
                "secret": {"file": f"{name}-deployer-{k}"},
            }
            for k in range(tree.keys_per_environment)
        ]
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Environment",
        "metadata": {"name": name},
        "spec": spec,
    }


def target_documents(tree: Tree) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "slotkeeper/v1",
            "kind": "Target",
            "metadata": {"name": name},
            "spec": dict(tree.target_specs.get(name, {"type": name})),
        }
        for name in tree.targets
    ]


def targets_file(root: Path) -> Path:
    """Where ``write`` puts the operator's targets file of the tree at ``root``: beside it."""
    return root.with_name(f"{root.name}-targets.yaml")


def manifest_args(root: Path) -> list[str]:
    """The command-line arguments that read the tree at ``root`` and its targets file."""
    targets = targets_file(root)
    return ["-m", str(root), *(["--targets", str(targets)] if targets.exists() else [])]


def write(tree: Tree, root: Path) -> Path:
    """Write ``tree`` under ``root`` (replacing what an earlier revision wrote), its targets
    beside it (``targets_file``); return root."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.yaml"):
        old.unlink()
    for e in range(tree.environments):
        text = yaml.dump(environment_document(tree, e), Dumper=yaml.CSafeDumper, sort_keys=False)
        (root / f"{tree.environment_name(e)}.yaml").write_text(text)
    targets = targets_file(root)
    if tree.targets:
        text = yaml.dump_all(target_documents(tree), Dumper=yaml.CSafeDumper, sort_keys=False)
        targets.write_text(text)
    else:
        targets.unlink(missing_ok=True)
    return root
