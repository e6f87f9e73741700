"""The commands that read the ledger's state and history: status, history, events, diff."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from slotkeeper import render
from slotkeeper.cli import common
from slotkeeper.cli.codes import EXIT_OK
from slotkeeper.cli.common import (
    _ledger,
    _moment,
    _print_json,
    _stdout,
    manifest_options,
    targets_option,
)
from slotkeeper.errors import (
    ConfigError,
)
from slotkeeper.ledger import (
    Ledger,
)
from slotkeeper.manifests import (
    OperatorTargets,
    load_manifests,
)
from slotkeeper.model import (
    Record,
    RecordStatus,
    SyncSubject,
)
from slotkeeper.pipelineview import pipeline_document, render_pipelines
from slotkeeper.promote import read_pipelines
from slotkeeper.timeline import RECORD_EVENTS, Cut, changes, deployed_at

if TYPE_CHECKING:
    pass


def _cut(value: str, flag: str) -> Cut:
    """A moment of the ledger's past: a serial (a number) or a time (see ``_moment``)."""
    if value.isdigit():
        return Cut(serial=int(value))
    moment = _moment(value, flag)
    assert moment is not None
    return Cut(at=moment)


def _records_at(ledger: Ledger, cut: Cut) -> list[Record]:
    """The records DEPLOYED at ``cut``, shown as they were then (DEPLOYED)."""
    held = deployed_at(ledger.events(types=RECORD_EVENTS), cut)
    records = [ledger.record(record_id) for _, record_id in sorted(held.items())]
    return [r.model_copy(update={"status": RecordStatus.DEPLOYED}) for r in records]


@click.command()
@manifest_options
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--at", "at", help="What was deployed at this time (ISO-8601, or 24h, 7d back from now)."
)
@click.option("--serial", type=click.IntRange(min=0), help="What was deployed after serial N.")
@click.option(
    "--promotion",
    is_flag=True,
    help="Each slot's promotion pipeline: environments in promotion order, what is behind, "
    "what would be promoted next (reads the manifests of -m).",
)
@targets_option
def status(
    manifests: Path,
    state: str,
    as_json: bool,
    at: str | None,
    serial: int | None,
    promotion: bool,
    targets: OperatorTargets,
) -> int:
    """What is recorded in every environment/slot ever seen, and what is held back; with --at
    or --serial, what was deployed where at that moment (replayed from the audit log); with
    --promotion, each slot's promotion pipeline (which reads the manifests' policies)."""
    if promotion:
        if at is not None or serial is not None:
            raise click.UsageError("--promotion shows now: not with --at or --serial")
        desired = load_manifests(manifests, targets=targets)
        now = common.utcnow()
        with _ledger(state, create=False) as ledger:
            found = read_pipelines(desired.environments, ledger, now)
        if as_json:
            _print_json(pipeline_document(found, now))
        else:
            render_pipelines(found, _stdout(), now)
        return EXIT_OK
    if at is not None or serial is not None:
        if at is not None and serial is not None:
            raise click.UsageError("give --at or --serial, not both")
        cut = Cut(serial=serial) if serial is not None else _cut(at or "", "--at")
        with _ledger(state, create=False) as ledger:
            records = _records_at(ledger, cut)
        if as_json:
            _print_json(
                {"at": cut.describe(), "slots": render.status_document(records, [], public=False)}
            )
        else:
            console = _stdout()
            console.print(f"Deployed at {cut.describe()}:")
            render.render_status(records, [], console)
        return EXIT_OK
    with _ledger(state, create=False) as ledger:
        records = ledger.latest_records()
        pending = ledger.pending()
        syncs = render.syncs_by_subject(ledger.all_syncs(), SyncSubject.RECORD)
        manifests_status = ledger.manifest_status()
    if as_json:
        _print_json(
            {
                "manifests": render.manifests_document(manifests_status),
                "slots": render.status_document(records, pending, syncs, public=False),
            }
        )
    else:
        console = _stdout()
        render.render_manifests_status(manifests_status, console)
        render.render_status(records, pending, console, syncs)
    return EXIT_OK


@click.command()
@click.argument("target", metavar="ENV[/SLOT]")
@manifest_options
@click.option("--json", "as_json", is_flag=True)
def history(target: str, manifests: Path, state: str, as_json: bool) -> int:
    """Records of an environment or one slot, newest first."""
    del manifests
    environment, _, slot = target.partition("/")
    with _ledger(state, create=False) as ledger:
        records = ledger.history(environment, slot or None)
        syncs = render.syncs_by_subject(ledger.all_syncs(), SyncSubject.RECORD)
    if as_json:
        _print_json(render.history_document(records, syncs, public=False))
        return EXIT_OK
    if not records:
        raise ConfigError(f"no records for {target!r} in the ledger")
    render.render_history(records, _stdout(), syncs)
    return EXIT_OK


@click.command()
@click.argument("where", required=False, metavar="[ENV[/SLOT]]")
@manifest_options
@click.option("--since", help="Only events at or after this: 24h, 7d, or an ISO-8601 time.")
@click.option("--until", help="Only events before this: 24h, 7d, or an ISO-8601 time.")
@click.option(
    "--type", "types", multiple=True, help="Only events of this type (repeat for several)."
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="At most this many events: the newest.",
)
@click.option("--json", "as_json", is_flag=True)
def events(
    where: str | None,
    manifests: Path,
    state: str,
    since: str | None,
    until: str | None,
    types: tuple[str, ...],
    last: int,
    as_json: bool,
) -> int:
    """The audit log: who changed what, when, at which revision; oldest first."""
    del manifests
    environment, _, slot = (where or "").partition("/")
    after, before = _moment(since, "--since"), _moment(until, "--until")
    with _ledger(state, create=False) as ledger:
        found = ledger.events(
            types=types,
            environment=environment or None,
            slot=slot or None,
            last=last,
            after=after,
            before=before,
        )
    if as_json:
        _print_json(render.events_document(found))
    else:
        render.render_events(found, _stdout())
    return EXIT_OK


@click.command("diff")
@click.argument("before", metavar="A")
@click.argument("after", metavar="B")
@manifest_options
@click.option("--json", "as_json", is_flag=True)
def diff_command(before: str, after: str, manifests: Path, state: str, as_json: bool) -> int:
    """What changed between two moments A and B of the ledger (serials, or times: ISO-8601 or
    24h, 7d back from now): each slot whose deployed artifact differs."""
    del manifests
    first, second = _cut(before, "A"), _cut(after, "B")
    with _ledger(state, create=False) as ledger:
        events = ledger.events(types=RECORD_EVENTS)
        found = changes(deployed_at(events, first), deployed_at(events, second))
        records = {
            record_id: ledger.record(record_id)
            for change in found
            for record_id in (change.before, change.after)
            if record_id is not None
        }
    rows = [
        {
            "environment": change.environment,
            "slot": change.slot,
            "before": render.record_brief(records[change.before] if change.before else None),
            "after": render.record_brief(records[change.after] if change.after else None),
        }
        for change in found
    ]
    if as_json:
        _print_json({"from": first.describe(), "to": second.describe(), "changes": rows})
    else:
        render.render_changes(rows, first.describe(), second.describe(), _stdout())
    return EXIT_OK
