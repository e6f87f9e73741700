"""The ``slotkeeper`` command line: a thin shell over load, plan, execute and the ledger.

Exit codes: 0 success (``--detailed-exitcode``: nothing to do); 1 any error, invalid manifests,
a stale plan, a locked ledger, a failed action or a refused confirmation; 2 only with
``plan --detailed-exitcode``, when the plan has changes, and ``apply --detailed-exitcode``, when
it applied changes; 3 only with ``apply --detailed-exitcode``, when some action was held (a
guard, a freeze, a suspend): CI sees a held production change. Usage errors exit 1 too, so that
2 and 3 keep their one meaning.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from slotkeeper import render
from slotkeeper.approvals import find_held
from slotkeeper.cli.common import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_HELD,
    EXIT_OK,
    _actor,
    _iso_time,
    _lease,
    _ledger,
    _ledger_to_plan,
    _parse_at,
    _print_json,
    _seconds,
    _sink_policy,
    _stderr,
    _stdout,
    apply_options,
    guard_options,
    lease_options,
    manifest_options,
    manifests_option,
    refresh_option,
    secrets_dir_option,
    sink_options,
    state_option,
    targets_option,
    utcnow,
)
from slotkeeper.cli.promotion import promote, release_hold, rollback
from slotkeeper.credentials import read_credential_file
from slotkeeper.dora.metrics import Rules
from slotkeeper.dora.report import GROUPINGS, Query, report
from slotkeeper.errors import (
    ConfigError,
    ManifestError,
    ManifestErrors,
    SlotkeeperError,
)
from slotkeeper.execute import ActionResult, ApplyResult, Outcome
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import (
    Ledger,
)
from slotkeeper.manifests import (
    NO_TARGETS,
    TARGETS_ENV,
    OperatorTargets,
    json_schema,
    load_manifests,
    load_targets,
)
from slotkeeper.model import (
    APPROVAL_TTL,
    Decision,
    Record,
    RecordStatus,
    SyncSubject,
    parse_duration,
)
from slotkeeper.notify.pipeline import Notifications
from slotkeeper.observability import configure_logging
from slotkeeper.pipelineview import pipeline_document, render_pipelines
from slotkeeper.plan import Plan, PlanOptions
from slotkeeper.planfile import load_plan, save_plan
from slotkeeper.promote import read_pipelines
from slotkeeper.reconcile import RunOptions, apply_saved, make_plan, reconcile, snapshot
from slotkeeper.sources import open_source, origin_url, repository_of
from slotkeeper.timeline import RECORD_EVENTS, Cut, changes, deployed_at

if TYPE_CHECKING:
    from slotkeeper.daemon.promoter import PromotionSettings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="slotkeeper")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    help="Log format on stderr (auto: console on a terminal, json otherwise).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@click.option("--no-color", is_flag=True, help="No colours or styles (also: NO_COLOR=1).")
def cli(log_format: str, log_level: str, no_color: bool) -> None:
    """slotkeeper keeps deployment records and deploy keys in line with committed manifests."""
    del no_color  # read by _color_system() from the root context
    configure_logging(fmt=log_format, level=log_level)  # type: ignore[arg-type]


@cli.command()
@manifests_option()
@click.option(
    "--targets",
    type=click.Path(path_type=Path),
    envvar=TARGETS_ENV,
    help=f"The operator's targets file (or directory). Env: {TARGETS_ENV}.",
)
@sink_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--allow-empty", is_flag=True, help="Accept manifests that declare no environment at all."
)
def validate(manifests: Path, targets: Path | None, as_json: bool, allow_empty: bool) -> int:
    """Check the manifests (and the targets file); exit 0 when valid, 1 when not (or when they
    declare nothing)."""
    try:
        operator = load_targets(targets) if targets is not None else NO_TARGETS
        operator = dataclasses.replace(operator, sinks=_sink_policy(click.get_current_context()))
        # with the git revision: refs are checked too
        desired = snapshot(manifests, operator).desired
        if not desired.environments and not allow_empty:
            raise ManifestErrors(
                [
                    ManifestError(
                        manifests,
                        None,
                        None,
                        "declares no environment (an empty or wrong checkout?): applying it "
                        "would remove everything recorded; pass --allow-empty if that is meant",
                    )
                ]
            )
    except ManifestErrors as exc:
        if as_json:
            _print_json(render.validate_document(exc))
            return EXIT_ERROR
        raise
    document = render.validate_document(desired)
    if as_json:
        _print_json(document)
    else:
        counts = (
            render.plural(document["environments"], "environment"),
            render.plural(document["slots"], "slot"),
            render.plural(document["deploy_keys"], "deploy key"),
            render.plural(document["targets"], "target"),
        )
        _stdout().print(f"[green]Valid:[/] {', '.join(counts)}.")
    return EXIT_OK


def _options(
    allow_decommission: bool,
    allow_mass_decommission: bool,
    allow_empty: bool = False,
    rotate: frozenset[str] = frozenset(),
) -> PlanOptions:
    return PlanOptions(
        allow_decommission=allow_decommission,
        allow_mass_decommission=allow_mass_decommission,
        allow_empty=allow_empty,
        rotate=rotate,
    )


@cli.command("plan")
@manifest_options
@targets_option
@guard_options
@click.option("--out", type=click.Path(path_type=Path), help="Save the plan for `apply PLANFILE`.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan document as JSON.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text (like terraform plan), json (the plan document) or markdown (a PR comment).",
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 0 without changes, 2 with changes, 1 on error."
)
@click.option(
    "--at", "at", help="Plan as if at this time (ISO-8601, or +30d from now); not with --out."
)
@refresh_option
@secrets_dir_option
def plan_command(
    manifests: Path,
    targets: OperatorTargets,
    state: str,
    allow_decommission: bool,
    allow_mass_decommission: bool,
    allow_empty: bool,
    out: Path | None,
    as_json: bool,
    output_format: str,
    detailed_exitcode: bool,
    at: str | None,
    refresh: bool,
    secrets_dir: Path,
) -> int:
    """Show what apply would change."""
    if at is not None and out is not None:
        raise ConfigError(
            "--at cannot be used with --out: a saved plan is applied now, so it must be planned "
            "now (freeze windows and rotations depend on the time)"
        )
    moment = _parse_at(at)
    clock = (lambda: moment) if moment else utcnow
    with _ledger_to_plan(state) as (ledger, note):
        plan = make_plan(
            manifests,
            ledger,
            options=_options(allow_decommission, allow_mass_decommission, allow_empty),
            clock=clock,
            run=RunOptions(refresh=refresh),
            sink=SecretSink(secrets_dir),
            operator=targets,
        )
    for warning in plan.warnings:
        _stderr().print(f"[yellow]Warning:[/] {warning}", markup=True, highlight=False)
    if note is not None:
        _stderr().print(note, markup=False)
    if out is not None:
        save_plan(plan, out)
    if as_json or output_format == "json":
        _print_json(render.plan_document(plan))
    elif output_format == "markdown":
        click.echo(render.plan_markdown(plan), nl=False)
    else:
        console = _stdout()
        render.render_plan(plan, console)
        if out is not None:
            console.print(f"\nSaved the plan to {out}. Apply it with: slotkeeper apply {out}")
    if detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def _confirm_on_tty(yes: bool, console: Console, progress: _ProgressBar) -> Callable[[Plan], bool]:
    def confirm(plan: Plan) -> bool:
        render.render_plan(plan, console)
        if not plan.applicable or yes:
            progress.start(len(plan.applicable))
            return True
        if not sys.stdin.isatty():
            raise ConfigError(
                "refusing to apply without confirmation: stdin is not a terminal; "
                "pass --yes to apply non-interactively"
            )
        console.print(
            "\n[bold]Do you want to perform these actions?[/]\n"
            "  Only 'yes' will be accepted to approve."
        )
        answer = console.input("\n  Enter a value: ")
        if answer.strip() != "yes":
            console.print("\n[red]Apply cancelled.[/]")
            return False
        progress.start(len(plan.applicable))
        return True

    return confirm


class _ProgressBar:
    """A progress bar on a terminal, for applies long enough to want one (10+ actions)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        if self._console.is_terminal and total >= 10:
            self._progress = Progress(
                TextColumn("Applying"),
                BarColumn(),
                MofNCompleteColumn(),
                console=self._console,
                transient=True,
            )
            self._task = self._progress.add_task("apply", total=total)
            self._progress.start()

    def advance(self, _result: ActionResult) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _finish(result: ApplyResult, console: Console, *, detailed: bool = False) -> int:
    """Show what an apply did; its exit code (see the module docstring)."""
    render.render_apply(result, console)
    if not result.ok:
        return EXIT_ERROR
    if not detailed:
        return EXIT_OK
    if result.count(Outcome.BLOCKED):
        return EXIT_HELD
    changed = result.count(Outcome.APPLIED) + result.count(Outcome.DEFERRED)
    return EXIT_CHANGES if changed else EXIT_OK


