"""Promotion commands: ``promote`` and ``rollback`` write artifacts into the manifests (a
byte-preserving edit, a diff, optionally a commit); ``release-hold`` ends a rollback's hold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from slotkeeper.cli import common
from slotkeeper.cli.codes import EXIT_OK
from slotkeeper.cli.common import (
    _actor,
    _ledger,
    _stderr,
    _stdout,
    manifest_options,
    state_option,
    targets_option,
)
from slotkeeper.errors import ConfigError
from slotkeeper.ledger import Ledger
from slotkeeper.manifests import OperatorTargets, load_manifests
from slotkeeper.model import DesiredState
from slotkeeper.promote import Change, commit, edit, is_clean, message, write
from slotkeeper.promotion import Move, candidates, decide, moves_between, rule_for


def _slot_argument(value: str) -> tuple[str, str]:
    environment, _, slot = value.partition("/")
    if not environment or not slot or "/" in slot:
        raise click.BadParameter(f"{value!r}: expected ENV/SLOT, e.g. production/api")
    return environment, slot


def write_options(func: click.decorators.FC) -> click.decorators.FC:
    """What `promote` and `rollback` do with the edit: show it, write it, commit it."""
    func = click.option(
        "--force",
        metavar="REASON",
        help="Write what the promotion policy would hold, with this reason in the commit "
        "message (the planner still holds it until `slotkeeper approve`).",
    )(func)
    func = click.option(
        "--commit", "make_commit", is_flag=True, help="Commit the edited manifests (git)."
    )(func)
    return click.option("--dry-run", is_flag=True, help="Print the diff only; change no file.")(
        func
    )


def _decided(ledger: Ledger, desired: DesiredState, moves: Sequence[Move]) -> list[Move]:
    facts = ledger.promotion_evidence(candidates(moves))
    return decide(moves, desired.environments, facts, common.utcnow())


def _carry_out(
    manifests: Path,
    desired: DesiredState,
    moves: Sequence[Move],
    *,
    verb: str,
    title: str,
    dry_run: bool,
    make_commit: bool,
    force: str | None,
) -> None:
    """Refuse what would be held (unless forced), then show the diff and write or commit."""
    held = [move for move in moves if move.held]
    if held and force is None:
        for move in held:
            _stderr().print(f"held: {move.environment}/{move.slot}: {move.held}", markup=False)
        raise ConfigError(
            f"{verb} refused: {len(held)} of {len(moves)} change"
            f"{'s' if len(moves) != 1 else ''} would be held by the promotion policy (above); "
            "--force REASON writes them anyway, and the planner holds them until approved"
        )
    change: Change = edit(desired, moves)
    console = _stdout()
    console.print(change.diff(), markup=False, highlight=False, end="")
    if dry_run:
        return
    if make_commit and not is_clean(manifests, list(change.files)):
        names = ", ".join(str(path) for path in sorted(change.files))
        raise ConfigError(f"{names}: uncommitted changes; commit or stash them first")
    write(change)
    if make_commit:
        sha = commit(manifests, change, message(verb, title, moves, forced=force))
        console.print(f"Committed {sha[:12]}: {verb} {title}.", markup=False)
    else:
        count = len(change.files)
        console.print(
            f"Wrote {count} file{'s' if count != 1 else ''}: commit them to apply.", markup=False
        )


@click.command()
@click.argument("source", metavar="FROM")
@click.argument("target", metavar="TO")
@click.argument("slots", nargs=-1, metavar="[SLOT]...")
@manifest_options
@targets_option
@write_options
def promote(
    source: str,
    target: str,
    slots: tuple[str, ...],
    manifests: Path,
    state: str,
    targets: OperatorTargets,
    dry_run: bool,
    make_commit: bool,
    force: str | None,
) -> int:
    """Write the artifacts deployed in FROM (the ledger's) into TO's manifest, for every slot
    of TO (or the SLOTs named) where they differ: a round-trip edit that keeps comments, order
    and quoting; prints the diff. Refused when the promotion policy would hold any of them."""
    desired = load_manifests(manifests, targets=targets)
    for name in (source, target):
        if name not in desired.environments:
            raise ConfigError(f"no environment {name!r} in the manifests under {manifests}")
    policy = desired.environments[target].promotion
    if policy is not None and policy.from_ != source:
        raise ConfigError(f"{target!r} is promoted from {policy.from_!r}, not from {source!r}")
    unknown = [slot for slot in slots if slot not in desired.environments[target].slots]
    if unknown:
        raise ConfigError(f"{target!r} declares no slot {', '.join(map(repr, unknown))}")
    with _ledger(state, create=False) as ledger:
        deployed = ledger.read_state().deployed
        moves = moves_between(desired.environments, deployed, source, target, slots)
        decided = _decided(ledger, desired, moves)
    if not decided:
        _stdout().print(f"Nothing to promote: {target} asks for what {source} runs.")
        return EXIT_OK
    _carry_out(
        manifests,
        desired,
        decided,
        verb="promote",
        title=f"{source} -> {target}",
        dry_run=dry_run,
        make_commit=make_commit,
        force=force,
    )
    return EXIT_OK


@click.command()
@click.argument("where", metavar="ENV/SLOT")
@click.option(
    "--to",
    "to_record",
    type=click.IntRange(min=1),
    help="The record whose artifact to go back to (default: the one the deployed record replaced).",
)
@manifest_options
@targets_option
@write_options
def rollback(
    where: str,
    to_record: int | None,
    manifests: Path,
    state: str,
    targets: OperatorTargets,
    dry_run: bool,
    make_commit: bool,
    force: str | None,
) -> int:
    """Write the previous artifact of ENV/SLOT (or that of record --to) into its manifest;
    once applied, the artifact it replaces is held out of the slot until `release-hold`."""
    environment, slot = _slot_argument(where)
    desired = load_manifests(manifests, targets=targets)
    spec = desired.environments.get(environment)
    if spec is None or slot not in spec.slots:
        raise ConfigError(f"the manifests under {manifests} declare no slot {environment}/{slot}")
    with _ledger(state, create=False) as ledger:
        current = ledger.read_state().deployed.get((environment, slot))
        if current is None:
            raise ConfigError(f"nothing is deployed in {environment}/{slot}")
        back = ledger.record(to_record) if to_record else ledger.predecessor(current.id)
        if back is None:
            raise ConfigError(f"{environment}/{slot} ran nothing before #{current.id}")
        if (back.environment, back.slot) != (environment, slot) or back.id == current.id:
            raise ConfigError(f"record #{back.id} is not an earlier record of {environment}/{slot}")
        if back.artifact == spec.slots[slot].artifact:
            _stdout().print(
                f"Nothing to write: {environment}/{slot} already asks for "
                f"{back.artifact.describe()}."
            )
            return EXIT_OK
        rule = rule_for(spec, slot)
        move = Move(
            environment=environment,
            slot=slot,
            artifact=back.artifact,
            previous=spec.slots[slot].artifact,
            source=f"#{back.id}",
            upstream=rule.upstream if rule is not None else None,
        )
        decided = _decided(ledger, desired, [move])
    _carry_out(
        manifests,
        desired,
        decided,
        verb="rollback",
        title=f"{environment}/{slot}",
        dry_run=dry_run,
        make_commit=make_commit,
        force=force,
    )
    return EXIT_OK


@click.command("release-hold")
@click.argument("where", metavar="ENV/SLOT")
@state_option
@click.option("--reason", default="", help="Why: kept in the ledger and the audit log.")
def release_hold(where: str, state: str, reason: str) -> int:
    """End the holds a rollback put on ENV/SLOT: the artifact rolled back there may be
    deployed (promoted) into it again. Recorded with the actor and reason."""
    environment, slot = _slot_argument(where)
    actor = _actor()
    with _ledger(state, create=False) as ledger:
        released = ledger.release_holds(
            environment, slot, actor=actor, reason=reason, at=common.utcnow()
        )
        if not released:
            raise ConfigError(f"no hold stands on {environment}/{slot}")
        ledger.request_reconcile(f"release-hold {environment}/{slot}", at=common.utcnow())
    console = _stdout()
    for hold in released:
        console.print(
            f"Released the hold on {hold.artifact.describe()} in {environment}/{slot} "
            f"(rolled back: #{hold.record} by #{hold.by_record}), by {actor}."
        )
    return EXIT_OK
