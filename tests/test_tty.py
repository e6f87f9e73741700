"""Interactive apply on a real terminal (a pseudo-terminal): the prompt and the progress bar."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import environment, image, recorded_state, write_manifests


def run_on_tty(args: list[str], cwd: Path, answer: str | None) -> tuple[int, str]:
    """Run slotkeeper with stdin/stdout/stderr on a pty; type ``answer`` at the prompt."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI")}
    env.update({"COLUMNS": "160", "TERM": "xterm-256color"})
    process = subprocess.Popen(
        [sys.executable, "-m", "slotkeeper", *args],
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    answered = answer is None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Enter a value:" in output:
            os.write(leader, answer.encode() + b"\r")
            answered = True
    os.close(leader)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    return process.wait(timeout=30), plain


@pytest.mark.parametrize(("answer", "code", "records"), [("yes", 0, 12), ("no", 1, 0)])
def test_apply_asks_on_a_terminal(
    workdir: Path, state: Path, answer: str, code: int, records: int
) -> None:
    """On a terminal, apply shows the plan and asks; only 'yes' applies, with a progress bar."""
    write_manifests(workdir / "m", environment("production", {f"s{i}": image() for i in range(12)}))
    returncode, output = run_on_tty(["apply", "-m", "m"], workdir, answer)
    assert returncode == code, output
    assert "Do you want to perform these actions?" in output
    assert "production/s0" in output
    if code == 0:
        assert "Applying" in output  # the progress bar was drawn
        assert "Apply complete! 12 applied" in output
    else:
        assert "Apply cancelled." in output
    assert len(recorded_state(state).deployed) == records