def _planned_from(plan: Plan, manifests: Path) -> Path:
    """The manifests a saved plan is applied with: ``-m`` when given, else those it was made
    from (it re-reads their Target documents and holds)."""
    context = click.get_current_context()
    explicit = context.get_parameter_source("manifests") not in (
        click.core.ParameterSource.DEFAULT,
        None,
    )
    if explicit or plan.manifests is None:
        return manifests
    return Path(plan.manifests)


@cli.command()
@click.argument("planfile", required=False, type=click.Path(path_type=Path, dir_okay=False))
@manifest_options
@targets_option
@guard_options
@apply_options
@lease_options
@refresh_option
@click.option("-y", "--yes", is_flag=True, help="Apply without asking (required without a TTY).")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there was nothing to do, 2 when changes were applied, 3 when some action "
    "was held (blocked by a guard, a freeze or a suspend), 1 on error.",
)
def apply(
    planfile: Path | None,
    manifests: Path,
    targets: OperatorTargets,
    state: str,
    allow_decommission: bool,
    allow_mass_decommission: bool,
    allow_empty: bool,
    secrets_dir: Path,
    lock_timeout: float,
    concurrency: int,
    lease_duration: str,
    renew_deadline: str,
    retry_period: str,
    refresh: bool,
    yes: bool,
    detailed_exitcode: bool,
) -> int:
    """Converge the ledger on the manifests, or apply exactly a saved PLANFILE."""
    console = _stdout()
    sink = SecretSink(secrets_dir)
    run = RunOptions(refresh=refresh, concurrency=concurrency, lock_timeout=lock_timeout)
    saved = load_plan(planfile) if planfile is not None else None
    # A plan made before the ledger existed (serial 0) creates it with the plan's lineage, so
    # that it applies; any other plan could only be stale on a new ledger.
    lineage = saved.lineage if saved is not None and saved.base_serial == 0 else None
    lease = _lease(lease_duration, renew_deadline, retry_period)
    with _ledger(state, lineage=lineage, lease=lease) as ledger, _ProgressBar(console) as progress:
        if saved is not None:
            progress.start(len(saved.applicable))
            result = apply_saved(
                saved,
                _planned_from(saved, manifests),
                ledger,
                clock=utcnow,
                actor=_actor(),
                sink=sink,
                run=run,
                on_result=progress.advance,
                operator=targets,
                show=lambda plan: render.render_plan(plan, console),
            )
            return _finish(result, console, detailed=detailed_exitcode)
        notifications = Notifications(ledger, targets.notifiers, clock=utcnow)
        try:
            done = reconcile(
                manifests,
                ledger,
                options=_options(allow_decommission, allow_mass_decommission, allow_empty),
                clock=utcnow,
                actor=_actor(),
                sink=sink,
                run=run,
                confirm=_confirm_on_tty(yes, console, progress),
                on_result=progress.advance,
                operator=targets,
                notifications=notifications,
            )
        finally:
            notifications.close()
    if done.result is None:
        return EXIT_ERROR
    return _finish(done.result, console, detailed=detailed_exitcode)


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


