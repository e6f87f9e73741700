"""Key rotation in the executor, through the CLI against the fake GitHub: every target that
holds keys gets the new key before the ledger switches to it, the old key is retired in the
ledger and deleted where it was registered, and the audit log says which key replaced which
(issue 15: the mutants these tests kill)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotkeeper.ledger import open_ledger
from slotkeeper.ledger.base import Event
from slotkeeper.model import KeyRecord, KeyStatus, SyncStatus, SyncSubject
from tests.fakes.github import FakeGitHub
from tests.helpers import Run, deploy_key, image
from tests.test_github_target import apply, declare, repo  # noqa: F401  (the fixture)

Sk = Callable[..., Run]


def ledger_view(state: Path) -> tuple[list[Event], dict[int, KeyRecord], dict[int, str | None]]:
    """The key events, every key (retired too) by id, and GitHub's remote id of each."""
    ledger = open_ledger(f"sqlite:///{state}", now=datetime.now(UTC))
    try:
        events = ledger.events(types=("key.created", "key.rotated", "key.revoked"))
        keys = {k.id: k for k in ledger.keys(include_retired=True)}
        remote = {
            key_id: next((s.remote_id for s in ledger.syncs_for(SyncSubject.KEY, key_id)), None)
            for key_id in keys
        }
        return events, keys, remote
    finally:
        ledger.close()


def managed(gh: FakeGitHub) -> list[str]:
    return sorted(str(k["id"]) for k in gh.keys("acme", "web"))


@pytest.mark.usefixtures("repo")
def test_a_key_is_created_rotated_and_revoked_everywhere_it_is_held(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """Created: registered on GitHub and synced in the ledger. Rotated: the new key registered,
    the old one ROTATED, replaced_by the new, and deleted on GitHub. Revoked: REVOKED, deleted
    on GitHub, its private file gone. The audit log names the fingerprints."""
    declare(workdir, gh, {"api": image()}, keys=[deploy_key("deployer")])
    apply(sk, "--secrets-dir", "secrets")
    events, keys, remote = ledger_view(state)
    [first] = keys.values()
    assert managed(gh) == [remote[first.id]]
    assert [(e.type, e.key_id, e.detail["fingerprint"]) for e in events] == [
        ("key.created", first.id, first.fingerprint)
    ]
    assert "previous_fingerprint" not in events[0].detail
    ledger = open_ledger(f"sqlite:///{state}", now=datetime.now(UTC))
    [sync] = ledger.syncs_for(SyncSubject.KEY, first.id)
    ledger.close()
    assert sync.status is SyncStatus.SYNCED and sync.attempts == 1

    result = sk(
        "keys", "rotate", "acme/web/deployer", "-m", "m", "--yes", "--secrets-dir", "secrets"
    )
    assert result.code == 0, result.out + result.err
    events, keys, remote = ledger_view(state)
    second = next(k for k in keys.values() if k.status is KeyStatus.ACTIVE)
    assert keys[first.id].status is KeyStatus.ROTATED
    assert keys[first.id].replaced_by == second.id
    assert managed(gh) == [remote[second.id]]
    rotated = events[-1]
    assert (rotated.type, rotated.key_id) == ("key.rotated", second.id)
    assert rotated.detail["fingerprint"] == second.fingerprint
    assert rotated.detail["previous_fingerprint"] == first.fingerprint

    declare(workdir, gh, {"api": image()})
    apply(sk, "--secrets-dir", "secrets")
    events, keys, _ = ledger_view(state)
    assert keys[second.id].status is KeyStatus.REVOKED
    assert managed(gh) == []
    revoked = events[-1]
    assert (revoked.type, revoked.key_id) == ("key.revoked", second.id)
    assert revoked.detail["fingerprint"] == second.fingerprint
    assert not (workdir / "secrets" / "deployer").exists()
