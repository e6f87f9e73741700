"""After an edit the daemon plans only the environments whose files changed (and those sharing a
repository with them), reads only their rows of the ledger, and falls back to planning every
environment whenever the scoped plan would remove anything: the guards always see the whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from slotkeeper.ledger import open_ledger
from slotkeeper.manifests import parse
from slotkeeper.model import Record, RecordedState, Scope, SyncSubject, TargetSync
from slotkeeper.scope import scope_of
from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import Run, deploy_key, environment, image, write_targets
from tests.test_daemon import versions
from tests.test_github_target import target


def put(root: Path, name: str, document: dict[str, Any]) -> None:
    """Write one manifest file, leaving the others as they are."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def env(
    name: str, repository: str, version: str = "v1", *, ref: str | None = None, **spec: Any
) -> dict[str, Any]:
    """An environment of two slots, api and web, at ``version`` (each at git ``ref``)."""
    document = environment(
        name,
        {"api": image(version=version), "web": image("ghcr.io/acme/web", version=version)},
        repository=repository,
        **spec,
    )
    if ref is not None:
        for slot in document["spec"]["slots"].values():
            slot["ref"] = ref
    return document


def load(root: Path) -> Any:
    return parse({path: path.read_bytes() for path in sorted(root.glob("*.yaml"))})


def test_a_scope_holds_every_environment_sharing_a_repository(tmp_path: Path) -> None:
    """Environments that share a repository (recorded on it, or holding a deploy key of it) are
    planned together; a scope of every environment, of none, or naming an environment the
    manifests no longer declare is no scope (a full plan)."""
    put(tmp_path, "a", env("a", "acme/one"))
    put(tmp_path, "b", env("b", "acme/one"))
    put(tmp_path, "c", env("c", "acme/two"))
    put(
        tmp_path,
        "d",
        env("d", "acme/three", deployKeys=[deploy_key("d-key", repository="acme/two")]),
    )
    put(tmp_path, "e", env("e", "acme/four"))
    desired = load(tmp_path)

    assert scope_of({"a"}, desired) == Scope(frozenset({"a", "b"}), frozenset({"acme/one"}))
    assert scope_of({"c"}, desired) == Scope(
        frozenset({"c", "d"}), frozenset({"acme/two", "acme/three"})
    )
    assert scope_of({"e"}, desired) == Scope(frozenset({"e"}), frozenset({"acme/four"}))
    assert scope_of({"a", "e"}, desired) == Scope(
        frozenset({"a", "b", "e"}), frozenset({"acme/one", "acme/four"})
    )
    assert scope_of({"a", "c", "e"}, desired) is None  # every environment: a plan of all
    assert scope_of(set(), desired) is None
    assert scope_of({"a", "gone"}, desired) is None


def _apply(sk: Callable[..., Run], root: Path, state: str) -> None:
    result = sk("apply", "--yes", "-m", str(root), "--state", state)
    assert result.code == 0, result.err


def three_environments(sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, url: str) -> None:
    """a and b on acme/one, c on acme/two with a key on acme/one, all to the fake GitHub; a
    redeployed once (its first records superseded, their sync rows kept)."""
    for repository in ("acme/one", "acme/two"):
        gh.add_repository(repository)
    write_targets(target(gh))
    root = workdir / "m"
    on_github: dict[str, Any] = {"targets": ["github"], "ref": "main"}
    a_key = [deploy_key("a-key", repository="acme/one")]
    put(root, "a", env("a", "acme/one", deployKeys=a_key, **on_github))
    put(root, "b", env("b", "acme/one", **on_github))
    c_key = [deploy_key("c-key", repository="acme/one")]
    put(root, "c", env("c", "acme/two", deployKeys=c_key, **on_github))
    _apply(sk, root, url)
    put(root, "a", env("a", "acme/one", "v2", deployKeys=a_key, **on_github))
    _apply(sk, root, url)  # a's v1 records are superseded: their syncs stay rows


