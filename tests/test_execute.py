"""The executor: results per action, log events, and what a half-finished apply leaves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from slotkeeper.errors import StalePlanError
from slotkeeper.execute import Outcome, execute
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.model import DesiredState, EnvironmentSpec
from slotkeeper.observability import configure_logging
from slotkeeper.plan import PlanOptions, plan

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A fresh ledger on each backend."""
    opened = open_ledger(ledger_url, now=NOW)
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
    the_plan = plan(desired({"api": "1.0.0"}), ledger.read_state(), now=NOW, options=PlanOptions())
    configure_logging(fmt="json", level="debug")
    with capture_logs() as logs:
        execute(the_plan, ledger, clock=lambda: NOW, actor="t", sink=SecretSink(tmp_path / "s"))
    applied = [e for e in logs if e["event"] == "action.applied"]
    [event] = applied
    assert event.pop("duration_ms") >= 0
    assert event == {
        "event": "action.applied",
        "log_level": "info",
        "action_id": the_plan.actions[0].id,
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
    the_plan = plan(
        desired({"a": "1", "b": "1"}), ledger.read_state(), now=NOW, options=PlanOptions()
    )
    first_only = the_plan.model_copy(update={"actions": the_plan.actions[:1]})
    result = execute(first_only, ledger, clock=lambda: NOW, actor="t", sink=sink)
    assert [r.outcome for r in result.results] == [Outcome.APPLIED]
    with pytest.raises(StalePlanError):
        execute(the_plan, ledger, clock=lambda: NOW, actor="t", sink=sink)
    rest = plan(
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
        the_plan = plan(
            desired({"api": version}), ledger.read_state(), now=NOW, options=PlanOptions()
        )
        execute(the_plan, ledger, clock=lambda: NOW, actor="t", sink=sink)
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
