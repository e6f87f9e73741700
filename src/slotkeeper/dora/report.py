"""The delivery metrics report: which deployments, grouped how, with their bands, as a document.

``slotkeeper dora`` prints it (``--json``: this document; else a table), the dashboard draws it
and the gauges export it. Every figure carries its sample size, and every failure the record ids
behind it, so that a number can be explained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from slotkeeper.dora.bands import (
    REPORT,
    failure_rate_band,
    frequency_band,
    lead_time_band,
    recovery_band,
)
from slotkeeper.dora.metrics import (
    Deployment,
    Figures,
    Judgement,
    Rules,
    figures,
    judge,
    median,
    p90,
)
from slotkeeper.ledger.base import DeliveryRow
from slotkeeper.model import Artifact, fix_kind, is_fix, timestamp

Grouping = Literal["environment", "slot", "week"]
#: the groupings by name (``dora --by``)
GROUPINGS: dict[str, Grouping] = {"environment": "environment", "slot": "slot", "week": "week"}


def identity(artifact: Artifact) -> str:
    """What "the same artifact" means: the same digest, or the same name and version when there
    is no digest."""
    return artifact.digest or f"{artifact.name}@{artifact.version}"


def by_environment(rows: Iterable[DeliveryRow]) -> dict[str, list[DeliveryRow]]:
    """The rows of each environment: a report per environment reads its own rows only."""
    found: dict[str, list[DeliveryRow]] = {}
    for row in rows:
        found.setdefault(row.record.environment, []).append(row)
    return found


def deployment(row: DeliveryRow) -> Deployment:
    """A ledger record as the metrics see it."""
    record = row.record
    commits = row.commits
    marked = is_fix(record.annotations) or any(fix_kind(c.subject) for c in commits or ())
    return Deployment(
        record=record.id,
        environment=record.environment,
        slot=record.slot,
        at=record.created_at,
        artifact=identity(record.artifact),
        replaced=identity(row.replaced) if row.replaced is not None else None,
        fix=marked,
        target_failed=row.target_failed,
        commit_times=tuple(c.committed_at for c in commits) if commits is not None else None,
    )


@dataclass(frozen=True)
class Query:
    """What to measure: the environments (and slots), the period and the grouping."""

    environments: tuple[str, ...]
    since: datetime
    until: datetime
    #: (environment, slot) pairs to keep; empty: every slot of the environments
    slots: tuple[tuple[str, str], ...] = ()
    by: Grouping | None = None
    rules: Rules = field(default_factory=Rules)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def metrics_document(
    found: Figures, verdicts: dict[int, Judgement], by_record: dict[int, Deployment]
) -> dict[str, Any]:
    """One group's figures: each with its sample size, band, and the records behind it."""
    lead_median = median(found.lead_times)
    recovery_median = median(found.recoveries)
    per_day = found.per_day
    return {
        "deployment_frequency": {
            "deployments": found.deployments,
            "days": round(found.days, 3),
            "per_day": _rate(per_day),
            "per_week": _rate(per_day * 7 if per_day is not None else None),
            "band": frequency_band(per_day).value if per_day is not None else None,
        },
        "lead_time": {
            "commits": len(found.lead_times),
            "unknown_deployments": found.unknown_lead_time,
            "median_seconds": _seconds(lead_median),
            "p90_seconds": _seconds(p90(found.lead_times)),
            "band": lead_time_band(lead_median).value if lead_median is not None else None,
        },
        "change_failure_rate": {
            "deployments": found.deployments,
            "failed": len(found.failed),
            "rate": _rate(found.failure_rate),
            "band": (
                failure_rate_band(found.failure_rate).value
                if found.failure_rate is not None
                else None
            ),
            "failures": [
                {
                    "record": record,
                    "environment": by_record[record].environment,
                    "slot": by_record[record].slot,
                    "at": timestamp(by_record[record].at),
                    "reasons": list(verdicts[record].failed),
                    "undone_by": verdicts[record].undone_by,
                    "recovered_by": verdicts[record].recovered_by,
                }
                for record in found.failed
            ],
        },
        "recovery_time": {
            "failures": len(found.failed),
            "recovered": len(found.recoveries),
            "unrecovered": list(found.unrecovered),
            "median_seconds": _seconds(recovery_median),
            "p90_seconds": _seconds(p90(found.recoveries)),
            "band": recovery_band(recovery_median).value if recovery_median is not None else None,
        },
        "rework_rate": {
            "deployments": found.deployments,
            "rework": len(found.rework),
            "rate": _rate(found.rework_rate),
            "records": list(found.rework),
        },
    }


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _weeks(since: datetime, until: datetime) -> list[tuple[str, datetime, datetime]]:
    """The ISO weeks that meet [since, until), each clipped to it."""
    start = (since - timedelta(days=since.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    weeks = []
    while start < until:
        end = start + timedelta(days=7)
        weeks.append((_week(start), max(start, since), min(end, until)))
        start = end
    return weeks


def report(rows: Iterable[DeliveryRow], query: Query) -> dict[str, Any]:
    """The report of ``query`` over the ledger's ``rows`` (every record of the environments up
    to the end of the period, so that a deployment's later history can judge it)."""
    wanted = set(query.slots)
    every = [
        deployment(row)
        for row in rows
        if row.record.environment in query.environments
        and (not wanted or (row.record.environment, row.record.slot) in wanted)
    ]
    verdicts = judge(every, query.rules)
    by_record = {d.record: d for d in every}
    overall = figures(every, verdicts, since=query.since, until=query.until)
    document: dict[str, Any] = {
        "report": REPORT,
        "since": timestamp(query.since),
        "until": timestamp(query.until),
        "environments": list(query.environments),
        "slots": [f"{e}/{s}" for e, s in query.slots],
        "rules": {
            "rollback_window_seconds": _seconds(query.rules.rollback),
            "fix_window_seconds": _seconds(query.rules.fix),
            "target_failures": query.rules.target,
        },
        "metrics": metrics_document(overall, verdicts, by_record),
        "weekly": [
            {
                "week": name,
                **_weekly(figures(every, verdicts, since=start, until=end)),
            }
            for name, start, end in _weeks(query.since, query.until)
        ],
        "groups": [],
    }
    if query.by is not None:
        document["by"] = query.by
        document["groups"] = [
            {"group": name, "metrics": metrics_document(found, verdicts, by_record)}
            for name, found in _groups(every, verdicts, query)
        ]
    return document


def _weekly(found: Figures) -> dict[str, Any]:
    return {
        "deployments": found.deployments,
        "failed": len(found.failed),
        "change_failure_rate": _rate(found.failure_rate),
        "median_lead_time_seconds": _seconds(median(found.lead_times)),
    }


def _groups(
    every: Sequence[Deployment], verdicts: dict[int, Judgement], query: Query
) -> list[tuple[str, Figures]]:
    if query.by == "week":
        return [
            (name, figures(every, verdicts, since=start, until=end))
            for name, start, end in _weeks(query.since, query.until)
        ]
    key = (
        (lambda d: d.environment)
        if query.by == "environment"
        else (lambda d: f"{d.environment}/{d.slot}")
    )
    names = sorted({key(d) for d in every if query.since <= d.at < query.until})
    return [
        (
            name,
            figures(
                [d for d in every if key(d) == name], verdicts, since=query.since, until=query.until
            ),
        )
        for name in names
    ]
