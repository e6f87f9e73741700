"""The small, fast version of benchmarks 1-4, inside `make test` so they cannot rot. They
assert counts (writes per change, limit errors, actions planned), never times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import dora, economy, installations, pacing, process, scale, throughput
from tests.bench.__main__ import main
from tests.bench.generate import Tree
from tests.bench.measure import one_core_busy


def test_scale_plans_every_slot_and_key(tmp_path: Path) -> None:
    """The scale benchmark plans a deploy per slot and a key creation per key, and measures it."""
    run = scale.measure(tmp_path, Tree(4, 25, keys_per_environment=1), runs=1)
    assert run.slots == 100
    assert run.actions == 100 + 4  # a deploy per slot, a create_key per key
    assert run.parse_seconds > 0 and run.plan_seconds > 0 and run.peak_rss_mb > 0


def test_write_economy_counts(tmp_path: Path) -> None:
    """Exactly 2 writes per new slot, 3 per replaced artifact, 1 per decommission, 2 per key
    rotation; an unchanged apply writes nothing and every refresh read is a 304."""
    found = economy.measure(tmp_path, environments=4, slots=5, changes=3, rotations=2)
    new = found.new.kinds
    assert new["deployment"] == new["status:success"] == 20
    assert new["key+"] == 4 and found.new.writes == 44
    assert found.unchanged.writes == 0
    assert found.unchanged.reads > 0 and found.unchanged.statuses[304] == found.unchanged.reads
    assert found.replace.writes == 3 * 3
    assert found.replace.kinds["status:inactive"] == 3
    assert found.decommission.writes == 3 and found.decommission.kinds["status:inactive"] == 3
    assert found.rotation.writes == 2 * 2
    assert found.rotation.kinds["key+"] == found.rotation.kinds["key-"] == 2


def test_reads_grow_with_environments_not_slots(tmp_path: Path) -> None:
    """An unchanged apply's reads grow with environments, not with slots per environment."""
    base = economy.reads_of_unchanged_apply(tmp_path / "a", 2, 3)
    assert economy.reads_of_unchanged_apply(tmp_path / "b", 2, 12) == base
    assert economy.reads_of_unchanged_apply(tmp_path / "c", 4, 3) > base


def test_pacing_meets_no_limit_and_the_baseline_does(tmp_path: Path) -> None:
    """At the fake's secondary limit, slotkeeper (budget set to the same figure) gets no
    403/429; the unpaced PyGithub baseline on the same fake does."""
    limit = pacing.Limit(10, 1)
    ours = pacing.measure_slotkeeper(tmp_path / "ours", 15, limit)
    assert ours.limited == 0
    assert ours.writes == 30
    baseline = pacing.measure_baseline(tmp_path / "baseline", 15, limit)
    assert baseline.limited > 0


def test_an_app_spreads_its_writes_over_its_installations(tmp_path: Path) -> None:
    """At the fake's secondary limit per installation, an App installed on four organisations
    writes each repository with its own installation's token, at its own budget: no 403/429,
    and a quarter of the writes (two per slot) under each installation."""
    limit = pacing.Limit(5, 1)
    four = installations.measure(tmp_path, 16, 4, limit)
    assert four.limited == 0
    assert four.total == 32 and sorted(four.writes.values()) == [8, 8, 8, 8]
    assert four.floor(limit) == 8 / 5


def test_throughput_reaches_both_targets(tmp_path: Path) -> None:
    """The throughput benchmark takes every slot to both targets: four requests a slot at least."""
    found = throughput.measure_slotkeeper(tmp_path, 20, latency=0.0, concurrency=4)
    assert found.slots == 20
    assert found.requests >= 4 * 20  # GitHub: deployment + status; Chainloop: record + read
    assert found.cpu_seconds > 0 and found.cpu_ms_per_request > 0


def test_the_loaded_measurement_keeps_a_process_busy_only_while_it_runs() -> None:
    """Target 4's measurement under load runs another process for the block, and only then."""
    with one_core_busy() as burner:
        assert burner.poll() is None
    assert burner.poll() is not None


def test_the_runner_runs_every_benchmark_quick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m tests.bench --quick`: all ten targets run, every bounded figure passes, the
    table is printed and the JSON written. The runner lets itself reach its fakes on loopback
    (`make bench` runs outside the tests' conftest, which otherwise allows it)."""
    monkeypatch.delenv("SLOTKEEPER_EGRESS_ALLOW")
    out = tmp_path / "bench.json"
    assert main(["--quick", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["machine"]["cores"] and document["passed"] is True
    targets = {f["target"].split()[0] for f in document["figures"]}
    assert targets == {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
    assert all(f["verdict"] != "FAIL" for f in document["figures"])
    printed = capsys.readouterr().out
    assert "| 3 pacing" in printed and "every target PASSED" in printed
    estate = {f["name"]: f["value"] for f in document["figures"] if f["target"] == "10 estate"}
    assert estate["dashboard `/` at 200 slots, size"] > 10  # KB: a real page was served
    assert estate["`run` holding 1,000 slots, idle RSS"] > 20  # MB: the daemon ran


def test_the_delivery_benchmark_builds_a_ledger_dora_can_read(tmp_path: Path) -> None:
    """The DORA benchmark's small version: 20,000 records written straight into a migrated
    SQLite ledger, one environment's 90 days read back by `slotkeeper dora` as a subprocess
    (its time and peak RSS reported, not held)."""
    figures = dora.run(tmp_path, quick=True)
    names = [f.name for f in figures]
    assert "SQLite: dora peak RSS" in names and all(f.value > 0 for f in figures)
    assert all(f.passed is None for f in figures)


def test_the_process_benchmark_times_whole_processes(tmp_path: Path) -> None:
    """Target 8 times `--version`, a first plan against a bare parse process and an unchanged
    plan, each as a child process (the commands must succeed for a figure to exist)."""
    figures = {f.name: f for f in process.run(tmp_path, quick=True)}
    assert figures["`slotkeeper --version`, whole process"].value > 0
    ratio = next(
        f for name, f in figures.items() if name.startswith("first `plan`") and "/" in name
    )
    assert ratio.value > 1  # slotkeeper does more than parse
    assert any("nothing to do" in name for name in figures)
