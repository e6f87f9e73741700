"""The dashboard reads what a page shows and no more: a slot's page asks the ledger for that
slot's deploy events only, however long the audit log of the other slots is."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotkeeper.dashboard.pages import Dashboard
from slotkeeper.ledger import open_ledger
from slotkeeper.ledger.sqlite import SqliteLedger
from slotkeeper.web.app import answer
from tests.helpers import Run, environment, image, write_manifests
from tests.test_ledger import run_sql

Sk = Callable[..., Run]
STATE = "sqlite:///.slotkeeper/state.db"
#: events of other slots, appended after the slot's own: a busy ledger's audit log
FOREIGN = 3_000


@pytest.fixture
def busy(sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqliteLedger]:
    """production/api deployed twice by alice; thousands of deploy events of other slots
    (some naming production/api's records) by mallory."""
    monkeypatch.setenv("SLOTKEEPER_ACTOR", "alice")
    for version in ("v1", "v2"):
        write_manifests(
            workdir / "m",
            environment("production", {"api": image(version=version), "web": image("web")}),
            environment("staging", {"api": image(version=version)}),
        )
        assert sk("apply", "--yes", "-m", "m").code == 0
    ledger = open_ledger(STATE, now=datetime.now(UTC))
    assert isinstance(ledger, SqliteLedger)
    own = [record.id for record in ledger.history("production", "api")]
    elsewhere = [("production", "web"), ("staging", "api"), ("staging", None), (None, None)]
    with ledger.transaction() as tx:
        for n in range(FOREIGN):
            environment_name, slot = elsewhere[n % len(elsewhere)]
            tx.append_event(
                serial=99,
                at=datetime.now(UTC),
                type="record.deployed",
                actor="mallory",
                detail={},
                environment=environment_name,
                slot=slot,
                record_id=own[n % len(own)],
            )
    yield ledger
    ledger.close()


def test_a_slot_page_reads_only_its_own_deploy_events(busy: SqliteLedger) -> None:
    """Among thousands of events of other slots, the page names its own deployers, and the one
    query it runs on the audit log returns that slot's two deploy events, nothing else."""
    dashboard = Dashboard(busy, clock=lambda: datetime.now(UTC))
    statements: list[str] = []
    # The driver's statement hook: every SQL the page runs, its parameters filled in.
    busy._connection.set_trace_callback(statements.append)
    try:
        document = json.loads(answer(dashboard, "/status/slots/production/api").body)
        page = answer(dashboard, "/slots/production/api").body.decode()
    finally:
        busy._connection.set_trace_callback(None)
    assert [row["actor"] for row in document["records"]] == ["alice", "alice"]
    assert "alice" in page and "mallory" not in page
    on_events = [sql for sql in statements if " FROM events " in sql]
    assert len(on_events) == 2  # one per request: the JSON document and the page
    assert all("'production'" in sql and "'api'" in sql for sql in on_events)
    for sql in on_events:
        read = run_sql(STATE, sql)
        assert len(read) == 2, sql  # of more than FOREIGN events in the log
    [(total,)] = run_sql(STATE, "SELECT COUNT(*) FROM events")
    assert isinstance(total, int) and total > FOREIGN


def test_the_slot_pages_events_query_uses_the_slot_index(busy: SqliteLedger) -> None:
    """The database finds a slot's events by the (environment, slot) index, not by a scan of
    the log: the plan of the query the page runs says so."""
    statements: list[str] = []
    busy._connection.set_trace_callback(statements.append)
    try:
        answer(Dashboard(busy, clock=lambda: datetime.now(UTC)), "/status/slots/production/api")
    finally:
        busy._connection.set_trace_callback(None)
    [sql] = [sql for sql in statements if " FROM events " in sql]
    plan = " ".join(str(row[-1]) for row in run_sql(STATE, f"EXPLAIN QUERY PLAN {sql}"))
    assert "USING INDEX events_by_slot" in plan, plan
