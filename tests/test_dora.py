"""Delivery (DORA) metrics computed from the ledger, through `slotkeeper dora`.

A fixture ledger is built through the CLI from a scripted series of manifest revisions over a
git repository with dated commits (a monorepo: the slots' refs are its tags): a rollback, a
hotfix, a slot decommissioned and re-created with the same artifact, a deployment Unkey reports
FAILED. Each apply's records are then dated as the script says (time passing, as far as the
ledger can tell), and every figure of `dora --json` is compared with one computed by hand.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from slotkeeper.dora.metrics import Deployment, Rules, figures, judge
from tests.daemon_support import Running, Ui, wait_for
from tests.fakes.github import FakeGitHub
from tests.fakes.unkey import FakeUnkey
from tests.helpers import Run, git, target_document, write_manifests, write_targets

Sk = Callable[..., Run]
HOUR = 3600.0


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def commit(repo: Path, subject: str, when: str, tag: str) -> None:
    """A dated commit (author and committer time ``when``) tagged ``tag``."""
    (repo / "app.txt").write_text(subject)
    git(repo, "add", "app.txt")
    subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "--date", when, "-m", subject],
        env={
            **os.environ,
            "GIT_COMMITTER_DATE": when,
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
        },
        check=True,
    )
    git(repo, "tag", tag)


def production(
    slots: dict[str, str], targets: tuple[str, ...] | list[str] = ("unkey",)
) -> dict[str, Any]:
    """The production environment (on Unkey unless told), each slot's ref its tag
    ``SLOT-VERSION``."""
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Environment",
        "metadata": {"name": "production"},
        "spec": {
            "production": True,
            "targets": list(targets),
            "slots": {
                slot: {
                    "artifact": {
                        "kind": "CONTAINER_IMAGE",
                        "name": f"ghcr.io/acme/{slot}",
                        "version": version,
                    },
                    "refFrom": f"{slot}-{{version}}",
                }
                for slot, version in slots.items()
            },
        },
    }


def date_records(state: Path, when: str) -> None:
    """The records the last apply made were made at ``when``."""
    db = sqlite3.connect(state)
    try:
        stamp = at(when).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        db.execute(
            "UPDATE records SET created_at = ? WHERE created_at > ?",
            (stamp, "2026-11-01T00:00:00.000000Z"),
        )
        db.commit()
    finally:
        db.close()


@pytest.fixture
def scripted(sk: Sk, workdir: Path, unkey: FakeUnkey, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scripted history (see the module), on the default ledger; returns its path."""
    monkeypatch.setenv("UNKEY_ROOT_KEY", unkey.token)
    unkey.fail_images = {"broken"}
    write_targets(
        target_document(
            "unkey",
            type="unkey",
            baseUrl=unkey.base_url,
            rootKey={"env": "UNKEY_ROOT_KEY"},
            project="acme",
            app="api",
            pollTimeoutSeconds=5,
        )
    )
    git(workdir, "init", "-q", "-b", "main")
    (workdir / ".gitignore").write_text(".slotkeeper/\nm/\n")
    commit(workdir, "feat: api one", "2026-10-04T12:00:00Z", "api-v1")
    commit(workdir, "feat: web one", "2026-10-04T18:00:00Z", "web-v1")
    commit(workdir, "feat: api two", "2026-10-06T06:00:00Z", "api-v2")
    commit(workdir, "hotfix: api three", "2026-10-08T10:00:00Z", "api-v3")
    commit(workdir, "feat: api four", "2026-10-12T06:00:00Z", "api-v4-broken")
    commit(workdir, "feat: api five", "2026-10-12T17:00:00Z", "api-v5")
    state = workdir / ".slotkeeper" / "state.db"
    script = [
        ({"api": "v1", "web": "v1"}, "2026-10-05T12:00:00"),  # #1 api, #2 web
        ({"api": "v2", "web": "v1"}, "2026-10-06T12:00:00"),  # #3
        ({"api": "v1", "web": "v1"}, "2026-10-06T14:00:00"),  # #4 rolls #3 back
        ({"api": "v3", "web": "v1"}, "2026-10-08T12:00:00"),  # #5 a hotfix after #4
        ({"api": "v3"}, "2026-10-09T12:00:00"),  # web decommissioned
        ({"api": "v3", "web": "v1"}, "2026-10-10T12:00:00"),  # #6 web again, same artifact
        ({"api": "v4-broken", "web": "v1"}, "2026-10-12T12:00:00"),  # #7 Unkey: FAILED
        ({"api": "v5", "web": "v1"}, "2026-10-12T18:00:00"),  # #8
    ]
    for slots, when in script:
        write_manifests(workdir / "m", production(slots))
        sk("apply", "--yes", "-m", "m")
        date_records(state, when)
    return state


