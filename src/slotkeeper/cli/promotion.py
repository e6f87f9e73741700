"""Promotion commands: ``release-hold`` (and, beside it, ``promote`` and ``rollback``)."""

from __future__ import annotations

import click

from slotkeeper.cli.common import EXIT_OK, _actor, _ledger, _stdout, state_option, utcnow
from slotkeeper.errors import ConfigError


def _slot_argument(value: str) -> tuple[str, str]:
    environment, _, slot = value.partition("/")
    if not environment or not slot or "/" in slot:
        raise click.BadParameter(f"{value!r}: expected ENV/SLOT, e.g. production/api")
    return environment, slot


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
        released = ledger.release_holds(environment, slot, actor=actor, reason=reason, at=utcnow())
        if not released:
            raise ConfigError(f"no hold stands on {environment}/{slot}")
        ledger.request_reconcile(f"release-hold {environment}/{slot}", at=utcnow())
    console = _stdout()
    for hold in released:
        console.print(
            f"Released the hold on {hold.artifact.describe()} in {environment}/{slot} "
            f"(rolled back: #{hold.record} by #{hold.by_record}), by {actor}."
        )
    return EXIT_OK
