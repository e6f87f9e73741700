"""The long-running commands: run (the daemon) and ui (the dashboard)."""

from __future__ import annotations

import os
import resource
import signal
import threading
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import click

from slotkeeper.cli import common
from slotkeeper.cli.common import (
    _actor,
    _lease,
    _ledger,
    _options,
    _seconds,
    _stderr,
    apply_options,
    guard_options,
    lease_options,
    manifests_option,
    state_option,
    targets_option,
)
from slotkeeper.credentials import read_credential_file
from slotkeeper.errors import (
    ConfigError,
)
from slotkeeper.keys import SecretSink
from slotkeeper.manifests import (
    OperatorTargets,
    load_manifests,
)
from slotkeeper.reconcile import RunOptions
from slotkeeper.sources import open_source, origin_url, repository_of

if TYPE_CHECKING:
    from slotkeeper.daemon.promoter import PromotionSettings


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


@click.command()
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


@click.command()
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
            clock=common.utcnow,
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