def test_dora_matches_the_figures_computed_by_hand(sk: Sk, scripted: Path) -> None:
    """Every figure of `dora --json` for 2026-10-01 to 2026-10-15, worked out by hand from the
    script: 8 deployments in 14 days; failed #3 (rolled back by #4), #4 (followed by the hotfix
    #5) and #7 (Unkey FAILED); rework #4 and #5; lead times 1, 2, 6, 6, 18, 24, 42, 54, 90 and
    138 hours; recoveries 48 h (#3, at #5: #4 failed too), 46 h (#4) and 6 h (#7)."""
    shown = sk("dora", "--since", "2026-10-01", "--until", "2026-10-15", "--json")
    assert shown.code == 0, shown.err
    metrics = shown.json()["metrics"]
    frequency = metrics["deployment_frequency"]
    assert frequency["deployments"] == 8 and frequency["days"] == 14
    assert frequency["per_week"] == 4.0 and frequency["band"] == "high"
    lead = metrics["lead_time"]
    assert lead["commits"] == 10 and lead["unknown_deployments"] == 0
    assert lead["median_seconds"] == 21 * HOUR and lead["p90_seconds"] == 90 * HOUR
    assert lead["band"] == "elite"
    failures = metrics["change_failure_rate"]
    assert (failures["failed"], failures["rate"], failures["band"]) == (3, 0.375, "low")
    assert [
        (f["record"], f["reasons"], f["undone_by"], f["recovered_by"]) for f in failures["failures"]
    ] == [
        (3, ["rolled-back"], 4, 5),
        (4, ["fixed"], 5, 5),
        (7, ["target-failed"], None, 8),
    ]
    recovery = metrics["recovery_time"]
    assert recovery["recovered"] == 3 and recovery["unrecovered"] == []
    assert recovery["median_seconds"] == 46 * HOUR and recovery["p90_seconds"] == 48 * HOUR
    assert recovery["band"] == "medium"
    rework = metrics["rework_rate"]
    assert (rework["rework"], rework["rate"], rework["records"]) == (2, 0.25, [4, 5])


def test_dora_by_slot_week_and_rules(sk: Sk, scripted: Path) -> None:
    """--by slot splits the figures (web: 2 deployments, none failed); --fix-window off drops
    the hotfix rule (#4 no longer failed); the weekly trend covers every week of the period."""
    by_slot = sk(
        "dora", "--since", "2026-10-01", "--until", "2026-10-15", "--by", "slot", "--json"
    ).json()
    groups = {g["group"]: g["metrics"] for g in by_slot["groups"]}
    assert groups["production/web"]["deployment_frequency"]["deployments"] == 2
    assert groups["production/web"]["change_failure_rate"]["failed"] == 0
    assert groups["production/api"]["change_failure_rate"]["failed"] == 3
    no_fix = sk(
        "dora", "--since", "2026-10-01", "--until", "2026-10-15", "--fix-window", "off", "--json"
    ).json()
    assert [f["record"] for f in no_fix["metrics"]["change_failure_rate"]["failures"]] == [3, 7]
    assert [w["week"] for w in by_slot["weekly"]] == ["2026-W40", "2026-W41", "2026-W42"]
    assert sum(w["deployments"] for w in by_slot["weekly"]) == 8
    table = sk("dora", "--since", "2026-10-01", "--until", "2026-10-15").out
    assert "change failure rate" in table and "37.5 %" in table and "low" in table
    assert "failed: #7 production/api (target-failed, recovered by #8)" in table


