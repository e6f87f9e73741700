"""``apply``: plan and apply, or apply a saved plan; the progress bar and the confirmation."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from slotkeeper import render
from slotkeeper.cli import common
from slotkeeper.cli.codes import EXIT_CHANGES, EXIT_ERROR, EXIT_HELD, EXIT_OK
from slotkeeper.cli.common import (
    _actor,
    _lease,
    _ledger,
    _options,
    _stdout,
    apply_options,
    guard_options,
    lease_options,
    manifest_options,
    refresh_option,
    targets_option,
)
from slotkeeper.errors import (
    ConfigError,
)
from slotkeeper.execute import ActionResult, ApplyResult, Outcome
from slotkeeper.keys import SecretSink
from slotkeeper.manifests import (
    OperatorTargets,
)
from slotkeeper.notify.pipeline import Notifications
from slotkeeper.plan import Plan
from slotkeeper.planfile import load_plan
from slotkeeper.reconcile import RunOptions, apply_saved, reconcile

if TYPE_CHECKING:
    pass


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


@click.command()
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
                clock=common.utcnow,
                actor=_actor(),
                sink=sink,
                run=run,
                on_result=progress.advance,
                operator=targets,
                show=lambda plan: render.render_plan(plan, console),
            )
            return _finish(result, console, detailed=detailed_exitcode)
        notifications = Notifications(ledger, targets.notifiers, clock=common.utcnow)
        try:
            done = reconcile(
                manifests,
                ledger,
                options=_options(allow_decommission, allow_mass_decommission, allow_empty),
                clock=common.utcnow,
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
