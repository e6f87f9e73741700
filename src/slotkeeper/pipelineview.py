"""The promotion pipelines for people and machines: ``status --promotion``'s table and JSON
document, which the dashboard's page shows too."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from slotkeeper.promotion import Stage
from slotkeeper.render import duration


def _soaked(stages: list[Stage], stage: Stage, now: datetime) -> float | None:
    """How long the upstream of ``stage`` has run what it runs, in seconds."""
    upstream = next((s for s in stages if s.environment == stage.upstream), None)
    if upstream is None or upstream.since is None:
        return None
    return (now - upstream.since).total_seconds()


def pipeline_document(pipelines: Mapping[str, list[Stage]], now: datetime) -> dict[str, Any]:
    """``{"slots": [{"slot", "stages": [{"environment", "artifact", "record", "since",
    "upstream", "upstream_soaked_seconds", "behind", "next": null | {"artifact", "from",
    "ready", "held"}}]}]}``."""
    slots = []
    for slot, stages in sorted(pipelines.items()):
        rows = []
        for stage in stages:
            move = stage.next
            rows.append(
                {
                    "environment": stage.environment,
                    "artifact": stage.artifact.model_dump(mode="json") if stage.artifact else None,
                    "record": stage.record,
                    "since": stage.since.isoformat() if stage.since else None,
                    "upstream": stage.upstream,
                    "upstream_soaked_seconds": _soaked(stages, stage, now),
                    "behind": stage.behind,
                    "next": None
                    if move is None
                    else {
                        "artifact": move.artifact.model_dump(mode="json"),
                        "from": move.source,
                        "ready": move.held is None,
                        "held": move.held,
                    },
                }
            )
        slots.append({"slot": slot, "stages": rows})
    return {"slots": slots}


def render_pipelines(pipelines: Mapping[str, list[Stage]], console: Console, now: datetime) -> None:
    """One row per slot and environment, in promotion order: what runs there, since when, and
    for an environment behind its upstream what a promotion would bring (ready, or held and
    why)."""
    if not pipelines:
        console.print(
            "No promotion: no environment declares spec.promotion (see docs/promotion.md)."
        )
        return
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for column in ("SLOT", "ENVIRONMENT", "ARTIFACT", "SINCE", "NEXT"):
        table.add_column(column)
    for slot, stages in sorted(pipelines.items()):
        for index, stage in enumerate(stages):
            since = _ago(stage.since, now) if stage.since else ""
            table.add_row(
                slot if index == 0 else "",
                stage.environment,
                stage.artifact.describe() if stage.artifact else "(none)",
                since,
                _next(stages, stage, now),
            )
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        console.out(line.rstrip(), highlight=False)


def _next(stages: list[Stage], stage: Stage, now: datetime) -> str:
    move = stage.next
    if stage.upstream is None:
        return ""
    if move is None:
        return f"= {stage.upstream}"
    soaked = _soaked(stages, stage, now)
    ran = f", {duration(soaked)} in {stage.upstream}" if soaked is not None else ""
    if move.held is None:
        return f"behind: {move.artifact.describe()} ready to promote{ran}"
    return f"behind: held: {move.held}"


def _ago(moment: datetime, now: datetime) -> str:
    return f"{duration((now - moment).total_seconds())} ago"
