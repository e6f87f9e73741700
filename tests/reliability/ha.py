"""The high-availability section of the reliability run: two ``slotkeeper run`` replicas on one
PostgreSQL ledger, the leader faulted in the middle of an apply, round after round (issue 17).

:func:`ha_scenario` makes a fresh PostgreSQL schema, a ``RecordingGitHub`` on loopback and
``ENVIRONMENTS`` x ``SLOTS`` slots on the github target, and starts two replicas with a short
lease (``FAST``). Each replica has its own GitHub token and actor (so the fake's requests and
the ledger's events tell them apart) and reaches PostgreSQL through a ``TcpProxy`` of its own
(so either can be partitioned). Every round:

1. declares a new version of every slot with the fake's latency at ``LATENCY``, so the apply
   lasts a few seconds, and waits until the leader has made 3 new writes;
2. faults the leader: ``kill`` (SIGKILL), ``freeze`` (SIGSTOP) or ``partition`` (its proxy
   blackholes the network), the kind drawn by a seeded RNG in cycles of all three;
3. measures the takeover: from the fault until the other replica's ``/status`` says it leads;
   then the latency goes back to 0 and the new leader must converge;
4. recovers the ex-leader (kill: a new replica with a new token and actor; freeze: SIGCONT;
   partition: heal) and checks that it made no remote write (by its token) and no ledger event
   (by its actor) after the fault, that it follows, and counts the writes it had refused
   (``slotkeeper_ledger_fenced_writes_total``);
5. checks the invariants: one DEPLOYED record per slot at the declared version, no remote
   deployment duplicated (its ``payload.slotkeeper.record_id`` seen once), and every DEPLOYED
   record's remote deployment there, in state success.

A request the leader had already sent when it was faulted may still land: what reaches the
fake or the ledger within ``GRACE`` seconds of the fault is counted apart ("in flight at the
fault"), everything after it is a violation.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families

from slotkeeper.ledger.postgres import split_url
from tests.conftest import POSTGRES
from tests.daemon_support import daemon_process, free_port
from tests.fakes.github import ALL_PERMISSIONS
from tests.fakes.webhook import FakeWebhook
from tests.helpers import environment, image, write_manifests
from tests.netfault import TcpProxy
from tests.reliability.harness import TRACEBACK, RecordingGitHub
from tests.reliability.notify import NotifyFigures, check_told, notifier_document
from tests.test_failover import events_by, max_event_seq

ENVIRONMENTS = 2
SLOTS = 10
#: the fault kinds, each injected on the leader in the middle of an apply
KINDS = ("kill", "freeze", "partition")
#: a short lease: duration 3 s, renew deadline 2 s, retry period 0.5 s
LEASE = 3.0
RETRY = 0.5
FAST = ("--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.5s")
#: the fake's latency during the apply that is faulted (every request, reads included)
LATENCY = 0.075
#: writes of the new apply the leader must have made before the fault
WRITES_BEFORE_FAULT = 3
#: the daemon's apply concurrency (its default): a frozen worker can have begun one request
CONCURRENCY = 4
#: what the faulted leader had already sent may land this long after the fault
GRACE = 0.5
#: how long a recovered ex-leader is watched before its writes are counted
WATCH = 3.0
#: the longest takeover the quick test accepts: the lease, a retry period, and slack
TAKEOVER_BOUND = LEASE + RETRY + 2.5


class HaError(Exception):
    """The scenario cannot go on (a replica did not come up, no takeover, no convergence)."""


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.1) -> float:
    """Poll ``check`` every ``poll`` seconds (an HTTP error counts as not yet); the seconds it
    took, or ``HaError`` once ``timeout`` has passed."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started >= timeout:
            raise HaError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


# -- figures --------------------------------------------------------------------------------


