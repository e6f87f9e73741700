"""The deploy-key commands: keys list, keys rotate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from slotkeeper import render
from slotkeeper.cli import common
from slotkeeper.cli.apply import _confirm_on_tty, _finish, _ProgressBar
from slotkeeper.cli.codes import EXIT_ERROR, EXIT_OK
from slotkeeper.cli.common import (
    _actor,
    _lease,
    _ledger,
    _options,
    _print_json,
    _stdout,
    apply_options,
    lease_options,
    manifest_options,
    targets_option,
)
from slotkeeper.errors import (
    ConfigError,
)
from slotkeeper.keys import SecretSink
from slotkeeper.manifests import (
    OperatorTargets,
)
from slotkeeper.model import (
    SyncSubject,
)
from slotkeeper.plan import Plan
from slotkeeper.reconcile import RunOptions, reconcile

if TYPE_CHECKING:
    pass


@click.group()
def keys() -> None:
    """Deploy keys slotkeeper manages."""


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
            clock=common.utcnow,
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
