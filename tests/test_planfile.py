"""Saved plans read back exactly as they were written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotkeeper.actions import (
    CreateKeyAction,
    DecommissionAction,
    DeployAction,
    RevokeKeyAction,
    RotateKeyAction,
    SyncAction,
)
from slotkeeper.errors import PlanFileError
from slotkeeper.model import DesiredState, EnvironmentSpec, RecordedState, Revision
from slotkeeper.plan import Plan, PlanOptions, diff, summarize
from slotkeeper.planfile import load_plan, save_plan
from tests.fakes.chainloop import FakeChainloop
from tests.helpers import Run, recorded_state, target_document, write_targets
from tests.test_actions import EXAMPLES

Sk = Callable[..., Run]

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_plan_file_round_trips(tmp_path: Path) -> None:
    """Every field of a plan, options and revision included, survives save and load."""
    spec = EnvironmentSpec.model_validate(
        {
            "slots": {
                "api": {"artifact": {"kind": "CONTAINER_IMAGE", "name": "a", "version": "1"}}
            },
            "deployKeys": [{"repository": "a/b", "title": "k", "secret": {"file": "k"}}],
        }
    )
    original = diff(
        DesiredState(environments={"prod": spec}, targets={}),
        RecordedState(lineage="l", serial=4),
        now=NOW,
        options=PlanOptions(allow_decommission=True, rotate=frozenset({"a/b/k"})),
        revision=Revision(sha="abc", message="m", author="a", timestamp=NOW, branch=None),
    )
    path = tmp_path / "p.plan"
    save_plan(original, path)
    assert load_plan(path) == original
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_plan_of_every_action_type_round_trips(tmp_path: Path) -> None:
    """Every action type (a key's sync and an orphan's included) reads back as its own model
    with the same values."""
    original = Plan(
        lineage="l",
        base_serial=1,
        created_at=NOW,
        revision=None,
        options=PlanOptions(),
        actions=tuple(EXAMPLES.values()),
        summary=summarize(EXAMPLES.values()),
    )
    path = tmp_path / "p.plan"
    save_plan(original, path)
    loaded = load_plan(path)
    assert loaded == original
    assert [type(a) for a in loaded.actions] == [type(a) for a in original.actions]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format_version": 99}', "format version 2"),
        ('{"format_version": 1}', "format version 2"),
        ('{"format_version": 2, "lineage": "x"}', "not a valid plan file"),
        ("[1, 2]", "not a slotkeeper plan file"),
    ],
)
def test_foreign_or_future_plan_files_are_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    """A plan file of another format version or shape is refused with a clear message."""
    path = tmp_path / "p.plan"
    path.write_text(content)
    with pytest.raises(PlanFileError, match=message):
        load_plan(path)


#: plan files written by `slotkeeper plan --out` before the action types were told apart, with
#: the manifests they were made from (see tests/planfiles/README.md)
OLD_PLANS = Path(__file__).parent / "planfiles"


@pytest.mark.parametrize(
    ("name", "types"),
    [
        ("1-initial", [CreateKeyAction] * 2 + [DeployAction] * 3),
        (
            "2-next",
            [RotateKeyAction]
            + [DeployAction] * 3
            + [DecommissionAction, RevokeKeyAction, SyncAction],
        ),
    ],
)
def test_plan_files_written_before_the_action_types_read_and_write_unchanged(
    tmp_path: Path, name: str, types: list[type]
) -> None:
    """An old plan file reads back as one model per action type, and saving it again writes
    the same bytes: the file format did not change."""
    path = OLD_PLANS / f"{name}.plan"
    loaded = load_plan(path)
    assert [type(action) for action in loaded.actions] == types
    save_plan(loaded, tmp_path / "again.plan")
    assert (tmp_path / "again.plan").read_bytes() == path.read_bytes()


def test_plan_files_written_before_the_action_types_still_apply(
    sk: Sk, workdir: Path, state: Path, chainloop: FakeChainloop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old plan files apply through the CLI, one after the other: every action type is
    carried out (the blocked deploy is not), on the ledger, the secrets and the target."""
    for manifests in ("1-initial", "2-next"):
        shutil.copytree(OLD_PLANS / manifests, workdir / manifests)
    monkeypatch.setenv("CHAINLOOP_TOKEN", "cl_testtoken0123456789")
    write_targets(
        target_document(
            "chainloop",
            type="chainloop",
            baseUrl=chainloop.base_url,
            token={"env": "CHAINLOOP_TOKEN"},
        )
    )
    first = sk("apply", str(OLD_PLANS / "1-initial.plan"), "-m", "1-initial")
    assert first.code == 0, first.err + first.out
    assert "Apply complete! 8 applied, 0 failed, 0 blocked. Ledger serial 1." in first.out
    secrets = workdir / ".slotkeeper" / "secrets"
    assert sorted(p.name for p in secrets.iterdir()) == ["deployer", "old-deployer"]

    second = sk("apply", str(OLD_PLANS / "2-next.plan"), "-m", "2-next")
    assert second.code == 0, second.err + second.out
    # 5 ledger actions, then 5 target calls: the new api record and the retired one, cron,
    # worker's decommission, and the sync of web
    assert "Apply complete! 10 applied, 0 failed, 1 blocked. Ledger serial 2." in second.out
    recorded = recorded_state(state)
    assert {slot: r.artifact.version for (_, slot), r in recorded.deployed.items()} == {
        "api": "v2",
        "cron": "1.0.0",
        "web": "v1",
    }
    assert recorded.deployed["production", "api"].annotations == {"team": "platform"}
    history = sk("history", "production", "--json").json()
    assert sorted((r["id"], r["slot"], r["status"]) for r in history) == [
        (1, "api", "SUPERSEDED"),
        (2, "web", "DEPLOYED"),
        (3, "worker", "DECOMMISSIONED"),
        (4, "api", "DEPLOYED"),
        (5, "cron", "DEPLOYED"),
    ]
    [key] = recorded.keys.values()
    assert (key.title, key.read_only, key.id) == ("deployer", False, 3)
    assert sorted(p.name for p in secrets.iterdir()) == ["deployer"]
    assert chainloop.active("production", "api")["artifact"]["version"] == "v2"
    assert [r["status"] for r in chainloop.records("production", "worker")] == ["DECOMMISSIONED"]
    rows = sk("status", "--json").json()["slots"]
    assert {(r["slot"], r["targets"]["chainloop"]["status"]) for r in rows if r["targets"]} == {
        ("api", "synced"),
        ("cron", "synced"),
        ("web", "synced"),
        ("worker", "synced"),
    }
    assert [(r["environment"], r["pending"]["blocked"]) for r in rows if r["pending"]] == [
        ("staging", "environment 'staging' is suspended")
    ]


#: a key taken out of an action
REMOVED = "(removed)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"type": "rollback"},
            "actions.0.type: Input should be 'create_key', 'rotate_key', 'deploy', "
            "'decommission', 'revoke_key' or 'sync'",
        ),
        ({"type": None}, "actions.0.type: Input should be 'create_key', "),
        ({"type": REMOVED}, "actions.0.type: Field required"),
        ({"slot": "api"}, "actions.0.rotate_key.slot: Extra inputs are not permitted"),
        ({"key": None}, "actions.0.rotate_key.key: Input should be a valid dictionary"),
    ],
)
def test_a_plan_file_with_a_wrong_action_is_refused_in_one_line(
    sk: Sk, state: Path, change: dict[str, object], message: str
) -> None:
    """An action of no known type, or with a field its type does not have or without one it
    needs, refuses the apply in one line naming the field; nothing is written."""
    document = json.loads((OLD_PLANS / "2-next.plan").read_text())
    document["actions"][0].update(change)
    document["actions"][0] = {k: v for k, v in document["actions"][0].items() if v != REMOVED}
    Path("bad.plan").write_text(json.dumps(document))
    result = sk("apply", "bad.plan", "-m", str(OLD_PLANS / "2-next"))
    assert result.code == 1
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not state.exists()
