"""Running `slotkeeper run` as a subprocess in tests: start, poke, wait, stop."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_github_target import TOKEN

SECRET = "webhook-s3cret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_process(
    root: Path, port: int, state: str, log: Path, *extra: str, **environ: str
) -> subprocess.Popen[bytes]:
    """``slotkeeper run`` on ``root``'s manifests (``m/``) and targets file (``targets.yaml``),
    its JSON log to ``log`` (a pipe nobody reads would block it once full)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLOTKEEPER_STATE", "SLOTKEEPER_STATE_FILE", "PYTEST_CURRENT_TEST")
    }
    env.update(
        NO_COLOR="1",
        SLOTKEEPER_TARGETS=str(root / "targets.yaml"),
        SLOTKEEPER_WEBHOOK_SECRET=SECRET,
        **environ,
    )
    command = [
        sys.executable,
        "-m",
        "slotkeeper",
        "--log-format",
        "json",
        "run",
        "--listen",
        f"127.0.0.1:{port}",
        "-m",
        "m",
        "--state",
        state,
        *extra,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


class Running:
    """A `slotkeeper run` subprocess and a client for its port. ``environ`` changes the
    environment it gets (None removes a variable, e.g. the webhook secret)."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        *,
        log_level: str = "info",
        environ: Mapping[str, str | None] | None = None,
    ) -> None:
        self.port = free_port()
        env = dict(os.environ, GITHUB_TOKEN=TOKEN, SLOTKEEPER_WEBHOOK_SECRET=SECRET)
        env.pop("NO_COLOR", None)
        for name, value in (environ or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slotkeeper",
                "--log-level",
                log_level,
                "run",
                "--listen",
                f"127.0.0.1:{self.port}",
                *args,
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self.ready, what="readyz")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(
                f"daemon exited: {self.process.stderr.read() if self.process.stderr else ''}"
            )
        return self.get("/readyz").status_code == 200

    def status(self) -> dict[str, Any]:
        return dict(self.get("/status").json())

    def reconciles(self) -> float:
        families = text_string_to_metric_families(self.get("/metrics").text)
        return sum(
            sample.value
            for family in families
            if family.name == "slotkeeper_reconciles"
            for sample in family.samples
            if sample.name == "slotkeeper_reconciles_total"
        )

    def counted(self, counter: str, label: str) -> dict[str, float]:
        """A counter of ``/metrics`` (``slotkeeper_plans``) by the values of one label."""
        families = text_string_to_metric_families(self.get("/metrics").text)
        return {
            sample.labels[label]: sample.value
            for family in families
            if family.name == counter
            for sample in family.samples
            if sample.name == f"{counter}_total"
        }

    def slots(self) -> dict[str, float]:
        """The ``slotkeeper_slots`` gauge: slots by the status of their newest record."""
        families = text_string_to_metric_families(self.get("/metrics").text)
        return {
            sample.labels["status"]: sample.value
            for family in families
            if family.name == "slotkeeper_slots"
            for sample in family.samples
        }

    def hook(self, body: bytes, *, sign: bool = True, delivery: str = "d-1") -> httpx.Response:
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json",
        }
        if sign:
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        return httpx.post(self.url + "/hooks/github", content=body, headers=headers, timeout=5)

    def terminate(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture
def running(workdir: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(
        *args: str, log_level: str = "info", environ: Mapping[str, str | None] | None = None
    ) -> Running:
        daemon = Running(list(args), workdir, log_level=log_level, environ=environ)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
        daemon.process.communicate()  # reap it and close its pipes


class Ui:
    """`slotkeeper ui` as a subprocess on a free port."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "slotkeeper", "ui", "--listen", f"127.0.0.1:{self.port}", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

        def up() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"ui exited: {self.process.communicate()}")
            return httpx.get(self.url + "/status", timeout=2).status_code == 200

        wait_for(up, what="slotkeeper ui")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def stop(self) -> tuple[int, str]:
        self.process.terminate()
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err


@pytest.fixture
def ui(workdir: Path) -> Iterator[Callable[..., Ui]]:
    started: list[Ui] = []

    def start(*args: str) -> Ui:
        one = Ui(*args, cwd=workdir)
        started.append(one)
        return one

    yield start
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
        one.process.communicate()