def test_a_period_without_deployments_is_no_data_and_bad_arguments_are_clear(
    sk: Sk, scripted: Path
) -> None:
    """A period with no deployment reports no data (null), never zero or a division error; an
    unknown environment, a bad --since and an empty period exit 1 naming the problem."""
    empty = sk("dora", "--since", "2025-01-01", "--until", "2025-02-01", "--json").json()
    metrics = empty["metrics"]
    assert metrics["deployment_frequency"]["per_day"] is None
    assert metrics["change_failure_rate"]["rate"] is None
    assert metrics["lead_time"]["median_seconds"] is None
    assert "no data" in sk("dora", "--since", "2025-01-01", "--until", "2025-02-01").out
    unknown = sk("dora", "staging")
    assert unknown.code == 1 and "no environment 'staging'" in unknown.err
    assert "production" in unknown.err
    bad = sk("dora", "--since", "last tuesday")
    assert bad.code == 1 and "--since" in bad.err and "Traceback" not in bad.err
    backwards = sk("dora", "--since", "2026-10-15", "--until", "2026-10-01")
    assert backwards.code == 1 and "period is empty" in backwards.err


# -- the rules, over random histories ----------------------------------------------------------

START = at("2026-01-01T00:00:00")
ARTIFACTS = ("a", "b", "c")


@st.composite
def histories(draw: st.DrawFn) -> list[Deployment]:
    """A slot's deployments: random artifacts (each differing from the one before), gaps of
    an hour to ten days, random fix marks and target failures."""
    count = draw(st.integers(min_value=0, max_value=12))
    found: list[Deployment] = []
    moment = START
    current: str | None = None
    for record in range(1, count + 1):
        choices = [a for a in ARTIFACTS if a != current]
        artifact = draw(st.sampled_from(choices))
        moment += timedelta(hours=draw(st.integers(min_value=1, max_value=240)))
        found.append(
            Deployment(
                record=record,
                environment="production",
                slot="api",
                at=moment,
                artifact=artifact,
                replaced=current,
                fix=draw(st.booleans()),
                target_failed=draw(st.booleans()),
                commit_times=(),
            )
        )
        current = artifact
    return found


@settings(max_examples=200, deadline=None)
@given(histories())
def test_no_deployment_counts_twice_and_recovery_follows_failure(
    history: list[Deployment],
) -> None:
    """However a slot goes back and forth: each deployment counts at most once among the
    failures and the rework; failures never exceed deployments; a failed deployment recovers
    at a later deployment that did not fail; an empty history is no data."""
    verdicts = judge(history, Rules())
    found = figures(history, verdicts, since=START, until=START + timedelta(days=400))
    assert len(set(found.failed)) == len(found.failed) <= found.deployments
    assert len(set(found.rework)) == len(found.rework) <= found.deployments
    for record in found.failed:
        verdict = verdicts[record]
        if verdict.recovered_by is not None:
            assert verdict.recovered_by > record and not verdicts[verdict.recovered_by].failed
    if not history:
        assert found.failure_rate is None and found.per_day is None


def test_rolling_back_and_forward_again_counts_each_deployment_once() -> None:
    """a, b, a, b: b (#2) is rolled back by #3, and #3 by #4 going forward again: two
    failures, two rollbacks, none counted twice."""
    history = [
        Deployment(
            record=i,
            environment="p",
            slot="s",
            at=START + timedelta(hours=i),
            artifact=artifact,
            replaced=replaced,
        )
        for i, (artifact, replaced) in enumerate(
            [("a", None), ("b", "a"), ("a", "b"), ("b", "a")], start=1
        )
    ]
    verdicts = judge(history, Rules())
    assert [r for r, v in verdicts.items() if v.failed] == [2, 3]
    assert {r: v.rework for r, v in verdicts.items() if v.rework} == {3: "rollback", 4: "rollback"}


