"""plan / apply / status / history through the real CLI, on the embedded SQLite ledger."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.helpers import DIGEST_A, Run, environment, image, recorded_state, write_manifests

Sk = Callable[..., Run]


@pytest.fixture
def manifests(workdir: Path) -> Path:
    return workdir / "manifests"


def apply(sk: Sk, *args: str) -> Run:
    result = sk("apply", "--yes", "-m", "manifests", *args)
    assert result.code == 0, result.err + result.out
    return result


def status_rows(sk: Sk) -> dict[tuple[str, str], dict]:
    result = sk("status", "--json")
    assert result.code == 0, result.err
    return {(row["environment"], row["slot"]): row for row in result.json()["slots"]}


def test_first_apply_creates_one_deployed_record_per_slot(sk: Sk, manifests: Path) -> None:
    """Every declared slot gets one DEPLOYED record carrying its artifact."""
    write_manifests(
        manifests,
        environment("production", {"api": image(digest=DIGEST_A), "worker": image("w", "v3")}),
        environment("staging", {"api": image(version="v2")}),
    )
    out = apply(sk).out
    assert "Apply complete! 3 applied, 0 failed, 0 blocked. Ledger serial 1." in out
    rows = status_rows(sk)
    assert set(rows) == {("production", "api"), ("production", "worker"), ("staging", "api")}
    api = rows[("production", "api")]
    assert api["status"] == "DEPLOYED"
    assert api["artifact"] == {
        "kind": "CONTAINER_IMAGE",
        "name": "ghcr.io/acme/api",
        "version": "v1",
        "digest": DIGEST_A,
    }
    assert api["created_at"] == api["updated_at"] == api["last_seen_at"]
    assert api["pending"] is None
    assert isinstance(api["record_id"], int)


def test_new_version_supersedes_and_history_links_them(sk: Sk, manifests: Path) -> None:
    """A new artifact makes a new DEPLOYED record; the old one turns SUPERSEDED pointing at it."""
    write_manifests(manifests, environment("production", {"api": image(version="v1")}))
    apply(sk)
    write_manifests(manifests, environment("production", {"api": image(version="v2")}))
    out = apply(sk).out
    assert "~" in out and "v1 -> v2" in out
    history = sk("history", "production/api", "--json").json()
    assert [(r["artifact"]["version"], r["status"]) for r in history] == [
        ("v2", "DEPLOYED"),
        ("v1", "SUPERSEDED"),
    ]
    assert history[1]["superseded_by"] == history[0]["id"]
    assert history[0]["superseded_by"] is None
    assert status_rows(sk)[("production", "api")]["record_id"] == history[0]["id"]


def test_removed_slot_is_decommissioned_and_kept_in_history(sk: Sk, manifests: Path) -> None:
    """A slot that leaves the manifests turns DECOMMISSIONED; the record stays in the ledger."""
    write_manifests(manifests, environment("staging", {"api": image(), "web": image("web")}))
    apply(sk)
    write_manifests(manifests, environment("staging", {"api": image()}))
    apply(sk)
    rows = status_rows(sk)
    assert rows[("staging", "web")]["status"] == "DECOMMISSIONED"
    assert rows[("staging", "api")]["status"] == "DEPLOYED"
    assert [r["status"] for r in sk("history", "staging/web", "--json").json()] == [
        "DECOMMISSIONED"
    ]


def test_unchanged_apply_only_moves_last_seen(sk: Sk, manifests: Path, state: Path) -> None:
    """Re-applying unchanged manifests writes no record and no serial, only last_seen_at."""
    write_manifests(manifests, environment("production", {"api": image()}))
    apply(sk)
    before = status_rows(sk)[("production", "api")]
    serial = recorded_state(state).serial
    out = apply(sk).out
    assert "No changes." in out
    after = status_rows(sk)[("production", "api")]
    assert after["record_id"] == before["record_id"]
    assert after["created_at"] == before["created_at"]
    assert after["last_seen_at"] > before["last_seen_at"]
    assert recorded_state(state).serial == serial
    assert len(sk("history", "production", "--json").json()) == 1


def test_plan_json_document(sk: Sk, manifests: Path) -> None:
    """`plan --json` prints the plan document with the documented fields."""
    write_manifests(manifests, environment("production", {"api": image(version="v1")}))
    apply(sk)
    write_manifests(manifests, environment("production", {"api": image(version="v2")}))
    document = sk("plan", "-m", "manifests", "--json").json()
    assert document["format_version"] == 2
    assert document["base_serial"] == 1
    assert isinstance(document["lineage"], str) and len(document["lineage"]) == 36
    assert document["revision"] is None
    [action] = document["actions"]
    assert set(action) >= {
        "id",
        "type",
        "environment",
        "slot",
        "key",
        "artifact",
        "previous",
        "supersedes",
        "reason",
        "blocked",
    }
    assert action["type"] == "deploy"
    assert action["artifact"]["version"] == "v2"
    assert action["previous"]["version"] == "v1"
    assert isinstance(action["supersedes"], int)
    assert action["blocked"] is None
    assert document["summary"]["deploy"] == 1 and document["summary"]["blocked"] == 0


def test_detailed_exitcode(sk: Sk, manifests: Path) -> None:
    """--detailed-exitcode: 2 with changes, 0 without, 1 on invalid manifests."""
    write_manifests(manifests, environment("production", {"api": image()}))
    assert sk("plan", "-m", "manifests", "--detailed-exitcode").code == 2
    assert sk("plan", "-m", "manifests").code == 0
    apply(sk)
    assert sk("plan", "-m", "manifests", "--detailed-exitcode").code == 0
    (manifests / "envs.yaml").write_text("apiVersion: slotkeeper/v1\nkind: Environment\n")
    broken = sk("plan", "-m", "manifests", "--detailed-exitcode")
    assert broken.code == 1
    assert "envs.yaml" in broken.err and "Traceback" not in broken.err


def test_usage_errors_exit_1(sk: Sk) -> None:
    """A mistyped flag exits 1, keeping 2 for 'changes present'."""
    result = sk("plan", "--no-such-flag")
    assert result.code == 1
    assert "No such option" in result.err


def test_protected_decommission_is_blocked_and_pending_in_status(
    sk: Sk, manifests: Path, state: Path
) -> None:
    """A decommission in a protected environment is held back, shown as pending with the reason,
    and goes through with --allow-decommission."""
    slots = {"api": image(), "web": image("web"), "db": image("db")}
    write_manifests(manifests, environment("production", slots, protected=True))
    apply(sk)
    del slots["web"]
    write_manifests(manifests, environment("production", slots, protected=True))
    planned = sk("plan", "-m", "manifests", "--detailed-exitcode")
    assert planned.code == 2
    assert "BLOCKED: environment 'production' is protected" in planned.out
    out = apply(sk).out
    assert "0 applied, 0 failed, 1 blocked" in out
    row = status_rows(sk)[("production", "web")]
    assert row["status"] == "DEPLOYED"
    assert row["pending"]["action"] == "decommission"
    assert "protected" in row["pending"]["blocked"]
    assert "pending decommission" in sk("status").out
    assert recorded_state(state).serial == 1

    out = apply(sk, "--allow-decommission").out
    assert "1 applied" in out
    row = status_rows(sk)[("production", "web")]
    assert row["status"] == "DECOMMISSIONED"
    assert row["pending"] is None


def test_mass_decommission_guard_counts_what_exists(sk: Sk, manifests: Path) -> None:
    """Removing more than half of what exists is blocked until explicitly allowed."""
    envs = {name: image(name) for name in ("api", "web", "db")}
    write_manifests(manifests, environment("production", envs))
    apply(sk)
    write_manifests(manifests, environment("production", {"api": image("api")}))
    out = apply(sk).out
    assert "would remove 2 of 3 deployed slots and active deploy keys" in out
    assert {row["status"] for row in status_rows(sk).values()} == {"DEPLOYED"}
    apply(sk, "--allow-mass-decommission")
    statuses = {slot: row["status"] for (_, slot), row in status_rows(sk).items()}
    assert statuses == {"api": "DEPLOYED", "web": "DECOMMISSIONED", "db": "DECOMMISSIONED"}


def test_empty_checkout_removes_nothing_without_allow_empty(sk: Sk, manifests: Path) -> None:
    """An empty manifest tree would decommission everything: blocked until --allow-empty."""
    write_manifests(manifests, environment("production", {"api": image(), "web": image("w")}))
    apply(sk)
    (manifests / "envs.yaml").unlink()
    out = apply(sk, "--allow-mass-decommission").out
    assert "declare no environment" in out and "--allow-empty" in out
    assert {row["status"] for row in status_rows(sk).values()} == {"DEPLOYED"}
    apply(sk, "--allow-empty", "--allow-mass-decommission")
    assert {row["status"] for row in status_rows(sk).values()} == {"DECOMMISSIONED"}


def test_saved_plan_applies_exactly_and_only_once(sk: Sk, manifests: Path) -> None:
    """`apply PLANFILE` applies that plan; applying it a second time is refused as stale."""
    write_manifests(manifests, environment("production", {"api": image()}))
    assert sk("plan", "-m", "manifests", "--out", "tfplan").code == 0
    saved = json.loads(Path("tfplan").read_text())
    # The manifests change after the plan was saved: the plan, not the manifests, is applied.
    write_manifests(manifests, environment("production", {"api": image(version="v9")}))
    assert sk("apply", "tfplan").code == 0
    row = status_rows(sk)[("production", "api")]
    assert row["artifact"]["version"] == saved["actions"][0]["artifact"]["version"] == "v1"
    again = sk("apply", "tfplan")
    assert again.code == 1
    assert "stale" in again.err


def test_stale_plan_is_refused_when_the_ledger_moved(sk: Sk, manifests: Path, state: Path) -> None:
    """A plan made before another apply is refused with 'stale' and changes nothing."""
    write_manifests(manifests, environment("production", {"api": image()}))
    assert sk("plan", "-m", "manifests", "--out", "old.plan").code == 0
    apply(sk)
    serial = recorded_state(state).serial
    result = sk("apply", "old.plan")
    assert result.code == 1
    assert "stale" in result.err
    assert recorded_state(state).serial == serial


def test_plan_from_another_ledger_is_refused(sk: Sk, manifests: Path) -> None:
    """A plan made against another ledger (another lineage) is refused as stale."""
    write_manifests(manifests, environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    assert sk("apply", "--yes", "-m", "manifests", "--state", "sqlite:///other.db").code == 0
    write_manifests(manifests, environment("production", {"api": image(version="v2")}))
    assert sk("plan", "-m", "manifests", "--state", "sqlite:///other.db", "--out", "p").code == 0
    result = sk("apply", "p")
    assert result.code == 1
    assert "stale" in result.err and "lineage" in result.err


def test_corrupt_plan_file_is_a_clear_error(sk: Sk) -> None:
    """A plan file that is not one of ours is refused without a traceback."""
    Path("bad.plan").write_text("{not json")
    result = sk("apply", "bad.plan")
    assert result.code == 1
    assert "not a slotkeeper plan file" in result.err
    assert "Traceback" not in result.err


def test_apply_without_tty_needs_yes(sk: Sk, manifests: Path, state: Path) -> None:
    """Without a terminal and without --yes, apply refuses and writes nothing."""
    write_manifests(manifests, environment("production", {"api": image()}))
    result = sk("apply", "-m", "manifests")
    assert result.code == 1
    assert "--yes" in result.err
    assert recorded_state(state).serial == 0
    assert sk("status", "--json").json()["slots"] == []


def test_status_and_history_human_output(sk: Sk, manifests: Path) -> None:
    """The human tables list environment, slot, status and artifact, aligned in columns."""
    write_manifests(manifests, environment("production", {"api": image(version="v1")}))
    apply(sk)
    write_manifests(manifests, environment("production", {"api": image(version="v2")}))
    apply(sk)
    status = sk("status").out.splitlines()
    assert status[0].split()[:4] == ["ENVIRONMENT", "SLOT", "STATUS", "ARTIFACT"]
    assert status[1].split()[:5] == ["production", "api", "DEPLOYED", "ghcr.io/acme/api", "v2"]
    history = sk("history", "production").out.splitlines()
    assert "SUPERSEDED" in history[2] and "#2" in history[2]
    assert sk("history", "nowhere").code == 1


def test_plan_columns_stay_aligned_with_wide_characters(sk: Sk, manifests: Path) -> None:
    """A version in characters that take two terminal cells each still lines the next column
    up: widths are counted in cells, not characters."""
    wide, narrow = image(name="x", version="v1-日本"), image(name="x", version="v1")
    write_manifests(manifests, environment("production", {"api": wide, "web": narrow}))
    rows = [line for line in sk("plan", "-m", "manifests").out.splitlines() if "new slot" in line]
    assert len(rows) == 2
    assert {cell_len(row[: row.index("new slot")]) for row in rows} == {
        cell_len(rows[0][: rows[0].index("new slot")])
    }
    assert rows[1].index("new slot") == rows[0].index("new slot") + 2  # two wide characters


def test_no_color_is_respected(sk: Sk, manifests: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With NO_COLOR set, human output carries no ANSI escape codes even when forced to a TTY."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    write_manifests(manifests, environment("production", {"api": image()}))
    assert "\x1b[" not in sk("plan", "-m", "manifests").out
    monkeypatch.delenv("NO_COLOR")
    assert "\x1b[" in sk("plan", "-m", "manifests").out


def test_state_url_and_environment_variable(
    sk: Sk, manifests: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--state and SLOTKEEPER_STATE choose the ledger file; unknown schemes are refused."""
    write_manifests(manifests, environment("production", {"api": image()}))
    apply(sk, "--state", f"sqlite:///{workdir}/a.db")
    monkeypatch.setenv("SLOTKEEPER_STATE", "b.db")
    apply(sk)
    for name in ("a.db", "b.db"):
        with sqlite3.connect(workdir / name) as db:
            assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (1,)
    assert not (workdir / ".slotkeeper" / "state.db").exists()
    bad = sk("status", "--state", "mysql://x")
    assert bad.code == 1 and "unsupported state URL scheme 'mysql'" in bad.err


