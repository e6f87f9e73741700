"""Human and machine renderings of plans, apply results, status, history and keys.

Human output is aligned and coloured like ``terraform plan`` (rich honours ``NO_COLOR``); the JSON
documents are the contract for machines and are built here, in one place, from the same values.

The status, history and keys documents are made for one of two readers (``public``): the
operator at a terminal (the CLI), who gets each target's last error as the target adapter told
it; or anyone who can reach the daemon or ``slotkeeper ui`` (``/status``, the dashboard), who
gets only its fixed ``error_reason`` and the fixed words of what the target reported, never
text the target chose.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from slotkeeper.actions import (
    Action,
    ActionType,
    ApprovalState,
    DecommissionAction,
    DeployAction,
    SyncAction,
    approval_hint,
    approve_command,
    key_of,
    slot_of,
)
from slotkeeper.errors import ManifestErrors
from slotkeeper.ledger import Event, PendingAction
from slotkeeper.model import (
    Artifact,
    DesiredState,
    KeyRecord,
    ManifestStatus,
    Record,
    RecordStatus,
    SinkHolding,
    SyncStatus,
    SyncSubject,
    TargetSync,
    parse_duration,
    timestamp,
)
from slotkeeper.plan import Plan

if TYPE_CHECKING:  # a plan's output does not import the executor
    from slotkeeper.execute import ApplyResult

_SYMBOLS: dict[ActionType, tuple[str, str]] = {
    ActionType.CREATE_KEY: ("+", "green"),
    ActionType.ROTATE_KEY: ("~", "yellow"),
    ActionType.DEPLOY: ("+", "green"),
    ActionType.DECOMMISSION: ("-", "red"),
    ActionType.REVOKE_KEY: ("-", "red"),
    ActionType.SYNC: ("~", "cyan"),
}

_STATUS_STYLES = {
    RecordStatus.DEPLOYED: "green",
    RecordStatus.SUPERSEDED: "dim",
    RecordStatus.DECOMMISSIONED: "red",
}


def _grid() -> Table:
    return Table(box=None, show_header=True, header_style="bold", pad_edge=False)


def _print_table(console: Console, table: Table) -> None:
    """Print a table without the padding rich leaves at the end of each line."""
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        console.out(line.rstrip(), highlight=False)


def plural(count: int, noun: str) -> str:
    """``1 slot``, ``2 slots``, ``0 slots``: a count and its noun, in the right number."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _artifact(artifact: Artifact | None) -> str:
    return artifact.describe() if artifact is not None else ""


def _symbol(action: Action) -> tuple[str, str]:
    if action.blocked is not None:
        return ("!", "magenta")
    if isinstance(action, DeployAction) and action.supersedes is not None:
        return ("~", "yellow")
    return _SYMBOLS[action.type]


def _artifact_of(action: Action) -> Artifact | None:
    """The artifact a record's action (or a record's sync) concerns."""
    if isinstance(action, DeployAction | DecommissionAction | SyncAction):
        return action.artifact
    return None


def _where(action: Action) -> str:
    """``environment/slot``, or the environment alone for a key's action."""
    slot = slot_of(action)
    return f"{action.environment}/{slot}" if slot else action.environment


def _what(action: Action) -> str:
    """The key or artifact an action concerns (an orphan key by repository and remote id)."""
    key = key_of(action)
    if key is not None:
        return f"key {key.name}"
    if isinstance(action, SyncAction) and action.slot is None:
        return f"key {action.repository}#{action.remote_id}"
    return _artifact(_artifact_of(action))


#: a plan longer than this also says what it holds before listing it (a screen's worth)
SUMMARY_FIRST = 40


