"""`slotkeeper status` through the real CLI: held-back first deploys, and piped output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.helpers import Run, environment, image, write_manifests

Sk = Callable[..., Run]
FROZEN = [{"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z", "reason": "holidays"}]


def test_status_shows_a_new_slot_whose_deploy_is_held(sk: Sk, workdir: Path) -> None:
    """A new slot in a frozen environment has no record, yet status (table and --json) lists
    it as pending with the reason, beside the recorded slots."""
    m = workdir / "m"
    write_manifests(m, environment("production", {"api": image(version="v1")}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    write_manifests(
        m,
        environment(
            "production",
            {"api": image(version="v1"), "worker": image("ghcr.io/acme/worker", "w1")},
            freeze=FROZEN,
        ),
    )
    applied = sk("apply", "--yes", "-m", "m")
    assert applied.code == 0 and "1 blocked" in applied.out

    rows = {row["slot"]: row for row in sk("status", "--json").json()["slots"]}
    assert rows["api"]["status"] == "DEPLOYED" and rows["api"]["pending"] is None
    worker = rows["worker"]
    assert worker["environment"] == "production"
    assert worker["status"] is None and worker["artifact"] is None and worker["record_id"] is None
    assert worker["pending"]["action"] == "deploy"
    assert worker["pending"]["blocked"].startswith("frozen until 2099-01-01")

    table = sk("status").out.splitlines()
    [line] = [line for line in table if "worker" in line]
    assert line.split()[:3] == ["production", "worker", "(none)"]
    assert "pending deploy: frozen until 2099-01-01" in line


def test_status_of_a_ledger_whose_every_first_deploy_is_held(sk: Sk, workdir: Path) -> None:
    """When the first apply records nothing because everything is frozen, status still shows
    every held slot instead of calling the ledger empty."""
    write_manifests(
        workdir / "m",
        environment("staging", {"api": image(), "web": image("web")}, freeze=FROZEN),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    rows = sk("status", "--json").json()["slots"]
    assert [(r["slot"], r["status"], r["pending"]["action"]) for r in rows] == [
        ("api", None, "deploy"),
        ("web", None, "deploy"),
    ]
    out = sk("status").out
    assert "empty" not in out
    assert sum("pending deploy: frozen until" in line for line in out.splitlines()) == 2


def test_piped_output_never_wraps_a_row(sk: Sk, workdir: Path) -> None:
    """With stdout captured (not a terminal), a 300-character row of status, history and plan
    stays one line, so `status | grep` finds whole rows."""
    long_name = "registry.example.com/" + "very-long-team/" * 18 + "api"
    assert len(long_name) > 280
    write_manifests(
        workdir / "m", environment("production", {"api": image(long_name, "v1"), "web": image()})
    )
    planned = sk("plan", "-m", "m")
    assert planned.code == 0
    [plan_line] = [line for line in planned.out.splitlines() if long_name in line]
    assert "production/api" in plan_line and "deploy" in plan_line
    assert sk("apply", "--yes", "-m", "m").code == 0
    for command in (("status",), ("history", "production")):
        out = sk(*command).out
        [row] = [line for line in out.splitlines() if long_name in line]
        assert len(row) > 300
        assert "DEPLOYED" in row and "v1" in row
        assert all(line == line.rstrip() for line in out.splitlines())
