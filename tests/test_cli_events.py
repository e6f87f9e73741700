"""`slotkeeper events`: the audit log as a command, through the real CLI, on an SQLite file and a
PostgreSQL schema alike: filtered by environment and slot, by type and by time, as a table or
JSON; a bad time is one clear error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
