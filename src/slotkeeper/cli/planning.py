"""The commands that read the manifests and the ledger and change nothing: validate, plan.

They import neither the executor nor the targets' clients: a plan without a refresh opens no
target, so what it loads is the manifests, the ledger and the planner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from slotkeeper import render
from slotkeeper.cli import common
from slotkeeper.cli.codes import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from slotkeeper.cli.common import (
    _ledger_to_plan,
    _options,
    _parse_at,
    _print_json,
    _sink_policy,
    _stderr,
    _stdout,
    guard_options,
    manifest_options,
    manifests_option,
    refresh_option,
    secrets_dir_option,
    sink_options,
    targets_option,
)
from slotkeeper.errors import ConfigError, ManifestError, ManifestErrors
from slotkeeper.keys import SecretSink
from slotkeeper.manifests import NO_TARGETS, TARGETS_ENV, OperatorTargets, load_targets
from slotkeeper.planfile import save_plan
from slotkeeper.reconcile import RunOptions, make_plan, snapshot


@click.command()
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


@click.command("plan")
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
    clock = (lambda: moment) if moment else common.utcnow
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
