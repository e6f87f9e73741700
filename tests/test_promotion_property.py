"""A property over random histories: an artifact never enters a promoted slot — by `promote`
(which writes only what the policy lets through), by a hand-edited manifest through the planner,
by a rollback, or by auto-promotion's choice — unless it was DEPLOYED upstream for the full soak,
not rolled back nor fixed there, and not held in the slot.

The histories run through the real pipeline (manifests written to a directory, loaded, planned
and applied on a SQLite ledger) with a clock the test moves; the oracle recomputes the rule
from the ledger's records alone, independently of slotkeeper.promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slotkeeper.daemon.promoter import Promoter
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.manifests import NO_TARGETS
from slotkeeper.model import Record, RecordStatus
from slotkeeper.plan import PlanOptions
from slotkeeper.promotion import candidates, decide, moves_between
from slotkeeper.reconcile import reconcile, snapshot
from tests.helpers import environment, image, write_manifests

SOAK = timedelta(hours=2)
START = datetime(2026, 11, 1, tzinfo=UTC)
VERSIONS = ("v1", "v2", "v3", "v4")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


class World:
    """staging and production (promoted from staging, soak 2 h), one slot `api` each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = Clock(START)
        self.ledger: Ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}", now=START)
        self.staging: str | None = None
        self.staging_fix = False
        self.production: str | None = None
        #: the last record id when each release was made (ids order records and releases)
        self.releases: list[int] = []

    def write(self) -> None:
        upstream = environment(
            "staging", {"api": image(version=self.staging)} if self.staging else {}
        )
        if self.staging_fix:
            upstream["spec"]["slots"]["api"]["annotations"] = {"fix": "true"}
        downstream = environment(
            "production",
            {"api": image(version=self.production)} if self.production else {},
            promotion={"from": "staging", "soak": "2h", "auto": True},
        )
        write_manifests(self.root / "m", upstream, downstream)

    def apply(self) -> None:
        self.write()
        reconcile(
            snapshot(self.root / "m", NO_TARGETS),
            self.ledger,
            options=PlanOptions(allow_decommission=True, allow_mass_decommission=True),
            clock=self.clock,
            actor="property",
            sink=SecretSink(self.root / "secrets"),
        )

    def records(self, environment: str) -> list[Record]:
        return sorted(self.ledger.history(environment, "api"), key=lambda r: r.id)

    def deployed(self, environment: str) -> str | None:
        current = self.ledger.read_state().deployed.get((environment, "api"))
        return current.artifact.version if current else None

    # -- the operators' moves --------------------------------------------------------------

    def step(self, move: tuple[str, Any]) -> None:
        kind, value = move
        if kind == "wait":
            self.clock.now += timedelta(minutes=value)
            self.apply()
        elif kind == "staging":
            self.staging, self.staging_fix = value
            self.apply()
        elif kind == "edit":  # a hand edit of production's manifest
            self.production = value
            self.apply()
        elif kind == "promote":  # `slotkeeper promote staging production`, never --force
            self.write()
            desired = snapshot(self.root / "m", NO_TARGETS).desired
            moves = moves_between(
                desired.environments, self.ledger.read_state().deployed, "staging", "production"
            )
            facts = self.ledger.promotion_evidence(candidates(moves))
            for found in decide(moves, desired.environments, facts, self.clock.now):
                if found.held is None:
                    self.production = found.artifact.version
            self.apply()
        elif kind == "rollback":  # `slotkeeper rollback production/api`
            records = self.records("production")
            if len(records) >= 2:
                self.production = records[-2].artifact.version
            self.apply()
        elif kind == "auto":  # what auto-promotion would propose, merged
            self.write()
            promoter = Promoter(None, None, self.ledger, clock=self.clock, may_write=lambda: True)
            for ready in promoter.ready(snapshot(self.root / "m", NO_TARGETS).desired):
                self.production = ready.artifact.version
            self.apply()
        elif kind == "release":
            released = self.ledger.release_holds(
                "production", "api", actor="property", reason="test", at=self.clock.now
            )
            if released:
                ids = [r.id for env in ("staging", "production") for r in self.records(env)]
                self.releases.append(max(ids, default=0))


