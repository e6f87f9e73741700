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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from slotkeeper import observability as obs
from slotkeeper.dashboard.pages import Dashboard
from slotkeeper.dashboard.server import answer, bind, refuse_host, send_headers
from slotkeeper.errors import SlotkeeperError, TargetError, public_reason
from slotkeeper.execute import ApplyResult, Outcome
from slotkeeper.keys import SecretSink
from slotkeeper.ledger import Ledger
from slotkeeper.manifests import NO_TARGETS, OperatorTargets
from slotkeeper.model import DesiredState, KeyStatus, RecordStatus, timestamp
from slotkeeper.plan import Plan, PlanOptions
from slotkeeper.reconcile import RunOptions, Snapshot, reconcile, tolerant_snapshot
from slotkeeper.sources import Checkout, DirectorySource, GitSource

ENDPOINTS = frozenset({"/", "/keys", "/healthz", "/readyz", "/metrics", "/status", "/hooks/github"})
MAX_BODY = 1024 * 1024
#: how long the loop may go without a tick (between reconciles) before /healthz fails
STALL_AFTER = 120.0
#: how long one reconcile may run before /healthz calls the loop stuck
RECONCILE_STUCK_AFTER = 3600.0


@dataclass(frozen=True)
class DaemonSettings:
    source: DirectorySource | GitSource
    options: PlanOptions
    run: RunOptions
    sink: SecretSink
    actor: str
    poll_interval: float = 60.0
    resync_interval: float = 300.0
    listen: tuple[str, int] = ("0.0.0.0", 8080)
    webhook_secret: bytes | None = None
    #: the ``Host`` names answered (None: any, e.g. kubelet probes by pod IP)
    allowed_hosts: frozenset[str] | None = None
    #: the branch followed (``--branch``): a push webhook for any other ref triggers nothing,
    #: whatever the source (a watched directory is taken to be a checkout of this branch)
    branch: str = "main"
    backoff_base: float = 5.0
    backoff_max: float = 600.0
    #: how often a follower tries to become the leader
    election_interval: float = 1.0
    #: the operator's targets (``--targets``), read at start: the manifests only name them
    targets: OperatorTargets = NO_TARGETS


@dataclass
class LastReconcile:
    id: str
    reason: str
    started_at: datetime
    finished_at: datetime | None = None
    revision: str | None = None
    result: str = "running"
    duration_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    blocked: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason,
            "started_at": timestamp(self.started_at),
            "finished_at": timestamp(self.finished_at) if self.finished_at else None,
            "revision": self.revision,
            "result": self.result,
            "duration_seconds": round(self.duration_seconds, 3),
            "counts": self.counts,
            "blocked": self.blocked,
            "error": self.error,
        }


