"""What every command of the CLI shares: exit codes, consoles, the options that several
commands take, and opening the ledger."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from rich.console import Console

from slotkeeper.credentials import resolve_secret
from slotkeeper.errors import (
    NoLedgerError,
)
from slotkeeper.ledger import (
    DEFAULT_STATE,
    LeaseSettings,
    Ledger,
    empty_ledger,
    open_ledger,
)
from slotkeeper.manifests import (
    NO_TARGETS,
    TARGETS_ENV,
    OperatorTargets,
    load_targets,
)
from slotkeeper.model import (
    SECRET_NAMESPACES_ENV,
    SECRET_REPOSITORIES_ENV,
    SecretRef,
    SinkPolicy,
    parse_duration,
)
from slotkeeper.plan import PlanOptions

DEFAULT_SECRETS_DIR = ".slotkeeper/secrets"
DEFAULT_LOCK_TIMEOUT = 10.0

F = TypeVar("F", bound=Callable[..., Any])


def utcnow() -> datetime:
    return datetime.now(UTC)


def _color_system() -> Literal["auto"] | None:
    """No escape codes at all under NO_COLOR or --no-color (not even bold), like terraform."""
    context = click.get_current_context(silent=True)
    no_color = bool(context and context.find_root().params.get("no_color"))
    return None if no_color or os.environ.get("NO_COLOR") else "auto"


#: the width of piped output: wider than any row, so that rich never wraps or crops one
UNWRAPPED = 1_000_000


def _stdout() -> Console:
    console = Console(highlight=False, color_system=_color_system())
    if not console.is_terminal:
        # Piped output is read by programs and people alike (`status | grep`): one row stays
        # one line, however long. Tables are as wide as their cells; lines are never padded.
        console = Console(highlight=False, color_system=None, width=UNWRAPPED, soft_wrap=True)
    return console


def _stderr() -> Console:
    # soft_wrap: one error stays one line (for grep and CI annotations); terminals wrap it.
    return Console(stderr=True, highlight=False, color_system=_color_system(), soft_wrap=True)


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False))


def _actor() -> str:
    explicit = os.environ.get("SLOTKEEPER_ACTOR") or os.environ.get("GITHUB_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _iso_time(value: str) -> datetime:
    """An ISO-8601 time, UTC when it names no zone (``ValueError`` when it is none)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_at(value: str | None) -> datetime | None:
    """``--at``: an ISO-8601 time (UTC when no zone is given) or an offset from now like +30d."""
    if value is None:
        return None
    try:
        if value.startswith("+"):
            return utcnow() + parse_duration(value[1:])
        return _iso_time(value)
    except ValueError as exc:
        raise click.BadParameter(
            "expected an ISO-8601 time such as 2026-12-24T00:00:00Z or an offset such as +30d",
            param_hint="--at",
        ) from exc


STATE_FILE_ENV = "SLOTKEEPER_STATE_FILE"


def _state_url(context: click.Context, _: click.Parameter, value: str) -> str:
    """``--state``, else the ledger URL in the file ``SLOTKEEPER_STATE_FILE`` names (a mounted
    secret: a PostgreSQL URL carries a password, which belongs in no environment variable),
    else ``SLOTKEEPER_STATE`` (the container image sets it to its SQLite default)."""
    path = os.environ.get(STATE_FILE_ENV, "").strip()
    if not path or context.get_parameter_source("state") is click.core.ParameterSource.COMMANDLINE:
        return value
    return resolve_secret(SecretRef(file=path), owner=STATE_FILE_ENV)


def state_option(func: F) -> F:
    """``--state``: the ledger URL."""
    return click.option(
        "--state",
        envvar="SLOTKEEPER_STATE",
        default=DEFAULT_STATE,
        show_default=True,
        callback=_state_url,
        help="Ledger URL: sqlite:///PATH (or a file path), or postgresql://USER@HOST:PORT/DB "
        f"(?schema=NAME for a schema of its own). Env: SLOTKEEPER_STATE, or {STATE_FILE_ENV} "
        "naming a file that holds it.",
    )(func)


def _operator_targets(
    context: click.Context, _: click.Parameter, value: Path | None
) -> OperatorTargets:
    operator = load_targets(value) if value is not None else NO_TARGETS
    return dataclasses.replace(operator, sinks=_sink_policy(context))


def _sink_policy(context: click.Context) -> SinkPolicy:
    """The operator's ``--secret-namespaces`` and ``--secret-repositories`` (see
    ``sink_options``)."""
    return SinkPolicy(
        namespaces=frozenset(context.meta.get("secret_namespaces", ())),
        repositories=tuple(context.meta.get("secret_repositories", ())),
    )


def _secret_places(context: click.Context, parameter: click.Parameter, value: str | None) -> None:
    """``--secret-namespaces`` / ``--secret-repositories``: eager, so that the ``--targets``
    callback finds them whatever the order on the command line."""
    items = [item for item in (value or "").replace(",", " ").split() if item]
    if parameter.name == "secret_repositories":
        for repository in items:
            owner, _, name = repository.partition("/")
            if not owner or not name or "/" in name:
                raise click.BadParameter(f"{repository!r} is not owner/repo or owner/*")
    context.meta[str(parameter.name)] = items


def targets_option(func: F) -> F:
    """``--targets``: the operator's targets file, the only place a target's URL and credential
    come from (the manifests only name targets); and where deploy keys may be delivered."""
    return click.option(
        "--targets",
        type=click.Path(path_type=Path),
        envvar=TARGETS_ENV,
        callback=_operator_targets,
        help="The operator's targets file (or directory): Target documents binding each target "
        f"to its URL and credential. The manifests only name targets. Env: {TARGETS_ENV}.",
    )(sink_options(func))


