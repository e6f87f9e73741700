"""Promotion policies through the CLI: a deploy into an environment promoted from another is
held (with the reason, approvable) until the artifact soaked upstream without being rolled back
or fixed there, and an artifact rolled back in a slot stays out of it until `release-hold`.

Time passes the way the ledger can tell: its records are aged (moved back) in the SQLite file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import Ui
from tests.fakes.unkey import FakeUnkey
from tests.helpers import (
    Run,
    age_ledger,
    environment,
    image,
    target_document,
    write_manifests,
    write_targets,
)

Sk = Callable[..., Run]


def manifests(
    workdir: Path,
    staging: str,
    production: str | None,
    *,
    soak: str = "2h",
    staging_annotations: dict[str, str] | None = None,
    **policy: Any,
) -> None:
    """staging and production with one slot `api`; production promoted from staging."""
    upstream = environment("staging", {"api": image(version=staging)})
    if staging_annotations:
        upstream["spec"]["slots"]["api"]["annotations"] = staging_annotations
    downstream = environment(
        "production",
        {"api": image(version=production)} if production else {},
        production=True,
        promotion={"from": "staging", "soak": soak, **policy},
    )
    write_manifests(workdir / "m", upstream, downstream)


def apply(sk: Sk) -> Run:
    done = sk("apply", "--yes", "-m", "m")
    assert done.code == 0, done.err
    return done


def age(state: Path, by: timedelta) -> None:
    """Everything the ledger holds happened ``by`` earlier."""
    for column in ("created_at", "updated_at"):
        age_ledger(state, "records", column, by)


def production_version(sk: Sk) -> str | None:
    for row in sk("status", "--json").json()["slots"]:
        if (row["environment"], row["slot"], row["status"]) == ("production", "api", "DEPLOYED"):
            return str(row["artifact"]["version"])
    return None


def test_a_deploy_waits_for_the_soak_upstream_then_goes_through(
    sk: Sk, workdir: Path, state: Path
) -> None:
    """v1 is asked of production as it reaches staging: held, never deployed in staging; 42
    minutes later held with the soak so far; after 2 h deployed by the same apply."""
    manifests(workdir, "v1", "v1")
    first = apply(sk)
    assert "ghcr.io/acme/api v1 was never deployed in staging" in first.out
    assert production_version(sk) is None
    [held] = [row for row in sk("status", "--json").json()["slots"] if row["pending"]]
    assert held["pending"]["blocked"] == "ghcr.io/acme/api v1 was never deployed in staging"
    assert held["pending"]["approval"] == "awaiting"
    age(state, timedelta(minutes=42))
    planned = sk("plan", "-m", "m")
    assert "BLOCKED: ghcr.io/acme/api v1 soaked 42 m of 2 h in staging" in planned.out
    assert "awaiting approval: slotkeeper approve" in planned.out
    age(state, timedelta(minutes=80))
    apply(sk)
    assert production_version(sk) == "v1"


def test_an_artifact_replaced_upstream_before_it_soaked_is_held(
    sk: Sk, workdir: Path, state: Path
) -> None:
    """v1 ran 30 m in staging before v2 replaced it: v1 stays held, saying so."""
    manifests(workdir, "v1", None)
    apply(sk)
    age(state, timedelta(minutes=30))
    manifests(workdir, "v2", None)
    apply(sk)
    age(state, timedelta(hours=5))
    manifests(workdir, "v2", "v1")
    planned = sk("plan", "-m", "m")
    assert "v1 soaked 30 m of 2 h in staging before #2 replaced it" in planned.out


@pytest.mark.parametrize(
    ("then", "annotations", "reason"),
    [
        ("v1", None, "v2 was rolled back (by #3) in staging"),
        ("v3", {"hotfix": "true"}, "v2 was superseded by a fix (#3) in staging"),
    ],
)
def test_an_artifact_rolled_back_or_fixed_upstream_is_held(
    sk: Sk,
    workdir: Path,
    state: Path,
    then: str,
    annotations: dict[str, str] | None,
    reason: str,
) -> None:
    """staging ran v1, then v2 for a day, then rolled back to v1 (or took the hotfix v3): v2
    does not reach production, however long it ran."""
    manifests(workdir, "v1", None)
    apply(sk)
    manifests(workdir, "v2", None)
    apply(sk)
    age(state, timedelta(days=1))
    manifests(workdir, then, None, staging_annotations=annotations)
    apply(sk)
    manifests(workdir, then, "v2", staging_annotations=annotations)
    planned = sk("plan", "-m", "m")
    assert f"BLOCKED: ghcr.io/acme/api {reason}" in planned.out


def test_a_rollback_holds_the_artifact_until_released(sk: Sk, workdir: Path, state: Path) -> None:
    """production takes v1, then v2, then is rolled back to v1: v2 is held in production/api
    (the hold is in the audit log); typed back in by hand it stays out until `release-hold`,
    and an approval lets one deploy of it through as for any hold."""
    manifests(workdir, "v1", "v1")
    apply(sk)
    age(state, timedelta(hours=3))
    manifests(workdir, "v2", "v1")
    apply(sk)
    age(state, timedelta(hours=3))
    manifests(workdir, "v2", "v2")
    apply(sk)
    assert production_version(sk) == "v2"
    manifests(workdir, "v2", "v1")  # the rollback itself is never held: v1 soaked
    apply(sk)
    assert production_version(sk) == "v1"
    events = sk("events", "--json").json()
    assert any(event["type"] == "hold.created" for event in events)

    manifests(workdir, "v2", "v2")
    planned = sk("plan", "-m", "m")
    assert "v2 was rolled back in production (#4, by #5) and is held there: slotkeeper " in (
        planned.out
    )
    assert "release-hold production/api" in planned.out
    apply(sk)
    assert production_version(sk) == "v1"

    assert sk("release-hold", "staging/api").code == 1  # nothing held there
    released = sk("release-hold", "production/api", "--reason", "fixed by config")
    assert released.code == 0 and "Released the hold on ghcr.io/acme/api v2" in released.out
    assert sk("release-hold", "production/api").code == 1  # released already
    apply(sk)
    assert production_version(sk) == "v2"


def test_an_approval_lets_one_held_promotion_through(sk: Sk, workdir: Path) -> None:
    """A deploy held by the policy awaits approval like any hold: `approve production/api`
    lets it through at the next apply."""
    manifests(workdir, "v1", "v1")
    apply(sk)
    assert production_version(sk) is None
    approved = sk("approve", "production/api", "--reason", "hotfix, tested by hand")
    assert approved.code == 0, approved.err
    apply(sk)
    assert production_version(sk) == "v1"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"from": "stagin"}, "no environment 'stagin' is declared (did you mean 'staging'?)"),
        ({"from": "production"}, "'production' cannot be promoted from itself"),
        ({"from": "staging", "requireTargets": ["unkey"]}, "target 'unkey' is not one of"),
    ],
)
def test_a_policy_naming_what_is_not_there_is_refused(
    sk: Sk, workdir: Path, policy: dict[str, Any], message: str
) -> None:
    """A promotion policy names a declared upstream environment other than its own, and only
    targets that environment is mirrored to: else exit 1 naming the file, line and field."""
    upstream = environment("staging", {"api": image()})
    downstream = environment("production", {"api": image()}, promotion=policy)
    write_manifests(workdir / "m", upstream, downstream)
    done = sk("validate", "-m", "m")
    assert done.code == 1
    assert "envs.yaml:" in done.err and "spec.promotion." in done.err and message in done.err


def test_promotion_in_a_circle_is_refused(sk: Sk, workdir: Path) -> None:
    """Two environments promoted from each other are refused at the line of `from`."""
    first = environment("staging", {"api": image()}, promotion={"from": "production"})
    second = environment("production", {"api": image()}, promotion={"from": "staging"})
    write_manifests(workdir / "m", first, second)
    done = sk("validate", "-m", "m")
    assert done.code == 1 and "promotion goes round in a circle" in done.err


def test_the_pipeline_shows_what_is_behind_and_what_comes_next(
    sk: Sk, workdir: Path, state: Path, ui: Callable[..., Ui]
) -> None:
    """`status --promotion` lists each slot's environments in promotion order (a promoted-
    from-nothing one first), marks production behind staging with the move a promotion would
    make (held with the reason, then ready once soaked), as a table, as JSON and on the
    dashboard's /promotion page (without a script), which without the manifests says so."""
    manifests(workdir, "v1", None)
    apply(sk)
    age(state, timedelta(hours=3))
    manifests(workdir, "v2", None)
    write_manifests(
        workdir / "m",
        environment("staging", {"api": image(version="v2")}),
        environment(
            "production",
            {"api": image(version="v1")},
            promotion={"from": "staging", "soak": "2h"},
        ),
        environment(
            "canary",
            {"api": image(version="v1")},
            promotion={"from": "production", "soak": "1h"},
        ),
    )
    approved = sk("apply", "--yes", "-m", "m")
    assert approved.code == 0
    age(state, timedelta(minutes=30))
    shown = sk("status", "--promotion", "-m", "m")
    assert shown.code == 0, shown.err
    lines = [line for line in shown.out.splitlines() if line.strip()]
    assert [
        line.split()[1] if line.startswith("api") else line.split()[0] for line in lines[1:]
    ] == [
        "staging",
        "production",
        "canary",
    ]
    assert "behind: held: ghcr.io/acme/api v2 soaked 30 m of 2 h in staging" in shown.out
    document = sk("status", "--promotion", "--json", "-m", "m").json()
    [row] = document["slots"]
    stages = {stage["environment"]: stage for stage in row["stages"]}
    assert stages["staging"]["upstream"] is None and not stages["staging"]["behind"]
    assert stages["production"]["behind"] and not stages["production"]["next"]["ready"]
    assert stages["production"]["next"]["from"] == "staging #3"  # after production #2
    assert stages["canary"]["upstream"] == "production" and stages["canary"]["artifact"] is None
    assert (
        stages["canary"]["next"]["held"] == "ghcr.io/acme/api v1 soaked 30 m of 1 h in production"
    )

    age(state, timedelta(hours=2))
    ready = sk("status", "--promotion", "-m", "m")
    assert "behind: ghcr.io/acme/api v2 ready to promote, 2h 30m in staging" in ready.out

    page = ui("-m", "m").get("/promotion")
    assert page.status_code == 200 and "<script" not in page.text
    assert 'id="pipeline-api"' in page.text and "ready" in page.text
    bare = ui()
    assert bare.get("/status/promotion").json() == {"manifests": False, "slots": []}
    assert "does not read" in bare.get("/promotion").text