def test_plan_as_markdown_for_a_pull_request(sk: Sk, manifests: Path) -> None:
    """`plan --format markdown` prints a table of actions and the summary; no changes says so."""
    write_manifests(
        manifests, environment("production", {"api": image(), "web": image("w")}, protected=True)
    )
    apply(sk)
    write_manifests(
        manifests, environment("production", {"api": image(version="v2")}, protected=True)
    )
    markdown = sk("plan", "-m", "manifests", "--format", "markdown").out
    lines = markdown.splitlines()
    assert lines[0] == "### slotkeeper plan"
    assert "| `~` | deploy | `production/api` | ghcr.io/acme/api v2 | v1 -> v2 |" in lines
    assert any("**blocked**: environment 'production' is protected" in line for line in lines)
    assert lines[-1].startswith("**Plan: 1 to deploy (1 superseding), 1 to decommission")
    assert sk("plan", "-m", "manifests", "--format", "json").json()["summary"]["deploy"] == 1
    apply(sk, "--allow-decommission")
    assert "**No changes.**" in sk("plan", "-m", "manifests", "--format", "markdown").out


def chart(name: str = "oci://ghcr.io/acme/charts/api", version: str = "v1") -> dict[str, str]:
    return {"kind": "HELM_CHART", "name": name, "version": version}


