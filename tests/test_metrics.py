"""The daemon's /metrics through a `slotkeeper run` subprocess: no dead series, and actions
counted per environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_support import Running, wait_for
from tests.helpers import environment, image, write_manifests


def actions(daemon: Running) -> dict[tuple[str, str, str, str], float]:
    """``slotkeeper_actions_total`` by (type, environment, target, result)."""
    families = text_string_to_metric_families(daemon.get("/metrics").text)
    return {
        (s.labels["type"], s.labels["environment"], s.labels["target"], s.labels["result"]): s.value
        for family in families
        if family.name == "slotkeeper_actions"
        for s in family.samples
        if s.name == "slotkeeper_actions_total"
    }


def test_slots_by_newest_status_and_actions_per_environment(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """slotkeeper_slots has only the statuses a slot can be in (DEPLOYED, DECOMMISSIONED: a
    slot's newest record is never SUPERSEDED) with the right counts after a supersede and a
    decommission; slotkeeper_actions_total carries the environment of each action."""
    write_manifests(
        workdir / "m",
        environment("production", {"api": image(version="v1")}),
        environment("staging", {"api": image(version="v1"), "web": image("ghcr.io/w", "w1")}),
    )
    daemon = running("-m", "m", "--resync-interval", "10m")
    wait_for(lambda: daemon.slots() == {"DEPLOYED": 3, "DECOMMISSIONED": 0}, what="3 slots")
    write_manifests(
        workdir / "m",
        environment("production", {"api": image(version="v2")}),
        environment("staging", {"api": image(version="v1")}),
    )
    wait_for(
        lambda: daemon.slots() == {"DEPLOYED": 2, "DECOMMISSIONED": 1},
        what="a supersede and a decommission counted",
    )
    counted = actions(daemon)
    assert counted[("deploy", "production", "ledger", "applied")] == 2
    assert counted[("deploy", "staging", "ledger", "applied")] == 2
    assert counted[("decommission", "staging", "ledger", "applied")] == 1
    assert {env for (kind, env, _, _) in counted if kind == "decommission"} == {"staging"}
    assert daemon.terminate()[0] == 0