GOLDEN = Path(__file__).parent / "golden" / "promote"


def test_promote_keeps_a_hand_written_manifest_byte_for_byte(
    sk: Sk, workdir: Path, state: Path
) -> None:
    """`promote staging production` on a hand-written manifest (comments beside and above,
    an anchor and its alias, flow mappings in both spacings, single-, double- and unquoted
    scalars, a blank line) changes only the promoted values: the file is byte for byte the
    golden one; promoting again has nothing to do."""
    (workdir / "m").mkdir()
    shutil.copy(GOLDEN / "production.in.yaml", workdir / "m" / "production.yaml")
    shutil.copy(GOLDEN / "staging.yaml", workdir / "m" / "staging.yaml")
    apply(sk)
    age(state, timedelta(hours=3))
    done = sk("promote", "staging", "production", "-m", "m")
    assert done.code == 0, done.err
    assert "+        version: 'v1.5.0'          # single-quoted on purpose" in done.out
    written = (workdir / "m" / "production.yaml").read_bytes()
    assert written == (GOLDEN / "production.out.yaml").read_bytes()
    again = sk("promote", "staging", "production", "-m", "m")
    assert again.code == 0 and "Nothing to promote" in again.out


def test_promote_and_rollback_refuse_what_they_cannot_do(sk: Sk, workdir: Path) -> None:
    """Clear refusals, exit 1, nothing written: an unknown environment or slot, a rollback
    with nothing deployed or nothing before it, a malformed ENV/SLOT; `--force` writes a held
    promotion, which the planner still holds until approved."""
    manifests(workdir, "v1", "v1")
    apply(sk)
    before = (workdir / "m" / "envs.yaml").read_bytes()
    for args, message in (
        (("promote", "qa", "production"), "no environment 'qa'"),
        (("promote", "staging", "production", "web"), "declares no slot 'web'"),
        (("rollback", "production/api"), "nothing is deployed in production/api"),
        (("rollback", "staging/api"), "ran nothing before #1"),
        (("rollback", "staging"), "expected ENV/SLOT"),
    ):
        done = sk(*args, "-m", "m")
        assert done.code == 1 and message in done.err, (args, done.err)
    assert (workdir / "m" / "envs.yaml").read_bytes() == before
    manifests(workdir, "v2", "v1")
    apply(sk)
    held = sk("promote", "staging", "production", "-m", "m")
    assert held.code == 1 and "v2 soaked 0 m of 2 h in staging" in held.err
    forced = sk("promote", "staging", "production", "-m", "m", "--force", "incident 42")
    assert forced.code == 0 and "+        version: v2" in forced.out
    planned = sk("plan", "-m", "m")
    assert "BLOCKED: ghcr.io/acme/api v2 soaked" in planned.out  # approval still needed


