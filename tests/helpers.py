"""Builders for manifest trees and small readers of the ledger, shared by the tests."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from slotkeeper.ledger import open_ledger
from slotkeeper.manifests import OperatorTargets, load_targets
from slotkeeper.model import RecordedState, RemoteState, SyncStatus, SyncSubject, TargetSync

DIGEST_A = "sha256:" + "a" * 64
#: the fakes serve on loopback, which the egress guard refuses unless the operator allows it
FAKES_EGRESS = "127.0.0.0/8, ::1"
DIGEST_B = "sha256:" + "b" * 64


@dataclass(frozen=True)
class Run:
    """What one CLI invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def image(name: str = "ghcr.io/acme/api", version: str | None = "v1", digest: str | None = None):
    artifact: dict[str, Any] = {"kind": "CONTAINER_IMAGE", "name": name}
    if version is not None:
        artifact["version"] = version
    if digest is not None:
        artifact["digest"] = digest
    return artifact


def environment(
    name: str,
    slots: dict[str, dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An Environment document; ``slots`` maps slot name to artifact."""
    body: dict[str, Any] = dict(spec)
    body["slots"] = {slot: {"artifact": artifact} for slot, artifact in (slots or {}).items()}
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Environment",
        "metadata": {"name": name},
        "spec": body,
    }


def deploy_key(title: str, *, repository: str = "acme/web", **extra: Any) -> dict[str, Any]:
    key: dict[str, Any] = {"repository": repository, "title": title, "secret": {"file": title}}
    key.update(extra)
    return key


def target_document(name: str, **spec: Any) -> dict[str, Any]:
    """A Target document (of the operator's targets file, never of the manifests)."""
    return operator_document("Target", name, spec)


def notifier_document(name: str, **spec: Any) -> dict[str, Any]:
    """A Notifier document (of the operator's targets file, never of the manifests)."""
    return operator_document("Notifier", name, spec)


def operator_document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "slotkeeper/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def write_targets(*documents: dict[str, Any], path: Path | None = None) -> Path:
    """Replace the operator's targets file of this test (``SLOTKEEPER_TARGETS``, which the
    ``workdir`` fixture sets) with ``documents``."""
    path = path or Path(os.environ["SLOTKEEPER_TARGETS"])
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False) if documents else "")
    return path


def operator_targets() -> OperatorTargets:
    """The operator's targets of this test, loaded (for code driven without the CLI)."""
    return load_targets(Path(os.environ["SLOTKEEPER_TARGETS"]))


def write_manifests(directory: Path, *documents: dict[str, Any], name: str = "envs.yaml") -> Path:
    """Replace the manifest tree under ``directory`` with one file holding ``documents``."""
    if any(document.get("kind") == "Target" for document in documents):
        raise ValueError("Target documents belong to the operator's targets file: write_targets")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.rglob("*.yaml"):
        old.unlink()
    path = directory / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def write_manifests_and_targets(
    directory: Path, *documents: dict[str, Any], name: str = "envs.yaml"
) -> Path:
    """The Environment documents as the manifest tree under ``directory``, the Target documents
    as the operator's targets file (``write_targets``): where each belongs."""
    write_targets(*(d for d in documents if d.get("kind") == "Target"))
    return write_manifests(
        directory, *(d for d in documents if d.get("kind") != "Target"), name=name
    )


def recorded_state(state: Path) -> RecordedState:
    ledger = open_ledger(f"sqlite:///{state}", now=datetime.now(UTC))
    try:
        return ledger.read_state()
    finally:
        ledger.close()


def age_ledger(state: Path, table: str, column: str, by: timedelta) -> None:
    """Move every ``column`` timestamp of ``table`` back by ``by`` (an empty one stays empty):
    time passing, as far as the ledger can tell (a saved plan must be made now, so tests age the
    ledger instead)."""
    connection = sqlite3.connect(state)
    try:
        rows = connection.execute(
            f"SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL"
        ).fetchall()
        for rowid, stamp in rows:
            moved = datetime.fromisoformat(stamp) - by
            connection.execute(
                f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                (moved.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), rowid),
            )
        connection.commit()
    finally:
        connection.close()


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a fixed author; its standard output, stripped."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Ada", "-c", "user.email=ada@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def synced_record(
    target: str, subject_id: int, *, remote_id: str, at: datetime, **extra: Any
) -> TargetSync:
    """A record's sync row: ``target`` holds it active, as wanted (``extra`` changes that)."""
    values: dict[str, Any] = {
        "target": target,
        "subject": SyncSubject.RECORD,
        "subject_id": subject_id,
        "wanted": RemoteState.ACTIVE,
        "remote_id": remote_id,
        "remote_state": RemoteState.ACTIVE,
        "status": SyncStatus.SYNCED,
        "attempts": 1,
        "updated_at": at,
    }
    values.update(extra)
    return TargetSync(**values)


def allow_egress_to_the_fakes() -> None:
    """Let this process, and what it starts, reach the fakes on loopback (the operator's
    ``SLOTKEEPER_EGRESS_ALLOW``; one already set is kept): the entry points of `make bench`
    and `make reliability`, as the tests' conftest does for every test."""
    os.environ.setdefault("SLOTKEEPER_EGRESS_ALLOW", FAKES_EGRESS)