@cli.command()
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
        now = utcnow()
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


@cli.command()
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


@cli.group()
def keys() -> None:
    """Deploy keys slotkeeper manages."""


def _moment(value: str | None, flag: str) -> datetime | None:
    """``--since``/``--until``: an ISO-8601 time (UTC when no zone is given) or a duration back
    from now (``24h``, ``7d``)."""
    if value is None:
        return None
    try:
        return utcnow() - parse_duration(value)
    except ValueError:
        pass
    try:
        return _iso_time(value)
    except ValueError as exc:
        raise click.BadParameter(
            "expected a duration back from now such as 24h or 7d, or an ISO-8601 time such as "
            "2026-12-24T00:00:00Z",
            param_hint=flag,
        ) from exc


@cli.command()
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


APPROVAL_TTL_ENV = "SLOTKEEPER_APPROVAL_TTL"


def _expiry(value: str | None) -> timedelta:
    """``approve --expires-in`` (or ``SLOTKEEPER_APPROVAL_TTL``): how long an approval lasts."""
    text = value or os.environ.get(APPROVAL_TTL_ENV)
    if not text:
        return APPROVAL_TTL
    try:
        return parse_duration(text)
    except ValueError as exc:
        source = "--expires-in" if value else APPROVAL_TTL_ENV
        raise click.BadParameter(
            f"{text!r}: expected a duration such as 90m, 12h, 1d", param_hint=source
        ) from exc


