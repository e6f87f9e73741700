"""The executor: results per action, log events, and what a half-finished apply leaves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from slotkeeper.errors import StalePlanError
from slotkeeper.execute import BATCH_SIZE, Outcome, execute
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.metrics import REGISTRY
from slotkeeper.model import DesiredState, EnvironmentSpec
from slotkeeper.observability import configure_logging
from slotkeeper.plan import PlanOptions, diff

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A fresh ledger on each backend, held by this process (state is written by its writer)."""
    opened = open_ledger(ledger_url, now=NOW)
    assert opened.try_lead()
    yield opened
    opened.close()


def desired(slots: dict[str, str]) -> DesiredState:
    spec = EnvironmentSpec.model_validate(
        {
            "slots": {
                slot: {"artifact": {"kind": "HELM_CHART", "name": f"oci://c/{slot}", "version": v}}
                for slot, v in slots.items()
            }
        }
    )
    return DesiredState(environments={"production": spec}, targets={})


def test_log_events_are_named_and_flat(ledger: Ledger, tmp_path: Path) -> None:
    """Each applied action logs `action.applied` with flat keys; the apply is bracketed."""
    plan = diff(desired({"api": "1.0.0"}), ledger.read_state(), now=NOW, options=PlanOptions())
    configure_logging(fmt="json", level="debug")
    with capture_logs() as logs:
        execute(plan, ledger, clock=lambda: NOW, actor="t", sink=SecretSink(tmp_path / "s"))
    applied = [e for e in logs if e["event"] == "action.applied"]
    [event] = applied
    assert event.pop("duration_ms") >= 0
    assert event == {
        "event": "action.applied",
        "log_level": "info",
        "action_id": plan.actions[0].id,
        "action": "deploy",
        "environment": "production",
        "slot": "api",
    }
    assert [e["event"] for e in logs] == ["apply.started", "action.applied", "apply.finished"]
    assert logs[-1] == {
        "event": "apply.finished",
        "log_level": "info",
        "serial": 1,
        "applied": 1,
        "failed": 0,
        "blocked": 0,
        "deferred": 0,
    }


def test_a_plan_cannot_be_applied_twice_even_after_a_partial_apply(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The serial moves before the first action, so a re-run of the same plan is stale; the
    next plan picks up exactly what is still missing."""
    sink = SecretSink(tmp_path / "s")
    plan = diff(desired({"a": "1", "b": "1"}), ledger.read_state(), now=NOW, options=PlanOptions())
    first_only = plan.model_copy(update={"actions": plan.actions[:1]})
    result = execute(first_only, ledger, clock=lambda: NOW, actor="t", sink=sink)
    assert [r.outcome for r in result.results] == [Outcome.APPLIED]
    with pytest.raises(StalePlanError):
        execute(plan, ledger, clock=lambda: NOW, actor="t", sink=sink)
    rest = diff(
        desired({"a": "1", "b": "1"}),
        ledger.read_state(),
        now=NOW + timedelta(minutes=1),
        options=PlanOptions(),
    )
    assert [a.slot for a in rest.actions] == ["b"]


def test_every_change_leaves_an_event_with_no_gaps(ledger: Ledger, tmp_path: Path) -> None:
    """The audit log numbers events without gaps and records each record's transitions."""
    sink = SecretSink(tmp_path / "s")
    for version in ("1", "2"):
        plan = diff(desired({"api": version}), ledger.read_state(), now=NOW, options=PlanOptions())
        execute(plan, ledger, clock=lambda: NOW, actor="t", sink=sink)
    events = ledger.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "apply.started",
        "record.deployed",
        "apply.finished",
        "apply.started",
        "record.superseded",
        "record.deployed",
        "apply.finished",
    ]
    superseded = events[4]
    assert superseded.record_id == 1 and superseded.detail["superseded_by"] == 2


def _commits() -> float:
    return REGISTRY.get_sample_value("slotkeeper_ledger_commits_total") or 0.0


def test_record_actions_share_transactions(ledger: Ledger, tmp_path: Path) -> None:
    """1,200 deploys take a handful of commits (batches of BATCH_SIZE), not one each."""
    slots = {f"s{n:04d}": "1" for n in range(1200)}
    plan = diff(desired(slots), ledger.read_state(), now=NOW, options=PlanOptions())
    before = _commits()
    result = execute(plan, ledger, clock=lambda: NOW, actor="t", sink=SecretSink(tmp_path))
    assert result.count(Outcome.APPLIED) == 1200
    batches = -(-1200 // BATCH_SIZE)
    assert _commits() - before == batches + 2  # plus the start and the finish
    assert len(ledger.read_state().deployed) == 1200


def test_a_failing_action_in_a_batch_fails_alone(ledger: Ledger, tmp_path: Path) -> None:
    """When one write of a batch fails, the batch is retried one action per transaction: the
    others are applied, the failing one is a failed result."""
    plan = diff(
        desired({"a": "1", "b": "1", "c": "1"}), ledger.read_state(), now=NOW, options=PlanOptions()
    )
    a, b, c = plan.actions
    # A second DEPLOYED record for slot b breaks the ledger's one-deployed-record-per-slot rule.
    clash = b.model_copy(update={"id": "clash0000000", "artifact": c.artifact})
    broken = plan.model_copy(update={"actions": (a, b, clash, c)})
    result = execute(broken, ledger, clock=lambda: NOW, actor="t", sink=SecretSink(tmp_path))
    assert [r.outcome for r in result.results] == [
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.FAILED,
        Outcome.APPLIED,
    ]
    assert sorted(slot for _, slot in ledger.read_state().deployed) == ["a", "b", "c"]


def test_asked_to_stop_a_pending_batch_is_not_written(ledger: Ledger, tmp_path: Path) -> None:
    """Once stop() is true (SIGTERM, or the writer lock was lost) nothing more is written:
    the deploys gathered for the next batch are deferred, not flushed."""
    slots = {f"s{n:03d}": "1" for n in range(200)}
    plan = diff(desired(slots), ledger.read_state(), now=NOW, options=PlanOptions())
    asked = iter(range(10_000))
    result = execute(
        plan,
        ledger,
        clock=lambda: NOW,
        actor="t",
        sink=SecretSink(tmp_path),
        stop=lambda: next(asked) >= 100,
    )
    assert result.count(Outcome.DEFERRED) == 200
    assert ledger.read_state().deployed == {}