def test_the_ledger_reads_only_a_scopes_rows(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, ledger_url: str
) -> None:
    """A scoped read holds the scope's DEPLOYED records and environments, every key on its
    repositories (whoever declared it) and the sync rows of exactly those, the same rows as
    the whole read; held actions of other environments survive a scoped replacement."""
    three_environments(sk, workdir, gh, ledger_url)
    ledger = open_ledger(ledger_url, now=datetime.now(UTC))
    try:
        whole = ledger.read_state()
        scope = Scope(frozenset({"a"}), frozenset({"acme/one"}))
        part = ledger.read_state(scope)
        records_of_a = {r.id for r in ledger.history("a")}
    finally:
        ledger.close()

    assert set(part.deployed) == {("a", "api"), ("a", "web")}
    assert part.deployed == {k: v for k, v in whole.deployed.items() if k[0] == "a"}
    assert set(part.environments) == {"a"}
    # c's key is on acme/one: a key is its repository's, whoever declares it
    assert {k.title for k in part.keys.values()} == {"a-key", "c-key"}
    keys = {k.id for k in part.keys.values()}
    expected = {
        key: sync
        for key, sync in whole.syncs.items()
        if (key[1] is SyncSubject.RECORD and key[2] in records_of_a)
        or (key[1] is SyncSubject.KEY and key[2] in keys)
    }
    assert part.syncs == expected
    assert any(key[2] not in {r.id for r in part.deployed.values()} for key in expected)
    assert (part.lineage, part.serial) == (whole.lineage, whole.serial)
    assert set(part.sinks) <= {("acme/one", "a-key"), ("acme/one", "c-key")}
    assert isinstance(whole, RecordedState) and len(whole.deployed) == 6


def plans(daemon: Running) -> dict[str, float]:
    return daemon.counted("slotkeeper_plans", "scope")


deployed = versions


