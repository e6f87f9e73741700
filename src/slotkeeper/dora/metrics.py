"""Delivery metrics from a slot's deployments: pure, like the planner.

A *deployment* is a record slotkeeper made DEPLOYED (a new slot, or a new artifact superseding
the slot's record). Its slot's later deployments decide whether it failed, under three rules,
each a named setting (:class:`Rules`):

- ``rollback``: a later deployment of the slot within the window puts back the artifact this
  one replaced (the same digest; the same name and version when there is no digest). That later
  deployment is *rework* (a rollback).
- ``fix``: the slot's next deployment, within the window, is marked ``fix`` or ``hotfix`` (the
  slot's annotations, or a conventional-commit subject among the commits it brings). That next
  deployment is rework.
- ``target``: a target reported the deployment failed (Unkey ``FAILED``, a GitHub deployment
  status ``failure`` or ``error``).

A failed deployment *recovers* at the slot's next deployment that did not itself fail. A
deployment counts once, however many rules it breaks and however often its slot goes back and
forth. Lead time is, for every commit a deployment brings, its deployment time minus the
commit's time; a deployment whose commits are unknown is counted as unknown, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: the default window of the rollback and fix rules
WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Deployment:
    """One DEPLOYED record, as the metrics see it."""

    record: int
    environment: str
    slot: str
    at: datetime
    #: the artifact's identity: its digest, or ``name@version`` without one
    artifact: str
    #: the identity of the artifact of the record this one superseded (None for a new slot)
    replaced: str | None = None
    #: marked fix or hotfix (annotations, or a commit subject)
    fix: bool = False
    #: a target reported it failed
    target_failed: bool = False
    #: the times of the commits it brings; None when they could not be known
    commit_times: tuple[datetime, ...] | None = None


@dataclass(frozen=True)
class Rules:
    """Which rules make a deployment count as failed: a window (None turns the rule off)."""

    rollback: timedelta | None = WINDOW
    fix: timedelta | None = WINDOW
    target: bool = True

    @property
    def reach(self) -> timedelta:
        """How far after a period its deployments' judges may come."""
        return max((w for w in (self.rollback, self.fix) if w is not None), default=timedelta(0))


@dataclass
class Judgement:
    """What the slot's history says of one deployment."""

    failed: list[str] = field(default_factory=list)
    #: ``rollback`` or ``fix`` when this deployment was unplanned rework
    rework: str | None = None
    #: the deployment it was rolled back by or fixed by
    undone_by: int | None = None
    #: for a failed deployment: the next one of its slot that did not fail, and when
    recovered_by: int | None = None
    recovered_at: datetime | None = None


def judge(deployments: Iterable[Deployment], rules: Rules) -> dict[int, Judgement]:
    """Judge every deployment against the later deployments of its slot."""
    by_slot: dict[tuple[str, str], list[Deployment]] = {}
    for deployment in deployments:
        by_slot.setdefault((deployment.environment, deployment.slot), []).append(deployment)
    verdicts: dict[int, Judgement] = {}
    for history in by_slot.values():
        history.sort(key=lambda d: (d.at, d.record))
        for deployment in history:
            verdicts[deployment.record] = Judgement()
        for index, deployment in enumerate(history):
            verdict = verdicts[deployment.record]
            later = history[index + 1 :]
            if rules.rollback is not None and deployment.replaced is not None:
                back = next(
                    (
                        d
                        for d in later
                        if d.at - deployment.at <= rules.rollback
                        and d.artifact == deployment.replaced
                    ),
                    None,
                )
                if back is not None:
                    verdict.failed.append("rolled-back")
                    verdict.undone_by = back.record
                    verdicts[back.record].rework = "rollback"
            if rules.fix is not None and later:
                after = later[0]
                if after.fix and after.at - deployment.at <= rules.fix:
                    verdict.failed.append("fixed")
                    verdict.undone_by = verdict.undone_by or after.record
                    if verdicts[after.record].rework is None:
                        verdicts[after.record].rework = "fix"
            if rules.target and deployment.target_failed:
                verdict.failed.append("target-failed")
        for index, deployment in enumerate(history):
            verdict = verdicts[deployment.record]
            if verdict.failed:
                recovery = next(
                    (d for d in history[index + 1 :] if not verdicts[d.record].failed), None
                )
                if recovery is not None:
                    verdict.recovered_by = recovery.record
                    verdict.recovered_at = recovery.at
    return verdicts


def median(values: Sequence[timedelta]) -> timedelta | None:
    """The middle value (the mean of the two middle ones for an even count); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def p90(values: Sequence[timedelta]) -> timedelta | None:
    """The 90th percentile by nearest rank: the value 90 % of the sample is at or under."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Figures:
    """The metrics of one group of deployments over one period."""

    days: float
    deployments: int
    failed: tuple[int, ...]
    rework: tuple[int, ...]
    lead_times: tuple[timedelta, ...]
    unknown_lead_time: int
    recoveries: tuple[timedelta, ...]
    unrecovered: tuple[int, ...]

    @property
    def per_day(self) -> float | None:
        return self.deployments / self.days if self.deployments and self.days > 0 else None

    @property
    def failure_rate(self) -> float | None:
        return len(self.failed) / self.deployments if self.deployments else None

    @property
    def rework_rate(self) -> float | None:
        return len(self.rework) / self.deployments if self.deployments else None


def figures(
    deployments: Sequence[Deployment],
    verdicts: dict[int, Judgement],
    *,
    since: datetime,
    until: datetime,
) -> Figures:
    """The metrics of ``deployments`` made in [``since``, ``until``)."""
    inside = sorted(
        (d for d in deployments if since <= d.at < until), key=lambda d: (d.at, d.record)
    )
    failed = [d for d in inside if verdicts[d.record].failed]
    lead: list[timedelta] = []
    unknown = 0
    for deployment in inside:
        if deployment.commit_times is None:
            unknown += 1
            continue
        lead.extend(max(timedelta(0), deployment.at - t) for t in deployment.commit_times)
    recoveries = []
    unrecovered = []
    for deployment in failed:
        recovered = verdicts[deployment.record].recovered_at
        if recovered is None:
            unrecovered.append(deployment.record)
        else:
            recoveries.append(recovered - deployment.at)
    return Figures(
        days=(until - since).total_seconds() / 86400,
        deployments=len(inside),
        failed=tuple(d.record for d in failed),
        rework=tuple(d.record for d in inside if verdicts[d.record].rework),
        lead_times=tuple(lead),
        unknown_lead_time=unknown,
        recoveries=tuple(recoveries),
        unrecovered=tuple(unrecovered),
    )
