"""Invariants of plan + execute over random manifest histories, on a real SQLite ledger."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotkeeper.execute import execute
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.model import DesiredState, EnvironmentSpec, RecordStatus
from slotkeeper.plan import PlanOptions, diff
from tests.conftest import postgres_schema_url

ENVIRONMENTS = ("production", "staging", "pr-1")
SLOTS = ("api", "worker", "web")
VERSIONS = ("v1", "v2", "v3")
ALLOW_ALL = PlanOptions(allow_decommission=True, allow_mass_decommission=True, allow_empty=True)

# One manifest revision: for each environment, maybe absent, else slot -> version (or absent).
revisions = st.lists(
    st.fixed_dictionaries(
        {
            env: st.one_of(
                st.none(),
                st.dictionaries(st.sampled_from(SLOTS), st.sampled_from(VERSIONS), max_size=3),
            )
            for env in ENVIRONMENTS
        }
    ),
    min_size=1,
    max_size=6,
)


def desired_state(revision: dict[str, dict[str, str] | None]) -> DesiredState:
    environments = {}
    for name, slots in revision.items():
        if slots is None:
            continue
        environments[name] = EnvironmentSpec.model_validate(
            {
                "slots": {
                    slot: {"artifact": {"kind": "CONTAINER_IMAGE", "name": slot, "version": v}}
                    for slot, v in slots.items()
                }
            }
        )
    return DesiredState(environments=environments, targets={})


def all_records(ledger: Ledger) -> dict[int, tuple[str, str, str]]:
    return {
        r.id: (r.environment, r.slot, r.artifact.version or "")
        for env in ENVIRONMENTS
        for r in ledger.history(env)
    }


@contextmanager
def fresh_ledger_url(backend: str) -> Iterator[str]:
    if backend == "postgres":
        urls = postgres_schema_url()
        try:
            yield next(urls)
        finally:
            urls.close()
    else:
        with tempfile.TemporaryDirectory() as scratch:
            yield f"sqlite:///{scratch}/state.db"


@pytest.mark.parametrize(
    ("backend", "examples"), [("sqlite", 100), ("postgres", 25)], ids=["sqlite", "postgres"]
)
def test_random_histories_converge_and_keep_history(backend: str, examples: int) -> None:
    """After every apply: one DEPLOYED per declared slot, exactly what is declared; every
    SUPERSEDED points at its successor; re-plan is empty; no record ever disappears."""
    settings(max_examples=examples, deadline=None)(given(history=revisions)(check_history))(
        backend=backend
    )


def check_history(history: list[dict[str, dict[str, str] | None]], backend: str) -> None:
    clock_start = datetime(2026, 1, 1, tzinfo=UTC)
    with fresh_ledger_url(backend) as url:
        ledger = open_ledger(url, now=clock_start)
        assert ledger.try_lead()  # state is written by the writer
        sink = SecretSink(Path(tempfile.gettempdir()) / "slotkeeper-property-secrets")
        seen: dict[int, tuple[str, str, str]] = {}
        try:
            for step, revision in enumerate(history):
                now = clock_start + timedelta(hours=step)
                wanted = desired_state(revision)
                plan = diff(wanted, ledger.read_state(), now=now, options=ALLOW_ALL)
                result = execute(plan, ledger, clock=lambda now=now: now, actor="t", sink=sink)
                assert result.ok

                recorded = ledger.read_state()
                declared = {
                    (env, slot): version
                    for env, slots in revision.items()
                    if slots is not None
                    for slot, version in slots.items()
                }
                assert {k: r.artifact.version for k, r in recorded.deployed.items()} == declared

                records = all_records(ledger)
                assert seen.items() <= records.items(), "a record disappeared or changed identity"
                seen = records
                for env in ENVIRONMENTS:
                    per_slot: dict[str, int] = {}
                    for r in ledger.history(env):
                        if r.status is RecordStatus.DEPLOYED:
                            per_slot[r.slot] = per_slot.get(r.slot, 0) + 1
                        if r.status is RecordStatus.SUPERSEDED:
                            assert r.superseded_by is not None
                            successor = records[r.superseded_by]
                            assert successor[:2] == (r.environment, r.slot)
                        else:
                            assert r.superseded_by is None
                    assert all(count == 1 for count in per_slot.values())

                again = diff(wanted, recorded, now=now, options=ALLOW_ALL)
                assert again.actions == ()
                assert recorded.serial == sum(1 for r in range(step + 1) if _changed(history, r))
        finally:
            ledger.close()


def _changed(history: list[dict[str, dict[str, str] | None]], index: int) -> bool:
    """Whether revision ``index`` differs from the one before it (the serial moves only then)."""
    previous = (
        desired_state(history[index - 1])
        if index > 0
        else DesiredState(environments={}, targets={})
    )
    current = desired_state(history[index])

    def slots(state: DesiredState) -> dict[tuple[str, str], object]:
        return {
            (env, slot): spec.artifact
            for env, environment in state.environments.items()
            for slot, spec in environment.slots.items()
        }

    return slots(previous) != slots(current)
