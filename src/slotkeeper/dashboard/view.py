"""What the dashboard shows, as JSON-ready documents.

``overview`` is the document ``/status`` returns and the matrix, keys and last-reconcile pages
are rendered from, so the page and the API cannot disagree; ``slot_history`` is the same for a
slot's page (``/status/slots/ENV/SLOT``). Everything comes from the ledger, plus the manifests
when they are known (the daemon's last snapshot, or ``slotkeeper ui -m``) for what only they
say: a suspended environment or slot, a freeze window open now. Nothing secret is in the ledger,
and nothing else is read. Anyone who can reach the port reads these: a target's failure is
shown by its fixed reason (status code and phrase), never by the text the target answered,
which only ``slotkeeper status`` shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from slotkeeper import render
from slotkeeper.ledger import AuditLog, Event, LastGoodReads, PendingAction, StateReads
from slotkeeper.model import (
    DesiredState,
    KeyRecord,
    Record,
    RecordStatus,
    SyncSubject,
    TargetSync,
    parse_duration,
    timestamp,
)


class DashboardLedger(StateReads, AuditLog, LastGoodReads, Protocol):
    """What the dashboard reads of the ledger: reads only, so that the type checker proves no
    page (which anyone who can reach the port may ask for) writes to it."""

    #: shown on every page (without any credential: see ``slotkeeper.redact``)
    url: str


_APPLY_EVENTS = ("apply.started", "apply.finished")
#: the states a matrix cell can show, most telling first
STATES = ("suspended", "frozen", "blocked", "pending", "deployed", "decommissioned")


def _short_digest(digest: str | None) -> str | None:
    return digest.split(":", 1)[-1][:12] if digest else None


def _holds(desired: DesiredState | None, now: datetime) -> dict[tuple[str, str | None], str]:
    """(environment, slot or None) -> "suspended" or "frozen until ..." from the manifests."""
    holds: dict[tuple[str, str | None], str] = {}
    for name, spec in (desired.environments if desired else {}).items():
        until = spec.frozen_until(now)
        if spec.suspend:
            holds[name, None] = "suspended"
        elif until is not None:
            holds[name, None] = f"frozen until {until.strftime('%Y-%m-%d %H:%M:%SZ')}"
        for slot_name, slot in spec.slots.items():
            if slot.suspend:
                holds[name, slot_name] = "suspended"
    return holds


def _cell(
    record: Record,
    syncs: list[TargetSync],
    blocked: PendingAction | None,
    hold: str | None,
    now: datetime,
) -> dict[str, Any]:
    confirmed = all(sync.settled for sync in syncs)
    if record.status is RecordStatus.DECOMMISSIONED and blocked is None:
        hold = None  # a hold on a slot that is gone changes nothing: it shows as gone
    if hold == "suspended":
        state = "suspended"
    elif hold is not None:
        state = "frozen"
    elif blocked is not None:
        state = "blocked"
    elif record.status is RecordStatus.DECOMMISSIONED:
        state = "decommissioned"
    elif not confirmed:
        state = "pending"
    else:
        state = "deployed"
    since = record.created_at if record.status is RecordStatus.DEPLOYED else record.updated_at
    artifact = record.artifact
    return {
        "environment": record.environment,
        "slot": record.slot,
        "record_id": record.id,
        "status": record.status.value,
        "state": state,
        "artifact": artifact.name,
        "kind": artifact.kind.value,
        "version": artifact.version,
        "digest": _short_digest(artifact.digest),
        "since": timestamp(since),
        "age_seconds": max(0, int((now - since).total_seconds())),
        "confirmed": confirmed,
        "targets": {sync.target: sync.shown_status.value for sync in syncs},
        #: why a target failed, in fixed words (``error_reason``), for targets that did
        "errors": {sync.target: sync.public_error for sync in syncs if sync.public_error},
        "hold": hold,
        "blocked": render.pending_document(blocked) if blocked else None,
    }


def _key(key: KeyRecord, now: datetime) -> dict[str, Any]:
    age = now - key.created_at
    every = parse_duration(key.rotate_after) if key.rotate_after else None
    due = key.created_at + every if every else None
    return {
        "environment": key.environment,
        "repository": key.repository,
        "title": key.title,
        "fingerprint": key.fingerprint,
        "read_only": key.read_only,
        "created_at": timestamp(key.created_at),
        "age_days": round(age.total_seconds() / 86400, 1),
        "rotate_after": key.rotate_after,
        "next_rotation": timestamp(due) if due else None,
        "overdue": bool(due and due <= now),
        "used": round(age / every, 3) if every else None,
    }


def last_apply(events: Iterable[Event]) -> dict[str, Any] | None:
    """The newest apply as the ledger tells it (for ``slotkeeper ui``, which has no daemon
    memory): when it started and finished, by whom, at which revision, its counts."""
    started: Event | None = None
    finished: Event | None = None
    for event in events:
        if event.type == "apply.started":
            started, finished = event, None
        elif event.type == "apply.finished" and started and event.serial == started.serial:
            finished = event
    if started is None:
        return None
    return {
        "reason": "apply",
        "started_at": timestamp(started.at),
        "finished_at": timestamp(finished.at) if finished else None,
        "revision": started.revision,
        "result": (
            "running"
            if finished is None
            else "failure"
            if finished.detail.get("failed")
            else "success"
        ),
        "duration_seconds": (
            round((finished.at - started.at).total_seconds(), 3) if finished else None
        ),
        "counts": dict(finished.detail) if finished else {},
        "actor": started.actor,
        "serial": started.serial,
    }


def overview(
    ledger: DashboardLedger,
    *,
    now: datetime,
    desired: DesiredState | None = None,
    last_reconcile: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the matrix page shows (and ``/status`` returns)."""
    records = ledger.latest_records()
    pending = ledger.pending()
    syncs = render.syncs_by_subject(ledger.all_syncs(), SyncSubject.RECORD)
    managed = ledger.keys()
    holds = _holds(desired, now)
    blocked_at = {(p.environment, p.slot): p for p in pending if p.slot is not None}
    environments = sorted(
        {r.environment for r in records} | (set(desired.environments) if desired else set())
    )
    cells: dict[str, dict[str, Any]] = {}
    for record in records:
        hold = holds.get((record.environment, record.slot)) or holds.get((record.environment, None))
        cells.setdefault(record.slot, {})[record.environment] = _cell(
            record,
            syncs.get(record.id, []),
            blocked_at.get((record.environment, record.slot)),
            hold,
            now,
        )
    document: dict[str, Any] = {
        "generated_at": timestamp(now),
        "slots": render.status_document(records, pending, syncs, public=True),
        "matrix": {
            "environments": environments,
            "rows": [
                {"slot": slot, "cells": [cells[slot].get(env) for env in environments]}
                for slot in sorted(cells)
            ],
        },
        "states": dict.fromkeys(STATES, 0),
        "keys": [
            {
                **_key(key, now),
                "places": render.places_document(
                    key, ledger.sinks_of(key.repository, key.title), public=True
                ),
            }
            for key in managed
        ],
        "blocked": [
            {
                **render.pending_document(p),
                "environment": p.environment,
                "slot": p.slot,
                "key": p.key,
                "at": timestamp(p.at),
            }
            for p in pending
        ],
        # what only a person can let through, with the command to run
        "awaiting_approval": [
            {
                **render.pending_document(p),
                "environment": p.environment,
                "subject": p.subject,
                "at": timestamp(p.at),
            }
            for p in pending
            if p.awaiting
        ],
        "manifests": render.manifests_document(ledger.manifest_status()),
        "last_reconcile": last_reconcile,
        "last_apply": last_apply(ledger.events(types=_APPLY_EVENTS, last=2)),
    }
    for row in cells.values():
        for cell in row.values():
            document["states"][cell["state"]] += 1
    document.update(extra or {})
    return document


