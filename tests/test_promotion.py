"""Promotion policies through the CLI: a deploy into an environment promoted from another is
held (with the reason, approvable) until the artifact soaked upstream without being rolled back
or fixed there, and an artifact rolled back in a slot stays out of it until `release-hold`.

Time passes the way the ledger can tell: its records are aged (moved back) in the SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Run, age_ledger, environment, image, write_manifests

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
