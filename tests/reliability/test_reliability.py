"""The quick version of ``make reliability``, run by ``make test``: 3 SIGKILLs on a 38-action
change set, one faults run on a few slots, and 3 HA rounds (one fault of each kind on the
leader of two replicas on PostgreSQL), with every invariant of the full run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.reliability.ha import KINDS, TAKEOVER_BOUND, HaFigures, ha_scenario
from tests.reliability.harness import (
    FAULT_KINDS,
    TOKEN,
    Figures,
    RecordingGitHub,
    Shape,
    check_fault_kinds,
    crash_scenario,
    faults_scenario,
    operations_scenario,
    write_report,
)
from tests.reliability.notify import NotifyFigures, kill_scenario
from tests.reliability.rotation import RotationFigures, rotation_scenario

# 2 environments x 12 slots: 8 superseded, 4 decommissioned, 6 new, 1 key rotated, each.
SMALL_CRASH = Shape(environments=2, slots=12, changed=8, removed=4, added=6)
SMALL_FAULTS = Shape(environments=1, slots=6, changed=3, removed=2, added=2)
SMALL_OPERATIONS = Shape(environments=3, slots=2, changed=0, removed=0, added=0)


def assert_clean(figures: Figures) -> None:
    assert figures.failures == []
    assert figures.duplicates == set()
    assert figures.lost == set()
    assert figures.leaks == set()
    assert figures.ok


def test_sigkilled_applies_converge_with_every_invariant(tmp_path: Path) -> None:
    """Three applies killed at seeded random writes; after every run the ledger and the fake
    GitHub agree, nothing is duplicated or lost, and no secret leaks."""
    figures = Figures()
    crash_scenario(tmp_path, SMALL_CRASH, kills=3, seed=7, figures=figures)
    assert figures.first_kills == 3 and figures.kills >= 3
    assert figures.change_set_actions == [38, 38]
    assert_clean(figures)


def test_faults_converge_within_the_reconcile_bound(tmp_path: Path) -> None:
    """5xx, timeouts, dropped connections, a secondary limit and an exhausted primary limit,
    each injected at least once: a few reconciles converge without a duplicate, and no log line
    carries a traceback."""
    figures = Figures()
    faults_scenario(
        tmp_path,
        SMALL_FAULTS,
        seed=7,
        figures=figures,
        secondary_limit=(4, 2.0),
    )
    assert all(figures.faults[kind] >= 1 for kind in FAULT_KINDS), figures.faults
    assert len(figures.reconciles) == 2
    assert max(figures.reconciles) <= 15
    assert_clean(figures)


def test_forced_faults_land_on_the_next_writes_in_order() -> None:
    """With every rate at zero, each forced kind is injected on the next write, in order (a
    read is left alone), and once the schedule is spent writes go through."""
    with RecordingGitHub() as gh:
        gh.add_repository("acme/web")
        gh.forced = ["5xx", "dropped connection", "timeout (stalled answer)"]
        url = f"{gh.base_url}/repos/acme/web/deployments"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        payload = {"ref": "main", "environment": "production", "required_contexts": []}
        with httpx.Client(headers=headers, timeout=5) as client:
            assert client.get(url).status_code == 200
            assert client.post(url, json=payload).status_code in (502, 503)
            assert gh.forced == ["dropped connection", "timeout (stalled answer)"]
            with pytest.raises(httpx.TransportError):
                client.post(url, json=payload)
            assert client.post(url, json=payload).is_success  # stalled for 0 s
            assert client.post(url, json=payload).is_success
    assert gh.forced == []
    assert gh.faults == Counter({"5xx": 1, "dropped connection": 1, "timeout (stalled answer)": 1})
    assert (gh.error_rate, gh.drop_rate, gh.stall_rate) == (0.0, 0.0, 0.0)


def test_a_faults_run_that_missed_a_kind_fails() -> None:
    """A faults run that never injected some kind fails, naming the kind missing."""
    figures = Figures()
    check_fault_kinds(Counter(dict.fromkeys(FAULT_KINDS, 1)), figures)
    assert figures.ok
    check_fault_kinds(Counter(dict.fromkeys(FAULT_KINDS - {"dropped connection"}, 2)), figures)
    assert not figures.ok
    assert figures.failures[0].startswith("no fault of kind dropped connection was injected")


def test_operations_never_retire_by_accident(tmp_path: Path) -> None:
    """A restart over a broken file, key renames and swaps, an empty checkout, an environment
    removed with its target, a saved plan across a freeze and a target down during an apply:
    nothing still wanted is retired, every ACTIVE key keeps its private file, and each
    converges afterwards."""
    figures = Figures()
    operations_scenario(tmp_path, SMALL_OPERATIONS, seed=7, figures=figures)
    assert figures.checks > 20
    assert_clean(figures)


def test_a_faulted_leader_is_replaced_and_writes_nothing_more(tmp_path: Path) -> None:
    """Two replicas on PostgreSQL; the leader killed, frozen and partitioned mid-apply, once
    each: the standby takes over within the lease, a retry period and slack every time and
    converges; the ex-leader makes no remote write and no ledger event after the fault;
    nothing is duplicated or lost; every deploy is told to the webhook once (again only when
    in flight at a fault)."""
    figures, told = HaFigures(), NotifyFigures()
    ha_scenario(tmp_path, rounds=3, seed=7, figures=figures, notify=told)
    assert figures.failures == []
    assert told.ok, told.as_json()
    assert told.expected["ha"] >= 4 * 20 and told.lost["ha"] == []
    assert figures.rounds == 3 and figures.takeovers == 3
    assert dict(figures.faults) == dict.fromkeys(KINDS, 1)
    assert figures.ex_leader_remote_writes == 0 and figures.ex_leader_ledger_events == 0
    assert figures.duplicates == set() and figures.lost == set()
    assert figures.max_takeover <= TAKEOVER_BOUND, figures.takeover_seconds
    assert figures.ok


def test_figures_report(tmp_path: Path) -> None:
    """The table and the JSON report carry the same figures; a failure makes the run fail."""
    figures = Figures(runs=3, applies=2, kills=1)
    figures.faults["5xx"] += 2
    figures.duplicates.add("record 1: 2 GitHub deployments")
    report = tmp_path / "reliability.json"
    write_report(figures, report)
    data = json.loads(report.read_text())
    assert data["runs"] == 3 and data["kills"] == 1
    assert data["faults_injected"] == {"5xx": 2}
    assert data["duplicates_found"] == 1 and data["records_lost"] == 0
    assert data["secrets_leaked"] == 0 and data["ok"] is False
    assert data["bad_inputs_tried"] == figures.bad_inputs_tried >= 0
    table = figures.table()
    assert "duplicates found" in table and "FAIL" in table


def test_the_ha_figures_go_under_their_key_and_fail_the_report(tmp_path: Path) -> None:
    """The HA figures are reported under "ha"; an ex-leader's write after the fault, or fewer
    rounds than asked, fails them and the whole report."""
    figures, ha = Figures(), HaFigures(rounds_asked=2, rounds=2)
    ha.faults["kill"] += 1
    ha.takeover_seconds = {"kill": [3.2], "freeze": [2.8, 3.4]}
    report = tmp_path / "reliability.json"
    write_report(figures, report, {"ha": ha})
    data = json.loads(report.read_text())
    assert data["ok"] is True and data["ha"]["ok"] is True
    assert data["ha"]["takeovers"] == 3 and data["ha"]["max_takeover_seconds"] == 3.4
    assert data["ha"]["median_takeover_seconds"] == 3.2
    assert data["ha"]["faults"] == {"kill": 1, "freeze": 0, "partition": 0}
    ha.ex_leader_remote_writes = 1
    write_report(figures, report, {"ha": ha})
    data = json.loads(report.read_text())
    assert data["ok"] is False and data["ha"]["ex_leader_writes_after_the_fault"] == 1
    assert "FAIL" in ha.table()
    assert not HaFigures(rounds_asked=21, rounds=20).ok


def test_a_rotation_killed_at_its_steps_never_leaves_a_consumer_with_a_dead_key(
    tmp_path: Path,
) -> None:
    """`keys rotate` delivering to Flux, Argo CD and Actions, SIGKILLed at a few of its steps
    (the full run: every step): at every request either fake received, each consumer held a
    registered key, and each round converges to one key held by all."""
    figures = RotationFigures()
    rotation_scenario(tmp_path, figures, steps=(2, 7, 12))
    assert figures.steps >= 12 and figures.kills >= 2
    assert figures.ok, (figures.violations, figures.failures)
    assert figures.checks > 50 and figures.rounds == 4


def test_a_sigkilled_daemon_tells_each_deploy_once(tmp_path: Path) -> None:
    """A daemon SIGKILLed three times while it applies and sends notifications: every deploy
    the ledger recorded reaches the webhook, none twice unless it was in flight at a kill."""
    figures = NotifyFigures()
    kill_scenario(tmp_path, kills=3, seed=11, figures=figures)
    assert figures.kills == 3
    assert figures.ok, figures.as_json()
    assert figures.expected["kill"] == figures.received["kill"] - figures.in_doubt["kill"]
