"""GitHub push webhooks through a `slotkeeper run` subprocess: only the followed branch
reconciles; a push elsewhere is answered, says why, and triggers nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon_support import Running, wait_for
from tests.helpers import environment, image, write_manifests


def push(daemon: Running, ref: str, delivery: str) -> dict[str, object]:
    answer = daemon.hook(json.dumps({"ref": ref}).encode(), delivery=delivery)
    assert answer.status_code in (200, 202)
    return dict(answer.json())


def assert_no_reconcile(daemon: Running, before: float) -> None:
    time.sleep(1.0)  # a reconcile triggered by a webhook starts within a second
    assert daemon.reconciles() == before


def test_only_a_push_to_the_followed_branch_reconciles(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """With a watched directory (following main by default), a signed push to another branch
    or to a tag answers accepted false with the reason and reconciles nothing; a push to main
    reconciles."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    daemon = running("-m", "m", "--resync-interval", "10m")
    before = daemon.reconciles()

    feature = push(daemon, "refs/heads/feature", "d-1")
    assert feature["accepted"] is False
    assert "refs/heads/feature" in str(feature["reason"])
    assert "refs/heads/main" in str(feature["reason"])
    tag = push(daemon, "refs/tags/main", "d-2")
    assert tag["accepted"] is False and "refs/tags/main" in str(tag["reason"])
    no_ref = daemon.hook(b"{}", delivery="d-3").json()
    assert no_ref["accepted"] is False
    assert_no_reconcile(daemon, before)

    assert push(daemon, "refs/heads/main", "d-4") == {"accepted": True, "event": "push"}
    wait_for(lambda: daemon.reconciles() >= before + 1, what="the webhook's reconcile")
    code, err = daemon.terminate()
    assert code == 0
    ignored = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "webhook.ignored"
    ]
    assert [entry["delivery"] for entry in ignored] == ["d-1", "d-2", "d-3"]


def test_a_git_source_follows_its_branch_option(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """A git source on --branch release: a push to main is ignored, a push to release
    reconciles."""
    origin = workdir / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = workdir / "work"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True, capture_output=True)
    write_manifests(work / "envs", environment("production", {"api": image()}))
    for args in (
        ["add", "-A"],
        ["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", "first"],
        ["push", "-q", "origin", "HEAD:release"],
    ):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    daemon = running(
        "--source",
        f"file://{origin}",
        "--branch",
        "release",
        "--path",
        "envs",
        "--poll-interval",
        "10m",
        "--resync-interval",
        "10m",
    )
    before = daemon.reconciles()
    main = push(daemon, "refs/heads/main", "d-1")
    assert main["accepted"] is False and "refs/heads/release" in str(main["reason"])
    assert_no_reconcile(daemon, before)
    assert push(daemon, "refs/heads/release", "d-2")["accepted"] is True
    wait_for(lambda: daemon.reconciles() >= before + 1, what="the webhook's reconcile")
    assert daemon.terminate()[0] == 0
