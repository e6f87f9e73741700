"""Measuring helpers shared by the benchmarks: best-of timing, child processes (wall time, CPU
time, peak RSS), and a second process keeping one core busy."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def best_of(runs: int, *steps: Callable[[], object]) -> list[float]:
    """The best wall time of each step over ``runs`` rounds, the steps interleaved in each
    round so that both sides of a comparison see the same machine load."""
    best = [float("inf")] * len(steps)
    for _ in range(runs):
        for index, step in enumerate(steps):
            started = time.perf_counter()
            step()
            best[index] = min(best[index], time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class Child:
    code: int
    seconds: float
    peak_rss_mb: float
    out: str
    err: str
    cpu_seconds: float = 0.0  # user + system time of that process


#: runs its command and reports its exit code, wall time, peak RSS and CPU time to a file: a
#: small, fresh process between the benchmark and what it measures. The peak RSS ``wait4`` reports
#: for a child counts the memory it had between ``fork`` and ``exec``, a copy of its parent's:
#: forked straight from a benchmark holding a million rows, a 90 MB command read as 420 MB.
_LAUNCHER = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as report:
    cpu = usage.ru_utime + usage.ru_stime
    report.write(f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss} {cpu}")
"""


def run_child(command: list[str], *, env: Mapping[str, str] | None = None) -> Child:
    """Run ``command``; its wall time, and the peak RSS and CPU time of that process alone
    (``wait4`` in a small launcher process, see ``_LAUNCHER``)."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, report.name, *command],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=err,
            text=True,
            check=False,
        )
        code, seconds, rss, cpu = report.read().split()
        out.seek(0)
        err.seek(0)
        return Child(int(code), float(seconds), int(rss) / 1024, out.read(), err.read(), float(cpu))


def slotkeeper(*args: str, env: Mapping[str, str] | None = None) -> Child:
    """``slotkeeper ARGS`` in its own process: the real entry point, start-up included."""
    return run_child([sys.executable, "-m", "slotkeeper", *args], env=env)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


#: the whole program of the process that keeps one core busy
_BURN = "while True: pass"


@contextmanager
def one_core_busy() -> Iterator[subprocess.Popen[bytes]]:
    """Another process using one core for as long as the block runs (as on a shared machine):
    started before the block, killed after it."""
    burner = subprocess.Popen([sys.executable, "-c", _BURN])
    try:
        yield burner
    finally:
        burner.kill()
        burner.wait()
