"""`slotkeeper run` as a real subprocess: sources, webhook, endpoints, metrics, signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import (
    environment,
    image,
    operator_targets,
    write_manifests_and_targets,
    write_targets,
)
from tests.test_github_target import TOKEN, target


def declared_too_large(daemon: Running) -> int:
    """The status of a webhook that declares a body over the limit (1 MiB). The body is not
    sent: the daemon answers such a request unread and closes, and a client still sending the
    body then may see the connection reset before it reads the answer."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(
            b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n"
        )
        return int(sock.recv(4096).split(b" ", 2)[1])


def versions(daemon: Running) -> dict[str, str]:
    return {
        f"{row['environment']}/{row['slot']}": row["artifact"]["version"]
        for row in daemon.status()["slots"]
        if row["status"] == "DEPLOYED"
    }


def declare(
    root: Path, github: FakeGitHub, version: str, name: str = "envs.yaml", **spec: Any
) -> None:
    write_manifests_and_targets(
        root,
        environment(
            "production",
            {"api": {**image(version=version)}},
            repository="acme/web",
            targets=["github"],
            **spec,
        ),
        target(github),
        name=name,
    )


def with_ref(root: Path) -> None:
    """Slots need a ref for GitHub when the manifests are not a git work tree."""
    path = root / "envs.yaml"
    path.write_text(path.read_text().replace("    api:\n", "    api:\n      ref: main\n"))


def test_watched_directory_webhook_metrics_and_sigterm(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """An edited manifest is applied within seconds; a signed webhook reconciles at once and an
    unsigned one is refused; SIGHUP reconciles; /metrics parses and moves; SIGTERM exits 0."""
    declare(workdir / "m", github, "v1")
    with_ref(workdir / "m")
    daemon = running("-m", "m", "--resync-interval", "10m")
    assert versions(daemon) == {"production/api": "v1"}
    assert len(github.deployments("acme", "web")) == 1
    assert daemon.get("/healthz").status_code == 200

    declare(workdir / "m", github, "v2")
    with_ref(workdir / "m")
    wait_for(lambda: versions(daemon) == {"production/api": "v2"}, what="the edit applied")
    wait_for(lambda: len(github.deployments("acme", "web")) == 2, what="the new deployment")

    before = daemon.reconciles()
    refused = daemon.hook(b'{"ref": "refs/heads/main"}', sign=False)
    assert refused.status_code == 401
    assert declared_too_large(daemon) == 413
    time.sleep(0.5)
    assert daemon.reconciles() == before
    accepted = daemon.hook(b'{"ref": "refs/heads/main"}', delivery="d-2")
    assert accepted.status_code == 202
    wait_for(lambda: daemon.reconciles() >= before + 1, what="the webhook's reconcile")
    duplicate = daemon.hook(b'{"ref": "refs/heads/main"}', delivery="d-2")
    assert duplicate.json()["accepted"] is False
    after_hook = daemon.reconciles()
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.reconciles() >= after_hook + 1, what="SIGHUP's reconcile")
    assert daemon.process.poll() is None

    assert daemon.slots() == {"DEPLOYED": 1, "DECOMMISSIONED": 0}
    status = daemon.status()
    assert status["last_reconcile"]["result"] == "success"
    assert status["leader"] is True
    assert daemon.get("/nope").status_code == 404

    code, err = daemon.terminate()
    assert code == 0
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "reconcile.finished" in events and events[-1] == "daemon.stopped"
    assert TOKEN not in err


