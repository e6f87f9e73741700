"""The ledger benchmark (target 5) in small: every slot ends up DEPLOYED, and the executor
commits far fewer transactions than it applies actions.

The commit bound holds once the executor batches actions into shared transactions; while it
commits once per action it fails, by design.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.generate import Tree, write
from tests.bench.ledger import (
    QUICK,
    TARGET,
    apply_in_process,
    measure,
    missing_slots,
)

#: the transactions an apply commits whatever its size: the start (serial, environments,
#: pending, last_seen_at) and the finish (apply.finished), plus one of slack
FIXED_COMMITS = 3


def test_every_slot_is_deployed_in_few_commits(ledger_url: str, tmp_path: Path) -> None:
    """Every slot ends DEPLOYED, in at most a commit per ten actions plus a fixed few."""
    manifests = write(QUICK, tmp_path / "manifests")

    applied = apply_in_process(manifests, ledger_url, tmp_path)

    assert applied.actions == QUICK.slots
    assert applied.deployed == QUICK.slots
    assert missing_slots(ledger_url, QUICK) == []
    assert applied.commits is not None
    assert applied.commits <= applied.actions / 10 + FIXED_COMMITS, (
        f"{applied.commits} ledger commits for {applied.actions} actions: "
        "one transaction per action where a batch would be safe"
    )


def test_bench_reports_every_figure(tmp_path: Path) -> None:
    """The ledger benchmark reports every figure for SQLite and PostgreSQL, all records DEPLOYED."""
    tree = Tree(environments=2, slots_per_environment=10, keys_per_environment=0)

    figures = measure(tmp_path, tree)

    names = [figure.name for figure in figures]
    assert all(figure.target == TARGET for figure in figures)
    for backend in ("SQLite", "PostgreSQL"):
        # PostgreSQL not answering fails here, as everywhere in the tests (CI starts it).
        assert f"{backend}: records DEPLOYED after apply (subprocess)" in names, names
        assert f"{backend}: records DEPLOYED after execute (in-process)" in names, names
        assert f"{backend}: ledger commits per 1,000 actions (in-process counter)" in names
        assert f"{backend}: apply {tree.slots:,} deploys, CLI subprocess" in names
        assert f"{backend}: execute {tree.slots:,} deploys, in-process" in names
    assert any(name.startswith("PostgreSQL: server commits per 1,000 actions") for name in names)
    records = [
        figure
        for figure in figures
        if figure.name.startswith(("SQLite: records", "PostgreSQL: records"))
    ]
    assert len(records) == 4
    assert all(figure.passed for figure in records), records
    speeds = [figure for figure in figures if figure.unit == "actions/s"]
    assert len(speeds) == 4
    assert all(figure.value > 0 for figure in speeds), speeds
