"""The daemon's Prometheus figures (``/metrics``), each set from what one step just learnt.

The metrics themselves are declared in ``observability``; this module says when they move:
after an election, after the manifests are loaded, for each action of a reconcile, and at its
end (with the ledger's slot and key figures, read once per reconcile rather than per scrape).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from slotkeeper import observability as obs
from slotkeeper.errors import SlotkeeperError
from slotkeeper.execute import ApplyResult
from slotkeeper.ledger import StateReads, Takeover
from slotkeeper.model import KeyStatus, RecordStatus
from slotkeeper.plan import Plan


def track_leader(leading: Callable[[], bool]) -> None:
    """``slotkeeper_leader`` is read at each scrape from ``leading`` (a local check)."""
    obs.LEADER.set_function(lambda: 1.0 if leading() else 0.0)


def elected(takeover: Takeover) -> None:
    """A lease acquired: its epoch, one more takeover, and how long the ledger had no writer."""
    obs.LEADER_EPOCH.set(takeover.epoch)
    obs.LEADER_TAKEOVERS.inc()
    if takeover.gap_seconds is not None:
        obs.TAKEOVER_SECONDS.observe(max(0.0, takeover.gap_seconds))


def manifests_loaded(broken_files: int) -> None:
    """Files that do not validate (alert when above 0: their last good version is in use)."""
    obs.MANIFESTS_INVALID.set(broken_files)


def actions_done(plan: Plan, result: ApplyResult) -> None:
    """Count each action and target call by type, environment, target and outcome."""
    by_id = {a.id: a for a in plan.actions}
    for item in result.results:
        action = by_id.get(item.action_id)
        obs.ACTIONS.labels(
            type=item.type.value,
            # every label starts with the environment: "production/api", "production/key:…"
            environment=action.environment if action else item.label.partition("/")[0],
            target=item.target or "ledger",
            result=item.outcome.value,
        ).inc()


def reconcile_finished(result: str, seconds: float) -> None:
    """One more reconcile of this result, and its duration; the time of the last success."""
    obs.RECONCILES.labels(result=result).inc()
    obs.RECONCILE_SECONDS.labels(result=result).observe(seconds)
    if result == "success":
        obs.LAST_SUCCESS.set(time.time())


def ledger_figures(ledger: StateReads, *, now: datetime) -> None:
    """Slots by status and the age of each active deploy key (unchanged when the ledger
    cannot be read now: the next reconcile sets them)."""
    try:
        counts = ledger.slot_counts()
        keys = ledger.keys()
    except SlotkeeperError:
        return
    for status in obs.SLOT_STATUSES:
        obs.SLOTS.labels(status=status).set(counts.get(RecordStatus(status), 0))
    for key in keys:
        if key.status is KeyStatus.ACTIVE:
            obs.KEY_AGE.labels(repository=key.repository, title=key.title).set(
                (now - key.created_at).total_seconds()
            )
