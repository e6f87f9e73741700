"""Crash safety against GitHub: SIGKILL an apply mid-way, apply again, nothing duplicated.

The apply runs as a real subprocess talking to the fake GitHub over loopback; the test kills it
after a chosen number of write calls reached the fake (so kills land between a remote call and
the ledger commit, too) and then re-applies until the plan is empty.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.github import FakeGitHub
from tests.helpers import (
    Run,
    deploy_key,
    environment,
    image,
    recorded_state,
    write_manifests_and_targets,
)
from tests.test_github_target import TOKEN, assert_converged, target

Sk = Callable[..., Run]


def managed_key_counts(gh: FakeGitHub) -> list[int]:
    """How many slotkeeper keys the repository held after each key call the fake answered."""
    present: set[int] = set()
    counts = []
    for request in gh.requests:
        if not request.path.startswith("/repos/acme/web/keys") or request.status is None:
            continue
        if request.method == "POST" and request.status == 201:
            present.add(request.response_json()["id"])
        elif request.method == "DELETE" and request.status == 204:
            present.discard(int(request.path.rsplit("/", 1)[1]))
        else:
            continue
        counts.append(len(present))
    return counts


def kill_after_writes(args: list[str], cwd: Path, gh: FakeGitHub, writes: int) -> int:
    """Run slotkeeper and SIGKILL it once the fake has seen ``writes`` more write calls;
    return its exit status (-9 when killed)."""
    env = dict(os.environ, GITHUB_TOKEN=TOKEN, NO_COLOR="1")
    start = len(gh.writes())
    process = subprocess.Popen(
        [sys.executable, "-m", "slotkeeper", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if len(gh.writes()) - start >= writes:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    return process.wait(timeout=30)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sigkill_mid_apply_then_reapply_converges_without_duplicates(
    sk: Sk,
    workdir: Path,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    state: Path,
    seed: int,
) -> None:
    """Killed at a random write, the next applies finish the job: one deployment per record,
    every status right, the key rotated, and the repository never without a managed key."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    rng = random.Random(seed)
    github.latency = 0.01
    (workdir / ".gitignore").write_text(".slotkeeper/\n")  # the ledger and private keys
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=workdir, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "m",
        ],
        cwd=workdir,
        check=True,
    )

    def declare(version: str, read_only: bool) -> None:
        github.add_tag("acme/web", version)  # deployed as a tag of acme/web (refFrom)
        write_manifests_and_targets(
            workdir / "m",
            environment(
                "production",
                {f"s{i}": image(f"img{i}", version) for i in range(10)},
                repository="acme/web",
                refFrom="version",
                targets=["github"],
                production=True,
                deployKeys=[deploy_key("deployer", readOnly=read_only)],
            ),
            target(github),
        )

    declare("v1", True)
    assert sk("apply", "--yes", "-m", "m").code == 0
    declare("v2", False)  # every slot changes; a new access level means a new key
    killed = kill_after_writes(["apply", "--yes", "-m", "m"], workdir, github, rng.randint(1, 30))
    assert killed == -signal.SIGKILL
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 2  # the kill left work undone
    for _ in range(5):
        sk("apply", "--yes", "-m", "m", "--lock-timeout", "30")
        if sk("plan", "-m", "m", "--detailed-exitcode").code == 0:
            break
    else:
        pytest.fail("did not converge after the crash")

    assert_converged(github, state)
    recorded = recorded_state(state)
    assert {r.artifact.version for r in recorded.deployed.values()} == {"v2"}
    managed = [k for k in github.keys("acme", "web") if k["title"].startswith("slotkeeper:")]
    [active] = recorded.keys.values()
    assert [k["key"] for k in managed] == [" ".join(active.public_key.split()[:2])]
    counts = managed_key_counts(github)
    assert counts and min(counts[counts.index(1) :]) >= 1, counts
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