def test_git_remote_is_polled_and_each_reconcile_runs_on_one_revision(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """A new commit on the followed branch of a file:// remote is applied within seconds, and
    the record carries that commit (GitHub deploys the version's tag: the remote is not
    acme/web)."""
    origin = workdir / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = workdir / "work"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True, capture_output=True)

    def push(version: str) -> str:
        github.add_tag("acme/web", version)
        declare(work / "envs", github, version, refFrom="version")
        for args in (
            ["add", "-A"],
            [
                "-c",
                "user.name=a",
                "-c",
                "user.email=a@b",
                "commit",
                "-q",
                "-m",
                f"release {version}",
            ],
            ["push", "-q", "origin", "HEAD:main"],
        ):
            subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
        return subprocess.run(
            ["git", "-C", str(work), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    first = push("v1")
    daemon = running(
        "--source",
        f"file://{origin}",
        "--branch",
        "main",
        "--path",
        "envs",
        "--poll-interval",
        "1s",
        "--resync-interval",
        "10m",
    )
    assert versions(daemon) == {"production/api": "v1"}
    assert daemon.status()["last_reconcile"]["revision"] == first
    second = push("v2")
    wait_for(lambda: versions(daemon) == {"production/api": "v2"}, what="the new commit applied")
    assert daemon.status()["last_reconcile"]["revision"] == second
    deployed = {(d["ref"], d["payload"]["revision"]) for d in github.deployments("acme", "web")}
    assert deployed == {("v1", first), ("v2", second)}
    assert daemon.terminate()[0] == 0


def test_a_broken_file_keeps_its_last_good_version(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """A manifest file that breaks keeps its environments at their last good version (nothing
    is decommissioned) while other files still converge; the daemon says so loudly."""
    declare(workdir / "m", github, "v1")
    with_ref(workdir / "m")
    staging = workdir / "m" / "staging.yaml"
    staging.write_text(
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: staging}\n"
        "spec:\n  slots:\n    web: {artifact: {kind: HELM_CHART, name: c, version: '1'}}\n"
    )
    daemon = running("-m", "m", "--resync-interval", "10m")
    assert versions(daemon) == {"production/api": "v1", "staging/web": "1"}
    staging.write_text("apiVersion: slotkeeper/v1\nkind: Environment\n")
    production = workdir / "m" / "envs.yaml"
    production.write_text(production.read_text().replace("version: v1", "version: v2"))
    wait_for(lambda: versions(daemon).get("production/api") == "v2", what="the good file applied")
    assert versions(daemon)["staging/web"] == "1"
    _, err = daemon.terminate()
    assert "manifests.invalid" in err and "staging.yaml" in err


def test_suspended_slot_and_freeze_are_honoured_by_the_daemon(
    sk: Callable[..., Any], workdir: Path, running: Callable[..., Running]
) -> None:
    """A suspended slot and a frozen environment keep their records; /status and plan say why."""
    write_manifests_and_targets(
        workdir / "m", environment("staging", {"api": image(), "web": image("web")})
    )
    daemon = running("-m", "m", "--resync-interval", "10m")
    manifest = environment(
        "staging",
        {"api": image(version="v2"), "web": image("web", "v2")},
        freeze=[{"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}],
    )
    manifest["spec"]["slots"]["api"]["suspend"] = True
    write_manifests_and_targets(workdir / "m", manifest)
    wait_for(lambda: bool(daemon.status()["last_reconcile"]["blocked"]), what="blocked actions")
    blocked = {b["where"]: b["reason"] for b in daemon.status()["last_reconcile"]["blocked"]}
    assert blocked == {
        "staging/api": "slot staging/api is suspended",
        "staging/web": "frozen until 2099-01-01 00:00:00Z",
    }
    rows = {row["slot"]: row for row in daemon.status()["slots"]}
    assert rows["web"]["pending"]["blocked"] == "frozen until 2099-01-01 00:00:00Z"
    assert versions(daemon) == {"staging/api": "v1", "staging/web": "v1"}
    assert daemon.terminate()[0] == 0
    planned = sk("plan", "-m", "m").out
    assert "BLOCKED: slot staging/api is suspended" in planned
    assert "BLOCKED: frozen until 2099-01-01 00:00:00Z" in planned


def test_run_once_reconciles_and_exits(sk: Callable[..., Any], workdir: Path) -> None:
    """`run --once` reconciles a single time with daemon settings and exits 0."""
    write_manifests_and_targets(workdir / "m", environment("staging", {"api": image()}))
    result = sk("--log-format", "json", "run", "--once", "-m", "m")
    assert result.code == 0, result.err
    assert [row["slot"] for row in sk("status", "--json").json()["slots"]] == ["api"]


def test_a_failing_environment_backs_off_exponentially(
    workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed target call, that environment's actions wait (blocked 'backing off')
    for a delay that doubles with each failure, while other environments go on."""
    from datetime import UTC, datetime, timedelta

    import stamina

    from slotkeeper.daemon import Daemon, DaemonSettings
    from slotkeeper.keys import SecretSink
    from slotkeeper.ledger import open_ledger
    from slotkeeper.plan import PlanOptions
    from slotkeeper.reconcile import RunOptions
    from slotkeeper.sources import DirectorySource

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    now = [datetime(2026, 11, 23, 12, 0, tzinfo=UTC)]
    declare(workdir / "m", github, "v1")
    with_ref(workdir / "m")
    (workdir / "m" / "staging.yaml").write_text(
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: staging}\n"
        "spec:\n  slots:\n    web: {artifact: {kind: HELM_CHART, name: c, version: '1'}}\n"
    )
    ledger = open_ledger(f"sqlite:///{workdir}/state.db", now=now[0])
    settings = DaemonSettings(
        source=DirectorySource(workdir / "m"),
        options=PlanOptions(),
        run=RunOptions(),
        sink=SecretSink(workdir / "secrets"),
        actor="test",
        backoff_base=10,
        targets=operator_targets(),
    )
    daemon = Daemon(settings, ledger, clock=lambda: now[0])
    github.forbidden = True
    with stamina.set_testing(True):
        assert daemon.reconcile("start") is False
        assert daemon.last is not None and daemon.last.blocked == []
        now[0] += timedelta(seconds=5)
        assert daemon.reconcile("resync") is True  # production waits; nothing else failed
        assert [b["where"] for b in daemon.last.blocked] == ["production/api"]
        assert daemon.last.blocked[0]["reason"] == "backing off after failures until 12:00:10Z"
        now[0] += timedelta(seconds=6)
        assert daemon.reconcile("resync") is False  # retried, failed again: 20s now
        now[0] += timedelta(seconds=15)
        daemon.reconcile("resync")
        assert daemon.last.blocked[0]["reason"] == "backing off after failures until 12:00:31Z"
        github.forbidden = False
        now[0] += timedelta(seconds=10)
        assert daemon.reconcile("resync") is True
        assert daemon.last.blocked == []
    assert {r.environment for r in ledger.latest_records()} == {"production", "staging"}
    ledger.close()


def test_a_target_without_credentials_fails_alone_in_the_daemon(
    workdir: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the daemon a target whose token is missing fails its own syncs (clearly), while the
    ledger still converges; the CLI instead refuses the whole run (see test_github_target)."""
    from datetime import UTC, datetime

    from slotkeeper.daemon import Daemon, DaemonSettings
    from slotkeeper.keys import SecretSink
    from slotkeeper.ledger import open_ledger
    from slotkeeper.model import SyncSubject
    from slotkeeper.plan import PlanOptions
    from slotkeeper.reconcile import RunOptions
    from slotkeeper.sources import DirectorySource

    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    declare(workdir / "m", github, "v1")
    with_ref(workdir / "m")
    ledger = open_ledger(f"sqlite:///{workdir}/state.db", now=datetime.now(UTC))
    settings = DaemonSettings(
        source=DirectorySource(workdir / "m"),
        options=PlanOptions(),
        run=RunOptions(strict_targets=False),
        sink=SecretSink(workdir / "secrets"),
        actor="test",
        targets=operator_targets(),
    )
    daemon = Daemon(settings, ledger)
    assert daemon.reconcile("start") is False
    [row] = daemon.status_document()["slots"]
    assert row["status"] == "DEPLOYED"
    assert row["targets"]["github"]["status"] == "failed"
    # /status says what happened in fixed words; the ledger keeps why, for `slotkeeper status`.
    assert row["targets"]["github"]["error_reason"] == "target not usable: configuration error"
    assert "last_error" not in row["targets"]["github"]
    [sync] = ledger.syncs_for(SyncSubject.RECORD, row["record_id"])
    assert "environment variable GITHUB_TOKEN is not set" in (sync.last_error or "")
    assert github.requests == []
    ledger.close()


def test_a_directory_that_turns_into_a_symlink_out_of_the_tree_keeps_its_last_good_files(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """A sub-directory replaced by a symlink leading out of the tree is refused, and the
    environments it held keep their last good version instead of looking removed."""
    import shutil

    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    sub = workdir / "m" / "sub"
    sub.mkdir()
    (sub / "staging.yaml").write_text(
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: staging}\n"
        "spec:\n  slots:\n    web: {artifact: {kind: HELM_CHART, name: c, version: '1'}}\n"
    )
    daemon = running("-m", "m", "--resync-interval", "10m")
    assert versions(daemon) == {"production/api": "v1", "staging/web": "1"}
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "evil.yaml").write_text("apiVersion: slotkeeper/v1\n")
    shutil.rmtree(sub)
    sub.symlink_to(outside, target_is_directory=True)
    production = workdir / "m" / "envs.yaml"
    production.write_text(production.read_text().replace("version: v1", "version: v2"))
    wait_for(lambda: versions(daemon).get("production/api") == "v2", what="the good file applied")
    assert versions(daemon)["staging/web"] == "1"
    _, err = daemon.terminate()
    assert "symlink leads out of the manifest tree" in err


def test_target_syncs_of_many_slots_run_in_worker_threads_under_the_lock(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """Several slots' target calls run on worker threads, which ask whether the daemon still
    holds the writer lock: they must see that it does (a thread-local lock said no, and the
    daemon stopped every sync as "leadership lost")."""
    slots = {f"svc{n}": {**image(f"ghcr.io/acme/svc{n}", "v1")} for n in range(6)}
    write_manifests_and_targets(
        workdir / "m",
        environment("production", slots, repository="acme/web", targets=["github"]),
        target(github),
    )
    path = workdir / "m" / "envs.yaml"
    text = path.read_text()
    for n in range(6):
        text = text.replace(f"    svc{n}:\n", f"    svc{n}:\n      ref: main\n")
    path.write_text(text)
    daemon = running("-m", "m", "--resync-interval", "10m")
    wait_for(lambda: len(github.deployments("acme", "web")) == 6, what="six deployments")
    assert all(github.latest_state(d["id"]) == "success" for d in github.deployments("acme", "web"))
    code, err = daemon.terminate()
    assert code == 0 and "leader.lost" not in err


def test_a_reconcile_that_errors_is_tried_again_before_the_resync(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """A reconcile that cannot get to its end (here its git remote is missing) is retried
    after the back-off's delay, not at the next resync or poll (both 10 minutes away): once
    the remote exists, it is applied within seconds, with no trigger."""
    origin = workdir / "origin.git"
    write_targets(target(github))  # the operator's, read at start
    daemon = running(
        "--source",
        f"file://{origin}",
        "--path",
        "envs",
        "--poll-interval",
        "10m",
        "--resync-interval",
        "10m",
    )
    wait_for(lambda: daemon.status()["last_reconcile"]["result"] == "error", what="an error")
    github.add_tag("acme/web", "v1")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = workdir / "work"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True, capture_output=True)
    declare(work / "envs", github, "v1", refFrom="version")
    for args in (
        ["add", "-A"],
        ["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", "v1"],
        ["push", "-q", "origin", "HEAD:main"],
    ):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    wait_for(lambda: versions(daemon) == {"production/api": "v1"}, timeout=20, what="v1 applied")
    _, err = daemon.terminate()
    assert "reconcile.retrying" in err
