"""What the dashboard shows, as JSON-ready documents.

``overview`` is the document ``/status`` returns and the matrix, keys and last-reconcile pages
are rendered from, so the page and the API cannot disagree; ``slot_history`` is the same for a
slot's page (``/status/slots/ENV/SLOT``). Everything comes from the ledger, plus the manifests
when they are known (the daemon's last snapshot, or ``slotkeeper ui -m``) for what only they
say: a suspended environment or slot, a freeze window open now, the version a slot waits to
deploy, where each environment is shown. Nothing secret is in the ledger, and nothing else is
read. Anyone who can reach the port reads these: a target's failure is shown by its fixed
reason (status code and phrase), never by the text the target answered, which only
``slotkeeper status`` shows. Links to the repositories are built by ``links``, from checked
parts only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from slotkeeper import render
from slotkeeper.actions import FREEZE
from slotkeeper.dashboard.links import commit_url, https_base, ref_url
from slotkeeper.ledger import AuditLog, Event, LastGoodReads, PendingAction, SlotHead, StateReads
from slotkeeper.ledger.base import DeliveryReads, PromotionReads
from slotkeeper.model import (
    Artifact,
    DesiredState,
    EnvironmentRecord,
    KeyRecord,
    Record,
    RecordStatus,
    SyncSubject,
    TargetSync,
    parse_duration,
    timestamp,
)


class DashboardLedger(StateReads, AuditLog, LastGoodReads, DeliveryReads, PromotionReads, Protocol):
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


def _declared(desired: DesiredState | None, environment: str, slot: str) -> Artifact | None:
    """What the manifests put in a slot, when they are known and declare it."""
    spec = desired.environments.get(environment) if desired else None
    declared = spec.slots.get(slot) if spec else None
    return declared.artifact if declared else None


def _waiting(declared: Artifact | None, record: Record | None) -> dict[str, Any] | None:
    """The version a slot waits to deploy: what the manifests declare there when the ledger
    records something else (or nothing, or a decommissioned record)."""
    if declared is None:
        return None
    if (
        record is not None
        and record.status is not RecordStatus.DECOMMISSIONED
        and record.artifact == declared
    ):
        return None
    return {"version": declared.version, "digest": _short_digest(declared.digest)}


def _state(hold: str | None, blocked: PendingAction | None) -> str | None:
    """A cell's state as the manifests' hold or the held action says it (None: neither does).

    A held action that awaits a person for more than a freeze window (a protected environment,
    the mass guard) is blocked: only an approval lets it through. One held by a freeze alone
    shows frozen, as every cell of a frozen environment does: the window ending lets it
    through as well (an approval that overrides the freeze only sooner)."""
    if hold == "suspended":
        return "suspended"
    if blocked is not None and blocked.awaiting and set(blocked.guards) - {FREEZE}:
        return "blocked"
    if hold is not None:
        return "frozen"
    return "blocked" if blocked is not None else None


def _held(blocked: PendingAction | None) -> dict[str, Any]:
    """The keys a cell has of its held action: the action, and whether it awaits a person."""
    return {
        "blocked": render.pending_document(blocked) if blocked else None,
        "awaiting_approval": bool(blocked and blocked.awaiting),
    }


def _head_state(head: SlotHead, blocked: PendingAction | None, hold: str | None) -> str:
    """A cell's state from its slot's newest record in brief (what ``_cell_state`` says of the
    whole record)."""
    if head.status is RecordStatus.DECOMMISSIONED and blocked is None:
        hold = None  # a hold on a slot that is gone changes nothing: it shows as gone
    return _state(hold, blocked) or (
        "decommissioned"
        if head.status is RecordStatus.DECOMMISSIONED
        else "pending"
        if not head.confirmed
        else "deployed"
    )


def _base_state(status: RecordStatus, confirmed: bool, hold: str | None) -> str:
    """The state of a cell no action is held in and no hold of its own is on: its slot's
    newest record's, or its environment's ``hold``."""
    return _head_state(SlotHead(0, "", "", status, confirmed), None, hold)


def _status_rows(ledger: DashboardLedger, pending: list[PendingAction]) -> list[dict[str, Any]]:
    """Every slot's status row (``/status``): every newest record and its sync rows."""
    syncs = render.syncs_by_subject(ledger.all_syncs(), SyncSubject.RECORD)
    return render.status_document(ledger.latest_records(), pending, syncs, public=True)


