"""The git revision of the manifests is recorded with every change, dirty trees flagged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from slotkeeper.ledger import open_ledger
from tests.helpers import Run, environment, git, image, write_manifests

Sk = Callable[..., Run]


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")  # commits by Ada <ada@example.com> (helpers.git)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_events_and_records_carry_the_revision(sk: Sk, workdir: Path, state: Path) -> None:
    """A change applied from a git work tree records the commit: sha on the record, and sha,
    message, author, time and branch in the ledger and the plan."""
    repo = workdir / "repo"
    init_repo(repo)
    write_manifests(repo / "envs", environment("production", {"api": image()}))
    sha = commit(repo, "feat: ship api v1\n\nBody text.")
    document = sk("plan", "-m", "repo/envs", "--json").json()
    assert document["revision"]["sha"] == sha
    assert document["revision"]["message"] == "feat: ship api v1\n\nBody text."
    assert document["revision"]["author"] == "Ada <ada@example.com>"
    assert document["revision"]["branch"] == "main"
    assert document["revision"]["dirty"] is False
    assert sk("apply", "--yes", "-m", "repo/envs").code == 0
    [row] = sk("history", "production", "--json").json()
    assert row["revision"] == sha
    ledger = open_ledger(f"sqlite:///{state}", now=datetime.now(UTC))
    try:
        events = ledger.events()
    finally:
        ledger.close()
    assert [e.type for e in events] == ["apply.started", "record.deployed", "apply.finished"]
    assert {e.revision for e in events} == {sha}
    assert all(e.actor for e in events)
    deployed = events[1]
    assert (deployed.environment, deployed.slot) == ("production", "api")
    assert deployed.detail["artifact"]["version"] == "v1"
    assert "dirty" not in deployed.detail


def test_uncommitted_manifests_are_flagged_dirty(sk: Sk, workdir: Path, state: Path) -> None:
    """Applying manifests that differ from HEAD flags the plan and the events as dirty."""
    repo = workdir / "repo"
    init_repo(repo)
    write_manifests(repo / "envs", environment("production", {"api": image()}))
    commit(repo, "first")
    write_manifests(repo / "envs", environment("production", {"api": image(version="v2")}))
    assert sk("plan", "-m", "repo/envs", "--json").json()["revision"]["dirty"] is True
    assert sk("apply", "--yes", "-m", "repo/envs").code == 0
    ledger = open_ledger(f"sqlite:///{state}", now=datetime.now(UTC))
    try:
        deployed = [e for e in ledger.events() if e.type == "record.deployed"]
    finally:
        ledger.close()
    assert deployed[0].detail["dirty"] is True


def test_actor_comes_from_the_environment(sk: Sk, workdir: Path, state: Path, monkeypatch) -> None:
    """SLOTKEEPER_ACTOR names who applied, in every event."""
    monkeypatch.setenv("SLOTKEEPER_ACTOR", "ci-bot")
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    ledger = open_ledger(f"sqlite:///{state}", now=datetime.now(UTC))
    try:
        assert {e.actor for e in ledger.events()} == {"ci-bot"}
    finally:
        ledger.close()