@dataclass
class HaFigures:
    """What the HA rounds did and found; ``ok`` when every invariant held in every round
    asked for."""

    rounds_asked: int = 0
    rounds: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    #: seconds from each fault to the other replica leading, by fault kind
    takeover_seconds: dict[str, list[float]] = field(default_factory=dict)
    #: writes the ex-leaders refused (the sum over ``by`` of their fenced-writes counter)
    fenced_refused: int = 0
    #: remote writes (by token) and ledger events (by actor) of an ex-leader after the fault
    ex_leader_remote_writes: int = 0
    ex_leader_ledger_events: int = 0
    #: what an ex-leader had sent before the fault and landed within GRACE of it
    in_flight_remote_writes: int = 0
    in_flight_ledger_events: int = 0
    #: requests a frozen ex-leader's workers were handing to the socket when SIGSTOP came,
    #: completed on SIGCONT (at most one a worker; never a ledger write)
    completed_on_waking: int = 0
    #: seconds from an ex-leader's recovery (SIGCONT, heal) until its ``slotkeeper_leader``
    #: gauge says it follows (while the new leader leads), by fault kind
    follow_seconds: dict[str, list[float]] = field(default_factory=dict)
    #: log lines of the replicas with a traceback or a logged exception (read, not judged)
    logged_exceptions: int = 0
    duplicates: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def takeovers(self) -> int:
        return sum(len(seconds) for seconds in self.takeover_seconds.values())

    def _all_takeovers(self) -> list[float]:
        return [s for seconds in self.takeover_seconds.values() for s in seconds]

    @property
    def max_takeover(self) -> float:
        return max(self._all_takeovers(), default=0.0)

    @property
    def median_takeover(self) -> float:
        found = self._all_takeovers()
        return statistics.median(found) if found else 0.0

    @property
    def ex_leader_writes(self) -> int:
        return self.ex_leader_remote_writes + self.ex_leader_ledger_events

    @property
    def ok(self) -> bool:
        return not (
            self.failures
            or self.duplicates
            or self.lost
            or self.ex_leader_writes
            or self.rounds < self.rounds_asked
        )

    def fail(self, message: str) -> None:
        if message not in self.failures:
            self.failures.append(message)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rounds_asked": self.rounds_asked,
            "rounds": self.rounds,
            "faults": {kind: self.faults[kind] for kind in KINDS},
            "takeovers": self.takeovers,
            "max_takeover_seconds": round(self.max_takeover, 2),
            "median_takeover_seconds": round(self.median_takeover, 2),
            "takeover_seconds_by_kind": {
                kind: {
                    "max": round(max(seconds), 2),
                    "median": round(statistics.median(seconds), 2),
                }
                for kind, seconds in sorted(self.takeover_seconds.items())
            },
            "ex_leader_follows_after_recovery_seconds": {
                kind: {
                    "max": round(max(seconds), 2),
                    "median": round(statistics.median(seconds), 2),
                }
                for kind, seconds in sorted(self.follow_seconds.items())
            },
            "fenced_writes_refused": self.fenced_refused,
            "ex_leader_writes_after_the_fault": self.ex_leader_writes,
            "ex_leader_remote_writes_after_the_fault": self.ex_leader_remote_writes,
            "ex_leader_ledger_events_after_the_fault": self.ex_leader_ledger_events,
            "completed_on_waking": self.completed_on_waking,
            "in_flight_at_the_fault": {
                "remote_writes": self.in_flight_remote_writes,
                "ledger_events": self.in_flight_ledger_events,
            },
            "logged_exceptions": self.logged_exceptions,
            "duplicates_found": len(self.duplicates),
            "records_lost": len(self.lost),
            "failures": self.failures,
            "duplicates": sorted(self.duplicates),
            "lost": sorted(self.lost),
            "seconds": round(self.seconds, 1),
        }

    def rows(self) -> list[tuple[str, str]]:
        data = self.as_json()
        rows = [
            ("HA rounds (asked)", f"{data['rounds']} ({data['rounds_asked']})"),
            ("faults on the leader", str(sum(data["faults"].values()))),
        ]
        rows += [(f"  {kind}", str(n)) for kind, n in data["faults"].items()]
        rows += [
            ("takeovers", str(data["takeovers"])),
            ("takeover seconds, max", f"{data['max_takeover_seconds']:.2f}"),
            ("takeover seconds, median", f"{data['median_takeover_seconds']:.2f}"),
        ]
        rows += [
            (f"  {kind}: max / median", f"{by['max']:.2f} / {by['median']:.2f}")
            for kind, by in data["takeover_seconds_by_kind"].items()
        ]
        rows += [
            (
                f"ex-leader follows after {kind}: max / median",
                f"{by['max']:.2f} / {by['median']:.2f}",
            )
            for kind, by in data["ex_leader_follows_after_recovery_seconds"].items()
        ]
        rows += [
            ("fenced writes refused", str(data["fenced_writes_refused"])),
            ("ex-leader writes after the fault", str(data["ex_leader_writes_after_the_fault"])),
            (
                "  in flight at the fault (remote, ledger)",
                f"{data['in_flight_at_the_fault']['remote_writes']}, "
                f"{data['in_flight_at_the_fault']['ledger_events']}",
            ),
            ("  completed on waking (freeze)", str(data["completed_on_waking"])),
            ("duplicates found", str(data["duplicates_found"])),
            ("records lost", str(data["records_lost"])),
            ("logged exceptions (replicas)", str(data["logged_exceptions"])),
            ("invariant failures", str(len(data["failures"]))),
            ("seconds", str(data["seconds"])),
            ("result", "PASS" if data["ok"] else "FAIL"),
        ]
        return rows

    def table(self) -> str:
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        lines = [f"{'HA figure'.ljust(width)}  value", f"{'-' * width}  -----"]
        lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"FAILED: {message}" for message in self.failures[:20]]
        return "\n".join(lines)