def _decide(state: str, wanted: str, decision: Decision, **fields: Any) -> None:
    """Record an operator's decision about the held action ``wanted``, print what it did, and
    ask a running daemon (whichever replica leads) to reconcile soon."""
    now = utcnow()
    actor = _actor()
    with _ledger(state, create=False) as ledger:
        held = find_held(ledger.pending(), wanted)
        decided = ledger.decide(held, decision, actor=actor, at=now, **fields)
        ledger.request_reconcile(f"{decision.value} {held.action_id}", at=now)
    console = _stdout()
    what = f"{held.type} {held.environment}/{held.subject} ({held.action_id})"
    if decision is Decision.APPROVED:
        until = decided.expires_at.strftime("%Y-%m-%d %H:%M:%SZ") if decided.expires_at else ""
        freeze = " It overrides the freeze." if decided.override_freeze else ""
        console.print(
            f"Approved {what} as approval #{decided.id} by {actor}, valid until {until}.{freeze} "
            "The next apply or reconcile lets exactly this action through (once)."
        )
    else:
        console.print(f"Rejected {what} as decision #{decided.id} by {actor}: it stays held.")


@cli.command()
@click.argument("wanted", metavar="ACTION_ID|ENV/SLOT")
@state_option
@click.option("--reason", default="", help="Why: kept in the ledger and the audit log.")
@click.option(
    "--expires-in",
    help=f"How long the approval lasts (default 24h, or ${APPROVAL_TTL_ENV}).",
)
@click.option(
    "--override-freeze",
    is_flag=True,
    help="Let the action through an open freeze window too (break-glass).",
)
def approve(
    wanted: str, state: str, reason: str, expires_in: str | None, override_freeze: bool
) -> int:
    """Let one held action through the guards that wait for a person (a protected
    environment, the mass guard, a promotion policy; a freeze with --override-freeze), at the
    next apply or reconcile, once. The action is named by its id or by ENV/SLOT
    (ENV/key:REPO/TITLE)."""
    ttl = _expiry(expires_in)
    _decide(
        state,
        wanted,
        Decision.APPROVED,
        reason=reason,
        expires_at=utcnow() + ttl,
        override_freeze=override_freeze,
    )
    return EXIT_OK


@cli.command()
@click.argument("wanted", metavar="ACTION_ID|ENV/SLOT")
@state_option
@click.option("--reason", default="", help="Why: kept in the ledger and the audit log.")
def reject(wanted: str, state: str, reason: str) -> int:
    """Refuse one held action: it stays held and is no longer shown as awaiting approval
    (a later approve still lets it through)."""
    _decide(state, wanted, Decision.REJECTED, reason=reason)
    return EXIT_OK


def _rule_window(value: str, flag: str) -> timedelta | None:
    """A rule's window (``7d``), or ``off``."""
    if value == "off":
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r}: expected a duration such as 7d or 48h, or off", param_hint=flag
        ) from exc


