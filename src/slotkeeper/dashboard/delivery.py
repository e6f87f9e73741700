"""The dashboard's delivery (DORA) page and a slot's failures: documents built from the
metrics report, with the weekly trend laid out as bars for an inline SVG drawn server-side (no
script, nothing loaded from elsewhere)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from slotkeeper.dora.metrics import Rules
from slotkeeper.dora.report import Query, by_environment, report
from slotkeeper.ledger.base import DeliveryReads

#: the period the page shows
PERIOD = timedelta(days=90)
#: the chart's size, in SVG user units
WIDTH, HEIGHT, GAP = 390, 80, 2


def trend_bars(weekly: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for the weekly trend: each week's deployments, the failed part of them darker."""
    highest = max((w["deployments"] for w in weekly), default=0) or 1
    width = WIDTH / max(len(weekly), 1)
    bars = []
    for index, week in enumerate(weekly):
        height = HEIGHT * week["deployments"] / highest
        failed = HEIGHT * week["failed"] / highest
        bars.append(
            {
                "x": round(index * width, 2),
                "width": round(max(width - GAP, 1), 2),
                "y": round(HEIGHT - height, 2),
                "height": round(height, 2),
                "failed_y": round(HEIGHT - failed, 2),
                "failed_height": round(failed, 2),
                "title": f"{week['week']}: {week['deployments']} deployments, "
                f"{week['failed']} failed",
            }
        )
    return {"width": WIDTH, "height": HEIGHT, "bars": bars, "highest": highest}


def delivery(ledger: DeliveryReads, *, now: datetime) -> dict[str, Any]:
    """The delivery page: every environment the ledger knows (production ones first), its
    figures over the last 90 days with their bands, and its weekly trend."""
    rules = Rules()
    known = sorted(ledger.environment_records(), key=lambda e: (not e.production, e.name))
    since = now - PERIOD
    rows = by_environment(
        ledger.delivery_rows(environments=[e.name for e in known], since=since, until=now)
    )
    environments = []
    for environment in known:
        query = Query(environments=(environment.name,), since=since, until=now, rules=rules)
        found = report(rows.get(environment.name, []), query)
        environments.append(
            {
                "name": environment.name,
                "production": environment.production,
                "metrics": found["metrics"],
                "weekly": found["weekly"],
                "chart": trend_bars(found["weekly"]),
            }
        )
    return {
        "report": "DORA, Accelerate State of DevOps Report 2024",
        "since": since.isoformat(),
        "until": now.isoformat(),
        "environments": environments,
    }


def slot_failures(
    ledger: DeliveryReads, environment: str, slot: str, *, now: datetime
) -> list[dict[str, Any]]:
    """Every failed deployment of one slot (ever), with why and what recovered it."""
    rows = ledger.delivery_rows(environments=[environment], slot=slot, until=now)
    start = min((row.record.created_at for row in rows), default=now)
    query = Query(environments=(environment,), slots=((environment, slot),), since=start, until=now)
    failures: list[dict[str, Any]] = report(rows, query)["metrics"]["change_failure_rate"][
        "failures"
    ]
    return failures