def plan_line(sk: Sk, where: str) -> str:
    result = sk("plan", "-m", "manifests")
    assert result.code == 0, result.err
    [line] = [line for line in result.out.splitlines() if f" {where} " in line]
    return line


def test_kind_change_shows_the_kinds_in_plan_and_history(sk: Sk, manifests: Path) -> None:
    """An image replaced by a same-version chart shows both kinds in plan and in history."""
    write_manifests(manifests, environment("production", {"api": image(version="v1")}))
    apply(sk)
    write_manifests(manifests, environment("production", {"api": chart()}))
    assert (
        "CONTAINER_IMAGE ghcr.io/acme/api v1 -> HELM_CHART oci://ghcr.io/acme/charts/api v1"
        in plan_line(sk, "production/api")
    )
    apply(sk)
    rows = [line.split() for line in sk("history", "production/api").out.splitlines()[1:]]
    assert [row[2:5] for row in rows] == [
        ["DEPLOYED", "HELM_CHART", "oci://ghcr.io/acme/charts/api"],
        ["SUPERSEDED", "CONTAINER_IMAGE", "ghcr.io/acme/api"],
    ]
    # A slot that only ever held one kind keeps its rows as they were: no kind shown.
    write_manifests(manifests, environment("production", {"api": chart(), "web": image()}))
    apply(sk)
    [web] = [line for line in sk("history", "production").out.splitlines() if " web " in line]
    assert "CONTAINER_IMAGE" not in web and "ghcr.io/acme/api v1" in web