def _dora_query(
    ledger: Ledger,
    where: tuple[str, ...],
    *,
    since: str,
    until: str | None,
    by: str | None,
    rules: Rules,
) -> Query:
    """The ``dora`` command's question, checked against what the ledger knows."""
    end = utcnow()
    if until is not None:
        try:
            end = _iso_time(until)
        except ValueError as exc:
            raise click.BadParameter(
                f"{until!r}: expected an ISO-8601 date or time such as 2026-12-01",
                param_hint="--until",
            ) from exc
    try:
        start = end - parse_duration(since)
    except ValueError:
        start = _moment(since, "--since") or end
    if start >= end:
        raise click.BadParameter("the period is empty: --since must come before --until")
    known = {e.name: e for e in ledger.environment_records()}
    environments: list[str] = []
    slots: list[tuple[str, str]] = []
    for item in where:
        environment, _, slot = item.partition("/")
        if environment not in known:
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"no environment {environment!r} in the ledger (it knows: {names})")
        if environment not in environments:
            environments.append(environment)
        if slot:
            slots.append((environment, slot))
    if not where:
        environments = sorted(name for name, e in known.items() if e.production)
        if not environments:
            raise ConfigError(
                "no production environment in the ledger: name the environments to measure "
                "(slotkeeper dora staging)"
            )
    chosen_slots = tuple(slots) if len(slots) == len(where) else ()
    if slots and not chosen_slots:
        raise click.UsageError("name either environments or slots (ENV/SLOT), not both")
    return Query(
        environments=tuple(environments),
        slots=chosen_slots,
        since=start,
        until=end,
        by=GROUPINGS.get(by or ""),
        rules=rules,
    )


@cli.command()
@click.argument("where", nargs=-1, metavar="[ENV[/SLOT]]...")
@manifest_options
@click.option(
    "--since",
    default="90d",
    show_default=True,
    help="The period's start: a duration back from --until (90d, 12w) or an ISO-8601 time.",
)
@click.option("--until", help="The period's end: an ISO-8601 date or time (default: now).")
@click.option(
    "--by",
    type=click.Choice(["environment", "slot", "week"]),
    help="Figures per environment, per slot or per week too.",
)
@click.option(
    "--rollback-window",
    default="7d",
    show_default=True,
    help="A deployment rolled back within this long failed (off: no such rule).",
)
@click.option(
    "--fix-window",
    default="7d",
    show_default=True,
    help="A deployment followed within this long by a fix or hotfix failed (off: no rule).",
)
@click.option(
    "--no-target-failures",
    is_flag=True,
    help="Do not count a deployment a target reported failed (Unkey FAILED) as failed.",
)
@click.option("--json", "as_json", is_flag=True)
def dora(
    where: tuple[str, ...],
    manifests: Path,
    state: str,
    since: str,
    until: str | None,
    by: str | None,
    rollback_window: str,
    fix_window: str,
    no_target_failures: bool,
    as_json: bool,
) -> int:
    """Delivery (DORA) metrics from the ledger: deployment frequency, lead time for changes,
    change failure rate, failed deployment recovery time and rework rate, with their bands
    (production environments unless others are named)."""
    del manifests
    rules = Rules(
        rollback=_rule_window(rollback_window, "--rollback-window"),
        fix=_rule_window(fix_window, "--fix-window"),
        target=not no_target_failures,
    )
    with _ledger(state, create=False) as ledger:
        query = _dora_query(ledger, where, since=since, until=until, by=by, rules=rules)
        rows = ledger.delivery_rows(
            environments=query.environments, since=query.since, until=query.until + rules.reach
        )
    document = report(rows, query)
    if as_json:
        _print_json(document)
    else:
        render.render_dora(document, _stdout())
    return EXIT_OK


@cli.command("diff")
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


@keys.command("list")
@manifest_options
@click.option("--all", "include_retired", is_flag=True, help="Include rotated and revoked keys.")
@click.option("--json", "as_json", is_flag=True)
def keys_list(manifests: Path, state: str, include_retired: bool, as_json: bool) -> int:
    """List deploy keys with fingerprints and next rotation dates."""
    del manifests
    with _ledger(state, create=False) as ledger:
        found = ledger.keys(include_retired=include_retired)
        syncs = render.syncs_by_subject(ledger.all_syncs(), SyncSubject.KEY)
        holdings = {(k.repository, k.title): ledger.sinks_of(k.repository, k.title) for k in found}
    if as_json:
        _print_json(render.keys_document(found, syncs, public=False, holdings=holdings))
    else:
        render.render_keys(found, _stdout(), syncs, holdings)
    return EXIT_OK