def _cell_state(
    record: Record, syncs: list[TargetSync], blocked: PendingAction | None, hold: str | None
) -> tuple[str, str | None, bool]:
    """A record's cell's state, the hold it shows and whether every target confirmed it:
    what the counts and the state filter need of every cell (the rest only for those shown)."""
    confirmed = all(sync.settled for sync in syncs)
    if record.status is RecordStatus.DECOMMISSIONED and blocked is None:
        hold = None  # a hold on a slot that is gone changes nothing: it shows as gone
    head = SlotHead(record.id, record.environment, record.slot, record.status, confirmed)
    state = _head_state(head, blocked, hold)
    return state, hold, confirmed


def _cell(
    record: Record,
    syncs: list[TargetSync],
    blocked: PendingAction | None,
    hold: str | None,
    waiting: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    state, hold, confirmed = _cell_state(record, syncs, blocked, hold)
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
        **_held(blocked),
        "waiting": waiting,
    }


def _shown_cell(
    record: Record,
    syncs: list[TargetSync],
    blocked: PendingAction | None,
    hold: str | None,
    desired: DesiredState | None,
    now: datetime,
) -> dict[str, Any]:
    """A record's cell as a page shows it, with the version the manifests wait to deploy
    there: worked out only for the cells a view shows."""
    waiting = _waiting(_declared(desired, record.environment, record.slot), record)
    return _cell(record, syncs, blocked, hold, waiting, now)


def _first_deploy_cell(
    blocked: PendingAction,
    hold: str | None,
    declared: Artifact | None,
    now: datetime,
) -> dict[str, Any]:
    """The cell of a slot the ledger has no record of, whose first deploy is held: the state of
    its hold, no version, and (when the manifests are known) the version it waits to deploy."""
    return {
        "environment": blocked.environment,
        "slot": blocked.slot,
        "record_id": None,
        "status": None,
        "state": _state(hold, blocked),
        "artifact": declared.name if declared else None,
        "kind": declared.kind.value if declared else None,
        "version": None,
        "digest": None,
        "since": timestamp(blocked.at),
        "age_seconds": max(0, int((now - blocked.at).total_seconds())),
        "confirmed": True,
        "targets": {},
        "errors": {},
        "hold": hold,
        **_held(blocked),
        "waiting": _waiting(declared, None),
    }


def _columns(
    names: Iterable[str],
    desired: DesiredState | None,
    recorded: Callable[[], Mapping[str, EnvironmentRecord]],
) -> list[dict[str, Any]]:
    """The matrix's columns, in the order they are shown: by ``order`` (from the manifests),
    then those without one, production environments after the others, each group by name.
    Whether an environment is production or protected comes from the manifests when they
    declare it, else from the ledger's record of its last apply (``recorded``, read only then).
    """
    columns = []
    for name in set(names):
        spec = desired.environments.get(name) if desired else None
        if spec is not None:
            production, protected, order = spec.production, spec.protected, spec.order
        else:
            known = recorded().get(name)
            production = bool(known and known.production)
            protected = bool(known and known.protected)
            order = None
        columns.append(
            {"name": name, "production": production, "protected": protected, "order": order}
        )
    return sorted(
        columns,
        key=lambda c: (c["order"] is None, c["order"] or 0, c["production"], c["name"]),
    )


def _recorded_environments(ledger: DashboardLedger) -> Callable[[], dict[str, EnvironmentRecord]]:
    """The ledger's environment records, read once and only when first asked for."""
    read: list[dict[str, EnvironmentRecord]] = []

    def environments() -> dict[str, EnvironmentRecord]:
        if not read:
            read.append({record.name: record for record in ledger.environment_records()})
        return read[0]

    return environments


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


@dataclass(frozen=True)
class View:
    """Which part of the matrix a page shows: filters (an environment or slot name holding
    ``environment``/``slot``, a ``state``) and a window of it (``page`` of ``rows`` slots,
    ``window`` of ``columns`` environments), so a page of 10,000 slots stays small. The counts
    per state are always those of the whole set."""

    environment: str = ""
    slot: str = ""
    state: str = ""
    page: int = 1
    rows: int = 50
    window: int = 1
    columns: int = 10


#: a view that shows everything at once (``/status`` without a query, and the tests' reads)
WHOLE = View(rows=1_000_000, columns=1_000_000)