def sink_options(func: F) -> F:
    """``--secret-namespaces`` and ``--secret-repositories``: where the operator lets deploy
    keys be delivered beyond the secrets directory (nothing by default)."""
    func = click.option(
        "--secret-namespaces",
        envvar=SECRET_NAMESPACES_ENV,
        expose_value=False,
        is_eager=True,
        callback=_secret_places,
        help="Kubernetes namespaces deploy keys may be written to as Secrets (comma-separated; "
        f"none by default). Env: {SECRET_NAMESPACES_ENV}.",
    )(func)
    return click.option(
        "--secret-repositories",
        envvar=SECRET_REPOSITORIES_ENV,
        expose_value=False,
        is_eager=True,
        callback=_secret_places,
        help="Repositories (owner/repo or owner/*) whose Actions secrets deploy keys may be "
        f"written to (comma-separated; none by default). Env: {SECRET_REPOSITORIES_ENV}.",
    )(func)


def manifests_option(
    *, default: Path | None = Path(), help: str = "Manifest directory or file."
) -> Callable[[F], F]:
    """``-m/--manifests``: where the manifests are read from (every command declares it here)."""
    return click.option(
        "-m",
        "--manifests",
        type=click.Path(path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )


def manifest_options(func: F) -> F:
    """``-m/--manifests`` and ``--state``, shared by every command that reads them."""
    return manifests_option()(state_option(func))


def guard_options(func: F) -> F:
    func = click.option(
        "--allow-empty",
        is_flag=True,
        help="Allow manifests that declare no environment to remove everything recorded.",
    )(func)
    func = click.option(
        "--allow-mass-decommission",
        is_flag=True,
        help="Allow a plan that removes more than half of the deployed slots and deploy keys.",
    )(func)
    return click.option(
        "--allow-decommission",
        is_flag=True,
        help="Allow decommissions and key revocations in protected environments.",
    )(func)


def refresh_option(func: F) -> F:
    return click.option(
        "--refresh/--no-refresh",
        default=True,
        show_default=True,
        help="Ask the targets what they hold before planning (drift); --no-refresh plans offline.",
    )(func)


def secrets_dir_option(func: F) -> F:
    return click.option(
        "--secrets-dir",
        type=click.Path(path_type=Path),
        default=Path(DEFAULT_SECRETS_DIR),
        show_default=True,
        envvar="SLOTKEEPER_SECRETS_DIR",
        help="Where private deploy keys are written (mode 0600); plan checks they are there.",
    )(func)


def apply_options(func: F) -> F:
    func = click.option(
        "--concurrency",
        type=click.IntRange(1, 64),
        default=4,
        show_default=True,
        help="Slots whose targets are updated at the same time.",
    )(func)
    func = click.option(
        "--lock-timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT,
        show_default=True,
        help="Seconds to wait for another writer before failing.",
    )(func)
    return secrets_dir_option(func)


#: the writer lease's flags: (flag, default, environment variable, help)
LEASE_FLAGS = (
    (
        "--lease-duration",
        "15s",
        "SLOTKEEPER_LEASE_DURATION",
        "PostgreSQL ledger: how long the writer lease lasts past its last renewal; another "
        "replica takes over once it has expired.",
    ),
    (
        "--renew-deadline",
        "10s",
        "SLOTKEEPER_RENEW_DEADLINE",
        "PostgreSQL ledger: stop writing when the lease could not be renewed for this long "
        "(shorter than --lease-duration).",
    ),
    (
        "--retry-period",
        "2s",
        "SLOTKEEPER_RETRY_PERIOD",
        "How often the writer renews its lease, and a standby replica tries to take it.",
    ),
)


def lease_options(func: F) -> F:
    """The writer lease of a PostgreSQL ledger (client-go's leader election settings)."""
    for flag, default, env, text in reversed(LEASE_FLAGS):
        func = click.option(
            flag, default=default, show_default=True, envvar=env, help=f"{text} Env: {env}."
        )(func)
    return func


def _seconds(value: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h`` as seconds."""
    try:
        return parse_duration(value, seconds=True).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(f"not a duration: {value!r} (e.g. 30s, 5m, 1h)") from exc


def _lease(lease_duration: str, renew_deadline: str, retry_period: str) -> LeaseSettings:
    return LeaseSettings(
        duration=_seconds(lease_duration),
        renew_deadline=_seconds(renew_deadline),
        retry_period=_seconds(retry_period),
    )


@contextmanager
def _ledger(
    state: str,
    *,
    create: bool = True,
    lineage: str | None = None,
    lease: LeaseSettings | None = None,
) -> Iterator[Ledger]:
    """The ledger at ``state``. Writers create it when missing (with ``lineage``: a saved plan's);
    readers (``create=False``) never do: a mistyped --state is "no ledger at PATH", exit 1."""
    ledger = open_ledger(state, now=utcnow(), create=create, lineage=lineage, lease=lease)
    try:
        yield ledger
    finally:
        ledger.close()


@contextmanager
def _ledger_to_plan(state: str) -> Iterator[tuple[Ledger, str | None]]:
    """``plan``'s ledger: the one at ``state``, or before the first apply an empty one in memory
    (a first plan shows everything as new and creates nothing; ``apply`` creates the ledger),
    with a note saying so: on stderr, it makes a mistyped --state visible without spoiling
    --json or markdown."""
    note = None
    try:
        ledger = open_ledger(state, now=utcnow(), create=False)
    except NoLedgerError as exc:
        note = f"Note: {exc}; planned against an empty ledger (apply creates it)."
        ledger = empty_ledger(now=utcnow())
    try:
        yield ledger, note
    finally:
        ledger.close()


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