@keys.command("rotate")
@click.argument("names", nargs=-1, required=True, metavar="REPOSITORY/TITLE...")
@manifest_options
@targets_option
@apply_options
@lease_options
@click.option("-y", "--yes", is_flag=True, help="Rotate without asking (required without a TTY).")
def keys_rotate(
    names: tuple[str, ...],
    manifests: Path,
    targets: OperatorTargets,
    state: str,
    secrets_dir: Path,
    lock_timeout: float,
    concurrency: int,
    lease_duration: str,
    renew_deadline: str,
    retry_period: str,
    yes: bool,
) -> int:
    """Rotate the named deploy keys now; nothing else in the plan is applied."""
    wanted = frozenset(names)

    def only_rotations(plan: Plan) -> Plan:
        missing = sorted(wanted - plan.rotated_keys)
        if missing:
            raise ConfigError(
                f"no managed deploy key named {', '.join(missing)} "
                "(see `slotkeeper keys list`; use REPOSITORY/TITLE)"
            )
        return plan.only_rotations(wanted)

    console = _stdout()
    lease = _lease(lease_duration, renew_deadline, retry_period)
    with _ledger(state, lease=lease) as ledger, _ProgressBar(console) as progress:
        done = reconcile(
            manifests,
            ledger,
            options=_options(False, False, rotate=wanted),
            clock=utcnow,
            actor=_actor(),
            sink=SecretSink(secrets_dir),
            run=RunOptions(refresh=False, concurrency=concurrency, lock_timeout=lock_timeout),
            confirm=_confirm_on_tty(yes, console, progress),
            select=only_rotations,
            on_result=progress.advance,
            operator=targets,
        )
    if done.result is None:
        return EXIT_ERROR
    return _finish(done.result, console)


def _promotion_settings(
    target: str | None,
    repository: str | None,
    remote: str | None,
    branch: str,
    targets: OperatorTargets,
) -> PromotionSettings | None:
    """Where auto-promotion proposes, from the operator's flags (checked at start)."""
    if target is None:
        if repository is not None:
            raise click.UsageError("--promotion-repository needs --promotion-target")
        return None
    if target not in targets.specs:
        raise ConfigError(f"--promotion-target {target!r}: the targets file has no such target")
    found = repository or (repository_of(remote) if remote else None)
    if found is None:
        raise ConfigError("--promotion-repository is needed: the source names no GitHub repository")
    from slotkeeper.daemon.promoter import PromotionSettings  # the daemon loads only for `run`

    return PromotionSettings(target=target, repository=found, base=branch)


def _listen(value: str) -> tuple[str, int]:
    """``--listen HOST:PORT`` (an empty host: every interface), the port from 0 to 65535."""
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError as exc:
        raise click.BadParameter(
            f"expected HOST:PORT, got {value!r}", param_hint="--listen"
        ) from exc
    if not 0 <= number <= 65535:
        raise click.BadParameter(
            f"port {number} is out of range (0 to 65535)", param_hint="--listen"
        )
    return (host or "0.0.0.0", number)


def _webhook_secret(file: Path | None) -> bytes | None:
    """The webhook's HMAC key from ``--webhook-secret-file`` or ``SLOTKEEPER_WEBHOOK_SECRET``;
    None when neither is given. An empty or blank one is refused: an empty HMAC key would let
    anyone sign a webhook (``$(openssl rand -hex 32)`` is empty where openssl is missing)."""
    if file is not None:
        value = read_credential_file(file, owner="--webhook-secret-file").strip()
        where = f"--webhook-secret-file {file}"
    elif "SLOTKEEPER_WEBHOOK_SECRET" in os.environ:
        value = os.environ["SLOTKEEPER_WEBHOOK_SECRET"].strip()
        where = "SLOTKEEPER_WEBHOOK_SECRET"
    else:
        return None
    if not value:
        raise ConfigError(
            f"{where} is empty: refusing to verify webhooks with an empty secret (anyone could "
            "sign them); give a random secret of 32 bytes or more, or none to disable the hook"
        )
    return value.encode()


