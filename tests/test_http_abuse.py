"""The daemon's HTTP port under abuse, against a real `slotkeeper run` on loopback: 1,500 idle
half-sent requests, a 1 MiB header, 2,000 badly signed webhooks. `/healthz` keeps answering
through all of it, and none of it reconciles anything.

"Reconciles nothing" is shown as in test_webhook_signatures: after the abuse the test sends
SIGHUP, and the next reconcile must be the only one and be SIGHUP's (``reload``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import resource
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_support import Running, wait_for
from tests.helpers import environment, image, write_manifests_and_targets

HALF_SENT = 1_500
BAD_WEBHOOKS = 2_000
#: the soft open-files limit many systems start a process with: below HALF_SENT
COMMON_SOFT_LIMIT = 1_024
#: the most any one answer may take here, on a loaded machine (a ceiling, not a measurement)
PATIENCE = 20.0


@pytest.fixture(autouse=True)
def open_files() -> Iterator[None]:
    """This process holds HALF_SENT client sockets: its soft RLIMIT_NOFILE goes to the hard
    limit for the test, and back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if wanted < HALF_SENT + 500:
        pytest.fail(f"the hard open-files limit ({hard}) is too low for {HALF_SENT} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def soft_open_files_limit(limit: int) -> Iterator[None]:
    """Processes started inside the block inherit a soft RLIMIT_NOFILE of ``limit``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, soft), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def daemon(workdir: Path, running: Callable[..., Running]) -> Running:
    """A daemon that starts with the common soft limit of 1,024 open files (it raises it),
    logs errors only (the abuse would fill the pipe its log goes to), and reconciles only
    when told."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    with soft_open_files_limit(COMMON_SOFT_LIMIT):
        return running("-m", "m", "--resync-interval", "1h", log_level="error")


def open_descriptors(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def soft_limit_of(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max open files" of process ``pid``."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-files line in /proc/PID/limits")


def last_reconcile(daemon: Running) -> dict[str, Any]:
    return dict(daemon.status()["last_reconcile"] or {})


def assert_reconciled_nothing(daemon: Running, count: float) -> None:
    """SIGHUP, then the next reconcile is the only one since ``count`` and is SIGHUP's."""
    previous = last_reconcile(daemon)["id"]
    daemon.process.send_signal(signal.SIGHUP)
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(last_reconcile(daemon))
        return found["id"] != previous and found.get("finished_at") is not None

    wait_for(finished, timeout=PATIENCE, what="SIGHUP's reconcile")
    assert found["reason"] == "reload", found
    assert daemon.reconciles() == count + 1


def status_line(client: socket.socket) -> bytes:
    """The first line of the answer on ``client``."""
    received = b""
    while b"\r\n" not in received and (chunk := client.recv(256)):
        received += chunk
    return received.partition(b"\r\n")[0]


def healthz(daemon: Running) -> int:
    return httpx.get(daemon.url + "/healthz", timeout=PATIENCE).status_code


def test_half_sent_requests_do_not_starve_healthz(daemon: Running) -> None:
    """1,500 connections that sent half a request and then nothing are all held open by the
    daemon (which raised its own soft open-files limit of 1,024 to do so), /healthz answers 200
    meanwhile, and the held requests are still served once they are finished."""
    assert soft_limit_of(daemon.process.pid)[0] == soft_limit_of(daemon.process.pid)[1]
    count = daemon.reconciles()
    before = open_descriptors(daemon.process.pid)
    held: list[socket.socket] = []
    try:
        for _ in range(HALF_SENT):
            client = socket.create_connection(("127.0.0.1", daemon.port), timeout=PATIENCE)
            held.append(client)
            client.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: sen")
        wait_for(
            lambda: open_descriptors(daemon.process.pid) >= before + HALF_SENT,
            timeout=PATIENCE,
            what=f"the daemon holding {HALF_SENT} connections",
        )
        assert all(healthz(daemon) == 200 for _ in range(5))
        for client in held[:: HALF_SENT // 10]:  # ten of them, spread over the lot
            client.sendall(b"t\r\n\r\n")
            assert status_line(client) == b"HTTP/1.1 200 OK"
    finally:
        for client in held:
            client.close()
    assert_reconciled_nothing(daemon, count)


def test_a_one_mebibyte_header_is_refused_and_nothing_else_happens(daemon: Running) -> None:
    """A request with a 1 MiB header is answered 431 (a JSON error with the security headers)
    and its connection closed; the daemon stays healthy and reconciles nothing."""
    count = daemon.reconciles()
    answer = httpx.get(
        daemon.url + "/status", headers={"X-Large": "a" * (1024 * 1024)}, timeout=PATIENCE
    )
    assert (answer.status_code, answer.json()) == (431, {"error": "request head too large"})
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert healthz(daemon) == 200
    assert_reconciled_nothing(daemon, count)


def test_badly_signed_webhooks_get_401_while_healthz_answers(daemon: Running) -> None:
    """2,000 webhooks signed with the wrong key, sent 16 at a time, are each answered 401
    while a prober's /healthz requests keep getting 200; none of them reconciles."""
    count = daemon.reconciles()
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    forged = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    flooding = threading.Event()
    flooding.set()
    probes: list[int] = []

    def probe() -> None:
        while flooding.is_set():
            probes.append(healthz(daemon))

    def send(batch: range) -> list[int]:
        with httpx.Client(base_url=daemon.url, timeout=PATIENCE) as client:
            return [
                client.post(
                    "/hooks/github",
                    content=body,
                    headers={
                        "X-GitHub-Event": "push",
                        "X-GitHub-Delivery": f"forged-{n}",
                        "X-Hub-Signature-256": forged,
                    },
                ).status_code
                for n in batch
            ]

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            batches = [range(start, BAD_WEBHOOKS, 16) for start in range(16)]
            statuses = [status for answers in pool.map(send, batches) for status in answers]
    finally:
        flooding.clear()
        prober.join()
    assert len(statuses) == BAD_WEBHOOKS and set(statuses) == {401}
    assert probes and set(probes) == {200}
    assert_reconciled_nothing(daemon, count)