def render_plan(plan: Plan, console: Console) -> None:
    """Print a plan the way ``terraform plan`` does: one aligned line per action, then a
    summary; a plan longer than a screen gives its summary first too."""
    if not plan.actions:
        console.print(
            f"[green]No changes.[/] The ledger matches the manifests "
            f"({len(plan.unchanged)} slot{'s' if len(plan.unchanged) != 1 else ''} unchanged)."
        )
        return
    console.print("slotkeeper will perform the following actions:\n")
    if len(plan.actions) > SUMMARY_FIRST:
        console.print(summary_line(plan))
        console.print()
    rows: list[tuple[tuple[str, str], ...]] = []
    for action in plan.actions:
        symbol, style = _symbol(action)
        rows.append(
            (
                (f"  {symbol}", style),
                (action.type.value, style),
                (_where(action), "bold"),
                (_what(action), ""),
                (_detail(action), "magenta" if action.blocked else "dim"),
            )
        )
    write_aligned(console, rows)
    console.print()
    console.print(summary_line(plan))


def _detail(action: Action) -> str:
    """The last column of ``plan``: why, where it goes and what the plan notes; for a blocked
    action, only why it is blocked."""
    if action.blocked is not None:
        hint = _hint(action)
        return f"BLOCKED: {action.blocked}" + (f"; {hint}" if hint else "")
    if isinstance(action, SyncAction) and action.reported is not None:
        detail = f"{action.target} (nothing sent): {action.reason}"
    elif isinstance(action, SyncAction):
        detail = f"{action.target} -> {action.want.value}: {action.reason}"
    else:
        detail = action.reason
        if isinstance(action, DeployAction) and action.supersedes is not None:
            detail = f"{detail} (supersedes #{action.supersedes})"
        if action.approval is not None and action.approval.state is ApprovalState.APPROVED:
            detail = f"{detail} (approved by {action.approval.actor}, #{action.approval.decision})"
        if action.targets:
            detail = f"{detail} [{', '.join(action.targets)}]"
    notes = action.notes if isinstance(action, DeployAction | SyncAction) else ()
    return f"{detail} ({'; '.join(notes)})" if notes else detail


def _hint(action: Action) -> str | None:
    """The command that lets a held action through, when it waits for a person."""
    approval = action.approval
    return approval_hint(action.id, approval.state, approval.guards) if approval else None