def test_the_daemon_exports_the_figures_for_prometheus(
    sk: Sk, workdir: Path, running: Callable[..., Running]
) -> None:
    """Three deployments of production/api (v1, v2, then v1 again: #2 rolled back) made with
    the CLI; the daemon on that ledger exports them per environment and window:
    deployments 3, change failure rate and rework rate 1/3; lead times unknown (no git)."""
    for version in ("v1", "v2", "v1"):
        write_manifests(workdir / "m", production({"api": version}, targets=[]))
        assert sk("apply", "--yes", "-m", "m").code == 0
    daemon = running("-m", "m", "--resync-interval", "10m")
    wait_for(lambda: sample(daemon, "slotkeeper_dora_deployments", "7d") == 3.0, what="gauges")
    assert sample(daemon, "slotkeeper_dora_deployments", "30d") == 3.0
    third = pytest.approx(1 / 3, abs=1e-4)  # the report's rates have four decimals
    assert sample(daemon, "slotkeeper_dora_change_failure_rate", "7d") == third
    assert sample(daemon, "slotkeeper_dora_rework_rate", "30d") == third
    assert sample(daemon, "slotkeeper_dora_lead_time_seconds", "7d") is None  # no data


def sample(daemon: Running, name: str, window: str) -> float | None:
    """The value of ``name`` for production and ``window`` (the first quantile for those
    that have one), or None when the series is absent."""
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        for found in family.samples:
            if (
                found.name == name
                and found.labels.get("environment") == "production"
                and found.labels.get("window") == window
            ):
                return float(found.value)
    return None


# -- four-keys sees the same deployments -------------------------------------------------------