# -- the ledger and the replicas -------------------------------------------------------------


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A ledger URL in a fresh PostgreSQL schema, dropped afterwards (as the tests'
    ``postgres_schema_url``, raising ``HaError`` when PostgreSQL does not answer)."""
    schema = f"ha_{uuid.uuid4().hex[:16]}"
    try:
        connection = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise HaError(f"PostgreSQL is not reachable at {POSTGRES}: {exc}") from exc
    try:
        yield f"{POSTGRES}?schema={schema}"
    finally:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        connection.close()


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    libpq, schema = split_url(url)
    with psycopg.connect(libpq, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        return list(db.execute(sql).fetchall())


class Replica:
    """One `slotkeeper run` process with its token, actor and proxy to PostgreSQL; its logs go
    to files (a pipe nobody reads would block it once full)."""

    def __init__(self, name: str, token: str, *, root: Path, pg_url: str) -> None:
        self.name = name
        self.token = token
        parts = urlsplit(POSTGRES)
        self.proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
        state = pg_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{self.proxy.port}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = daemon_process(
            root,
            self.port,
            state,
            self.log,
            "--resync-interval",
            "10m",
            *FAST,
            GITHUB_TOKEN=token,
            SLOTKEEPER_ACTOR=name,
        )
        self.frozen = False
        try:
            wait_until(self.ready, timeout=30, what=f"{name} to be ready")
        except HaError:
            self.stop()
            raise

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise HaError(f"{self.name} exited {self.process.returncode}: {self.tail()}")
        return self.get("/readyz").status_code == 200

    def status(self) -> dict[str, Any]:
        return dict(self.get("/status").json())

    def leading(self) -> bool:
        return self.status()["leader"] is True

    def metric(self, name: str) -> float:
        """The sum of the samples called ``name`` (every label set)."""
        return sum(
            sample.value
            for family in text_string_to_metric_families(self.get("/metrics").text)
            for sample in family.samples
            if sample.name == name
        )

    def fenced(self) -> int:
        return int(self.metric("slotkeeper_ledger_fenced_writes_total"))

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def exceptions(self) -> list[str]:
        """Its log lines that carry a traceback or a logged exception."""
        found: list[str] = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                logged = isinstance(entry, dict) and ("exception" in entry or "exc_info" in entry)
                if logged or TRACEBACK in line:
                    found.append(line)
        return found

    def stop(self) -> None:
        """SIGTERM (SIGKILL when it does not stop in time); the proxy goes too."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.proxy.heal()
        self.proxy.close()


# -- the scenario ---------------------------------------------------------------------------


