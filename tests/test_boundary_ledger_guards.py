"""The ledger's guards on both backends: a plan made at another serial or lineage is stale,
a status moves only from DEPLOYED or ACTIVE, and a webhook delivery is remembered once, for a
window (issue 15: the mutants these tests kill)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from slotkeeper.errors import StalePlanError
from slotkeeper.ledger import open_ledger
from slotkeeper.ledger.sql import SqlLedger
from slotkeeper.model import Artifact, KeyStatus, RecordStatus
from tests.helpers import image
from tests.test_ledger import run_sql

NOW = datetime(2026, 11, 23, tzinfo=UTC)
WINDOW = timedelta(days=3)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[SqlLedger]:
    opened = open_ledger(ledger_url, now=NOW)
    assert isinstance(opened, SqlLedger)
    assert opened.try_lead()  # state is written by the writer
    yield opened
    opened.close()


def test_a_plan_from_another_serial_or_lineage_is_stale(ledger: SqlLedger) -> None:
    """The serial moves by one per apply; a plan made before, after or for another ledger is
    refused, naming both sides."""
    lineage = ledger.read_state().lineage
    with ledger.transaction() as tx:
        assert tx.bump_serial(lineage=lineage, expected=0) == 1
    with ledger.transaction() as tx:
        tx.check_serial(lineage=lineage, expected=1)
        with pytest.raises(StalePlanError, match="made at serial 0, the ledger is at 1"):
            tx.check_serial(lineage=lineage, expected=0)
        with pytest.raises(StalePlanError, match="made at serial 2, the ledger is at 1"):
            tx.bump_serial(lineage=lineage, expected=2)
        with pytest.raises(StalePlanError, match=f"lineage other, this ledger is {lineage}"):
            tx.check_serial(lineage="other", expected=1)
    assert ledger.read_state().serial == 1


def test_a_status_moves_only_from_deployed_or_active(ledger: SqlLedger) -> None:
    """A record leaves DEPLOYED once and a key leaves ACTIVE once: the second try is stale."""
    with ledger.transaction() as tx:
        record = tx.insert_record(
            environment="production",
            slot="api",
            artifact=Artifact.model_validate(image()),
            ref=None,
            at=NOW,
            revision=None,
            action_id="a",
        )
        key = tx.insert_key(
            environment="production",
            repository="acme/web",
            title="deployer",
            fingerprint="SHA256:x",
            public_key="ssh-ed25519 AAAA",
            read_only=True,
            secret_file="deployer",
            rotate_after=None,
            at=NOW,
            revision=None,
            action_id="b",
        )
    with ledger.transaction() as tx:
        tx.set_record_status(record, RecordStatus.DECOMMISSIONED, at=NOW)
        tx.set_key_status(key, KeyStatus.REVOKED, at=NOW)
    with ledger.transaction() as tx:
        with pytest.raises(StalePlanError, match=f"record {record} is no longer DEPLOYED"):
            tx.set_record_status(record, RecordStatus.SUPERSEDED, at=NOW)
        with pytest.raises(StalePlanError, match=f"deploy key {key} is no longer ACTIVE"):
            tx.set_key_status(key, KeyStatus.ROTATED, at=NOW)
    assert ledger.record(record).status is RecordStatus.DECOMMISSIONED
    assert ledger.key(key).status is KeyStatus.REVOKED


def test_a_delivery_is_remembered_by_any_of_its_keys_for_the_window(ledger: SqlLedger) -> None:
    """Any key seen before makes a delivery a replay; every key of a first delivery is kept;
    after the window a key is forgotten."""
    assert ledger.first_delivery(["body:1", "delivery:a"], at=NOW, window=WINDOW)
    assert not ledger.first_delivery(["body:2", "delivery:a"], at=NOW, window=WINDOW)
    assert not ledger.first_delivery(["body:1"], at=NOW, window=WINDOW)
    assert ledger.first_delivery(["body:3"], at=NOW, window=WINDOW)
    later = NOW + WINDOW + timedelta(seconds=1)
    assert ledger.first_delivery(["body:1", "delivery:a"], at=later, window=WINDOW)
    just_inside = later + WINDOW
    assert not ledger.first_delivery(["delivery:a"], at=just_inside, window=WINDOW)


def test_a_ledger_that_cannot_remember_a_delivery_refuses_it(
    ledger: SqlLedger, ledger_url: str
) -> None:
    """Unsure is no: a failing write of the delivery is reported as a replay."""
    run_sql(ledger_url, "DROP TABLE webhook_deliveries")
    assert not ledger.first_delivery(["body:1"], at=NOW, window=WINDOW)
