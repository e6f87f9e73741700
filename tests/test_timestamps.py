"""One timestamp format in every JSON document: the CLI's --json (plan, status, history, keys,
validate), the daemon's /status and a slot's /status/slots/ENV/SLOT."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.daemon_support import Running, wait_for
from tests.helpers import Run, deploy_key, environment, image, write_manifests

Sk = Callable[..., Run]

#: RFC 3339 in UTC with microseconds and Z: the one format of every JSON document
FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
LOOKS_LIKE_A_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
TIME_KEYS = re.compile(r".*_at|since|timestamp|next_rotation")


def times(document: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every value that is, or is named like, a timestamp; a target's own
    report (``detail``) is quoted as the target gave it and is left out."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "detail":
                continue
            if TIME_KEYS.fullmatch(key) and value is not None and not isinstance(value, dict):
                yield f"{path}.{key}", value
            else:
                yield from times(value, f"{path}.{key}")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from times(value, f"{path}[{index}]")
    elif isinstance(document, str) and LOOKS_LIKE_A_TIME.match(document):
        yield path, document


def assert_one_format(document: Any) -> int:
    found = list(times(document))
    for path, value in found:
        assert isinstance(value, str) and FORMAT.fullmatch(value), f"{path}: {value!r}"
        parsed = datetime.fromisoformat(value)
        assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    return len(found)


def commit(root: Path, message: str) -> None:
    """Commit the manifests with an author date in another time zone."""
    env = dict(os.environ, GIT_AUTHOR_DATE="2026-11-30T11:45:34+02:00")
    for args in (
        ["add", "-A"],
        ["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", message],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


def declare(root: Path, version: str) -> None:
    write_manifests(
        root,
        environment(
            "production",
            {"api": image(version=version), "web": image("ghcr.io/acme/web", "w1")},
            deployKeys=[deploy_key("deployer", rotateAfter="30d")],
        ),
        environment("staging", {"api": image(version="v1")}, freeze=[FREEZE]),
    )


FREEZE = {"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}


def test_every_cli_json_document_writes_one_timestamp_format(sk: Sk, workdir: Path) -> None:
    """Records, keys, syncs, revisions, plan times (even --at given with an offset) and next
    rotations are all RFC 3339 UTC with microseconds and Z."""
    root = workdir / "m"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    declare(root, "v1")
    commit(root, "first")
    assert sk("apply", "--yes", "-m", "m").code == 0
    declare(root, "v2")
    commit(root, "second")

    plan = sk("plan", "-m", "m", "--json", "--at", "2026-12-01T10:00:00+02:00").json()
    assert plan["created_at"] == "2026-12-01T08:00:00.000000Z"
    assert plan["revision"]["timestamp"] == "2026-11-30T09:45:34.000000Z"
    assert assert_one_format(plan) == 2
    assert sk("apply", "--yes", "-m", "m").code == 0
    for command, least in (
        (("status", "--json"), 6),  # 3 times of 2 recorded slots; the held staging/api has none
        (("history", "production", "--json"), 9),
        (("keys", "list", "--all", "--json"), 3),
        (("validate", "-m", "m", "--json"), 0),
    ):
        result = sk(*command)
        assert result.code == 0, result.err
        assert assert_one_format(result.json()) >= least, command


def test_the_daemon_status_documents_write_one_timestamp_format(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """/status (slots, matrix, keys, held actions, last reconcile and apply, generated_at) and
    a slot's history document write the same format."""
    declare(workdir / "m", "v1")
    daemon = running("-m", "m", "--resync-interval", "10m")
    declare(workdir / "m", "v2")

    def applied() -> bool:
        """v2 recorded, then its reconcile over: the record shows before the reconcile ends."""
        slots = daemon.status()["slots"]
        recorded = any(row["artifact"] and row["artifact"]["version"] == "v2" for row in slots)
        return recorded and daemon.status()["last_reconcile"]["finished_at"] is not None

    wait_for(applied, what="the edit applied")
    status = daemon.status()
    assert status["blocked"] and status["last_reconcile"]["finished_at"]
    counted = assert_one_format(status)
    counted += assert_one_format(daemon.get("/status/slots/production/api").json())
    assert counted >= 15
    generated = datetime.fromisoformat(status["generated_at"])
    assert abs((datetime.now(UTC) - generated).total_seconds()) < 60
    assert daemon.terminate()[0] == 0