@cli.command()
@click.option(
    "--source",
    help="A manifest directory, or a git remote: git+https://…, "
    "git+ssh://…, file://… (default: -m).",
)
@manifests_option(help="Manifest directory, used when --source is not given.")
@click.option(
    "--branch",
    default="main",
    show_default=True,
    help="Git branch to follow; push webhooks for other branches trigger nothing.",
)
@click.option(
    "--path",
    "subpath",
    default=".",
    show_default=True,
    help="Manifests sub-directory inside the git repository.",
)
@click.option("--poll-interval", default="60s", show_default=True, help="Git polling interval.")
@click.option(
    "--resync-interval",
    default="5m",
    show_default=True,
    help="Reconcile at least this often, even without changes.",
)
@click.option(
    "--listen",
    default="0.0.0.0:8080",
    show_default=True,
    help="HOST:PORT for /healthz, /readyz, /metrics, /status and /hooks/github.",
)
@click.option(
    "--webhook-secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File with the GitHub webhook secret (or SLOTKEEPER_WEBHOOK_SECRET).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=Path(".slotkeeper/cache"),
    show_default=True,
    help="Where git checkouts are kept.",
)
@click.option("--once", is_flag=True, help="Reconcile once with these settings and exit.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Answer HTTP requests only for this Host name (repeatable; default: any, since probes "
    "come by pod IP).",
)
@click.option(
    "--promotion-target",
    metavar="NAME",
    help="The GitHub target (of the targets file) auto-promotion opens pull requests through "
    "(environments with spec.promotion.auto; needs a git --source).",
)
@click.option(
    "--promotion-repository",
    metavar="OWNER/REPO",
    help="The manifests' repository the pull requests are opened on (default: the one the git "
    "--source names on GitHub).",
)
@state_option
@targets_option
@guard_options
@apply_options
@lease_options
def run(
    source: str | None,
    manifests: Path,
    branch: str,
    subpath: str,
    poll_interval: str,
    resync_interval: str,
    listen: str,
    webhook_secret_file: Path | None,
    cache_dir: Path,
    once: bool,
    allowed_hosts: tuple[str, ...],
    promotion_target: str | None,
    promotion_repository: str | None,
    state: str,
    targets: OperatorTargets,
    allow_decommission: bool,
    allow_mass_decommission: bool,
    allow_empty: bool,
    secrets_dir: Path,
    lock_timeout: float,
    concurrency: int,
    lease_duration: str,
    renew_deadline: str,
    retry_period: str,
) -> int:
    """Run as a daemon: reconcile on every change, webhook and resync interval."""
    from slotkeeper.daemon import Daemon, DaemonSettings, install_signal_handlers

    secret = _webhook_secret(webhook_secret_file)
    lease = _lease(lease_duration, renew_deadline, retry_period)
    opened = open_source(source or str(manifests), branch=branch, path=subpath, cache_dir=cache_dir)
    promotion = _promotion_settings(
        promotion_target, promotion_repository, opened.remote(), branch, targets
    )
    settings = DaemonSettings(
        source=opened,
        promotion=promotion,
        options=_options(allow_decommission, allow_mass_decommission, allow_empty),
        run=RunOptions(
            refresh=True,
            concurrency=concurrency,
            lock_timeout=lock_timeout,
            strict_targets=False,
        ),
        sink=SecretSink(secrets_dir),
        actor=_actor(),
        poll_interval=_seconds(poll_interval),
        resync_interval=_seconds(resync_interval),
        listen=_listen(listen),
        webhook_secret=secret,
        branch=branch,
        allowed_hosts=frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None,
        targets=targets,
        election_interval=lease.retry_period,
    )
    with _ledger(state, lease=lease) as ledger:
        daemon = Daemon(settings, ledger)
        if not once:
            install_signal_handlers(daemon)
            _raise_open_files_limit()
        return daemon.run(once=once)


