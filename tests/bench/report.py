"""One table for every benchmark: a figure, the target it is held to, PASS or FAIL."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``passed`` is None for figures reported without a target."""

    target: str  # the numbered target, e.g. "1 scale"
    name: str  # what was measured, e.g. "plan 10k slots / parse only"
    value: float
    unit: str  # "x", "s", "MB", "writes", ...
    limit: str = ""  # the bound it is held to, as text: "≤ 2.0"
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return {None: "", True: "PASS", False: "FAIL"}[self.passed]


def at_most(target: str, name: str, value: float, unit: str, bound: float) -> Figure:
    return Figure(target, name, value, unit, f"≤ {bound:g}", value <= bound)


def at_least(target: str, name: str, value: float, unit: str, bound: float) -> Figure:
    return Figure(target, name, value, unit, f"≥ {bound:g}", value >= bound)


def exactly(target: str, name: str, value: float, unit: str, wanted: float) -> Figure:
    return Figure(target, name, value, unit, f"= {wanted:g}", value == wanted)


def reported(target: str, name: str, value: float, unit: str) -> Figure:
    return Figure(target, name, value, unit)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    try:
        sqlite = subprocess.run(
            ["python3", "-c", "import sqlite3; print(sqlite3.sqlite_version)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        sqlite = ""
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "sqlite": sqlite,
    }


def _value(figure: Figure) -> str:
    if figure.value == int(figure.value) and abs(figure.value) >= 10:
        return f"{int(figure.value):,}"
    return f"{figure.value:.3g}" if abs(figure.value) < 1000 else f"{figure.value:,.0f}"


def table(figures: Sequence[Figure]) -> str:
    """A plain-text (Markdown) table: what the README shows and what ``make bench`` prints."""
    rows = [("target", "figure", "value", "bound", "")]
    rows += [(f.target, f.name, f"{_value(f)} {f.unit}", f.limit, f.verdict) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_json(path: Path, figures: Sequence[Figure], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine(),
        "seconds": round(seconds, 1),
        "passed": all(f.passed is not False for f in figures),
        "figures": [asdict(f) | {"verdict": f.verdict} for f in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