def _failed_before(staging: list[Record], record: Record, entered: Record) -> bool:
    """Whether ``record``'s stint in staging ended badly before ``entered`` was made (record
    ids give the order: several records share a moment): its successor put back an artifact
    staging ran before it, or is marked a fix."""
    successor = next((r for r in staging if r.id == record.superseded_by), None)
    if successor is None or successor.id > entered.id:
        return False
    earlier = {_identity(r) for r in staging if r.id < record.id}
    rolled_back = _identity(successor) in earlier and _identity(successor) != _identity(record)
    return rolled_back or successor.annotations.get("fix") == "true"


def _identity(record: Record) -> tuple[str, str | None, str | None]:
    return (record.artifact.name, record.artifact.version, record.artifact.digest)


def _allowed(world: World, entered: Record) -> str | None:
    """Why ``entered`` (a production record) should not exist, or None."""
    staging = world.records("staging")
    at = entered.created_at
    stints = [r for r in staging if _identity(r) == _identity(entered) and r.id < entered.id]
    ready = False
    for stint in stints:
        successor = next((r for r in staging if r.id == stint.superseded_by), None)
        ended = successor.created_at if successor and successor.id < entered.id else None
        if stint.status is RecordStatus.DECOMMISSIONED and ended is None:
            ended = min(stint.updated_at, at)
        if _failed_before(staging, stint, entered):
            ready = False
        elif (ended or at) - stint.created_at >= SOAK:
            ready = True
    if not ready:
        return f"#{entered.id} {entered.artifact.version} entered without a full clean soak"
    production = world.records("production")
    for rolled in production:
        successor = next((r for r in production if r.id == rolled.superseded_by), None)
        if successor is None or successor.id > entered.id:
            continue
        earlier = {_identity(r) for r in production if r.id < rolled.id}
        if _identity(successor) in earlier and _identity(rolled) == _identity(entered):
            # a release made after the rollback and before the entry ends the hold
            released = any(successor.id <= after < entered.id for after in world.releases)
            if not released:
                return f"#{entered.id} {entered.artifact.version} entered while held"
    return None


MOVES = st.one_of(
    st.tuples(st.just("wait"), st.sampled_from((10, 45, 90, 150))),
    st.tuples(st.just("staging"), st.tuples(st.sampled_from(VERSIONS), st.booleans())),
    st.tuples(st.just("edit"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("promote"), st.none()),
    st.tuples(st.just("rollback"), st.none()),
    st.tuples(st.just("auto"), st.none()),
    st.tuples(st.just("release"), st.none()),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(MOVES, min_size=3, max_size=14))
@example(  # a rollback in production, then its artifact asked for again, by hand and by machine
    history=[
        ("staging", ("v1", False)),
        ("wait", 150),
        ("edit", "v1"),
        ("staging", ("v2", False)),
        ("wait", 150),
        ("promote", None),
        ("rollback", None),
        ("edit", "v2"),
        ("auto", None),
        ("promote", None),
        ("release", None),
        ("auto", None),
    ]
)
@example(  # rolled back and fixed in staging after a full soak
    history=[
        ("staging", ("v1", False)),
        ("wait", 150),
        ("staging", ("v2", False)),
        ("wait", 150),
        ("staging", ("v1", False)),
        ("edit", "v2"),
        ("staging", ("v3", False)),
        ("wait", 150),
        ("staging", ("v4", True)),
        ("edit", "v3"),
        ("auto", None),
    ]
)
def test_nothing_enters_production_without_a_clean_soak_and_no_hold(
    tmp_path_factory: Any, history: list[tuple[str, Any]]
) -> None:
    """Whatever the order of staging deploys (fixes among them), waits, hand edits, promotes,
    rollbacks, auto-promotions and releases: every production record that exists had, when it
    was made, a staging stint of its artifact that soaked 2 h and did not end badly before,
    and no rollback hold standing on it."""
    world = World(tmp_path_factory.mktemp("history"))
    try:
        for move in history:
            world.step(move)
        problems = [
            reason
            for entered in world.records("production")
            if (reason := _allowed(world, entered)) is not None
        ]
        assert problems == [], (history, problems)
    finally:
        world.ledger.close()
