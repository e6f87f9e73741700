"""The whole pipeline in one place: load -> read -> plan -> execute -> record.

The CLI's ``apply`` and (later) the daemon call :func:`reconcile`; ``confirm`` lets the CLI show
the plan and ask before anything is written, while the ledger's writer lock is held so the plan
it shows is the plan it applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slotkeeper.execute import ApplyResult, Clock, ProgressHook, execute
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import Ledger
from slotkeeper.manifests import load_manifests
from slotkeeper.plan import Plan, PlanOptions, plan
from slotkeeper.sources import git_revision


@dataclass(frozen=True)
class Reconciliation:
    plan: Plan
    result: ApplyResult | None


def make_plan(manifests: Path, ledger: Ledger, *, options: PlanOptions, clock: Clock) -> Plan:
    """Load the manifests and the recorded state, and plan (no writes, no lock)."""
    desired = load_manifests(manifests)
    return plan(
        desired,
        ledger.read_state(),
        now=clock(),
        options=options,
        revision=git_revision(manifests),
    )


def reconcile(
    manifests: Path,
    ledger: Ledger,
    *,
    options: PlanOptions,
    clock: Clock,
    actor: str,
    sink: SecretSink,
    lock_timeout: float,
    confirm: Callable[[Plan], bool] = lambda _: True,
    select: Callable[[Plan], Plan] = lambda p: p,
    on_result: ProgressHook | None = None,
) -> Reconciliation:
    """Converge the ledger on the manifests; ``select`` may narrow the plan (``keys rotate``)."""
    desired = load_manifests(manifests)  # load: a bad manifest stops here, nothing written
    revision = git_revision(manifests)
    with ledger.writer(timeout=lock_timeout):
        recorded = ledger.read_state()  # read
        the_plan = select(
            plan(desired, recorded, now=clock(), options=options, revision=revision)  # plan
        )
        if not confirm(the_plan):
            return Reconciliation(the_plan, None)
        result = execute(  # execute and record
            the_plan, ledger, clock=clock, actor=actor, sink=sink, on_result=on_result
        )
    return Reconciliation(the_plan, result)


def apply_saved(
    the_plan: Plan,
    ledger: Ledger,
    *,
    clock: Clock,
    actor: str,
    sink: SecretSink,
    lock_timeout: float,
    on_result: ProgressHook | None = None,
) -> ApplyResult:
    """Apply a saved plan exactly; refused as stale when the ledger moved since it was made."""
    with ledger.writer(timeout=lock_timeout):
        return execute(the_plan, ledger, clock=clock, actor=actor, sink=sink, on_result=on_result)
