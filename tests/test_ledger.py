"""The SQLite ledger: migrations, invariants enforced by the schema, failures and locking."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import filelock
import pytest

from slotkeeper.errors import LedgerError
from slotkeeper.ledger import open_ledger
from slotkeeper.ledger.schema import LATEST_VERSION
from slotkeeper.model import Artifact
from tests.helpers import Run, deploy_key, environment, image, recorded_state, write_manifests

Sk = Callable[..., Run]
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_migrations_run_once_and_lineage_is_stable(tmp_path: Path) -> None:
    """Opening a ledger twice migrates once and keeps its lineage and serial."""
    url = f"sqlite:///{tmp_path}/state.db"
    first = open_ledger(url, now=NOW)
    lineage = first.read_state().lineage
    first.close()
    second = open_ledger(url, now=NOW)
    assert second.read_state().lineage == lineage
    assert second.read_state().serial == 0
    second.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        versions = db.execute("SELECT version FROM schema_migrations").fetchall()
        journal = db.execute("PRAGMA journal_mode").fetchone()
    assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]
    assert journal == ("wal",)


def test_a_newer_schema_is_refused(sk: Sk, workdir: Path) -> None:
    """A ledger written by a newer slotkeeper is refused with a clear message, untouched."""
    ledger = open_ledger("sqlite:///new.db", now=NOW)
    ledger.close()
    with sqlite3.connect(workdir / "new.db") as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x')")
    result = sk("status", "--state", "sqlite:///new.db")
    assert result.code == 1
    assert "schema version 99" in result.err and "upgrade slotkeeper" in result.err


def test_a_file_that_is_not_a_ledger_is_refused(sk: Sk, workdir: Path) -> None:
    """Pointing --state at some other file is an error, not a traceback or a rewrite."""
    (workdir / "notes.db").write_text("these are not the droids\n" * 100)
    result = sk("status", "--state", "notes.db")
    assert result.code == 1
    assert "not a usable slotkeeper ledger" in result.err
    assert (workdir / "notes.db").read_text().startswith("these are not the droids")


def test_schema_allows_one_deployed_record_per_slot(tmp_path: Path) -> None:
    """The database itself refuses a second DEPLOYED record in a slot."""
    ledger = open_ledger(f"sqlite:///{tmp_path}/state.db", now=NOW)
    artifact = Artifact.model_validate(image())
    fields = {
        "environment": "p",
        "slot": "api",
        "artifact": artifact,
        "ref": None,
        "at": NOW,
        "revision": None,
        "action_id": "a",
    }
    with ledger.transaction() as tx:
        tx.insert_record(**fields)
    with pytest.raises(LedgerError), ledger.transaction() as tx:
        tx.insert_record(**fields)
    assert len(ledger.history("p")) == 1
    ledger.close()


def test_serial_moves_once_per_apply(sk: Sk, workdir: Path, state: Path) -> None:
    """An apply of many actions moves the serial by exactly one."""
    write_manifests(
        workdir / "m",
        environment(
            "production", {f"s{i}": image() for i in range(5)}, deployKeys=[deploy_key("k")]
        ),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert recorded_state(state).serial == 1


def test_one_failing_action_does_not_stop_the_others(sk: Sk, workdir: Path, state: Path) -> None:
    """A key whose secret cannot be written fails alone: the deploys land, exit code is 1,
    and the next apply converges once the obstacle is gone."""
    write_manifests(
        workdir / "m",
        environment(
            "production", {"api": image(), "web": image("web")}, deployKeys=[deploy_key("deployer")]
        ),
    )
    obstacle = workdir / ".slotkeeper" / "secrets" / "deployer"
    obstacle.mkdir(parents=True)
    (obstacle / "file").write_text("x")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "failed  create_key" in result.out
    assert "2 applied, 1 failed" in result.out
    assert "Traceback" not in result.err
    recorded = recorded_state(state)
    assert set(recorded.deployed) == {("production", "api"), ("production", "web")}
    assert recorded.keys == {}
    assert not any(p.name.startswith(".tmp-") for p in obstacle.parent.iterdir())
    (obstacle / "file").unlink()
    obstacle.rmdir()
    again = sk("apply", "--yes", "-m", "m")
    assert again.code == 0 and "1 applied, 0 failed" in again.out
    assert set(recorded_state(state).keys) == {("acme/web", "deployer")}


def test_a_held_lock_makes_apply_fail_clearly_after_the_timeout(
    sk: Sk, workdir: Path, state: Path
) -> None:
    """While another writer holds the ledger, apply waits the bound, then says it is locked."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    assert sk("status").code == 0  # creates the ledger
    with filelock.FileLock(f"{state}.lock"):
        result = sk("apply", "--yes", "-m", "m", "--lock-timeout", "0.2")
        assert result.code == 1
        assert "ledger is locked" in result.err
        assert sk("status", "--json").json() == []  # reads are not blocked
    assert recorded_state(state).serial == 0
    assert sk("apply", "--yes", "-m", "m").code == 0


def test_concurrent_applies_serialise_without_corruption(workdir: Path, state: Path) -> None:
    """Several applies started at once (separate processes) each plan and apply under the lock:
    the ledger stays consistent and every change lands exactly once."""
    for index in range(4):
        write_manifests(
            workdir / f"m{index}",
            environment("production", {"api": image(version=f"v{index}")}),
        )
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "slotkeeper", "apply", "--yes", "-m", f"m{index}"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        statuses = db.execute(
            "SELECT status, COUNT(*) FROM records GROUP BY status ORDER BY status"
        ).fetchall()
        serials = [
            row[0]
            for row in db.execute(
                "SELECT serial FROM events WHERE type = 'apply.started' ORDER BY seq"
            )
        ]
    assert statuses == [("DEPLOYED", 1), ("SUPERSEDED", 3)]
    assert serials == [1, 2, 3, 4]
    assert recorded_state(state).serial == 4
