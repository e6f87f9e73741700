"""The operators' decisions about held actions: approve, reject."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from slotkeeper.approvals import find_held
from slotkeeper.cli import common
from slotkeeper.cli.codes import EXIT_OK
from slotkeeper.cli.common import (
    _actor,
    _ledger,
    _stdout,
    state_option,
)
from slotkeeper.model import (
    APPROVAL_TTL,
    Decision,
    parse_duration,
)

if TYPE_CHECKING:
    pass


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
    now = common.utcnow()
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


@click.command()
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
        expires_at=common.utcnow() + ttl,
        override_freeze=override_freeze,
    )
    return EXIT_OK


@click.command()
@click.argument("wanted", metavar="ACTION_ID|ENV/SLOT")
@state_option
@click.option("--reason", default="", help="Why: kept in the ledger and the audit log.")
def reject(wanted: str, state: str, reason: str) -> int:
    """Refuse one held action: it stays held and is no longer shown as awaiting approval
    (a later approve still lets it through)."""
    _decide(state, wanted, Decision.REJECTED, reason=reason)
    return EXIT_OK
