"""`run` and `ui` on an address they cannot have: one clear line and exit 1, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Run, environment, image, write_manifests

Sk = Callable[..., Run]


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def run_daemon(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`slotkeeper run` as a subprocess, expected to stop by itself."""
    return subprocess.run(
        [sys.executable, "-m", "slotkeeper", "run", "-m", "m", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_daemon_on_a_port_in_use_says_so(workdir: Path, taken: int) -> None:
    """`run --listen` on a port in use exits 1 with "cannot listen on HOST:PORT: address
    already in use"."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    done = run_daemon(workdir, "--listen", f"127.0.0.1:{taken}")
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken}: address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1:70000", "127.0.0.1:-1", "127.0.0.1:http"])
def test_the_daemon_refuses_a_port_out_of_range(workdir: Path, listen: str) -> None:
    """A port outside 0-65535 (or not a number) is a usage error naming --listen."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    done = run_daemon(workdir, "--listen", listen)
    assert done.returncode == 1
    assert "--listen" in done.stderr
    assert "Traceback" not in done.stderr


def test_ui_on_a_port_in_use_or_out_of_range_says_so(sk: Sk, workdir: Path, taken: int) -> None:
    """`ui` on a port in use, or out of range, exits 1 with one clear line."""
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    in_use = sk("ui", "--listen", f"127.0.0.1:{taken}")
    assert in_use.code == 1
    assert f"cannot listen on 127.0.0.1:{taken}: address already in use" in in_use.err
    out_of_range = sk("ui", "--listen", "127.0.0.1:65536")
    assert out_of_range.code == 1
    assert "port 65536 is out of range (0 to 65535)" in out_of_range.err
    assert "Traceback" not in in_use.err + out_of_range.err
