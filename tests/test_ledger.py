"""The ledger on both backends (SQLite file, PostgreSQL schema): migrations, invariants the
schema enforces, failures, the writer lock and concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slotkeeper.errors import LedgerError
from slotkeeper.ledger import open_ledger
from slotkeeper.ledger import sql as ledger_sql
from slotkeeper.ledger.postgres import split_url
from slotkeeper.ledger.schema import MIGRATIONS, Migration
from slotkeeper.model import (
    Artifact,
    EnvironmentRecord,
    RecordedState,
    SyncSubject,
    TargetSync,
)
from tests.helpers import Run, deploy_key, environment, image, synced_record, write_manifests

Sk = Callable[..., Run]
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def recorded(url: str) -> RecordedState:
    ledger = open_ledger(url, now=NOW)
    try:
        return ledger.read_state()
    finally:
        ledger.close()


def run_sql(url: str, sql: str) -> list[tuple[object, ...]]:
    """Run SQL on the ledger's own database (and schema), outside slotkeeper."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return list(db.execute(sql).fetchall())
    import psycopg

    libpq, schema = split_url(url)
    with psycopg.connect(libpq, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        cursor = db.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def test_migrations_run_once_and_lineage_is_stable(ledger_url: str) -> None:
    """Opening a ledger twice migrates once and keeps its lineage and serial."""
    first = open_ledger(ledger_url, now=NOW)
    lineage = first.read_state().lineage
    first.close()
    second = open_ledger(ledger_url, now=NOW)
    assert second.read_state().lineage == lineage
    assert second.read_state().serial == 0
    second.close()
    versions = run_sql(ledger_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(m.version,) for m in sorted(MIGRATIONS, key=lambda m: m.version)]


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    """The SQLite backend uses WAL, so readers never wait for the writer."""
    open_ledger(f"sqlite:///{tmp_path}/state.db", now=NOW).close()
    assert run_sql(f"sqlite:///{tmp_path}/state.db", "PRAGMA journal_mode") == [("wal",)]


def test_a_newer_schema_is_refused(sk: Sk, ledger_url: str) -> None:
    """A ledger written by a newer slotkeeper is refused with a clear message, untouched."""
    open_ledger(ledger_url, now=NOW).close()
    run_sql(ledger_url, "INSERT INTO schema_migrations VALUES (99, 'future', 'x')")
    result = sk("status", "--state", ledger_url)
    assert result.code == 1
    assert "schema version 99" in result.err and "upgrade slotkeeper" in result.err


def test_a_file_that_is_not_a_ledger_is_refused(sk: Sk, workdir: Path) -> None:
    """Pointing --state at some other file is an error, not a traceback or a rewrite."""
    (workdir / "notes.db").write_text("these are not the droids\n" * 100)
    result = sk("status", "--state", "notes.db")
    assert result.code == 1
    assert "not a usable slotkeeper ledger" in result.err
    assert (workdir / "notes.db").read_text().startswith("these are not the droids")


def test_an_unreachable_database_is_a_clear_error_without_the_password(sk: Sk) -> None:
    """A PostgreSQL URL that cannot be reached fails clearly, and never prints its password."""
    url = "postgresql://postgres:hunter2secret@127.0.0.1:1/nothing"
    result = sk("status", "--state", url)
    assert result.code == 1
    assert "cannot connect to the ledger at postgresql://postgres:***@127.0.0.1:1" in result.err
    assert "hunter2secret" not in result.err + result.out


def test_schema_allows_one_deployed_record_per_slot(ledger_url: str) -> None:
    """The database itself refuses a second DEPLOYED record in a slot."""
    ledger = open_ledger(ledger_url, now=NOW)
    assert ledger.try_lead()  # state is written by the writer
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


def test_serial_moves_once_per_apply(sk: Sk, workdir: Path, ledger_url: str) -> None:
    """An apply of many actions moves the serial by exactly one."""
    write_manifests(
        workdir / "m",
        environment(
            "production", {f"s{i}": image() for i in range(5)}, deployKeys=[deploy_key("k")]
        ),
    )
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    assert recorded(ledger_url).serial == 1


def test_one_failing_action_does_not_stop_the_others(
    sk: Sk, workdir: Path, ledger_url: str
) -> None:
    """A key whose secret cannot be written fails alone: the deploys land, exit code is 1,
    and the next apply converges once the obstacle is gone."""
    write_manifests(
        workdir / "m",
        environment(
            "production",
            {"api": image(), "web": image("web")},
            deployKeys=[deploy_key("deployer")],
        ),
    )
    obstacle = workdir / ".slotkeeper" / "secrets" / "deployer"
    obstacle.mkdir(parents=True)
    (obstacle / "file").write_text("x")
    result = sk("apply", "--yes", "-m", "m", "--state", ledger_url)
    assert result.code == 1
    assert "failed  create_key" in result.out
    assert "2 applied, 1 failed" in result.out
    assert "Traceback" not in result.err
    state = recorded(ledger_url)
    assert set(state.deployed) == {("production", "api"), ("production", "web")}
    assert state.keys == {}
    assert not any(p.name.startswith(".tmp-") for p in obstacle.parent.iterdir())
    (obstacle / "file").unlink()
    obstacle.rmdir()
    again = sk("apply", "--yes", "-m", "m", "--state", ledger_url)
    assert again.code == 0 and "1 applied, 0 failed" in again.out
    assert set(recorded(ledger_url).keys) == {("acme/web", "deployer")}


def test_a_held_lock_makes_apply_fail_clearly_after_the_timeout(
    sk: Sk, workdir: Path, ledger_url: str
) -> None:
    """While another writer holds the ledger, apply waits the bound, then says it is locked;
    reads are not blocked."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    other = open_ledger(ledger_url, now=NOW)
    try:
        with other.writer(timeout=1):
            assert other.leading()
            result = sk("apply", "--yes", "-m", "m", "--lock-timeout", "0.3", "--state", ledger_url)
            assert result.code == 1
            assert "ledger is locked" in result.err
            assert sk("status", "--json", "--state", ledger_url).json()["slots"] == []
        assert not other.leading()
    finally:
        other.close()
    assert recorded(ledger_url).serial == 0
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0


def test_concurrent_applies_serialise_without_corruption(workdir: Path, ledger_url: str) -> None:
    """Several applies started at once (separate processes) each plan and apply under the lock:
    their writes never interleave and every change lands exactly once."""
    for index in range(4):
        write_manifests(
            workdir / f"m{index}",
            environment("production", {"api": image(version=f"v{index}")}),
        )
    open_ledger(ledger_url, now=NOW).close()  # create it once, so all four race on the lock
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slotkeeper",
                "apply",
                "--yes",
                "-m",
                f"m{index}",
                "--state",
                ledger_url,
                "--lock-timeout",
                "60",
            ],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    outputs = [p.communicate(timeout=90) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
    statuses = run_sql(
        ledger_url, "SELECT status, COUNT(*) FROM records GROUP BY status ORDER BY status"
    )
    assert statuses == [("DEPLOYED", 1), ("SUPERSEDED", 3)]
    # Each apply's events sit together: started, its changes, finished; never interleaved.
    events = run_sql(ledger_url, "SELECT serial, type FROM events ORDER BY seq")
    serials = [serial for serial, _ in events]
    assert serials == sorted(serials)
    assert [t for s, t in events if t == "apply.started"] == ["apply.started"] * 4
    assert recorded(ledger_url).serial == 4
    if ledger_url.startswith("sqlite:///"):
        assert run_sql(ledger_url, "PRAGMA integrity_check") == [("ok",)]


def test_events_can_be_filtered_and_the_newest_taken(ledger_url: str) -> None:
    """The dashboard asks for the newest apply events and one slot's deploys, not the log."""
    ledger = open_ledger(ledger_url, now=NOW)
    assert ledger.try_lead()  # state is written by the writer
    try:
        with ledger.transaction() as tx:
            for n, (kind, slot) in enumerate(
                [
                    ("apply.started", None),
                    ("record.deployed", "api"),
                    ("record.deployed", "web"),
                    ("apply.finished", None),
                    ("apply.started", None),
                    ("record.deployed", "api"),
                    ("apply.finished", None),
                ]
            ):
                tx.append_event(
                    serial=1 + n // 4,
                    at=NOW,
                    type=kind,
                    actor="t",
                    detail={},
                    environment="production" if slot else None,
                    slot=slot,
                )
        newest = ledger.events(types=("apply.started", "apply.finished"), last=2)
        assert [(e.type, e.serial) for e in newest] == [("apply.started", 2), ("apply.finished", 2)]
        deploys = ledger.events(types=("record.deployed",), environment="production", slot="api")
        assert [e.seq for e in deploys] == [2, 6]
        assert len(ledger.events()) == 7 and [e.seq for e in ledger.events(since=5)] == [6, 7]
    finally:
        ledger.close()


def _sync(location: dict[str, str]) -> TargetSync:
    return synced_record("github", 1, remote_id="1001", at=NOW, attempts=0, location=location)


def test_a_sync_keeps_where_its_remote_copy_lives(ledger_url: str) -> None:
    """The location a target reported is stored with the sync row and read back as written."""
    ledger = open_ledger(ledger_url, now=NOW)
    assert ledger.try_lead()  # state is written by the writer
    where = {"base_url": "https://api.github.com", "repository": "acme/web"}
    with ledger.transaction() as tx:
        tx.upsert_sync(_sync(where))
    assert ledger.syncs_for(SyncSubject.RECORD, 1)[0].location == where
    with ledger.transaction() as tx:
        tx.upsert_sync(_sync({"base_url": "https://ghe.example.com/api/v3", "repository": "a/b"}))
    stored = ledger.read_state().syncs["github", SyncSubject.RECORD, 1]
    assert stored.location["repository"] == "a/b"
    ledger.close()


def test_syncs_written_before_locations_were_kept_get_their_environment_repository(
    ledger_url: str,
) -> None:
    """Upgrading a ledger fills each existing sync's repository from what it was mirrored to."""
    ledger = open_ledger(ledger_url, now=NOW)
    assert ledger.try_lead()  # state is written by the writer
    with ledger.transaction() as tx:
        tx.upsert_environment(
            EnvironmentRecord(name="p", protected=False, production=True, repository="acme/web"),
            at=NOW,
        )
        record = tx.insert_record(
            environment="p",
            slot="api",
            artifact=Artifact.model_validate(image()),
            ref=None,
            at=NOW,
            revision=None,
            action_id="a",
        )
    ledger.close()
    # Back to the schema before version 6 (the location column), with a sync written then.
    run_sql(ledger_url, "ALTER TABLE target_syncs DROP COLUMN location")
    run_sql(ledger_url, "DELETE FROM schema_migrations WHERE version = 6")
    run_sql(
        ledger_url,
        "INSERT INTO target_syncs (target, subject, subject_id, wanted, status, updated_at) "
        f"VALUES ('github', 'record', {record}, 'active', 'synced', '2026-11-23T00:00:00Z')",
    )
    upgraded = open_ledger(ledger_url, now=NOW)
    assert upgraded.syncs_for(SyncSubject.RECORD, record)[0].location == {"repository": "acme/web"}
    upgraded.close()


def test_a_migration_numbered_below_the_applied_ones_still_runs(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration numbers may have gaps: one that arrives later with a lower number is applied."""
    open_ledger(ledger_url, now=NOW).close()
    applied = {v for (v,) in run_sql(ledger_url, "SELECT version FROM schema_migrations")}
    missing = min(set(range(1, max(applied) + 1)) - applied, default=None)
    if missing is None:  # no gap in this build: make one by forgetting the highest but one
        missing = sorted(applied)[-2]
    late = Migration(missing, "late", ("CREATE TABLE late_arrival (x INTEGER)",))
    patched = (*(m for m in MIGRATIONS if m.version != missing), late)
    run_sql(ledger_url, f"DELETE FROM schema_migrations WHERE version = {missing}")
    monkeypatch.setattr(ledger_sql, "MIGRATIONS", patched)
    open_ledger(ledger_url, now=NOW).close()
    assert run_sql(ledger_url, "SELECT COUNT(*) FROM late_arrival") == [(0,)]
    assert (missing,) in run_sql(ledger_url, "SELECT version FROM schema_migrations")


def test_a_reported_failure_is_kept_once_and_older_ledgers_gain_theirs(ledger_url: str) -> None:
    """A record's sync row saved with a failure a target reported (Unkey FAILED, GitHub
    failure) is kept in the ledger's failures, first report only, and survives the row changing
    (the deployment retired: inactive); a ledger from before migration 15 gains the failures its
    sync rows then held, and nothing for a successful one."""
    ledger = open_ledger(ledger_url, now=NOW)
    assert ledger.try_lead()
    with ledger.transaction() as tx:
        ids = [
            tx.insert_record(
                environment="p",
                slot=slot,
                artifact=Artifact.model_validate(image()),
                ref=None,
                at=NOW,
                revision=None,
                action_id=slot,
            )
            for slot in ("api", "web", "jobs")
        ]
    api, web, jobs = ids
    with ledger.transaction() as tx:
        tx.upsert_sync(synced_record("unkey", api, remote_id="d1", at=NOW))
        tx.upsert_sync(
            synced_record("unkey", api, remote_id="d1", at=NOW, remote_detail={"status": "FAILED"})
        )
        tx.upsert_sync(
            synced_record("unkey", api, remote_id="d2", at=NOW, remote_detail={"status": "error"})
        )
        tx.upsert_sync(synced_record("unkey", api, remote_id="d2", at=NOW, remote_detail={}))

    def failed() -> set[int]:
        rows = ledger.delivery_rows(environments=["p"], until=NOW + timedelta(days=1))
        return {row.record.id for row in rows if row.target_failed}

    assert failed() == {api}
    assert run_sql(ledger_url, "SELECT record_id, target, status FROM target_failures") == [
        (api, "unkey", "FAILED")
    ]
    ledger.close()

    run_sql(ledger_url, "DROP TABLE target_failures")
    run_sql(ledger_url, "DELETE FROM schema_migrations WHERE version = 15")
    for record, detail in ((web, '{"status": "failure"}'), (jobs, '{"status": "success"}')):
        run_sql(
            ledger_url,
            "INSERT INTO target_syncs (target, subject, subject_id, wanted, status, updated_at, "
            f"remote_detail) VALUES ('github', 'record', {record}, 'active', 'synced', "
            f"'2026-11-23T00:00:00Z', '{detail}')",
        )
    ledger = open_ledger(ledger_url, now=NOW)
    assert failed() == {web}  # the current row of api says nothing any more
    ledger.close()