def test_an_edit_is_planned_alone_and_a_removal_is_planned_whole(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """Through `slotkeeper run`: an edit of one file is planned as a scope (its environment and
    the one sharing its repository) and applied; a held removal elsewhere stays held across it;
    an edit that removes a slot is planned whole, so the protection guard holds it; removing a
    file is planned whole too; a resync plans everything."""
    root = workdir / "m"
    put(root, "a", env("a", "acme/one"))
    put(root, "b", env("b", "acme/one"))
    put(root, "c", env("c", "acme/two", protected=True))
    put(root, "d", env("d", "acme/three", protected=True))
    daemon = running("-m", "m", "--resync-interval", "10m")
    wait_for(lambda: len(deployed(daemon)) == 8, what="the first reconcile")
    assert plans(daemon) == {"whole": 1.0}

    # d drops a slot: a removal, planned whole, and held by the protection guard
    put(root, "d", environment("d", {"api": image()}, repository="acme/three", protected=True))
    wait_for(lambda: plans(daemon).get("whole") == 2.0, what="the removal's plan")
    wait_for(lambda: _pending(daemon) == {"d/web"}, what="the held decommission")

    put(root, "a", env("a", "acme/one", "v2"))
    wait_for(lambda: deployed(daemon).get("a/api") == "v2", what="the edit applied")
    wait_for(lambda: plans(daemon).get("scoped") == 1.0, what="the scoped plan counted")
    assert plans(daemon)["whole"] == 2.0
    assert deployed(daemon)["b/api"] == "v1" and deployed(daemon)["c/api"] == "v1"
    assert _pending(daemon) == {"d/web"}  # another environment's held action is kept

    # a slot removed in a scoped environment: the plan is made again, whole; c is protected
    only_api = {"api": image(version="v3")}
    put(root, "c", environment("c", only_api, repository="acme/two", protected=True))
    wait_for(lambda: deployed(daemon).get("c/api") == "v3", what="c's deploy")
    assert plans(daemon) == {"whole": 3.0, "scoped": 1.0}
    assert _pending(daemon) == {"d/web", "c/web"}
    assert deployed(daemon)["c/web"] == "v1"

    (root / "b.yaml").unlink()  # an environment removed: only a full plan may decide
    wait_for(lambda: plans(daemon).get("whole") == 4.0, what="the plan after b's removal")
    wait_for(lambda: "b/api" not in deployed(daemon), what="b decommissioned")

    code, err = daemon.terminate()
    assert code == 0
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    scoped = [e for e in events if e["event"] == "reconcile.scoped"]
    assert [e["environments"] for e in scoped] == [["d"], ["a", "b"], ["c"]]
    unscoped = [e for e in events if e["event"] == "reconcile.unscoped"]
    assert [e["environments"] for e in unscoped] == [["d"], ["c"]]


def _at(daemon: Running, slot: str, version: str) -> bool:
    return deployed(daemon).get(slot) == version


def _pending(daemon: Running) -> set[str]:
    """The slots with a held action."""
    return {
        f"{row['environment']}/{row['slot']}" for row in daemon.status()["slots"] if row["pending"]
    }


def test_scoped_and_whole_plans_converge_on_the_same_ledger(
    sk: Callable[..., Run], workdir: Path, running: Callable[..., Running]
) -> None:
    """The daemon's scoped reconciles leave the ledger where a full `apply` of the same
    manifests leaves another ledger: the same records in every slot, the same held actions."""
    root = workdir / "m"
    for i, name in enumerate("pqrs"):
        put(root, name, env(name, f"acme/r{i % 2}"))
    daemon = running("-m", "m", "--resync-interval", "10m", "--state", "sqlite:///daemon.db")
    wait_for(lambda: len(deployed(daemon)) == 8, what="the first reconcile")
    edits = 5
    for step in range(edits):
        name = "pqrs"[step % 4]
        put(root, name, env(name, f"acme/r{'pqrs'.index(name) % 2}", f"v{step + 2}"))
        want = f"v{step + 2}"
        wait_for(partial(_at, daemon, f"{name}/web", want), what=f"edit {step}")
    assert plans(daemon).get("scoped") == float(edits)
    daemon.terminate()
    _apply(sk, root, "sqlite:///whole.db")

    def slots(url: str) -> dict[tuple[str, str], tuple[str | None, str]]:
        ledger = open_ledger(url, now=datetime.now(UTC))
        try:
            return {
                (r.environment, r.slot): (r.artifact.version, r.status.value)
                for r in ledger.latest_records()
            }
        finally:
            ledger.close()

    assert slots("sqlite:///daemon.db") == slots("sqlite:///whole.db")


def test_a_page_reads_each_slot_in_brief_and_whole_records_by_id(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, ledger_url: str
) -> None:
    """What the dashboard reads of every slot (its newest record's id, status and whether
    every target confirmed it) agrees with the whole records and their sync rows; records and
    sync rows are read by id for the cells a page shows."""
    for repository in ("acme/one", "acme/two"):
        gh.add_repository(repository)
    three_environments(sk, workdir, gh, ledger_url)
    put(workdir / "m", "e", env("e", "acme/two", targets=["github"], ref="main"))
    gh.forbidden = True  # e's records are written, GitHub refuses their copies: unconfirmed
    refused = sk("apply", "--yes", "-m", str(workdir / "m"), "--state", ledger_url)
    assert refused.code == 1, refused.out + refused.err
    gh.forbidden = False
    ledger = open_ledger(ledger_url, now=datetime.now(UTC))
    try:
        latest = ledger.latest_records()
        syncs = ledger.all_syncs()
        heads = ledger.slot_heads()
        some = [record.id for record in latest[::2]]
        by_id = ledger.records([*some, 10**9])
        their_syncs = ledger.syncs_of(SyncSubject.RECORD, some)
    finally:
        ledger.close()
    settled = {
        record.id: all(
            s.settled
            for s in syncs
            if s.subject is SyncSubject.RECORD and s.subject_id == record.id
        )
        for record in latest
    }
    assert [(h.record_id, h.environment, h.slot, h.status, h.confirmed) for h in heads] == [
        (r.id, r.environment, r.slot, r.status, settled[r.id]) for r in latest
    ]
    assert {h.environment for h in heads if not h.confirmed} == {"e"}
    # read back without validating again, yet every record and row is what validation gives
    for model, read in ((Record, latest), (TargetSync, syncs)):
        assert read and all(model.model_validate(one.model_dump()) == one for one in read)
        assert all(one.model_fields_set == set(model.model_fields) for one in read)
    assert by_id == sorted((r for r in latest if r.id in some), key=lambda r: r.id)
    assert their_syncs == [
        s for s in syncs if s.subject is SyncSubject.RECORD and s.subject_id in some
    ]
