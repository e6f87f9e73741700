"""The delivery metrics command: dora."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from slotkeeper import render
from slotkeeper.cli import common
from slotkeeper.cli.codes import EXIT_OK
from slotkeeper.cli.common import (
    _iso_time,
    _ledger,
    _moment,
    _print_json,
    _stdout,
    manifest_options,
)
from slotkeeper.dora.metrics import Rules
from slotkeeper.dora.report import GROUPINGS, Query, report
from slotkeeper.errors import (
    ConfigError,
)
from slotkeeper.ledger import (
    Ledger,
)
from slotkeeper.model import (
    parse_duration,
)

if TYPE_CHECKING:
    pass


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
    end = common.utcnow()
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


@click.command()
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
