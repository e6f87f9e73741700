"""`slotkeeper events`: the audit log as a command, through the real CLI, on an SQLite file and a
PostgreSQL schema alike: filtered by environment and slot, by type and by time, as a table or
JSON; a bad time is one clear error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Run, environment, image, write_manifests


def apply_twice(sk: Callable[..., Run], workdir: Path, ledger_url: str) -> None:
    write_manifests(workdir / "m", environment("production", {"api": image(), "web": image("web")}))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    write_manifests(
        workdir / "m",
        environment("production", {"api": image(version="v2"), "web": image("web")}),
    )
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0


def test_events_lists_who_did_what_where_and_filters(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """Every deploy and supersede is an event with its actor and serial; ENV/SLOT, --type and
    --last narrow them; the newest come last."""
    apply_twice(sk, workdir, ledger_url)
    listed = sk("events", "--json", "--state", ledger_url)
    assert listed.code == 0, listed.err
    events = listed.json()
    types = [event["type"] for event in events]
    assert types.count("record.deployed") == 3 and "record.superseded" in types
    assert types[0] == "apply.started" and types[-1] == "apply.finished"
    assert [event["seq"] for event in events] == sorted(event["seq"] for event in events)
    assert {event["serial"] for event in events} == {1, 2}
    api = sk(
        "events", "production/api", "--type", "record.deployed", "--json", "--state", ledger_url
    )
    assert [(e["slot"], e["detail"]["artifact"]["version"]) for e in api.json()] == [
        ("api", "v1"),
        ("api", "v2"),
    ]
    assert len(sk("events", "--last", "2", "--json", "--state", ledger_url).json()) == 2
    table = sk("events", "production", "--state", ledger_url).out
    assert (
        "record.deployed" in table and "production/web" in table and "ghcr.io/acme/api v2" in table
    )


def test_events_by_time_and_a_bad_time_is_one_clear_error(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """--since 1h keeps what just happened, --until 1h (before an hour ago) keeps nothing, an
    ISO time works, and a time that is neither says what it expected, exit 1."""
    apply_twice(sk, workdir, ledger_url)
    recent = sk("events", "--since", "1h", "--json", "--state", ledger_url).json()
    assert len(recent) == len(sk("events", "--json", "--state", ledger_url).json())
    assert sk("events", "--until", "1h", "--json", "--state", ledger_url).json() == []
    assert (
        sk("events", "--since", "2999-01-01T00:00:00Z", "--json", "--state", ledger_url).json()
        == []
    )
    bad = sk("events", "--since", "yesterday", "--state", ledger_url)
    assert bad.code == 1 and "--since" in bad.err and "24h" in bad.err
    assert "Traceback" not in bad.err


def test_status_at_a_serial_or_a_time_shows_what_was_deployed_then(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """After serial 1, api was at v1; after serial 2 at v2; a time before anything shows
    nothing; a time now shows today's. Removed slots leave the view at their decommission."""
    apply_twice(sk, workdir, ledger_url)
    write_manifests(workdir / "m", environment("production", {"api": image(version="v2")}))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0

    def versions(*args: str) -> dict[str, str]:
        result = sk("status", "--json", "--state", ledger_url, *args)
        assert result.code == 0, result.err
        return {row["slot"]: row["artifact"]["version"] for row in result.json()["slots"]}

    assert versions("--serial", "1") == {"api": "v1", "web": "v1"}
    assert versions("--serial", "2") == {"api": "v2", "web": "v1"}
    assert versions("--serial", "3") == {"api": "v2"}
    assert versions("--at", "2000-01-01T00:00:00Z") == {}
    assert versions("--at", "2999-01-01T00:00:00Z") == {"api": "v2"}
    table = sk("status", "--serial", "1", "--state", ledger_url).out
    assert "Deployed at serial 1" in table and "DEPLOYED" in table
    both = sk("status", "--serial", "1", "--at", "1h", "--state", ledger_url)
    assert both.code == 1 and "not both" in both.err


def test_diff_lists_each_slot_whose_artifact_changed_between_two_moments(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """`diff 1 3`: api v1 -> v2, web v1 -> none; `diff 2 2`: no change; serials and times
    alike."""
    apply_twice(sk, workdir, ledger_url)
    write_manifests(workdir / "m", environment("production", {"api": image(version="v2")}))
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    found = sk("diff", "1", "3", "--json", "--state", ledger_url).json()
    summary = {
        row["slot"]: tuple(
            side["artifact"]["version"] if side else None for side in (row["before"], row["after"])
        )
        for row in found["changes"]
    }
    assert summary == {"api": ("v1", "v2"), "web": ("v1", None)}
    assert sk("diff", "2", "2", "--json", "--state", ledger_url).json()["changes"] == []
    assert "No change between" in sk("diff", "2", "2", "--state", ledger_url).out
    everything = sk("diff", "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "--state", ledger_url)
    assert "ghcr.io/acme/api v2" in everything.out and "—" not in everything.out.split("\n")[0]
    assert sk("diff", "1", "soon", "--state", ledger_url).code == 1


def test_a_removal_let_through_by_a_guard_flag_says_so_in_the_audit_trail(
    sk: Callable[..., Run], workdir: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A protected decommission applied with --allow-decommission: its event names the flag
    and the actor (SLOTKEEPER_ACTOR); a deploy's event names no flag."""
    monkeypatch.setenv("SLOTKEEPER_ACTOR", "tester")
    write_manifests(
        workdir / "m",
        environment("production", {"api": image(), "web": image("web")}, protected=True),
    )
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 0
    write_manifests(workdir / "m", environment("production", {"api": image()}, protected=True))
    applied = sk("apply", "--yes", "-m", "m", "--state", ledger_url, "--allow-decommission")
    assert applied.code == 0, applied.err
    found = sk("events", "--json", "--state", ledger_url, "--type", "record.decommissioned").json()
    [removal] = found
    assert removal["detail"]["allowed_by"] == ["--allow-decommission"]
    assert removal["actor"] == "tester"
    deploys = sk("events", "--json", "--state", ledger_url, "--type", "record.deployed").json()
    assert all("allowed_by" not in event["detail"] for event in deploys)