def test_name_change_with_the_same_version_shows_the_names(sk: Sk, manifests: Path) -> None:
    """A new artifact name with the same version is shown as a change of name, not v1 -> v1."""
    write_manifests(manifests, environment("production", {"api": image(version="v1")}))
    apply(sk)
    write_manifests(manifests, environment("production", {"api": image("ghcr.io/acme/api2")}))
    line = plan_line(sk, "production/api")
    assert "ghcr.io/acme/api v1 -> ghcr.io/acme/api2 v1" in line
    assert "CONTAINER_IMAGE" not in line


@pytest.mark.parametrize(
    ("before", "after", "shown"),
    [
        ("a" * 64, "b" * 64, "v2.3.1@sha256:aaaaaaaaaaaa -> v2.3.1@sha256:bbbbbbbbbbbb"),
        # alike over the first 12 digits: as many as tell them apart
        ("0" * 20 + "a" * 44, "0" * 20 + "b" * 44, "@sha256:" + "0" * 20 + "a -> v2.3.1@"),
    ],
    ids=["re-pushed-tag", "digests-alike-at-first"],
)
def test_digest_only_change_shows_the_short_digests(
    sk: Sk, manifests: Path, before: str, after: str, shown: str
) -> None:
    """A re-pushed tag (same version, new digest) is shown by its digests, not v2.3.1 -> v2.3.1."""
    slot = {"api": image(version="v2.3.1", digest=f"sha256:{before}")}
    write_manifests(manifests, environment("production", slot))
    apply(sk)
    slot = {"api": image(version="v2.3.1", digest=f"sha256:{after}")}
    write_manifests(manifests, environment("production", slot))
    line = plan_line(sk, "production/api")
    assert shown in line
    assert "v2.3.1 -> v2.3.1" not in line


