"""The PyGithub baseline script (``baseline_pygithub.py``) against the fake GitHub.

The script runs as a subprocess, as the benchmarks run it; every exchange it causes is checked
against GitHub's OpenAPI description afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.bench.generate import Tree, write
from tests.fakes.github import FakeGitHub

if TYPE_CHECKING:
    from tests.fakes.spec import OpenApiChecker

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("baseline_pygithub.py")


def run_baseline(fake: FakeGitHub, manifests: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run the script on ``manifests`` against ``fake``; its exit code and JSON summary."""
    command = [sys.executable, str(SCRIPT), "--manifests", str(manifests)]
    done = subprocess.run(
        [*command, "--base-url", fake.base_url, *extra],
        env={**os.environ, "GITHUB_TOKEN": fake.token, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


def check_spec(fake: FakeGitHub, spec: OpenApiChecker) -> None:
    """Every request the script sent, and every answer, matches GitHub's OpenAPI description."""
    for recorded in fake.requests:
        spec.check_request(recorded.method, recorded.url, recorded.headers, recorded.body)
        assert recorded.status is not None
        spec.check_response(
            recorded.method,
            recorded.url,
            recorded.headers,
            recorded.status,
            recorded.response_headers,
            recorded.response_body,
        )


def created(fake: FakeGitHub) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The deployments and statuses the fake answered 201 for, in request order."""
    deployments = [
        r.response_json()
        for r in fake.requests
        if r.status == 201 and r.path.endswith("/deployments")
    ]
    statuses = [
        r.response_json() for r in fake.requests if r.status == 201 and r.path.endswith("/statuses")
    ]
    return deployments, statuses


def test_every_slot_gets_a_deployment_and_a_success_status(
    github: FakeGitHub, github_spec: OpenApiChecker, tmp_path: Path
) -> None:
    """The baseline writes one deployment and one success status per slot, every request in spec."""
    tree = Tree(environments=2, slots_per_environment=3, keys_per_environment=0)
    for repository in tree.repository_names():
        github.add_repository(repository)
    code, summary = run_baseline(github, write(tree, tmp_path / "m"), "--no-throttle")

    assert code == 0
    writes = github.writes()
    assert len(writes) == 2 * tree.slots
    assert [w.method for w in writes] == ["POST"] * len(writes)
    assert [w.path.rsplit("/", 1)[1] for w in writes] == ["deployments", "statuses"] * tree.slots
    assert all(r.status == 201 for r in github.requests)
    deployments, statuses = created(github)
    assert len(deployments) == len(statuses) == tree.slots
    for deployment, (e, s) in zip(deployments, tree.slot_indexes(), strict=True):
        assert deployment["environment"] == tree.environment_name(e)
        assert deployment["payload"]["slot"] == tree.slot_name(s)
        assert deployment["url"].endswith(
            f"/repos/{tree.repository(e)}/deployments/{deployment['id']}"
        )
        assert github.latest_state(deployment["id"]) == "success"
    assert summary["slots"] == summary["deployments"] == summary["statuses"] == tree.slots
    assert summary["stopped_at"] is None
    assert summary["error"] is None
    assert summary["seconds"] > 0
    check_spec(github, github_spec)


def test_default_pygithub_throttle_spaces_writes(
    github: FakeGitHub, github_spec: OpenApiChecker, tmp_path: Path
) -> None:
    """Without --no-throttle, PyGithub's seconds_between_writes=1.0 applies: 2 writes, >= 1 s."""
    tree = Tree(environments=1, slots_per_environment=1, keys_per_environment=0)
    for repository in tree.repository_names():
        github.add_repository(repository)
    code, summary = run_baseline(github, write(tree, tmp_path / "m"))

    assert code == 0
    assert len(github.writes()) == 2
    assert summary["deployments"] == summary["statuses"] == 1
    assert summary["seconds"] >= 0.9
    check_spec(github, github_spec)


def test_secondary_limit_is_hit_and_reported(
    github: FakeGitHub, github_spec: OpenApiChecker, tmp_path: Path
) -> None:
    """At a secondary limit the baseline meets 403s with Retry-After and reports what it made."""
    github.secondary_limit = (4, 2.0)
    tree = Tree(environments=2, slots_per_environment=3, keys_per_environment=0)
    for repository in tree.repository_names():
        github.add_repository(repository)
    code, summary = run_baseline(github, write(tree, tmp_path / "m"), "--no-throttle")

    refused = [r for r in github.requests if r.status == 403]
    assert refused, "the script never met the secondary limit"
    assert all("retry-after" in r.response_headers for r in refused)
    assert Counter(r.status for r in github.requests) == {201: 2 * tree.slots, 403: len(refused)}
    deployments, statuses = created(github)
    assert summary["slots"] == tree.slots
    assert summary["deployments"] == len(deployments)
    assert summary["statuses"] == len(statuses)
    if summary["stopped_at"] is None:  # PyGithub waited out Retry-After and finished, late
        assert code == 0
        assert summary["error"] is None
        assert len(deployments) == len(statuses) == tree.slots
        assert summary["seconds"] >= 2.0  # 12 writes at most 4 per 2 s: at least two waits
    else:
        assert code == 1
        assert "403" in summary["error"] or "Retry" in summary["error"]
        assert len(deployments) < tree.slots or len(statuses) < tree.slots
    check_spec(github, github_spec)
