"""Notifications under crashes and failovers: every transition told, none twice but in doubt.

:func:`kill_scenario` runs one ``slotkeeper run`` on an SQLite ledger with a webhook notifier
pointed at a :class:`FakeWebhook` in this process (slowed by a latency, so that a kill often
lands while messages are being sent), declares a new version of every slot, SIGKILLs the daemon
a random moment later and starts a new one, ``kills`` times; then lets the last one converge and
empty its outbox. :func:`check_told` compares what the fake received with what the ledger says
happened: one message per ``record.deployed`` audit event (its id is the event's), none lost.

A message is marked sent when its endpoint answered 2xx. A process killed (or frozen, then
replaced) after its request left and before the answer came back cannot know whether it
arrived: the next leader sends it again, with the same id (and ``Idempotency-Key``) for the
receiver to deduplicate — no HTTP sender can do better. So a message received twice is counted
apart as "in doubt" when its first copy reached the fake within ``IN_DOUBT`` seconds before a
fault (the request in flight then); any other repeat is a violation. The HA scenario
(``ha.py``) runs the same check over its failovers.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from slotkeeper.ledger import open_ledger
from tests.daemon_support import daemon_process, free_port
from tests.fakes.webhook import FakeWebhook
from tests.helpers import environment, image, write_manifests

ENVIRONMENTS = 2
SLOTS = 8
#: the fake webhook's latency: sending a reconcile's messages takes a second or two
LATENCY = 0.04
#: a request in flight at a fault reached the fake at most this long before it (the fake's
#: latency, the time to send one request, and slack)
IN_DOUBT = LATENCY + 0.5
#: what the notifier is told: deploys only, as fast as the fake takes them
NOTIFIER_EVENTS = ["deployed"]


def notifier_document(url: str) -> dict[str, Any]:
    """A webhook notifier for the deploys, unpaced (the fake takes anything)."""
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Notifier",
        "metadata": {"name": "hooks"},
        "spec": {
            "type": "webhook",
            "url": url,
            "events": NOTIFIER_EVENTS,
            "ratePerMinute": 6000,
        },
    }


@dataclass
class NotifyFigures:
    """What the notification checks found, per scenario (``kill``, ``ha``)."""

    kills: int = 0
    expected: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    lost: dict[str, list[str]] = field(default_factory=dict)
    duplicates: dict[str, dict[str, int]] = field(default_factory=dict)
    #: messages received twice whose first copy was in flight at a fault (see the module)
    in_doubt: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and not any(self.lost.values())
            and not any(self.duplicates.values())
            and not any(self.unexpected.values())
            and bool(self.expected)
        )

    def as_json(self) -> dict[str, object]:
        return {
            "kills": self.kills,
            "expected": self.expected,
            "received": self.received,
            "lost": {k: v[:20] for k, v in self.lost.items()},
            "duplicates": self.duplicates,
            "in_doubt": self.in_doubt,
            "unexpected": {k: v[:20] for k, v in self.unexpected.items()},
            "failures": self.failures,
            "ok": self.ok,
        }

    def table(self) -> str:
        rows: list[tuple[str, object]] = [("daemon SIGKILLs (notifications)", self.kills)]
        for where in sorted(self.expected):
            rows += [
                (f"{where}: messages expected", self.expected[where]),
                (f"{where}: messages received", self.received.get(where, 0)),
                (f"{where}: lost", len(self.lost.get(where, []))),
                (f"{where}: received twice", len(self.duplicates.get(where, {}))),
                (f"{where}: again, in doubt at a fault", self.in_doubt.get(where, 0)),
                (f"{where}: not expected", len(self.unexpected.get(where, []))),
            ]
        rows.append(("other failures", len(self.failures)))
        return "\n".join(f"{name:<40} {value}" for name, value in rows)


def check_told(
    where: str,
    state: str,
    webhook: FakeWebhook,
    figures: NotifyFigures,
    *,
    faults: list[float],
    timeout: float = 90,
) -> None:
    """Wait until every audit event was looked at and the ledger's outbox is empty, then
    compare the deploys the ledger recorded with the messages the fake received."""
    ledger = open_ledger(state, now=datetime.now(UTC), create=False)

    def settled() -> bool:
        told = ledger.notify_state()
        latest = ledger.events(last=1)
        if told is None or (latest and told.cursor < latest[-1].seq):
            return False
        return not any(m.sent_at is None and m.failed_at is None for m in ledger.outbox(last=10**6))

    try:
        deadline = time.monotonic() + timeout
        while not settled():
            if time.monotonic() > deadline:
                figures.failures.append(f"{where}: the outbox was not emptied in {timeout:g}s")
                break
            time.sleep(0.2)
        given_up = [m for m in ledger.outbox(last=100_000) if m.failed_at is not None]
        if given_up:
            figures.failures.append(f"{where}: {len(given_up)} messages given up")
        lineage = ledger.read_state().lineage
        expected = {f"{lineage}:e{e.seq}" for e in ledger.events(types=("record.deployed",))}
    finally:
        ledger.close()
    received = Counter(webhook.ids())
    first_arrival: dict[str, float] = {}
    for request in webhook.requests:
        body = request.json if isinstance(request.json, dict) else {}
        found = body.get("id")
        if request.status == 200 and isinstance(found, str):
            first_arrival.setdefault(found, request.arrived_at)
    figures.expected[where] = len(expected)
    figures.received[where] = sum(received.values())
    figures.lost[where] = sorted(expected - set(received))
    again = {i: n for i, n in received.items() if n > 1}
    in_doubt = {
        i
        for i in again
        if again[i] == 2 and any(t - IN_DOUBT <= first_arrival.get(i, 0.0) <= t for t in faults)
    }
    figures.in_doubt[where] = len(in_doubt)
    figures.duplicates[where] = {i: n for i, n in again.items() if i not in in_doubt}
    figures.unexpected[where] = sorted(set(received) - expected)


class _Daemon:
    """One ``slotkeeper run`` on the scenario's directory, logging to a file."""

    def __init__(self, root: Path, state: str, number: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = root / "logs" / f"daemon-{number:02d}.log"
        self.process = daemon_process(root, self.port, state, log, "--resync-interval", "2s")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited {self.process.returncode}: see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the daemon was not ready in 30 s: see {log}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _declare(root: Path, version: str) -> None:
    documents = [
        environment(
            f"env{e}",
            {f"s{s:02d}": image(f"ghcr.io/acme/svc{e}-s{s}", version) for s in range(SLOTS)},
        )
        for e in range(ENVIRONMENTS)
    ]
    write_manifests(root / "m", *documents)


def _wait_converged(state: str, version: str, timeout: float = 60) -> None:
    """Until every slot is DEPLOYED at ``version``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ledger = open_ledger(state, now=datetime.now(UTC), create=False)
        try:
            deployed = ledger.read_state().deployed.values()
        finally:
            ledger.close()
        if len(deployed) == ENVIRONMENTS * SLOTS and all(
            r.artifact.version == version for r in deployed
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the daemon did not converge on {version} in {timeout:g}s")


def kill_scenario(
    scratch: Path,
    *,
    kills: int,
    seed: int,
    figures: NotifyFigures,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """``kills`` SIGKILLs of a single daemon while it applies and notifies; see the module."""
    rng = random.Random(seed)
    scratch.mkdir(parents=True, exist_ok=True)
    state = f"sqlite:///{scratch / 'ledger.db'}"
    with FakeWebhook() as webhook:
        webhook.latency = LATENCY
        (scratch / "targets.yaml").write_text(
            yaml.safe_dump(notifier_document(webhook.url), sort_keys=False)
        )
        _declare(scratch, "v1")
        daemon = _Daemon(scratch, state, 0)
        faults: list[float] = []
        try:
            for number in range(1, kills + 1):
                _declare(scratch, f"v{number + 1}")
                time.sleep(rng.uniform(0.3, 2.0))
                faults.append(time.time())
                daemon.kill()
                figures.kills += 1
                daemon = _Daemon(scratch, state, number)
            say(f"notify: {kills} daemons SIGKILLed; letting the last one finish")
            _wait_converged(state, f"v{kills + 1}")
            check_told("kill", state, webhook, figures, faults=faults)
        finally:
            daemon.stop()
        if webhook.violations:
            figures.failures.extend(webhook.violations[:5])