@cli.command()
@state_option
@targets_option
@manifests_option(
    default=None, help="Also read these manifests, to show suspended and frozen slots."
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT to serve the dashboard on.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Answer requests for this Host name too (repeatable; localhost, 127.0.0.1, ::1 and "
    "the --listen host always).",
)
def ui(
    state: str,
    targets: OperatorTargets,
    manifests: Path | None,
    listen: str,
    allowed_hosts: tuple[str, ...],
) -> int:
    """Serve the read-only dashboard over a ledger (what is deployed where), until Ctrl-C."""
    # templates, Starlette and uvicorn load only for this command
    from slotkeeper.dashboard.pages import Dashboard
    from slotkeeper.web.app import Site, build_app
    from slotkeeper.web.security import LOCAL_HOSTS
    from slotkeeper.web.server import serve

    host, port = _listen(listen)
    # Only names the operator chose: a page of another site whose name resolves here (DNS
    # rebinding) is refused.
    hosts = LOCAL_HOSTS | {h.lower() for h in allowed_hosts}
    if host not in ("0.0.0.0", "::", ""):
        hosts |= {host.lower().strip("[]")}
    desired = load_manifests(manifests, targets=targets) if manifests is not None else None
    with _ledger(state, create=False) as ledger:
        dashboard = Dashboard(
            ledger,
            clock=utcnow,
            desired=lambda: desired,
            source=str(manifests) if manifests is not None else None,
            manifests_url=origin_url(manifests) if manifests is not None else None,
        )
        site = Site(
            dashboard=dashboard,
            alive=lambda: True,
            ready=lambda: True,
            allowed_hosts=frozenset(hosts),
        )
        with serve(build_app(site), host, port) as server:
            shown = f"{host}:{server.port}"
            _stderr().print(
                f"Serving the dashboard of {ledger.url} at http://{shown}/ (Ctrl-C stops)"
            )
            _until_stopped()
    return 0


def _until_stopped() -> None:
    """Wait for SIGTERM or Ctrl-C (the server runs in its own thread meanwhile)."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _raise_open_files_limit() -> None:
    """Let the daemon's port hold thousands of connections (each a file descriptor): its soft
    RLIMIT_NOFILE, often 1,024, goes up to the hard limit (a million at most when that is
    unlimited). Where the kernel refuses, the soft limit stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@cli.command()
@click.option(
    "--targets",
    "of_targets",
    is_flag=True,
    help="The schema of a Target document of the operator's targets file instead.",
)
@click.option(
    "--notifier",
    "of_notifiers",
    is_flag=True,
    help="The schema of a Notifier document of the operator's targets file instead.",
)
def schema(of_targets: bool, of_notifiers: bool) -> int:
    """Print the JSON Schema of a manifest document (or of a targets file document)."""
    if of_targets and of_notifiers:
        raise click.UsageError("give --targets or --notifier, not both")
    kind = "Target" if of_targets else "Notifier" if of_notifiers else "Environment"
    _print_json(json_schema(kind))
    return EXIT_OK


def _error(message: str) -> None:
    console = _stderr()
    console.print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)


#: allocations between two young-generation collections (CPython's default: 700). Loading
#: 10,000 slots creates a few hundred thousand objects that all stay alive; at the default the
#: cyclic collector walks the growing older generations again and again and costs a third of
#: the load. None of these objects form cycles that must be freed early.
GC_YOUNG_THRESHOLD = 100_000
#: the longest a thread whose answer has arrived waits for the interpreter lock (CPython's
#: default is 5 ms: a quarter of a typical API round trip, spent idle, per target request)
SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """The process-wide settings slotkeeper runs with, made by the entry point and nowhere
    else (library code shares its process with its caller): fewer garbage collections while
    large object graphs are built, and quicker hand-overs between threads that wait on the
    network. Setting them again changes nothing."""
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
    sys.setswitchinterval(SWITCH_INTERVAL)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every known failure into a message and exit code 1."""
    tune_interpreter()
    try:
        code = cli.main(args=argv, prog_name="slotkeeper", standalone_mode=False)
    except click.exceptions.Abort:
        _stderr().print("Aborted.")
        code = EXIT_ERROR
    except click.ClickException as exc:
        exc.show()
        code = EXIT_ERROR
    except SlotkeeperError as exc:
        _error(str(exc).replace("[", "\\["))
        code = EXIT_ERROR
    except KeyboardInterrupt:
        code = 130
    sys.exit(code if isinstance(code, int) else EXIT_OK)


cli.add_command(promote)
cli.add_command(rollback)
cli.add_command(release_hold)

__all__ = ["cli", "main"]