class HaRun:
    """The manifests, the fake, the ledger and the two replicas of one HA scenario."""

    def __init__(
        self,
        root: Path,
        gh: RecordingGitHub,
        pg_url: str,
        figures: HaFigures,
        say: Callable[[str], None],
        notifier_url: str | None = None,
    ) -> None:
        self.root = root
        self.gh = gh
        self.pg_url = pg_url
        self.figures = figures
        self.say = say
        self.serial = 0
        self.replicas: list[Replica] = []  # every one started, for the logs and the cleanup
        #: when a leader was faulted, and when a frozen or cut-off one came back (wall clock):
        #: a notification in flight then may be received twice (see tests/reliability/notify.py)
        self.faults: list[float] = []
        for e in range(ENVIRONMENTS):
            gh.add_repository(f"acme/svc{e}")
        root.mkdir(parents=True, exist_ok=True)
        target = {
            "apiVersion": "slotkeeper/v1",
            "kind": "Target",
            "metadata": {"name": "github"},
            "spec": {
                "type": "github",
                "baseUrl": gh.base_url,
                "token": {"env": "GITHUB_TOKEN"},
                "writesPerMinute": 10_000,
                "writesPerHour": 100_000,
            },
        }
        documents = [target, notifier_document(notifier_url)] if notifier_url else [target]
        (root / "targets.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))

    def declare(self, version: str) -> None:
        documents = []
        for e in range(ENVIRONMENTS):
            slots = {f"s{s:02d}": image(f"ghcr.io/acme/svc{e}-s{s}", version) for s in range(SLOTS)}
            document = environment(f"env{e}", slots, repository=f"acme/svc{e}", targets=["github"])
            for slot in document["spec"]["slots"].values():
                slot["ref"] = "main"
            documents.append(document)
        write_manifests(self.root / "m", *documents)

    def start(self) -> Replica:
        """A new replica, with a token and an actor of its own."""
        self.serial += 1
        name = f"replica-{self.serial:02d}"
        token = f"ghp_hareplica{self.serial:02d}0123456789"
        self.gh.tokens[token] = dict(ALL_PERMISSIONS)
        replica = Replica(name, token, root=self.root, pg_url=self.pg_url)
        self.replicas.append(replica)
        return replica

    def writes_by(self, replica: Replica) -> int:
        bearer = f"Bearer {replica.token}"
        return sum(1 for r in self.gh.writes() if r.headers.get("authorization") == bearer)

    def converged(self, replica: Replica, version: str, *, after: str | None) -> Callable[[], bool]:
        """Whether ``replica`` finished a reconcile (other than ``after``) that succeeded, with
        every slot on ``version``."""

        def check() -> bool:
            status = replica.status()
            last = status["last_reconcile"]
            versions = {row["artifact"]["version"] for row in status["slots"]}
            return (
                last is not None
                and last["id"] != after
                and last["result"] == "success"
                and versions == {version}
                and len(status["slots"]) == ENVIRONMENTS * SLOTS
            )

        return check

    def check(self, version: str, where: str) -> None:
        """One DEPLOYED record per slot at ``version``, each with its remote deployment in
        state success; no remote deployment duplicated or unknown to the ledger."""
        figures = self.figures
        records = query(
            self.pg_url, "SELECT id, environment, slot, status, artifact_version FROM records"
        )
        deployed: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for record_id, env, slot, status, artifact_version in records:
            if status == "DEPLOYED":
                deployed.setdefault((env, slot), []).append((record_id, artifact_version))
        for e in range(ENVIRONMENTS):
            for s in range(SLOTS):
                slot = (f"env{e}", f"s{s:02d}")
                found = deployed.get(slot, [])
                if not found:
                    figures.lost.add(f"{where}: {'/'.join(slot)} has no DEPLOYED record")
                elif len(found) > 1:
                    figures.duplicates.add(
                        f"{where}: {'/'.join(slot)} has {len(found)} DEPLOYED records"
                    )
                elif found[0][1] != version:
                    figures.fail(f"{where}: {'/'.join(slot)} is DEPLOYED at {found[0][1]}")
        remote: dict[int, list[dict[str, Any]]] = {}
        for e in range(ENVIRONMENTS):
            for deployment in self.gh.deployments("acme", f"svc{e}"):
                identity = (deployment.get("payload") or {}).get("slotkeeper") or {}
                record_id = identity.get("record_id")
                if not isinstance(record_id, int):
                    figures.fail(f"{where}: deployment {deployment['id']} carries no record id")
                    continue
                remote.setdefault(record_id, []).append(deployment)
        for record_id, items in remote.items():
            if len(items) > 1:
                figures.duplicates.add(f"record {record_id}: {len(items)} GitHub deployments")
        known = {row[0] for row in records}
        for record_id in remote.keys() - known:
            figures.lost.add(f"GitHub deployment of record {record_id} not in the ledger")
        for found in deployed.values():
            for record_id, _ in found:
                items = remote.get(record_id, [])
                if not items:
                    figures.lost.add(f"{where}: DEPLOYED record {record_id} has no deployment")
                elif (state := self.gh.latest_state(items[0]["id"])) != "success":
                    figures.fail(f"{where}: record {record_id}'s deployment is {state}")

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        for replica in self.replicas:
            found = replica.exceptions()
            self.figures.logged_exceptions += len(found)
            for line in found[:3]:
                self.say(f"logged exception of {replica.name}: {line[:300]}")


def schedule(rounds: int, seed: int) -> list[str]:
    """The fault of each round: cycles of every kind, each cycle in a seeded order."""
    rng = random.Random(seed)
    kinds: list[str] = []
    while len(kinds) < rounds:
        cycle = list(KINDS)
        rng.shuffle(cycle)
        kinds += cycle
    return kinds[:rounds]


def ha_scenario(
    scratch: Path,
    *,
    rounds: int,
    seed: int,
    figures: HaFigures,
    say: Callable[[str], None] = lambda _: None,
    notify: NotifyFigures | None = None,
) -> None:
    """``rounds`` faults on the leader of two replicas, mid-apply; see the module. With
    ``notify``, the replicas tell a webhook of every deploy, and each must be told once."""
    figures.rounds_asked = rounds
    started = time.monotonic()
    kinds = schedule(rounds, seed)
    with fresh_schema() as pg_url, RecordingGitHub(seed=seed) as gh, FakeWebhook() as webhook:
        run = HaRun(scratch, gh, pg_url, figures, say, webhook.url if notify else None)
        try:
            run.declare("v1")
            leader = run.start()
            wait_until(leader.leading, timeout=30, what="a first leader")
            wait_until(run.converged(leader, "v1", after=None), timeout=60, what="v1 applied")
            standby = run.start()
            if standby.leading():
                raise HaError("the second replica leads beside the first")
            run.check("v1", "start")
            epoch = int(leader.status()["lease"]["epoch"])
            say(f"ha: {leader.name} leads (epoch {epoch}), {standby.name} stands by")
            for number, kind in enumerate(kinds, start=1):
                try:
                    leader, standby, epoch = ha_round(run, number, kind, leader, standby, epoch)
                except HaError as exc:
                    figures.fail(f"round {number} ({kind}): {exc}")
                    break
                figures.rounds += 1
            if notify is not None:
                check_told("ha", pg_url, webhook, notify, faults=run.faults)
        finally:
            gh.latency = 0.0
            run.stop()
            figures.seconds += time.monotonic() - started


def ha_round(
    run: HaRun, number: int, kind: str, leader: Replica, standby: Replica, epoch: int
) -> tuple[Replica, Replica, int]:
    """One round; the new leader, the new standby and the new epoch."""
    figures, gh = run.figures, run.gh
    version = f"v{number + 1}"
    where = f"round {number} ({kind})"
    standby_last = (standby.status()["last_reconcile"] or {}).get("id")
    fenced_before = leader.fenced()
    writes_before = run.writes_by(leader)
    gh.latency = LATENCY
    run.declare(version)
    wait_until(
        lambda: run.writes_by(leader) >= writes_before + WRITES_BEFORE_FAULT,
        timeout=30,
        what=f"{leader.name}'s apply of {version}",
    )
    # the fault
    at_fault_writes = run.writes_by(leader)
    at_fault_seq = max_event_seq(run.pg_url)
    fault = time.monotonic()
    run.faults.append(time.time())
    if kind == "kill":
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(timeout=10)
    elif kind == "freeze":
        leader.process.send_signal(signal.SIGSTOP)
        leader.frozen = True
    else:
        leader.proxy.blackhole()
    figures.faults[kind] += 1
    try:
        # the takeover, and what was in flight when the fault came
        after_grace: tuple[int, int] | None = None
        took: float | None = None
        while took is None:
            now = time.monotonic() - fault
            if after_grace is None and now >= GRACE:
                after_grace = (run.writes_by(leader), max_event_seq(run.pg_url))
            with contextlib.suppress(httpx.HTTPError):
                if standby.leading():
                    took = time.monotonic() - fault
                    break
            if now > 30:
                raise HaError(f"{standby.name} did not take over within 30s of the fault")
            time.sleep(0.1)
        if after_grace is None:
            time.sleep(max(0.0, GRACE - (time.monotonic() - fault)))
            after_grace = (run.writes_by(leader), max_event_seq(run.pg_url))
        figures.takeover_seconds.setdefault(kind, []).append(took)
        figures.in_flight_remote_writes += after_grace[0] - at_fault_writes
        figures.in_flight_ledger_events += events_by(
            run.pg_url, leader.name, after=at_fault_seq
        ) - events_by(run.pg_url, leader.name, after=after_grace[1])
        lease = standby.status()["lease"]
        if lease["epoch"] != epoch + 1 or lease["this_replica"] is not True:
            figures.fail(f"{where}: the new leader's lease is {lease}, after epoch {epoch}")
        gh.latency = 0.0
        converged = wait_until(
            run.converged(standby, version, after=standby_last),
            timeout=60,
            what=f"{standby.name} to converge on {version}",
        )
        # the ex-leader, before and after it comes back
        snapshot_writes = run.writes_by(leader)
        snapshot_seq = max_event_seq(run.pg_url)
    finally:
        gh.latency = 0.0
        if kind == "freeze":
            leader.process.send_signal(signal.SIGCONT)
            leader.frozen = False
        elif kind == "partition":
            leader.proxy.heal()
        run.faults.append(time.time())
    recovered = time.monotonic()
    if kind == "kill":
        leader.stop()
        follower = run.start()
    else:
        follower = leader
    # The gauge first: /status may wait on the ex-leader's ledger session, /metrics never does.
    follows = wait_until(
        lambda: follower.metric("slotkeeper_leader") == 0.0,
        timeout=20,
        what=f"{follower.name}'s slotkeeper_leader gauge to say it follows",
    )
    wait_until(
        lambda: not follower.leading(), timeout=20, what=f"{follower.name}'s /status to follow"
    )
    if kind != "kill":
        figures.follow_seconds.setdefault(kind, []).append(follows)
    time.sleep(max(0.0, WATCH - (time.monotonic() - recovered)))
    remote = run.writes_by(leader) - after_grace[0]
    events = events_by(run.pg_url, leader.name, after=after_grace[1])
    late = run.writes_by(leader) - snapshot_writes
    if kind == "freeze" and remote == late and late <= CONCURRENCY:
        # Requests a worker was handing to the socket when SIGSTOP came (its writer check
        # passed just before): they complete on SIGCONT, one a worker at most; nothing in the
        # process can recall them (see docs/ledger.md, "The writer lease and fencing").
        figures.completed_on_waking += late
        remote = 0
    figures.ex_leader_remote_writes += remote
    figures.ex_leader_ledger_events += events
    if remote or events:
        late_events = events_by(run.pg_url, leader.name, after=snapshot_seq)
        figures.fail(
            f"{where}: the ex-leader {leader.name} wrote after the fault: {remote} remote "
            f"writes ({late} after it came back), {events} ledger events ({late_events} after "
            "it came back)"
        )
    fenced = 0 if kind == "kill" else leader.fenced() - fenced_before
    figures.fenced_refused += fenced
    if follower.leading() or not standby.leading():
        figures.fail(f"{where}: after the recovery {standby.name} no longer leads alone")
    new_epoch = int(standby.status()["lease"]["epoch"])
    if new_epoch != epoch + 1:
        figures.fail(f"{where}: the epoch moved from {epoch} to {new_epoch}")
    run.check(version, where)
    run.say(
        f"ha {where}: {standby.name} took over in {took:.2f}s (epoch {new_epoch}), "
        f"converged {converged:.1f}s later; {follower.name} followed {follows:.1f}s after "
        "the recovery; "
        f"{leader.name} in flight {after_grace[0] - at_fault_writes}, after the fault "
        f"{remote} remote / {events} ledger, fenced {fenced}"
    )
    return standby, follower, new_epoch