def test_digest_added_to_the_same_version_shows_it(sk: Sk, manifests: Path) -> None:
    """Pinning a digest to a version already deployed shows the digest it gains."""
    write_manifests(manifests, environment("production", {"api": image(version="v2")}))
    apply(sk)
    slot = {"api": image(version="v2", digest=DIGEST_A)}
    write_manifests(manifests, environment("production", slot))
    assert "v2 -> v2@sha256:aaaaaaaaaaaa " in plan_line(sk, "production/api")


def test_apply_detailed_exitcode_says_applied_nothing_to_do_or_held(
    sk: Sk, manifests: Path
) -> None:
    """`apply --detailed-exitcode`: 2 when it applied changes, 0 when there was nothing to do,
    3 when an action was held (a protected decommission), so CI sees what was held."""
    write_manifests(
        manifests,
        environment("production", {"api": image(), "web": image("web")}, protected=True),
    )
    args = ("apply", "--yes", "-m", "manifests", "--detailed-exitcode")
    assert sk(*args).code == 2
    assert sk(*args).code == 0
    write_manifests(manifests, environment("production", {"api": image()}, protected=True))
    held = sk(*args)
    assert held.code == 3, held.out + held.err
    assert "blocked" in held.out
    assert sk("apply", "--yes", "-m", "manifests").code == 0  # without the flag: a success
    write_manifests(manifests, environment("production", {"api": image(version="v2")}))
    assert sk(*args, "--allow-decommission").code == 2


def test_apply_of_a_saved_plan_shows_the_actions_it_applies(sk: Sk, manifests: Path) -> None:
    """`apply PLANFILE` prints the plan it applies (holds decided now), as `apply` does, then
    the result; with --detailed-exitcode it says it applied changes."""
    write_manifests(manifests, environment("production", {"api": image()}))
    assert sk("plan", "-m", "manifests", "--out", "saved.plan").code == 0
    applied = sk("apply", "saved.plan", "--detailed-exitcode")
    assert applied.code == 2, applied.out + applied.err
    assert "production/api" in applied.out and "new slot" in applied.out
    assert applied.out.index("new slot") < applied.out.index("Apply complete!")