class Daemon:
    """The reconcile loop and its HTTP endpoints."""

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
        self.ready = threading.Event()
        self.last: LastReconcile | None = None
        self.last_tick = time.monotonic()
        self.busy_since: float | None = None
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, datetime] = {}
        # HTTP threads check-and-remember deliveries one at a time (the ledger keeps them, so a
        # restart or a failover forgets nothing).
        self._deliveries_lock = threading.Lock()
        self._log = obs.get_logger()
        self.is_leader = False
        self._stand_after = 0.0
        self._seen_request: int | None = None
        self.bound_port: int | None = None
        self._applied_version: str | None = None
        #: the manifests of the last reconcile, for what only they say (suspend, freeze)
        self.desired: DesiredState | None = None
        self.dashboard = Dashboard(
            ledger,
            clock=clock,
            desired=lambda: self.desired,
            last_reconcile=lambda: self.last.document() if self.last else None,
            extra=lambda: {"leader": self.is_leader, "source": settings.source.describe()},
            source=settings.source.describe(),
        )
        obs.LEADER.set(0)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Reconcile until stopped (or once); the exit code is 0 unless ``once`` failed."""
        if once:
            return 0 if self.reconcile("once") else 1
        server = self._serve()
        watcher = threading.Thread(target=self._watch, name="source-watch", daemon=True)
        watcher.start()
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
        next_resync = time.monotonic() + self.settings.resync_interval
        try:
            while not self.stopping.is_set():
                self.last_tick = time.monotonic()
                if not self._elect():
                    self.stopping.wait(self.settings.election_interval)
                    continue
                self._forwarded_requests()
                try:
                    reason = self.triggers.get(timeout=min(1.0, self.settings.resync_interval))
                except queue.Empty:
                    if time.monotonic() < next_resync:
                        continue
                    reason = "resync"
                if self.stopping.is_set():
                    break
                while not self.triggers.empty():  # coalesce a burst of triggers into one run
                    self.triggers.get_nowait()
                self.reconcile(reason)
                next_resync = time.monotonic() + self.settings.resync_interval
        finally:
            self.stopping.set()
            if self.is_leader:
                self.ledger.resign()
            server.shutdown()
            server.server_close()
            self._log.info("daemon.stopped")
        return 0

    def _elect(self) -> bool:
        """Leader election through the ledger's writer lock: only its holder reconciles. A
        follower stays ready and keeps trying; a leader that lost the lock (its database
        session) stops at once and becomes a follower."""
        if self.is_leader and not self.ledger.leading():
            self.is_leader = False
            obs.LEADER.set(0)
            # Stand aside a while so a healthy replica can take over.
            self._stand_after = time.monotonic() + 3 * self.settings.election_interval
            self._log.error("leader.lost", message="lost the ledger's writer lock: not writing")
        if not self.is_leader and time.monotonic() >= self._stand_after:
            try:
                won = self.ledger.try_lead()
            except SlotkeeperError as exc:
                self._log.warning("leader.election_failed", error=str(exc))
                won = False
            if won:
                self.is_leader = True
                obs.LEADER.set(1)
                self._log.info("leader.elected")
                self.triggers.put("elected")
            else:
                obs.LEADER.set(0)
        if not self.is_leader:
            self.ready.set()  # a follower is ready: it serves, and stands by
        return self.is_leader

    def _forwarded_requests(self) -> None:
        """Reconcile requests other replicas left in the ledger (webhooks that reached them)."""
        try:
            latest = self.ledger.latest_request()
        except SlotkeeperError as exc:
            self._log.warning("ledger.read_failed", error=str(exc))
            return
        if self._seen_request is None:
            self._seen_request = latest
        elif latest > self._seen_request:
            self._seen_request = latest
            self.triggers.put("forwarded")

    def _should_stop(self) -> bool:
        """Between actions: stop on SIGTERM, or at once when leadership was lost."""
        if self.stopping.is_set():
            return True
        if self.is_leader and not self.ledger.leading():
            self._log.error("leader.lost", message="lost the ledger's writer lock mid-apply")
            return True
        return False

    def stop(self) -> None:
        self.stopping.set()
        self.triggers.put("stop")

    def reconcile(self, reason: str) -> bool:
        """One reconcile; returns whether it ended without failures."""
        reconcile_id = uuid.uuid4().hex[:12]
        started = self.clock()
        last = LastReconcile(id=reconcile_id, reason=reason, started_at=started)
        self.last = last
        structlog.contextvars.bind_contextvars(reconcile_id=reconcile_id)
        timer = time.perf_counter()
        self.busy_since = time.monotonic()
        result_label = "error"
        try:
            checkout = self.settings.source.fetch()
            self._applied_version = checkout.version
            shot = self._snapshot(checkout)
            self.desired = shot.desired
            last.revision = shot.revision.sha if shot.revision else checkout.version
            structlog.contextvars.bind_contextvars(revision=last.revision)
            self._log.info(obs.RECONCILE_STARTED, reason=reason, revision=last.revision)
            done = reconcile(
                shot,
                self.ledger,
                options=self.settings.options,
                clock=self.clock,
                actor=self.settings.actor,
                sink=self.settings.sink,
                run=self.settings.run,
                select=self._back_off,
                stop=self._should_stop,
            )
            assert done.result is not None
            self._record(done.plan, done.result, last)
            result_label = (
                "degraded" if shot.desired.broken else "success" if done.result.ok else "failure"
            )
            if shot.desired.broken:
                last.error = "; ".join(e for b in shot.desired.broken for e in b.errors)
        except SlotkeeperError as exc:
            # /status shows it: a target's words stay in the log (and the ledger)
            last.error = public_reason(exc) if isinstance(exc, TargetError) else str(exc)
            self._log.error(obs.RECONCILE_FAILED, reason=reason, error=str(exc))
        finally:
            elapsed = time.perf_counter() - timer
            last.result = result_label
            last.finished_at = self.clock()
            last.duration_seconds = elapsed
            obs.RECONCILES.labels(result=result_label).inc()
            obs.RECONCILE_SECONDS.labels(result=result_label).observe(elapsed)
            if result_label == "success":
                obs.LAST_SUCCESS.set(time.time())
            self._update_gauges()
            self._log.info(
                obs.RECONCILE_FINISHED, result=result_label, duration_ms=round(elapsed * 1000, 1)
            )
            structlog.contextvars.unbind_contextvars("reconcile_id", "revision")
            self.busy_since = None
            self.last_tick = time.monotonic()
            self.ready.set()
        return result_label == "success"

    # -- manifests: last good version per file, kept in the ledger ---------------------------

    def _snapshot(self, checkout: Checkout) -> Snapshot:
        """Load the manifests; a broken file is replaced by its last good version (stored in
        the ledger, so a restarted daemon or ``run --once`` has it too) and removals that
        depend on it are held by the planner."""
        shot = tolerant_snapshot(checkout.manifests, self.ledger, self.settings.targets)
        obs.MANIFESTS_INVALID.set(len(shot.desired.broken))
        return shot

    # -- back-off per failing environment ---------------------------------------------------

    def _back_off(self, the_plan: Plan) -> Plan:
        now = self.clock()
        waiting = {env for env, until in self._retry_at.items() if until > now}
        if not waiting:
            return the_plan
        actions = tuple(
            a.model_copy(
                update={
                    "blocked": f"backing off after failures until "
                    f"{self._retry_at[a.environment].strftime('%H:%M:%SZ')}"
                }
            )
            if a.environment in waiting and a.blocked is None
            else a
            for a in the_plan.actions
        )
        return the_plan.model_copy(update={"actions": actions})

    def _record(self, the_plan: Plan, result: ApplyResult, last: LastReconcile) -> None:
        by_id = {a.id: a for a in the_plan.actions}
        failed_envs: set[str] = set()
        for item in result.results:
            action = by_id.get(item.action_id)
            obs.ACTIONS.labels(
                type=item.type.value,
                # every label starts with the environment: "production/api", "production/key:…"
                environment=action.environment if action else item.label.partition("/")[0],
                target=item.target or "ledger",
                result=item.outcome.value,
            ).inc()
            if item.outcome is Outcome.FAILED and action is not None:
                failed_envs.add(action.environment)
        now = self.clock()
        for env in {a.environment for a in the_plan.actions} | set(self._failures):
            if env in failed_envs:
                count = self._failures.get(env, 0) + 1
                self._failures[env] = count
                delay = min(
                    self.settings.backoff_base * 2 ** (count - 1), self.settings.backoff_max
                )
                self._retry_at[env] = now + timedelta(seconds=delay)
                self._log.warning(
                    "environment.backing_off", environment=env, failures=count, retry_in_s=delay
                )
            elif env in self._failures and not self._retry_at.get(env, now) > now:
                self._failures.pop(env, None)
                self._retry_at.pop(env, None)
        last.counts = {o.value: result.count(o) for o in Outcome}
        last.blocked = [
            {"action": a.type.value, "where": a.label, "reason": a.blocked or ""}
            for a in the_plan.blocked
        ]

    def _update_gauges(self) -> None:
        try:
            counts = self.ledger.slot_counts()
            keys = self.ledger.keys()
        except SlotkeeperError:
            return
        for status in obs.SLOT_STATUSES:
            obs.SLOTS.labels(status=status).set(counts.get(RecordStatus(status), 0))
        now = self.clock()
        for key in keys:
            if key.status is KeyStatus.ACTIVE:
                obs.KEY_AGE.labels(repository=key.repository, title=key.title).set(
                    (now - key.created_at).total_seconds()
                )

    # -- sources ----------------------------------------------------------------------------

    def _watch(self) -> None:
        source = self.settings.source
        if isinstance(source, DirectorySource):
            source.watch(self.stopping, lambda: self.triggers.put("change"))
            return
        while not self.stopping.wait(self.settings.poll_interval):
            try:
                head = source.peek()
            except SlotkeeperError as exc:
                self._log.warning("source.poll_failed", error=str(exc))
                continue
            if self._applied_version is not None and head != self._applied_version:
                self.triggers.put("change")

    # -- HTTP -------------------------------------------------------------------------------

    def _serve(self) -> ThreadingHTTPServer:
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "slotkeeper"

            def log_message(self, format: str, *args: Any) -> None:
                return  # requests are not logged line by line

            def do_GET(self) -> None:
                if not refuse_host(self, daemon.settings.allowed_hosts):
                    daemon._get(self)

            def do_POST(self) -> None:
                if not refuse_host(self, daemon.settings.allowed_hosts):
                    daemon._post(self)

        host, port = self.settings.listen
        server = bind(host, port, Handler)
        self.bound_port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        return server

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.partition("?")[0]
        if path == "/healthz":
            _reply(handler, 200 if self.alive() else 503, {"alive": self.alive()})
        elif path == "/readyz":
            ready = self.ready.is_set()
            _reply(handler, 200 if ready else 503, {"ready": ready})
        elif path == "/metrics":
            body = generate_latest(obs.REGISTRY)
            _reply_bytes(handler, 200, body, CONTENT_TYPE_LATEST)
        else:
            found = answer(self.dashboard, handler.path)
            _reply_bytes(handler, found.status, found.body, found.content_type)

    def alive(self) -> bool:
        """The loop is waiting and ticking, or in a reconcile that has not run for too long
        (a long apply — rate-limit waits, Unkey polling — is not a dead loop)."""
        if self.stopping.is_set():
            return False
        now = time.monotonic()
        busy = self.busy_since
        if busy is not None:
            return now - busy < RECONCILE_STUCK_AFTER
        return now - self.last_tick < STALL_AFTER

    def status_document(self) -> dict[str, Any]:
        """What ``/status`` returns (and the dashboard shows)."""
        return self.dashboard.status()

    def _first_delivery(self, delivery: str, body: bytes) -> bool:
        keys = delivery_keys(delivery, body)
        with self._deliveries_lock:
            try:
                return self.ledger.first_delivery(keys, at=self.clock(), window=REPLAY_WINDOW)
            except SlotkeeperError as exc:
                self._log.warning("webhook.replay_check_failed", error=str(exc))
                return False  # unsure: refuse; the resync interval reconciles anyway

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path.split("?")[0] != "/hooks/github":
            _reply(handler, 404, {"error": "not found"})
            return
        try:
            length = int(handler.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            _reply(handler, 413 if length > MAX_BODY else 400, {"error": "bad body size"})
            handler.close_connection = True
            return
        body = handler.rfile.read(length)
        secret = self.settings.webhook_secret
        signature = handler.headers.get("X-Hub-Signature-256") or ""
        expected = "sha256=" + hmac.new(secret or b"", body, hashlib.sha256).hexdigest()
        if secret is None or not hmac.compare_digest(signature, expected):
            self._log.warning("webhook.refused", reason="bad or missing signature")
            _reply(handler, 401, {"error": "bad signature"})
            return
        delivery = handler.headers.get("X-GitHub-Delivery") or ""
        if not self._first_delivery(delivery, body):
            self._log.warning("webhook.refused", reason="replayed delivery or body")
            _reply(handler, 200, {"accepted": False, "reason": "duplicate delivery"})
            return
        event = handler.headers.get("X-GitHub-Event") or ""
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            _reply(handler, 400, {"error": "body is not JSON"})
            return
        if _depth(payload) > MAX_JSON_DEPTH:
            _reply(handler, 400, {"error": f"body is nested deeper than {MAX_JSON_DEPTH}"})
            return
        if event == "ping":
            _reply(handler, 200, {"accepted": True, "event": "ping"})
            return
        ignored = self._other_branch(event, payload)
        if ignored is not None:
            self._log.info("webhook.ignored", github_event=event, delivery=delivery, reason=ignored)
            _reply(handler, 200, {"accepted": False, "event": event, "reason": ignored})
            return
        if self.is_leader:
            self.triggers.put("webhook")
        else:  # the leader picks it up from the ledger within a second
            self.ledger.request_reconcile("webhook", at=self.clock())
        self._log.info(
            "webhook.accepted", github_event=event, delivery=delivery, leader=self.is_leader
        )
        _reply(handler, 202, {"accepted": True, "event": event})

    def _other_branch(self, event: str, payload: Any) -> str | None:
        """Why a push is not for the followed branch (None when it is, or not a push): a push
        to another branch or a tag changes nothing that is followed, so it reconciles nothing."""
        if event != "push":
            return None
        wanted = f"refs/heads/{self.settings.branch}"
        ref = payload.get("ref") if isinstance(payload, dict) else None
        if ref == wanted:
            return None
        if not isinstance(ref, str):
            return f"a push without a ref; following {wanted}"
        return f"a push to {ref[:200]}, not to the followed {wanted}"


#: how deep a webhook body may nest (GitHub's push payloads stay under 10 levels)
MAX_JSON_DEPTH = 32


def _depth(document: Any) -> int:
    """How deeply ``document`` nests lists and objects, counted without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


#: how long a signed webhook delivery is remembered (GitHub redelivers within days at most
#: when asked; a replay after that finds nothing new to reconcile anyway)
REPLAY_WINDOW = timedelta(days=3)


def delivery_keys(delivery: str, body: bytes) -> list[str]:
    """What a delivery is remembered by: its id, and a digest of its body (a captured body
    re-sent under a new or missing id is a replay too)."""
    keys = [f"body:{hashlib.sha256(body).hexdigest()}"]
    if delivery:
        keys.append(f"delivery:{delivery[:200]}")
    return keys


def _reply(handler: BaseHTTPRequestHandler, status: int, document: Any) -> None:
    _reply_bytes(handler, status, json.dumps(document).encode(), "application/json")


def _reply_bytes(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
    handler.send_response(status)
    send_headers(handler, kind, len(body))
    handler.wfile.write(body)


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGTERM/SIGINT stop after the action in flight; SIGHUP reconciles now."""
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.triggers.put("reload"))