def slot_history(ledger: DashboardLedger, environment: str, slot: str) -> dict[str, Any] | None:
    """A slot's records newest first, each with who recorded it, at which revision, what it
    superseded, and what every target holds of it; None when the ledger never saw the slot.

    Only this slot's deploy events are read (the ledger filters them, by index): the audit log
    of a busy ledger is far longer than one slot's history."""
    records = ledger.history(environment, slot)
    if not records:
        return None
    syncs = {record.id: ledger.syncs_for(SyncSubject.RECORD, record.id) for record in records}
    deploys = ledger.events(types=("record.deployed",), environment=environment, slot=slot)
    deployed_by = {event.record_id: event for event in deploys}
    rows = render.history_document(records, syncs, public=True)
    revisions: dict[str, Any] = {}
    for row in rows:
        event = deployed_by.get(row["id"])
        row["actor"] = event.actor if event else None
        sha = row.get("revision")
        if sha and sha not in revisions:
            found = ledger.revision(sha)
            revisions[sha] = found.model_dump(mode="json") if found else {"sha": sha}
        row["revision_detail"] = revisions.get(sha) if sha else None
        row["supersedes"] = next(
            (other["id"] for other in rows if other.get("superseded_by") == row["id"]), None
        )
    return {"environment": environment, "slot": slot, "records": rows}
