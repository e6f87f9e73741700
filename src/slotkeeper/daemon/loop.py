"""``slotkeeper run``: keep the environments converged, on its own, for as long as it runs.

One loop thread reconciles on a source change (a watched directory, or a polled git remote),
on a signed GitHub webhook, and every resync interval even when nothing changed (to heal drift
and retry failed target syncs). Errors back off exponentially per failing environment. A broken
manifest file keeps its last good version (kept in the ledger) for its environments, so the
others still converge, nothing outside the environments of valid files is removed, and the
daemon says so loudly: a log event, ``/status``, the dashboard and a gauge. SIGTERM lets the
action in flight finish, then exits 0; SIGHUP reconciles at once. One HTTP port serves
``ENDPOINTS`` and the read-only dashboard (``/``, ``/keys``, ``/slots/ENV/SLOT`` and their JSON
twins under ``/status``).

The loop is this module; each of its collaborators has its own: ``leadership`` (the election),
``backoff`` (the delay policy and its bookkeeping), ``webhook`` (the receiver), ``watch`` (the
source watcher), ``gauges`` (the metrics), ``status`` (the state other threads read), and the
HTTP port in ``slotkeeper.web``.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from slotkeeper import observability as obs
from slotkeeper.daemon import gauges
from slotkeeper.daemon.backoff import BackOffPolicy, EnvironmentBackOff
from slotkeeper.daemon.leadership import Leadership
from slotkeeper.daemon.notifier import NotificationSender
from slotkeeper.daemon.promoter import Promoter
from slotkeeper.daemon.settings import DaemonSettings
from slotkeeper.daemon.status import DaemonStatus, LastReconcile
from slotkeeper.daemon.watch import watch
from slotkeeper.daemon.webhook import WebhookReceiver
from slotkeeper.dashboard.pages import Dashboard
from slotkeeper.errors import SlotkeeperError, TargetError, public_reason
from slotkeeper.execute import ApplyResult, Outcome
from slotkeeper.ledger import Ledger
from slotkeeper.manifests import ParseCache
from slotkeeper.model import DesiredState, Scope
from slotkeeper.notify.pipeline import Notifications
from slotkeeper.plan import Plan
from slotkeeper.reconcile import reconcile, tolerant_snapshot
from slotkeeper.scope import scope_of
from slotkeeper.web.app import Site, build_app
from slotkeeper.web.server import WebServer

#: the triggers that come from a change of the source: their reconcile plans only the
#: environments whose files changed (a full one runs on every other trigger)
SCOPED_REASONS = frozenset({"change", "webhook"})


class Daemon:
    """The reconcile loop, and the collaborators it drives."""

    def __init__(
        self,
        settings: DaemonSettings,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock
        self.stopping = threading.Event()
        self.triggers: queue.Queue[str] = queue.Queue()
        self.status = DaemonStatus()
        self.leadership = Leadership(
            ledger,
            status=self.status,
            trigger=self.triggers.put,
            interval=settings.election_interval,
            clock=clock,
        )
        self._retry = BackOffPolicy(settings.backoff_base, settings.backoff_max)
        self._errors = 0
        self.backoff = EnvironmentBackOff(self._retry, clock=clock)
        self.webhook = WebhookReceiver(
            secret=settings.webhook_secret,
            branch=settings.branch,
            ledger=ledger,
            ask=self.leadership.ask,
            clock=clock,
        )
        self.dashboard = Dashboard(
            ledger,
            clock=clock,
            desired=self.status.desired,
            last_reconcile=self.status.last_document,
            extra=lambda: {
                "leader": self.leadership.leading(),
                "lease": self.leadership.document(),
                "source": settings.source.describe(),
                "notifications": self.notifications.document(),
            },
            source=settings.source.describe(),
            manifests_url=settings.source.remote(),
        )
        self.notifications = Notifications(
            ledger,
            settings.targets.notifiers,
            clock=clock,
            may_write=self.leadership.leading,
        )
        self.sender = NotificationSender(self.notifications, self.stopping)
        self._once = False
        # proposes as the leader, or as the one `run --once` (GitHub refuses a second open pull
        # request from one branch, so even two of those never make two)
        self.promoter = Promoter(
            settings.promotion,
            settings.source,
            ledger,
            clock=clock,
            may_write=lambda: self._once or self.leadership.leading(),
        )
        self.delivery_gauges = gauges.DeliveryGauges()
        #: each manifest file's parse, by content: a reconcile parses only what changed
        self.parse_cache = ParseCache()
        #: the environments the last reconcile converged, all of them (None: it did not)
        self._converged: frozenset[str] | None = None
        self._log = obs.get_logger()
        gauges.track_leader(self.leadership.leading)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Reconcile until stopped (or once); the exit code is 0 unless ``once`` failed."""
        if once:
            self._once = True
            ok = self.reconcile("once")
            self.sender.send_now()
            self.sender.stop()
            return 0 if ok else 1
        server = self.serve_http()
        self.sender.start()
        self._watch_source()
        self._log.info(
            "daemon.started",
            source=self.settings.source.describe(),
            listen=f"{self.settings.listen[0]}:{self.settings.listen[1]}",
        )
        if self.settings.webhook_secret is None:
            self._log.warning(
                "webhook.disabled",
                message="no webhook secret configured: POST /hooks/github answers 401 to all",
            )
        self.triggers.put("start")
        try:
            self._loop()
        finally:
            self.stop()
            self.sender.stop()
            self.leadership.resign()
            server.stop()
            self._log.info("daemon.stopped")
        return 0

    def _loop(self) -> None:
        """While this replica leads: reconcile on each trigger, and every resync interval."""
        next_resync = time.monotonic() + self.settings.resync_interval
        while not self.stopping.is_set():
            self.status.tick()
            if not self.leadership.elect():
                self.stopping.wait(self.settings.election_interval)
                continue
            self.leadership.pick_up_forwarded()
            reason = self._next_trigger(resync_due=time.monotonic() >= next_resync)
            if reason is None:
                continue
            if self.stopping.is_set():
                break
            self.reconcile(reason)
            next_resync = time.monotonic() + self._until_next_resync()

    def _until_next_resync(self) -> float:
        """The resync interval; sooner after a reconcile that did not get to its end (the
        ledger unreachable, a database restart, the lease lost): then in a back-off's delay,
        doubling while it keeps happening, so the work left over is not left for minutes."""
        last = self.status.last()
        self._errors = self._errors + 1 if last is not None and last.result == "error" else 0
        if not self._errors:
            return self.settings.resync_interval
        delay = min(self._retry.delay(self._errors), self.settings.resync_interval)
        self._log.warning("reconcile.retrying", in_seconds=delay, errors_in_a_row=self._errors)
        return delay

    def _next_trigger(self, *, resync_due: bool) -> str | None:
        """The next trigger, waited for a second at most ("resync" when none came and one is
        due); a burst of triggers is one reconcile, named after the first."""
        try:
            reason = self.triggers.get(timeout=min(1.0, self.settings.resync_interval))
        except queue.Empty:
            return "resync" if resync_due else None
        while not self.triggers.empty():
            self.triggers.get_nowait()
        return reason

    def _should_stop(self) -> bool:
        """Between actions: stop on SIGTERM, or at once when leadership was lost."""
        return self.stopping.is_set() or self.leadership.lost_mid_apply()

    def stop(self) -> None:
        self.stopping.set()
        self.status.stop()
        self.triggers.put("stop")

    # -- one reconcile ----------------------------------------------------------------------

    def reconcile(self, reason: str) -> bool:
        """One reconcile; returns whether it ended without failures."""
        last = LastReconcile(id=uuid.uuid4().hex[:12], reason=reason, started_at=self.clock())
        self.status.started(last)
        structlog.contextvars.bind_contextvars(reconcile_id=last.id)
        timer = time.perf_counter()
        try:
            last = self._converge(last)
        except SlotkeeperError as exc:
            # /status shows it: a target's words stay in the log (and the ledger)
            error = public_reason(exc) if isinstance(exc, TargetError) else str(exc)
            last = replace(self.status.last() or last, error=error)
            self._log.error(obs.RECONCILE_FAILED, reason=reason, error=str(exc))
        finally:
            last = self._finish(last, time.perf_counter() - timer)
        return last.result == "success"

    def _converge(self, last: LastReconcile) -> LastReconcile:
        """Fetch the source, load it (broken files at their last good version, from the
        ledger), reconcile with the back-off's holds, and say how it ended."""
        checkout = self.settings.source.fetch()
        self.status.set_fetched(checkout.version)
        shot = tolerant_snapshot(
            checkout.manifests, self.ledger, self.settings.targets, self.parse_cache
        )
        gauges.manifests_loaded(len(shot.desired.broken))
        self.status.set_desired(shot.desired)
        revision = shot.revision.sha if shot.revision else checkout.version
        self.status.revision_known(revision)
        structlog.contextvars.bind_contextvars(revision=revision)
        self._log.info(obs.RECONCILE_STARTED, reason=last.reason, revision=revision)
        self.sender.before_reconcile(shot.desired)
        scope = self._scope(last.reason, shot.desired)
        if scope is not None:
            self._log.info("reconcile.scoped", environments=sorted(scope.environments))
        self._converged = None
        done = reconcile(
            shot,
            self.ledger,
            options=self.settings.options,
            clock=self.clock,
            actor=self.settings.actor,
            sink=self.settings.sink,
            run=self.settings.run,
            select=self.backoff.block,
            stop=self._should_stop,
            scope=scope,
        )
        assert done.result is not None
        gauges.actions_done(done.plan, done.result)
        self.backoff.record(
            (a.environment for a in done.plan.actions), failed_environments(done.plan, done.result)
        )
        self.sender.after_reconcile(shot.desired)
        if not shot.desired.broken:  # proposes only from a whole, valid checkout
            self.promoter.propose(shot.desired)
        if done.result.ok and not done.result.count(Outcome.DEFERRED) and not shot.desired.broken:
            self._converged = frozenset(shot.desired.environments)
        broken = shot.desired.broken
        return replace(
            last,
            revision=revision,
            result="degraded" if broken else "success" if done.result.ok else "failure",
            counts={o.value: done.result.count(o) for o in Outcome},
            blocked=[
                {"action": a.type.value, "where": a.label, "reason": a.blocked or ""}
                for a in done.plan.blocked
            ],
            error="; ".join(e for b in broken for e in b.errors) if broken else None,
        )

    def _scope(self, reason: str, desired: DesiredState) -> Scope | None:
        """The environments this reconcile plans: after an edit of the source, those whose
        files changed since the last reconcile (and those sharing a repository with them, see
        :mod:`slotkeeper.scope`); every one at start, on the resync interval, on a signal, on
        a request (an approval, a released hold), after a reconcile that did not end well,
        while a file is broken, or when an environment was removed."""
        known = self._converged
        if reason not in SCOPED_REASONS or known is None or desired.broken:
            return None
        if not known <= desired.environments.keys():
            return None
        parsed = {str(path) for path in self.parse_cache.last_parsed}
        changed = {
            name
            for name in desired.environments
            if name not in known
            or (where := desired.locations.get(name)) is None
            or where.file in parsed
        }
        return scope_of(changed, desired)

    def _finish(self, last: LastReconcile, elapsed: float) -> LastReconcile:
        """Count the reconcile (one that did not get to its end is an error), then publish it:
        whoever sees it finished on ``/status`` finds it counted on ``/metrics``."""
        result = "error" if last.result == "running" else last.result
        gauges.reconcile_finished(result, elapsed)
        gauges.ledger_figures(self.ledger, now=self.clock())
        self.delivery_gauges.update(self.ledger, now=self.clock())
        self._log.info(obs.RECONCILE_FINISHED, result=result, duration_ms=round(elapsed * 1000, 1))
        structlog.contextvars.unbind_contextvars("reconcile_id", "revision")
        last = replace(last, result=result, finished_at=self.clock(), duration_seconds=elapsed)
        self.status.finished(last)
        return last

    # -- what other threads see and do ------------------------------------------------------

    @property
    def last(self) -> LastReconcile | None:
        """The last reconcile (the running one while it runs)."""
        return self.status.last()

    def status_document(self) -> dict[str, Any]:
        """What ``/status`` returns (and the dashboard shows)."""
        return self.dashboard.status()

    def site(self) -> Site:
        """Everything the daemon's port serves."""
        return Site(
            dashboard=self.dashboard,
            alive=self.status.alive,
            ready=self.status.ready,
            allowed_hosts=self.settings.allowed_hosts,
            metrics=True,
            webhook=self.webhook,
        )

    def serve_http(self) -> WebServer:
        """Bind the port (a ``ConfigError`` when it cannot be had) and serve it from a
        background thread; the caller stops it."""
        host, port = self.settings.listen
        server = WebServer(build_app(self.site()), host, port)
        server.start()
        return server

    def _watch_source(self) -> None:
        threading.Thread(
            target=watch,
            kwargs={
                "source": self.settings.source,
                "stopping": self.stopping,
                "trigger": self.triggers.put,
                "fetched": self.status.fetched,
                "poll_interval": self.settings.poll_interval,
            },
            name="source-watch",
            daemon=True,
        ).start()


def failed_environments(plan: Plan, result: ApplyResult) -> set[str]:
    """The environments with an action that failed (they back off)."""
    by_id = {a.id: a for a in plan.actions}
    return {
        by_id[item.action_id].environment
        for item in result.results
        if item.outcome is Outcome.FAILED and item.action_id in by_id
    }


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGTERM/SIGINT stop after the action in flight; SIGHUP reconciles now."""
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.triggers.put("reload"))