def write_aligned(console: Console, rows: Sequence[tuple[tuple[str, str], ...]]) -> None:
    """Rows of (text, style) cells as aligned columns, two spaces apart, never wrapped, written
    straight to the console's file: a plan of 10,000 actions prints in milliseconds, where
    rich's layout of the same text takes seconds. Styles become escape codes only when the
    console writes colour (a terminal, without NO_COLOR)."""
    if not rows:
        return
    widths = [max(_cells(text) for text, _ in column) for column in zip(*rows, strict=True)]
    paint = _painter(console)
    last = len(widths) - 1
    lines: list[str] = []
    for row in rows:
        parts = [
            paint(text, style) + ("" if index == last else " " * (widths[index] - _cells(text)))
            for index, (text, style) in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
        if len(lines) == _LINES_AT_ONCE:  # a huge plan is never held as one more string
            console.file.write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def _cells(text: str) -> int:
    """The terminal cells ``text`` takes: its length when it is printable ASCII (what nearly
    every cell of a plan is; asked of rich for each of 10,000 rows, a fifth of the output's
    time), else what rich says (wide characters take two, control characters none)."""
    return len(text) if text.isascii() and text.isprintable() else cell_len(text)


#: lines written to the terminal in one write
_LINES_AT_ONCE = 1000


#: rich's names of colour systems (``Console.color_system``), to its enum's
_COLOR_SYSTEMS = {
    "standard": "STANDARD",
    "256": "EIGHT_BIT",
    "truecolor": "TRUECOLOR",
    "windows": "WINDOWS",
}


def _painter(console: Console) -> Callable[[str, str], str]:
    """``paint(text, style)``: the text in the console's colours, or as it is without them."""
    system = None if console.no_color else console.color_system
    if system is None:
        return lambda text, _style: text
    colours = ColorSystem[_COLOR_SYSTEMS[system]]

    @functools.cache
    def codes(style: str) -> tuple[str, str]:
        before, _, after = Style.parse(style).render("\0", color_system=colours).partition("\0")
        return before, after

    def paint(text: str, style: str) -> str:
        if not style or not text:
            return text
        before, after = codes(style)
        return f"{before}{text}{after}"

    return paint


def summary_line(plan: Plan) -> Text:
    s = plan.summary
    supersedes = sum(1 for a in plan.actions if isinstance(a, DeployAction) and a.supersedes)
    keys = s["create_key"] + s["rotate_key"] + s["revoke_key"]
    text = Text("Plan: ", style="bold")
    text.append(f"{s['deploy']} to deploy ({supersedes} superseding), ")
    text.append(f"{s['decommission']} to decommission, ")
    text.append(
        f"{keys} key change{'s' if keys != 1 else ''} "
        f"({s['create_key']} create, {s['rotate_key']} rotate, {s['revoke_key']} revoke)."
    )
    if s["sync"]:
        text.append(f" {s['sync']} target sync{'s' if s['sync'] != 1 else ''}.")
    if s["blocked"]:
        text.append(f" {s['blocked']} blocked", style="bold magenta")
        awaiting = sum(
            1 for a in plan.actions if a.approval and a.approval.state is ApprovalState.AWAITING
        )
        text.append(f" ({awaiting} awaiting approval)." if awaiting else ".", style="bold magenta")
    return text


def render_apply(result: ApplyResult, console: Console) -> None:
    from slotkeeper.execute import Outcome

    for item in result.results:
        if item.outcome is Outcome.BLOCKED and item.hint:
            console.print(f"[magenta]  blocked[/]  {item.type.value} {item.label}: {item.hint}")
        if item.outcome is Outcome.DEFERRED:
            console.print(f"[yellow]  deferred[/]  {item.type.value} {item.label}: {item.message}")
        if item.outcome is Outcome.FAILED:
            console.print(f"[red]  failed[/]  {item.type.value} {item.label}: {item.message}")
    applied = result.count(Outcome.APPLIED)
    failed = result.count(Outcome.FAILED)
    blocked = result.count(Outcome.BLOCKED)
    style = "red" if failed else "green"
    console.print(
        f"[bold {style}]Apply complete![/] {applied} applied, {failed} failed, "
        f"{blocked} blocked. Ledger serial {result.serial}."
    )
    for problem in result.problems:
        console.print(Text(f"  problem: {problem}", style="red"))
    deferred = result.count(Outcome.DEFERRED)
    if deferred:
        console.print(
            f"[yellow]{deferred} target call{'s' if deferred != 1 else ''} deferred[/] to the next "
            "reconcile (write budget)."
        )


def validate_document(outcome: DesiredState | ManifestErrors) -> dict[str, Any]:
    """What ``validate --json`` prints: the counts of what valid manifests declare, or every
    error of invalid ones (file, line, field path, message)."""
    if isinstance(outcome, ManifestErrors):
        return {
            "valid": False,
            "errors": [
                {"file": str(e.file), "line": e.line, "field": e.field, "message": e.message}
                for e in outcome.errors
            ],
        }
    specs = outcome.environments.values()
    return {
        "valid": True,
        "environments": len(outcome.environments),
        "slots": sum(len(spec.slots) for spec in specs),
        "deploy_keys": sum(len(spec.deploy_keys) for spec in specs),
        "targets": len(outcome.targets),
    }


def manifests_document(status: ManifestStatus | None) -> dict[str, Any]:
    """Whether the manifests loaded whole at the last reconcile; if not, which files are
    broken, why, and the revision whose broken files are not applied (their last good version
    stands in)."""
    if status is None:
        return {"state": "ok", "invalid_files": []}
    return {
        "state": "degraded",
        "since": status.at.isoformat(),
        "revision_held_back": status.revision,
        "invalid_files": [
            {"file": broken.file, "errors": list(broken.errors), "last_good": broken.last_good}
            for broken in status.broken
        ],
    }


def render_manifests_status(status: ManifestStatus | None, console: Console) -> None:
    if status is None:
        return
    at_revision = f" (revision {status.revision[:12]} held back)" if status.revision else ""
    console.print(
        Text(
            f"DEGRADED: {len(status.broken)} manifest file"
            f"{'s' if len(status.broken) != 1 else ''} invalid since {_when(status.at)}"
            f"{at_revision}; "
            "their last good version is used and nothing outside the environments of valid "
            "files is removed:",
            style="bold red",
        )
    )
    for broken in status.broken:
        for error in broken.errors:
            console.print(Text(f"  {error}", style="red"))
    console.print()


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON (``plan --json`` and plan files are this same document)."""
    return plan.model_dump(mode="json")


def syncs_by_subject(
    syncs: Iterable[TargetSync], subject: SyncSubject
) -> dict[int, list[TargetSync]]:
    """The sync rows of records (or keys) among ``syncs``, by record (or key) id, in the order
    given (the caller reads them from the ledger: rendering does no I/O)."""
    found: dict[int, list[TargetSync]] = {}
    for sync in syncs:
        if sync.subject is subject:
            found.setdefault(sync.subject_id, []).append(sync)
    return found


def _target_state(sync: TargetSync, *, public: bool) -> dict[str, Any]:
    state: dict[str, Any] = {
        "status": sync.shown_status.value,
        "wanted": sync.wanted.value,
        "remote_id": sync.remote_id,
        "remote_state": sync.remote_state.value if sync.remote_state else None,
        "attempts": sync.attempts,
        "error_reason": sync.public_error,
    }
    if not public:
        state["last_error"] = sync.last_error  # may quote the target's answer
    state["updated_at"] = timestamp(sync.updated_at)
    return state


def _target_states(syncs: list[TargetSync], *, public: bool) -> dict[str, dict[str, Any]]:
    return {sync.target: _target_state(sync, public=public) for sync in syncs}


#: the words a target reports as a sync's ``status`` detail that public pages show: Unkey's
#: deployment statuses, Chainloop's record statuses, GitHub's "already gone" (a fixed set: a
#: target answering something else, whoever runs it, is not quoted)
PUBLIC_STATUSES = frozenset(
    {
        # Unkey (DeploymentStatus)
        "UNSPECIFIED",
        "PENDING",
        "STARTING",
        "BUILDING",
        "DEPLOYING",
        "NETWORK",
        "FINALIZING",
        "READY",
        "FAILED",
        "SKIPPED",
        "AWAITING_APPROVAL",
        "STOPPED",
        "SUPERSEDED",
        "CANCELLED",
        # Chainloop (DeploymentStatus)
        "DEPLOYMENT_STATUS_UNSPECIFIED",
        "DEPLOYED",
        "DECOMMISSIONED",
        # GitHub: a deployment or key that was gone when it was to be retired
        "already gone",
    }
)


def public_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """What public pages show of what a target reported beyond an id: its status word when it
    is one of :data:`PUBLIC_STATUSES`, and nothing else (Unkey's error message and steps,
    hostnames, node ids are the target's own text: ``slotkeeper history`` shows them)."""
    status = detail.get("status")
    return {"status": status} if isinstance(status, str) and status in PUBLIC_STATUSES else {}


def _status_rows(
    records: list[Record], pending: list[PendingAction]
) -> list[tuple[str, str, Record | None, PendingAction | None]]:
    """(environment, slot, newest record, blocked action) for every slot ever recorded, and for
    every slot whose first deploy is blocked (no record yet), sorted."""
    by_slot = {(p.environment, p.slot): p for p in pending if p.slot is not None}
    rows: list[tuple[str, str, Record | None, PendingAction | None]] = [
        (r.environment, r.slot, r, by_slot.pop((r.environment, r.slot), None)) for r in records
    ]
    rows.extend((env, slot, None, blocked) for (env, slot), blocked in by_slot.items() if slot)
    return sorted(rows, key=lambda row: (row[0], row[1]))


def status_document(
    records: list[Record],
    pending: list[PendingAction],
    syncs: dict[int, list[TargetSync]] | None = None,
    *,
    public: bool,
) -> list[dict[str, Any]]:
    """One row per environment/slot ever seen, with the pending blocked action if any and each
    target's sync state of the record; a slot whose first deploy is blocked has a row too,
    with ``status``, ``artifact``, ``record_id`` and the times null. ``public``: for pages anyone
    may read (each target's ``error_reason`` only, no ``last_error``)."""
    rows = []
    for environment, slot, record, blocked in _status_rows(records, pending):
        rows.append(
            {
                "environment": environment,
                "slot": slot,
                "status": record.status.value if record else None,
                "artifact": record.artifact.model_dump(mode="json") if record else None,
                "record_id": record.id if record else None,
                "created_at": timestamp(record.created_at) if record else None,
                "updated_at": timestamp(record.updated_at) if record else None,
                "last_seen_at": timestamp(record.last_seen_at) if record else None,
                "pending": pending_document(blocked) if blocked else None,
                "targets": _target_states(
                    (syncs or {}).get(record.id, []) if record else [], public=public
                ),
            }
        )
    return rows


def pending_document(held: PendingAction) -> dict[str, Any]:
    """A held action as ``status --json`` and ``/status`` show it: what, why, and when it waits
    for a person, its id, its standing and the command that lets it through."""
    return {
        "action": held.type,
        "action_id": held.action_id,
        "reason": held.reason,
        "blocked": held.blocked,
        "approval": held.approval,
        "command": approve_command(held.action_id, held.guards) if held.approval else None,
    }


def _pending_cell(blocked: PendingAction | None) -> Text | str:
    """The last column of ``status``: the blocked action waiting in this slot, if any."""
    if blocked is None:
        return ""
    hint = f"; {blocked.hint}" if blocked.hint else ""
    return Text(f"pending {blocked.type}: {blocked.blocked}{hint}", style="magenta")


def _targets_cell(syncs: list[TargetSync]) -> Text:
    text = Text()
    for sync in syncs:
        if text:
            text.append(" ")
        state = sync.shown_status
        style = {SyncStatus.SYNCED: "green", SyncStatus.FAILED: "red"}.get(state, "yellow")
        text.append(f"{sync.target}:{state.value}", style=style)
    return text


def render_status(
    records: list[Record],
    pending: list[PendingAction],
    console: Console,
    syncs: dict[int, list[TargetSync]] | None = None,
) -> None:
    if not records and not pending:
        console.print("The ledger is empty: nothing has been applied yet.")
        return
    table = _grid()
    for column in ("ENVIRONMENT", "SLOT", "STATUS", "ARTIFACT", "SINCE", "TARGETS", ""):
        table.add_column(column)
    failures: list[str] = []
    for environment, slot, record, blocked in _status_rows(records, pending):
        if record is None:  # a first deploy blocked: nothing recorded yet
            table.add_row(
                environment,
                slot,
                Text("(none)", style="dim"),
                "",
                "",
                "",
                _pending_cell(blocked),
            )
            continue
        since = record.created_at if record.status is RecordStatus.DEPLOYED else record.updated_at
        record_syncs = (syncs or {}).get(record.id, [])
        failures.extend(
            f"{record.environment}/{record.slot} on {s.target}: {s.last_error}"
            for s in record_syncs
            if s.status is SyncStatus.FAILED and s.last_error
        )
        table.add_row(
            record.environment,
            record.slot,
            Text(record.status.value, style=_STATUS_STYLES[record.status]),
            record.artifact.describe(),
            _when(since),
            _targets_cell(record_syncs),
            _pending_cell(blocked),
        )
    _print_table(console, table)
    for failure in failures:
        console.print(Text(f"failed: {failure}", style="red"))
    for item in pending:
        if item.slot is None:
            console.print(
                Text(
                    f"pending {item.type} {item.key} in {item.environment}: {item.blocked}"
                    + (f"; {item.hint}" if item.hint else ""),
                    style="magenta",
                )
            )


def history_document(
    records: list[Record], syncs: dict[int, list[TargetSync]] | None = None, *, public: bool
) -> list[dict[str, Any]]:
    """Records newest first, each with what every target holds for it (status, remote id,
    what the target reported: e.g. Unkey's status, steps and error message). ``public``: for
    pages anyone may read (the fixed ``error_reason`` and :func:`public_detail` only)."""
    rows = []
    for record in records:
        row = record.model_dump(mode="json")
        row["targets"] = {
            sync.target: {
                **_target_state(sync, public=public),
                "detail": public_detail(sync.remote_detail) if public else sync.remote_detail,
            }
            for sync in (syncs or {}).get(record.id, [])
        }
        rows.append(row)
    return rows


def render_history(
    records: list[Record], console: Console, syncs: dict[int, list[TargetSync]] | None = None
) -> None:
    table = _grid()
    for column in (
        "RECORD",
        "SLOT",
        "STATUS",
        "ARTIFACT",
        "SUPERSEDED BY",
        "REVISION",
        "CREATED",
        "UPDATED",
        "TARGETS",
    ):
        table.add_column(column)
    notes: list[str] = []
    kinds: dict[tuple[str, str], set[str]] = {}
    for record in records:
        kinds.setdefault((record.environment, record.slot), set()).add(record.artifact.kind)
    for record in records:
        record_syncs = (syncs or {}).get(record.id, [])
        for sync in record_syncs:
            remote = sync.remote_detail.get("status") or sync.remote_state
            error = sync.last_error or sync.remote_detail.get("error")
            if remote or error:
                line = f"#{record.id} on {sync.target}: {remote or ''}"
                notes.append(f"{line} ({error})" if error else line)
        table.add_row(
            f"#{record.id}",
            record.slot,
            Text(record.status.value, style=_STATUS_STYLES[record.status]),
            # A slot that held an image and a chart: say which row is which.
            f"{record.artifact.kind.value} {record.artifact.describe()}"
            if len(kinds[record.environment, record.slot]) > 1
            else record.artifact.describe(),
            f"#{record.superseded_by}" if record.superseded_by else "",
            (record.revision or "")[:12],
            _when(record.created_at),
            _when(record.updated_at),
            _targets_cell(record_syncs),
        )
    _print_table(console, table)
    for note in notes:
        console.print(Text(note, style="dim"))


def next_rotation(key: KeyRecord) -> datetime | None:
    return key.created_at + parse_duration(key.rotate_after) if key.rotate_after else None


def places_document(
    key: KeyRecord, holdings: Mapping[str, SinkHolding], *, public: bool
) -> list[dict[str, Any]]:
    """Where a deploy key's private half goes, and what each place holds: ``current`` (this
    key), ``behind`` (an older key, or none yet), ``failed`` (its last delivery failed; the
    error itself only when not ``public``: it may quote the place's own answer) or ``file``
    (checked by its content at each refresh)."""
    places = []
    for sink in key.sinks:
        if sink.file is not None:
            places.append({"place": sink.label, "state": "file"})
            continue
        holding = holdings.get(sink.label)
        if holding is not None and holding.key_id == key.id:
            state = "current"
        elif holding is not None and holding.last_error:
            state = "failed"
        else:
            state = "behind"
        place: dict[str, Any] = {
            "place": sink.label,
            "state": state,
            "delivered_at": timestamp(holding.delivered_at)
            if holding and holding.delivered_at
            else None,
        }
        if not public and holding is not None:
            place["last_error"] = holding.last_error
        places.append(place)
    return places


def keys_document(
    keys: list[KeyRecord],
    syncs: dict[int, list[TargetSync]] | None = None,
    *,
    public: bool,
    holdings: Mapping[tuple[str, str], Mapping[str, SinkHolding]] | None = None,
) -> list[dict[str, Any]]:
    """Deploy keys with their next rotation, each target's sync state and each place's
    (``public`` as for :func:`status_document`)."""
    rows = []
    for key in keys:
        row = key.model_dump(mode="json", by_alias=True, exclude={"sinks"})
        due = next_rotation(key)
        row["next_rotation"] = timestamp(due) if due and key.status.value == "ACTIVE" else None
        row["targets"] = _target_states((syncs or {}).get(key.id, []), public=public)
        held = (holdings or {}).get((key.repository, key.title), {})
        row["places"] = places_document(key, held, public=public)
        rows.append(row)
    return rows


def _places_cell(key: KeyRecord, holdings: Mapping[str, SinkHolding]) -> str:
    return ", ".join(
        f"{place['place']} {place['state']}"
        for place in places_document(key, holdings, public=True)
        if place["state"] != "file"
    )


def render_keys(
    keys: list[KeyRecord],
    console: Console,
    syncs: dict[int, list[TargetSync]] | None = None,
    holdings: Mapping[tuple[str, str], Mapping[str, SinkHolding]] | None = None,
) -> None:
    if not keys:
        console.print("No deploy keys recorded.")
        return
    table = _grid()
    for column in (
        "REPOSITORY",
        "TITLE",
        "ENVIRONMENT",
        "STATUS",
        "FINGERPRINT",
        "ACCESS",
        "CREATED",
        "NEXT ROTATION",
        "TARGETS",
        "PLACES",
    ):
        table.add_column(column)
    for key in keys:
        due = next_rotation(key)
        table.add_row(
            key.repository,
            key.title,
            key.environment,
            key.status.value,
            key.fingerprint,
            "read-only" if key.read_only else "read-write",
            _when(key.created_at),
            _when(due) if due and key.status.value == "ACTIVE" else "",
            _targets_cell((syncs or {}).get(key.id, [])),
            _places_cell(key, (holdings or {}).get((key.repository, key.title), {}))
            if key.status.value == "ACTIVE"
            else "",
        )
    _print_table(console, table)


def record_brief(record: Record | None) -> dict[str, Any] | None:
    """A record as ``diff`` shows it: its id and artifact (None: the slot held none)."""
    if record is None:
        return None
    return {"id": record.id, "artifact": record.artifact.model_dump(mode="json")}


def render_changes(rows: list[dict[str, Any]], before: str, after: str, console: Console) -> None:
    """What ``diff`` found: one line per slot whose deployed artifact differs."""
    if not rows:
        console.print(f"No change between {before} and {after}.")
        return
    table = _grid()
    for column in ("ENVIRONMENT", "SLOT", before.upper(), after.upper()):
        table.add_column(column)
    for row in rows:
        cells = [
            _artifact(Artifact.model_validate(side["artifact"])) if side else "—"
            for side in (row["before"], row["after"])
        ]
        table.add_row(row["environment"], row["slot"], *cells)
    _print_table(console, table)


def events_document(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Audit events as ``events --json`` prints them, oldest first."""
    return [event.model_dump(mode="json") for event in events]


def _event_summary(event: Event) -> str:
    detail = event.detail
    parts = [str(detail[key]) for key in ("reason", "fingerprint", "error") if detail.get(key)]
    approval = detail.get("approval")
    if isinstance(approval, dict):  # an action an approval let through
        parts.append(f"approved by {approval.get('by')} (#{approval.get('id')})")
    elif isinstance(approval, int):  # a decision, or its use
        by = f" by {detail['approved_by']}" if detail.get("approved_by") else ""
        parts.insert(0, f"approval #{approval}{by}")
    if "artifact" in detail and isinstance(detail["artifact"], dict):
        artifact = detail["artifact"]
        parts.insert(
            0, " ".join(str(artifact.get(k)) for k in ("name", "version") if artifact.get(k))
        )
    return "; ".join(parts)


def render_events(events: list[Event], console: Console) -> None:
    """The audit log as a table: when, what, where, who, and the gist of its detail."""
    if not events:
        console.print("No events.")
        return
    table = _grid()
    for column in ("SEQ", "AT", "TYPE", "WHERE", "ACTOR", "SERIAL", "DETAIL"):
        table.add_column(column)
    for event in events:
        where = "/".join(part for part in (event.environment, event.slot) if part)
        table.add_row(
            str(event.seq),
            _when(event.at),
            event.type,
            where,
            event.actor,
            str(event.serial),
            _event_summary(event),
        )
    _print_table(console, table)


def plan_markdown(plan: Plan) -> str:
    """The plan as Markdown, for a pull request comment."""
    revision = f" at `{plan.revision.sha[:12]}`" if plan.revision else ""
    lines = [f"### slotkeeper plan{revision}", ""]
    if not plan.actions:
        lines.append(f"**No changes.** {plural(len(plan.unchanged), 'slot')} unchanged.")
        return "\n".join(lines) + "\n"
    lines += ["| | action | where | what | why |", "|---|---|---|---|---|"]
    for action in plan.actions:
        symbol, _ = _symbol(action)
        key = key_of(action)
        what = f"key {key.name}" if key else _artifact(_artifact_of(action))
        why = action.reason
        if isinstance(action, SyncAction):
            why = f"{action.target}: {action.reason}"
        if action.blocked:
            hint = _hint(action)
            why = f"**blocked**: {action.blocked}" + (f"; {hint}" if hint else "")
        cells = [f"`{symbol}`", action.type.value, f"`{_where(action)}`", what, why]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", f"**{summary_line(plan).plain}**"]
    return "\n".join(lines) + "\n"


def duration(seconds: float | None) -> str:
    """``3d 4h``, ``2h 5m``, ``42m``, ``12s``; ``no data`` for none."""
    if seconds is None:
        return "no data"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _percent(rate: float | None) -> str:
    return "no data" if rate is None else f"{rate * 100:.1f} %"


def _dora_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, sample, band) for the table of ``dora``."""
    frequency = metrics["deployment_frequency"]
    lead = metrics["lead_time"]
    failures = metrics["change_failure_rate"]
    recovery = metrics["recovery_time"]
    rework = metrics["rework_rate"]
    per_week = frequency["per_week"]
    return [
        (
            "deployment frequency",
            "no data" if per_week is None else f"{per_week:.2f} a week",
            f"{frequency['deployments']} deployments",
            frequency["band"] or "",
        ),
        (
            "lead time for changes",
            f"median {duration(lead['median_seconds'])}, p90 {duration(lead['p90_seconds'])}",
            f"{lead['commits']} commits, {lead['unknown_deployments']} deployments unknown",
            lead["band"] or "",
        ),
        (
            "change failure rate",
            _percent(failures["rate"]),
            f"{failures['failed']} of {failures['deployments']}",
            failures["band"] or "",
        ),
        (
            "failed deployment recovery time",
            f"median {duration(recovery['median_seconds'])}, "
            f"p90 {duration(recovery['p90_seconds'])}",
            f"{recovery['recovered']} recovered, {len(recovery['unrecovered'])} not yet",
            recovery["band"] or "",
        ),
        (
            "deployment rework rate",
            _percent(rework["rate"]),
            f"{rework['rework']} of {rework['deployments']}",
            "",
        ),
    ]


def _print_dora_metrics(metrics: dict[str, Any], console: Console) -> None:
    table = _grid()
    for column in ("METRIC", "VALUE", "SAMPLE", "BAND"):
        table.add_column(column)
    for row in _dora_rows(metrics):
        table.add_row(*row)
    _print_table(console, table)


def render_dora(document: dict[str, Any], console: Console) -> None:
    """``dora``: the figures with their bands, the failures behind them and the weekly trend."""
    where = ", ".join(document["slots"] or document["environments"])
    console.print(
        f"Delivery metrics of {where}, {document['since'][:10]} to {document['until'][:10]}"
    )
    _print_dora_metrics(document["metrics"], console)
    for failure in document["metrics"]["change_failure_rate"]["failures"]:
        recovered = failure["recovered_by"]
        console.print(
            f"  failed: #{failure['record']} {failure['environment']}/{failure['slot']} "
            f"({', '.join(failure['reasons'])}"
            + (f", undone by #{failure['undone_by']}" if failure["undone_by"] else "")
            + (f", recovered by #{recovered}" if recovered else ", not recovered")
            + ")"
        )
    for group in document["groups"]:
        console.print(f"\n{document['by']} {group['group']}:")
        _print_dora_metrics(group["metrics"], console)
    console.print("\nweekly trend:")
    trend = _grid()
    for column in ("WEEK", "DEPLOYMENTS", "FAILED", "FAILURE RATE", "MEDIAN LEAD TIME"):
        trend.add_column(column)
    for week in document["weekly"]:
        trend.add_row(
            week["week"],
            str(week["deployments"]),
            str(week["failed"]),
            _percent(week["change_failure_rate"]),
            duration(week["median_lead_time_seconds"]),
        )
    _print_table(console, trend)
    console.print(f"Bands from the {document['report']} (see docs/dora.md).")