def four_keys_deployments(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The GitHub branch of four-keys' ``deployments`` query (queries/deployments.sql), in
    Python: events of type ``deployment_status`` whose ``$.deployment_status.state`` is
    ``success``; ``deploy_id`` is the status's id and ``main_commit`` ``$.deployment.sha``."""
    return [
        (str(event["metadata"]["deployment_status"]["id"]), event["metadata"]["deployment"]["sha"])
        for event in events
        if event["event_type"] == "deployment_status"
        and event["metadata"]["deployment_status"]["state"] == "success"
    ]


def test_four_keys_counts_the_deployments_dora_counts(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """slotkeeper deploys production/api v1, v2, then v3 to GitHub; the `deployment_status`
    webhook events GitHub would send for what the API holds, run through four-keys' query, give
    one successful deployment per record, each at the commit its tag names — the deployments
    `dora` counts."""
    shas = {v: gh.add_tag("acme/web", v, f"{n:040x}") for n, v in enumerate(("v1", "v2", "v3"), 1)}
    write_targets(
        target_document("github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"})
    )
    for version in ("v1", "v2", "v3"):
        document = production({"api": version}, targets=["github"])
        document["spec"]["repository"] = "acme/web"
        document["spec"]["slots"]["api"]["refFrom"] = "version"
        write_manifests(workdir / "m", document)
        applied = sk("apply", "--yes", "-m", "m")
        assert applied.code == 0, applied.out + applied.err
    api = httpx.Client(base_url=gh.base_url, headers={"Authorization": f"Bearer {gh.token}"})
    events = []
    for deployment in api.get("/repos/acme/web/deployments").json():
        for status in api.get(f"/repos/acme/web/deployments/{deployment['id']}/statuses").json():
            metadata = {"deployment_status": status, "deployment": deployment}
            events.append({"event_type": "deployment_status", "metadata": metadata})
    api.close()
    seen = four_keys_deployments(events)
    assert sorted(sha for _, sha in seen) == sorted(shas.values())
    counted = sk("dora", "--json").json()["metrics"]["deployment_frequency"]["deployments"]
    assert counted == len(seen) == 3


def test_the_dashboard_draws_delivery_and_each_slots_failures(
    sk: Sk, workdir: Path, ui: Callable[..., Ui]
) -> None:
    """/dora shows each environment's figures with their bands and the weekly trend as an
    inline SVG (no script); /status/dora is its JSON twin; the slot page lists the slot's failed
    deployment (#2, rolled back by #3) and what recovered it."""
    for version in ("v1", "v2", "v1"):
        write_manifests(workdir / "m", production({"api": version}, targets=[]))
        assert sk("apply", "--yes", "-m", "m").code == 0
    server = ui()
    page = server.get("/dora")
    assert page.status_code == 200
    assert "<script" not in page.text and "<svg" in page.text and 'class="bar"' in page.text
    assert "change failure rate" in page.text and "33.3 %" in page.text
    document = server.get("/status/dora").json()
    [production_env] = document["environments"]
    assert production_env["metrics"]["change_failure_rate"]["failed"] == 1
    assert len(production_env["chart"]["bars"]) == len(production_env["weekly"]) >= 13
    slot = server.get("/slots/production/api")
    assert 'id="failures"' in slot.text and "rolled-back" in slot.text
    [failure] = server.get("/status/slots/production/api").json()["failures"]
    assert (failure["record"], failure["undone_by"], failure["recovered_by"]) == (2, 3, 3)


def test_lead_time_from_githubs_compare_api_when_the_refs_are_not_in_the_manifests_repository(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """Manifests outside git, the application in acme/web on GitHub: each deploy's commits come
    from GitHub at deploy time (`commits/v1`, then `compare/v1...v2`): lead times 12 h (the
    first deploy's own commit), then 30 h and 6 h: median 12 h."""
    gh.add_history(
        "acme/web",
        [
            ("a" * 40, "2026-10-01T00:00:00Z", "feat: one"),
            ("b" * 40, "2026-10-01T06:00:00Z", "feat: two"),
            ("c" * 40, "2026-10-02T06:00:00Z", "feat: three"),
        ],
    )
    gh.add_tag("acme/web", "v1", "a" * 40)
    gh.add_tag("acme/web", "v2", "c" * 40)
    write_targets(
        target_document("github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"})
    )
    state = workdir / ".slotkeeper" / "state.db"
    for version, when in (("v1", "2026-10-01T12:00:00"), ("v2", "2026-10-02T12:00:00")):
        document = production({"api": version}, targets=["github"])
        document["spec"]["repository"] = "acme/web"
        document["spec"]["slots"]["api"]["refFrom"] = "version"
        write_manifests(workdir / "m", document)
        assert sk("apply", "--yes", "-m", "m").code == 0
        date_records(state, when)
    shown = sk("dora", "--since", "2026-10-01", "--until", "2026-10-03", "--json").json()
    lead = shown["metrics"]["lead_time"]
    assert lead["commits"] == 3 and lead["unknown_deployments"] == 0
    assert lead["median_seconds"] == 12 * HOUR and lead["p90_seconds"] == 30 * HOUR


def test_a_failure_github_reports_is_recorded_and_never_overwritten(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """The workflow that rolled a deployment out sets its GitHub status to `failure`: `plan`
    shows the report as a sync that sends nothing, `apply` records it without writing to
    GitHub (the failure stays there), and the next plan is clean. The deployment counts as
    failed (`target-failed`) even after its successor retired it on GitHub (inactive)."""
    gh.add_history("acme/web", [("a" * 40, "2026-10-01T00:00:00Z", "feat: one")])
    gh.add_tag("acme/web", "v1", "a" * 40)
    gh.add_tag("acme/web", "v2", "a" * 40)
    write_targets(
        target_document("github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"})
    )

    def deploy(version: str) -> None:
        document = production({"api": version}, targets=["github"])
        document["spec"]["repository"] = "acme/web"
        document["spec"]["slots"]["api"]["refFrom"] = "version"
        write_manifests(workdir / "m", document)
        assert sk("apply", "--yes", "-m", "m").code == 0

    deploy("v1")
    [deployment] = gh.deployments("acme", "web")
    gh.add_status("acme", "web", deployment["id"], "failure")
    planned = sk("plan", "-m", "m", "--detailed-exitcode")
    assert planned.code == 2
    assert "github (nothing sent): github reports the deployment failure" in planned.out
    gh.reset_log()
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert gh.writes() == []
    assert gh.latest_state(deployment["id"]) == "failure"
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
    [row] = sk("history", "production/api", "--json").json()
    assert row["targets"]["github"]["detail"]["status"] == "failure"

    deploy("v2")
    assert gh.latest_state(deployment["id"]) == "inactive"
    failures = sk("dora", "--json").json()["metrics"]["change_failure_rate"]
    assert failures["failed"] == 1
    [failure] = failures["failures"]
    assert (failure["record"], failure["reasons"], failure["recovered_by"]) == (
        1,
        ["target-failed"],
        2,
    )