def _window(count: int, size: int, wanted: int) -> tuple[int, int, int]:
    """(page, pages, first index) of a window of ``size`` over ``count`` items; the page
    asked for, kept within what exists."""
    pages = max(1, -(-count // size))
    page = min(max(1, wanted), pages)
    return page, pages, (page - 1) * size


def overview(
    ledger: DashboardLedger,
    *,
    now: datetime,
    desired: DesiredState | None = None,
    last_reconcile: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    manifests_url: str | None = None,
    view: View = WHOLE,
    slots: bool = True,
) -> dict[str, Any]:
    """Everything the matrix page shows (and ``/status`` returns): the matrix as ``view``
    filters and windows it, the counts per state of the whole set, and (``slots``, for
    ``/status``) every slot's status row and every deploy key.

    ``manifests_url``: the web page of the manifests' repository (``https://github.com/acme/
    deploy``; a git remote URL is turned into it, see ``links.web_url``), which the revision
    of the last reconcile links to; without it, or when it is not an ``https://`` page, nothing
    links there."""
    pending = ledger.pending()
    holds = _holds(desired, now)
    blocked_at = {(p.environment, p.slot): p for p in pending if p.slot is not None}

    def hold_of(environment: str, slot: str) -> str | None:
        return holds.get((environment, slot)) or holds.get((environment, None))

    # The counts per state of the whole set, from the ledger's tally by environment (a hold on
    # an environment turns all of its slots), corrected for the few cells a held action or a
    # slot's own hold changes; a slot whose first deploy is held has no record but a cell.
    counts = dict.fromkeys(STATES, 0)
    names: set[str] = set(desired.environments if desired else ())
    for environment, status, confirmed, count in ledger.head_tally():
        names.add(environment)
        counts[_base_state(status, confirmed, holds.get((environment, None)))] += count
    special = set(blocked_at) | {(env, slot) for env, slot in holds if slot is not None}
    known = (
        {
            (head.environment, head.slot): head
            for head in ledger.slot_heads(environments={env for env, _ in special})
            if (head.environment, head.slot) in special
        }
        if special
        else {}
    )
    first_deploys: dict[tuple[str, str], dict[str, Any]] = {}
    for where in sorted(special):
        head = known.get(where)
        if head is not None:
            plain = _base_state(head.status, head.confirmed, holds.get((where[0], None)))
            counts[plain] -= 1
            counts[_head_state(head, blocked_at.get(where), hold_of(*where))] += 1
        elif (held := blocked_at.get(where)) is not None:
            first = _first_deploy_cell(held, hold_of(*where), _declared(desired, *where), now)
            first_deploys[where] = first
            counts[first["state"]] += 1
            names.add(where[0])

    columns = _columns(names, desired, _recorded_environments(ledger))
    wanted_env, wanted_slot = view.environment.lower(), view.slot.lower()
    columns = [column for column in columns if wanted_env in column["name"].lower()]
    window, windows, first_column = _window(len(columns), view.columns, view.window)
    columns = columns[first_column : first_column + view.columns]
    environments = [column["name"] for column in columns]

    # The cells of the environments shown, from their slots' newest records in brief; a row
    # is a slot with a cell there (of the state asked for, when one is).
    cells: dict[str, dict[str, str]] = {}
    record_of: dict[tuple[str, str], int] = {}
    for head in ledger.slot_heads(environments=environments) if environments else []:
        where = (head.environment, head.slot)
        cell = _head_state(head, blocked_at.get(where), hold_of(*where) if holds else None)
        cells.setdefault(head.slot, {})[head.environment] = cell
        record_of[where] = head.record_id
    for (environment, slot), first in first_deploys.items():
        if environment in environments:
            cells.setdefault(slot, {})[environment] = first["state"]
    shown_rows = [
        slot
        for slot in sorted(cells)
        if wanted_slot in slot.lower() and (not view.state or view.state in cells[slot].values())
    ]
    matched = len(shown_rows)
    page, pages, first_row = _window(matched, view.rows, view.page)
    shown_rows = shown_rows[first_row : first_row + view.rows]

    shown = [
        (environment, slot)
        for slot in shown_rows
        for environment in environments
        if (found := cells[slot].get(environment)) is not None
        and (not view.state or found == view.state)
    ]
    ids = [record_of[where] for where in shown if where in record_of]
    records = {record.id: record for record in ledger.records(ids)}
    syncs = render.syncs_by_subject(ledger.syncs_of(SyncSubject.RECORD, ids), SyncSubject.RECORD)
    built: dict[tuple[str, str], dict[str, Any]] = {}
    for where in shown:
        record = records.get(record_of.get(where, -1))
        if record is None:
            built[where] = first_deploys[where]
            continue
        built[where] = _shown_cell(
            record,
            syncs.get(record.id, []),
            blocked_at.get(where),
            hold_of(*where) if holds else None,
            desired,
            now,
        )

    base = https_base(manifests_url)
    applied = last_apply(ledger.events(types=_APPLY_EVENTS, last=2))
    latest = last_reconcile or applied
    document: dict[str, Any] = {
        "generated_at": timestamp(now),
        "slots": _status_rows(ledger, pending) if slots else [],
        "matrix": {
            "environments": environments,
            "columns": columns,
            "rows": [
                {"slot": slot, "cells": [built.get((env, slot)) for env in environments]}
                for slot in shown_rows
            ],
            "filter": {"environment": view.environment, "slot": view.slot, "state": view.state},
            "page": {"number": page, "of": pages, "rows": view.rows, "slots": matched},
            "window": {"number": window, "of": windows, "columns": view.columns},
        },
        "states": counts,
        "keys": _keys(ledger, now) if slots else [],
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
        "last_apply": applied,
        "manifests_url": base,
        #: the page of the revision the last reconcile panel shows, when it can be linked
        "last_revision_url": commit_url(base, latest.get("revision") if latest else None),
    }
    document.update(extra or {})
    return document


def keys_overview(ledger: DashboardLedger, *, now: datetime) -> dict[str, Any]:
    """What the deploy-keys page shows: the managed keys with where each is delivered (and the
    manifests' state for the banner), without the matrix's work over every slot."""
    return {
        "generated_at": timestamp(now),
        "keys": _keys(ledger, now),
        "manifests": render.manifests_document(ledger.manifest_status()),
    }


def _keys(ledger: DashboardLedger, now: datetime) -> list[dict[str, Any]]:
    """The managed keys, each with the places it is delivered to (read at once)."""
    sinks = ledger.all_sinks()
    return [
        {
            **_key(key, now),
            "places": render.places_document(
                key, sinks.get((key.repository, key.title), {}), public=True
            ),
        }
        for key in ledger.keys(include_retired=False)
    ]


def slot_history(
    ledger: DashboardLedger,
    environment: str,
    slot: str,
    *,
    desired: DesiredState | None = None,
    manifests_url: str | None = None,
) -> dict[str, Any] | None:
    """A slot's records newest first, each with who recorded it, at which revision, what it
    superseded, and what every target holds of it, and the action held in it (``pending``);
    None when the ledger never saw the slot and holds nothing for it.

    Each record's ``ref`` links to the environment's GitHub repository (from the manifests
    when they declare the environment, else from the ledger's record of it, read only then)
    and its revision to ``manifests_url`` (see ``overview``).

    Only this slot's deploy events are read (the ledger filters them, by index): the audit log
    of a busy ledger is far longer than one slot's history."""
    records = ledger.history(environment, slot)
    held = next(
        (p for p in ledger.pending() if (p.environment, p.slot) == (environment, slot)), None
    )
    if not records and held is None:
        return None
    syncs = {record.id: ledger.syncs_for(SyncSubject.RECORD, record.id) for record in records}
    deploys = (
        ledger.events(types=("record.deployed",), environment=environment, slot=slot)
        if records
        else []
    )
    deployed_by = {event.record_id: event for event in deploys}
    rows = render.history_document(records, syncs, public=True)
    repository = _repository(ledger, environment, desired) if any(r.ref for r in records) else None
    base = https_base(manifests_url)
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
        row["ref_url"] = ref_url(repository, row.get("ref"))
        row["revision_url"] = commit_url(base, sha)
    return {
        "environment": environment,
        "slot": slot,
        "manifests_url": base,
        "pending": {**render.pending_document(held), "at": timestamp(held.at)} if held else None,
        "records": rows,
    }


def _repository(
    ledger: DashboardLedger, environment: str, desired: DesiredState | None
) -> str | None:
    """``owner/repo`` of an environment: the manifests' when they declare it, else the one of
    its last apply the ledger remembers."""
    spec = desired.environments.get(environment) if desired else None
    if spec is not None:
        return spec.repository
    known = ledger.read_state().environments.get(environment)
    return known.repository if known else None
