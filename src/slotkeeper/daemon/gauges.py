"""The daemon's Prometheus figures (``/metrics``), each set from what one step just learnt.

The metrics themselves are declared in ``slotkeeper.metrics``; this module says when they move:
after an election, after the manifests are loaded, for each action of a reconcile, and at its
end (with the ledger's slot and key figures, read once per reconcile rather than per scrape).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge

from slotkeeper import metrics
from slotkeeper.dora.metrics import Rules
from slotkeeper.dora.report import Query, by_environment, report
from slotkeeper.errors import SlotkeeperError
from slotkeeper.execute import ApplyResult
from slotkeeper.ledger import StateReads, Takeover
from slotkeeper.ledger.base import DeliveryReads
from slotkeeper.model import KeyStatus, RecordStatus
from slotkeeper.plan import Plan


def track_leader(leading: Callable[[], bool]) -> None:
    """``slotkeeper_leader`` is read at each scrape from ``leading`` (a local check)."""
    metrics.LEADER.set_function(lambda: 1.0 if leading() else 0.0)


def elected(takeover: Takeover) -> None:
    """A lease acquired: its epoch, one more takeover, and how long the ledger had no writer."""
    metrics.LEADER_EPOCH.set(takeover.epoch)
    metrics.LEADER_TAKEOVERS.inc()
    if takeover.gap_seconds is not None:
        metrics.TAKEOVER_SECONDS.observe(max(0.0, takeover.gap_seconds))


def manifests_loaded(broken_files: int) -> None:
    """Files that do not validate (alert when above 0: their last good version is in use)."""
    metrics.MANIFESTS_INVALID.set(broken_files)


def actions_done(plan: Plan, result: ApplyResult) -> None:
    """Count each action and target call by type, environment, target and outcome."""
    by_id = {a.id: a for a in plan.actions}
    for item in result.results:
        action = by_id.get(item.action_id)
        metrics.ACTIONS.labels(
            type=item.type.value,
            # every label starts with the environment: "production/api", "production/key:…"
            environment=action.environment if action else item.label.partition("/")[0],
            target=item.target or "ledger",
            result=item.outcome.value,
        ).inc()


def reconcile_finished(result: str, seconds: float) -> None:
    """One more reconcile of this result, and its duration; the time of the last success."""
    metrics.RECONCILES.labels(result=result).inc()
    metrics.RECONCILE_SECONDS.labels(result=result).observe(seconds)
    if result == "success":
        metrics.LAST_SUCCESS.set(time.time())


def ledger_figures(ledger: StateReads, *, now: datetime) -> None:
    """Slots by status and the age of each active deploy key (unchanged when the ledger
    cannot be read now: the next reconcile sets them)."""
    try:
        counts = ledger.slot_counts()
        keys = ledger.keys()
    except SlotkeeperError:
        return
    for status in metrics.SLOT_STATUSES:
        metrics.SLOTS.labels(status=status).set(counts.get(RecordStatus(status), 0))
    for key in keys:
        if key.status is KeyStatus.ACTIVE:
            metrics.KEY_AGE.labels(repository=key.repository, title=key.title).set(
                (now - key.created_at).total_seconds()
            )


#: the windows of the delivery gauges, by label
DORA_WINDOWS = {"7d": timedelta(days=7), "30d": timedelta(days=30)}
#: how often the delivery gauges are computed again (they read a month of records)
DORA_EVERY = 300.0


class DeliveryGauges:
    """``slotkeeper_dora_*`` per environment and window, from the ledger, at most every
    ``every`` seconds (at the end of a reconcile)."""

    def __init__(
        self, *, every: float = DORA_EVERY, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = every
        self._monotonic = monotonic
        self._next = 0.0
        self._shown: set[tuple[str, str]] = set()

    def update(self, ledger: DeliveryReads, *, now: datetime) -> None:
        if self._monotonic() < self._next:
            return
        self._next = self._monotonic() + self._every
        rules = Rules()
        longest = max(DORA_WINDOWS.values())
        try:
            rows = by_environment(
                ledger.delivery_rows(environments=None, since=now - longest, until=now)
            )
        except SlotkeeperError:
            return
        shown: set[tuple[str, str]] = set()
        for window, length in DORA_WINDOWS.items():
            for environment, own in sorted(rows.items()):
                query = Query(
                    environments=(environment,), since=now - length, until=now, rules=rules
                )
                figures = report(own, query)["metrics"]
                self._set(environment, window, figures)
                shown.add((environment, window))
        for environment, window in self._shown - shown:
            self._clear(environment, window)
        self._shown = shown

    @staticmethod
    def _set(environment: str, window: str, figures: dict[str, Any]) -> None:
        labels = {"environment": environment, "window": window}
        metrics.DORA_DEPLOYMENTS.labels(**labels).set(
            figures["deployment_frequency"]["deployments"]
        )
        pairs = (
            (metrics.DORA_LEAD_TIME, figures["lead_time"]),
            (metrics.DORA_RECOVERY, figures["recovery_time"]),
        )
        for gauge, figure in pairs:
            for quantile, key in (("0.5", "median_seconds"), ("0.9", "p90_seconds")):
                _set_or_clear(gauge, figure[key], **labels, quantile=quantile)
        _set_or_clear(metrics.DORA_FAILURE_RATE, figures["change_failure_rate"]["rate"], **labels)
        _set_or_clear(metrics.DORA_REWORK_RATE, figures["rework_rate"]["rate"], **labels)

    @staticmethod
    def _clear(environment: str, window: str) -> None:
        labels = {"environment": environment, "window": window}
        metrics.DORA_DEPLOYMENTS.labels(**labels).set(0)
        for gauge in (metrics.DORA_LEAD_TIME, metrics.DORA_RECOVERY):
            for quantile in ("0.5", "0.9"):
                _set_or_clear(gauge, None, **labels, quantile=quantile)
        _set_or_clear(metrics.DORA_FAILURE_RATE, None, **labels)
        _set_or_clear(metrics.DORA_REWORK_RATE, None, **labels)


def _set_or_clear(gauge: Gauge, value: float | None, **labels: str) -> None:
    """A figure, or no series at all while there is no data (never a made-up 0); ``labels``
    in the gauge's own order."""
    if value is not None:
        gauge.labels(**labels).set(value)
        return
    with contextlib.suppress(KeyError):
        gauge.remove(*labels.values())