def test_required_upstream_targets_must_have_settled_the_artifact(
    sk: Sk, workdir: Path, state: Path, unkey: FakeUnkey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`requireTargets: [unkey]`: an artifact Unkey never made READY in staging (it is still
    waiting for approval there) is held however long it ran; one Unkey reported FAILED is held
    as failed; one READY there goes through once soaked."""
    monkeypatch.setenv("UNKEY_ROOT_KEY", unkey.token)
    unkey.fail_images = {"broken"}
    unkey.await_approval_images = {"waiting"}
    write_targets(
        target_document(
            "unkey",
            type="unkey",
            baseUrl=unkey.base_url,
            rootKey={"env": "UNKEY_ROOT_KEY"},
            project="acme",
            app="api",
            pollTimeoutSeconds=1,
        )
    )

    def both(upstream: str, downstream: str) -> None:
        staging = environment("staging", {"api": image(version=upstream)}, targets=["unkey"])
        production = environment(
            "production",
            {"api": image(version=downstream)},
            promotion={"from": "staging", "soak": "1h", "requireTargets": ["unkey"]},
        )
        write_manifests(workdir / "m", staging, production)
        sk("apply", "--yes", "-m", "m")

    both("waiting", "v0")
    age(state, timedelta(hours=2))
    both("waiting", "waiting")
    assert (
        "ghcr.io/acme/api waiting has not settled on unkey in staging" in sk("plan", "-m", "m").out
    )
    both("broken", "waiting")
    age(state, timedelta(hours=2))
    both("broken", "broken")
    assert (
        "ghcr.io/acme/api broken was reported failed by unkey in staging"
        in sk("plan", "-m", "m").out
    )
    both("v1", "broken")
    age(state, timedelta(hours=2))
    both("v1", "v1")
    assert production_version(sk) == "v1"


def test_a_slots_own_rule_overrides_its_environments(sk: Sk, workdir: Path, state: Path) -> None:
    """production soaks 2 h, but its slot `api` only 30 m (its own `promotion.soak`), and its
    slot `status-page`, exempt, is never held although staging never ran it."""
    upstream = environment("staging", {"api": image(version="v1")})
    downstream = environment(
        "production",
        {
            "api": image(version="v1"),
            "status-page": image("ghcr.io/acme/status", "v3"),
        },
        promotion={"from": "staging", "soak": "2h"},
    )
    downstream["spec"]["slots"]["api"]["promotion"] = {"soak": "30m"}
    downstream["spec"]["slots"]["status-page"]["promotion"] = {"exempt": True}
    write_manifests(workdir / "m", upstream, downstream)
    apply(sk)
    deployed = {
        row["slot"] for row in sk("status", "--json").json()["slots"] if row["status"] == "DEPLOYED"
    }
    assert "status-page" in deployed  # exempt: never held
    age(state, timedelta(minutes=45))
    apply(sk)
    assert production_version(sk) == "v1"  # 45 m of its own 30 m
