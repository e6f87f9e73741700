"""The daemon's back-off at its seam: the delay policy as a table, and the per-environment
bookkeeping that holds a failing environment's actions in a real plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotkeeper.daemon.backoff import BackOffPolicy, EnvironmentBackOff
from slotkeeper.model import DesiredState, EnvironmentSpec, RecordedState
from slotkeeper.plan import Plan, PlanOptions, diff
from tests.helpers import image

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("base", "maximum", "failures", "delay"),
    [
        (5, 600, 0, 0),
        (5, 600, -1, 0),
        (5, 600, 1, 5),
        (5, 600, 2, 10),
        (5, 600, 3, 20),
        (5, 600, 7, 320),
        (5, 600, 8, 600),  # 640, capped
        (5, 600, 9, 600),
        (5, 600, 5_000, 600),  # no overflow, however long the failures go on
        (10, 15, 1, 10),
        (10, 15, 2, 15),
        (0.5, 600, 3, 2),
    ],
)
def test_the_delay_doubles_from_the_base_up_to_the_maximum(
    base: float, maximum: float, failures: int, delay: float
) -> None:
    """delay = base * 2**(failures - 1), at most the maximum; none before a failure."""
    assert BackOffPolicy(base, maximum).delay(failures) == delay


def two_environments(**production: Any) -> Plan:
    """The plan deploying production/api and staging/web into an empty ledger."""
    desired = DesiredState(
        environments={
            "production": EnvironmentSpec.model_validate(
                {"slots": {"api": {"artifact": image()}}, **production}
            ),
            "staging": EnvironmentSpec.model_validate({"slots": {"web": {"artifact": image()}}}),
        },
        targets={},
    )
    recorded = RecordedState(lineage="00000000-0000-0000-0000-000000000001", serial=0)
    return diff(desired, recorded, now=NOW, options=PlanOptions())


def blocked(plan: Plan) -> dict[str, str | None]:
    return {action.label: action.blocked for action in plan.actions}


def test_a_failing_environment_waits_and_the_others_go_on() -> None:
    """After a failure, production's actions are held until its retry time (the others are
    not); once the time has come they run again; the next failure waits twice as long."""
    now = [NOW]
    backoff = EnvironmentBackOff(BackOffPolicy(10, 600), clock=lambda: now[0])
    plan = two_environments()
    assert backoff.block(plan) is plan  # nothing failed yet

    backoff.record(["production", "staging"], failed={"production"})
    now[0] += timedelta(seconds=9)
    assert blocked(backoff.block(plan)) == {
        "production/api": "backing off after failures until 12:00:10Z",
        "staging/web": None,
    }
    now[0] += timedelta(seconds=1)  # 12:00:10: the wait is over
    assert blocked(backoff.block(plan)) == {"production/api": None, "staging/web": None}

    backoff.record(["production", "staging"], failed={"production"})
    assert backoff.failures("production") == 2
    assert blocked(backoff.block(plan))["production/api"] == (
        "backing off after failures until 12:00:30Z"
    )


def test_an_environment_starts_afresh_once_it_waited_and_did_not_fail() -> None:
    """Failures in a row are forgotten after a reconcile without failure that came once the
    wait was over; not before (a reconcile that held the environment proved nothing)."""
    now = [NOW]
    backoff = EnvironmentBackOff(BackOffPolicy(10, 600), clock=lambda: now[0])
    backoff.record(["production"], failed={"production"})
    backoff.record(["production"], failed={"production"})
    now[0] += timedelta(seconds=5)
    backoff.record([], failed=set())  # still waiting: not forgotten
    assert backoff.failures("production") == 2
    now[0] += timedelta(seconds=20)
    backoff.record([], failed=set())  # waited, and no failure since
    assert backoff.failures("production") == 0
    backoff.record(["production"], failed={"production"})
    assert backoff.failures("production") == 1


def test_an_action_held_for_its_own_reason_keeps_it() -> None:
    """A frozen environment's actions keep "frozen until …", not the back-off's reason."""
    now = [NOW]
    backoff = EnvironmentBackOff(BackOffPolicy(10, 600), clock=lambda: now[0])
    frozen = two_environments(
        freeze=[{"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}]
    )
    backoff.record(["production"], failed={"production"})
    assert blocked(backoff.block(frozen))["production/api"] == "frozen until 2099-01-01 00:00:00Z"
