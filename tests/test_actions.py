"""The plan's actions as a discriminated union: one model per type, each read back from the flat
wire shape of plan files and `plan --json`, wrong types and missing fields refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from slotkeeper.actions import (
    ACTION,
    Action,
    ActionType,
    CreateKeyAction,
    DecommissionAction,
    DeployAction,
    KnownKey,
    PlannedKey,
    RevokeKeyAction,
    RotateKeyAction,
    SyncAction,
    key_of,
    slot_of,
    targets_of,
)
from slotkeeper.model import Artifact, RemoteState, SyncSubject

API_V1 = Artifact.model_validate(
    {"kind": "CONTAINER_IMAGE", "name": "ghcr.io/a/api", "version": "1"}
)
API_V2 = Artifact.model_validate(
    {"kind": "CONTAINER_IMAGE", "name": "ghcr.io/a/api", "version": "2"}
)
NEW_KEY = PlannedKey(
    repository="acme/web", title="deployer", read_only=True, rotate_after="30d", secret_file="d"
)
OLD_KEY = KnownKey(
    repository="acme/web",
    title="deployer",
    read_only=False,
    rotate_after=None,
    secret_file="d2",
    previous_id=4,
    previous_fingerprint="SHA256:old",
    previous_secret_file="d",
)

#: one action of every type (and every kind of sync), each with what it carries set
EXAMPLES: dict[str, Action] = {
    "deploy": DeployAction(
        id="a1",
        environment="production",
        slot="api",
        artifact=API_V2,
        ref="refs/tags/v2",
        previous=API_V1,
        supersedes=7,
        targets=("github", "chainloop"),
        annotations={"team": "platform"},
        notes=("unkey: not sent",),
        reason="1 -> 2",
    ),
    "decommission": DecommissionAction(
        id="a2",
        environment="production",
        slot="api",
        record=7,
        artifact=API_V1,
        previous=API_V1,
        targets=("github",),
        reason="slot removed from manifests",
        blocked="environment 'production' is protected (pass --allow-decommission)",
    ),
    "create_key": CreateKeyAction(
        id="a3", environment="production", key=NEW_KEY, targets=("github",), reason="declared"
    ),
    "rotate_key": RotateKeyAction(
        id="a4", environment="production", key=OLD_KEY, reason="rotation requested"
    ),
    "revoke_key": RevokeKeyAction(
        id="a5", environment="production", key=OLD_KEY, reason="removed from manifests"
    ),
    "sync of a record": SyncAction(
        id="a6",
        environment="production",
        target="chainloop",
        subject=SyncSubject.RECORD,
        subject_id=7,
        want=RemoteState.ACTIVE,
        remote_id="r7",
        notes=("500 from chainloop",),
        slot="api",
        artifact=API_V1,
        reason="failed on chainloop, should be active",
    ),
    "sync of a key": SyncAction(
        id="a7",
        environment="production",
        target="github",
        subject=SyncSubject.KEY,
        subject_id=4,
        want=RemoteState.ABSENT,
        remote_id="44",
        recreate=True,
        key=OLD_KEY,
        reason="missing on github",
    ),
    "sync of an orphan": SyncAction(
        id="a8",
        environment="production",
        target="github",
        subject=SyncSubject.KEY,
        want=RemoteState.ABSENT,
        remote_id="99",
        repository="acme/web",
        reason="managed key not in the ledger",
    ),
}

#: the keys of every action on the wire, in order: the shape of plan format version 2
WIRE_KEYS = [
    "id",
    "type",
    "environment",
    "slot",
    "key",
    "artifact",
    "ref",
    "previous",
    "supersedes",
    "record",
    "targets",
    "target",
    "subject",
    "subject_id",
    "want",
    "remote_id",
    "recreate",
    "annotations",
    "notes",
    "repository",
    "reason",
    "blocked",
]


@pytest.mark.parametrize("action", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_every_action_type_round_trips_through_json(action: Action) -> None:
    """An action written as JSON reads back as the same model with the same values."""
    again = ACTION.validate_json(ACTION.dump_json(action))
    assert type(again) is type(action)
    assert again == action


@pytest.mark.parametrize("action", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_every_action_keeps_the_flat_wire_shape(action: Action) -> None:
    """Every type is written with all the keys of format version 2 in their order, the ones it
    does not carry null or empty, in JSON and in Python mode alike."""
    document = ACTION.dump_python(action, mode="json")
    assert list(document) == WIRE_KEYS
    carried = set(type(action).model_fields)
    empty: dict[str, Any] = {"targets": [], "recreate": False, "annotations": {}, "notes": []}
    for name in set(WIRE_KEYS) - carried:
        assert document[name] == empty.get(name), name
    assert list(ACTION.dump_python(action)) == WIRE_KEYS
    assert ACTION.dump_python(action)["notes"] == getattr(action, "notes", ())


def test_the_type_decides_the_model() -> None:
    """The same flat document is read as the model its ``type`` names."""
    document = ACTION.dump_python(EXAMPLES["rotate_key"], mode="json")
    assert isinstance(ACTION.validate_python(document), RotateKeyAction)
    document["type"] = "revoke_key"
    assert isinstance(ACTION.validate_python(document), RevokeKeyAction)


@pytest.mark.parametrize("kind", ["", "rollback", "DEPLOY", None, "missing"])
def test_a_wrong_type_is_refused(kind: str | None) -> None:
    """A type no action has, or none at all, is refused as such."""
    document = ACTION.dump_python(EXAMPLES["deploy"], mode="json")
    if kind == "missing":
        del document["type"]
    else:
        document["type"] = kind
    with pytest.raises(ValidationError) as caught:
        ACTION.validate_python(document)
    [error] = caught.value.errors()
    expected = "union_tag_not_found" if kind == "missing" else "union_tag_invalid"
    assert error["type"] == expected


@pytest.mark.parametrize(
    ("example", "path"),
    [
        ("deploy", ["slot"]),
        ("deploy", ["artifact"]),
        ("decommission", ["record"]),
        ("create_key", ["key"]),
        ("rotate_key", ["key", "previous_id"]),
        ("revoke_key", ["key", "previous_id"]),
        ("sync of a record", ["target"]),
        ("sync of a record", ["want"]),
        ("sync of a key", ["subject"]),
        ("sync of an orphan", ["reason"]),
    ],
)
def test_a_missing_required_field_is_refused(example: str, path: list[str]) -> None:
    """What a type needs is required: null (as an old plan file would have it) is refused."""
    document = ACTION.dump_python(EXAMPLES[example], mode="json")
    inner = document
    for step in path[:-1]:
        inner = inner[step]
    inner[path[-1]] = None
    with pytest.raises(ValidationError) as caught:
        ACTION.validate_python(document)
    assert any(error["loc"][1:] == tuple(path) for error in caught.value.errors())


@pytest.mark.parametrize(
    ("example", "foreign", "value"),
    [
        ("create_key", "slot", "api"),
        ("deploy", "record", 3),
        ("deploy", "target", "github"),
        ("revoke_key", "want", "absent"),
        ("decommission", "notes", ["a note"]),
        ("rotate_key", "recreate", True),
        ("rotate_key", "recreate", 0),
        ("sync of a record", "annotations", {"a": "b"}),
        ("sync of a key", "supersedes", 1),
    ],
)
def test_a_field_of_another_type_is_refused_unless_empty(
    example: str, foreign: str, value: Any
) -> None:
    """A key the type does not carry is read only with its empty value; anything else in it is
    refused, not silently dropped."""
    document = ACTION.dump_python(EXAMPLES[example], mode="json")
    assert foreign not in type(EXAMPLES[example]).model_fields
    document[foreign] = value
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ACTION.validate_python(document)


def test_an_unknown_field_is_refused() -> None:
    """A key that no action type has is refused, whatever its value."""
    document = ACTION.dump_python(EXAMPLES["deploy"], mode="json")
    document["priority"] = None
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ACTION.validate_python(document)


def test_actions_are_immutable() -> None:
    """An action is a value: changing one makes a copy (the planner blocks with model_copy)."""
    action = EXAMPLES["deploy"]
    with pytest.raises(ValidationError):
        action.reason = "changed"  # type: ignore[misc]
    blocked = action.model_copy(update={"blocked": "frozen"})
    assert action.blocked is None and blocked.blocked == "frozen"


KEY_LABEL = "production/key:acme/web/deployer"


@pytest.mark.parametrize(
    ("example", "slot", "key", "targets", "label"),
    [
        ("deploy", "api", None, ("github", "chainloop"), "production/api"),
        ("decommission", "api", None, ("github",), "production/api"),
        ("create_key", None, "acme/web/deployer", ("github",), KEY_LABEL),
        ("rotate_key", None, "acme/web/deployer", (), KEY_LABEL),
        ("revoke_key", None, "acme/web/deployer", (), KEY_LABEL),
        ("sync of a record", "api", None, ("chainloop",), "production/api"),
        (
            "sync of a key",
            None,
            "acme/web/deployer",
            ("github",),
            "production/key:acme/web/deployer",
        ),
        ("sync of an orphan", None, None, ("github",), "production/key:acme/web#99"),
    ],
)
def test_what_every_surface_reads_of_an_action(
    example: str, slot: str | None, key: str | None, targets: tuple[str, ...], label: str
) -> None:
    """Its slot, its key, the targets it calls and its label, whatever its type."""
    action = EXAMPLES[example]
    found = key_of(action)
    assert (slot_of(action), found.name if found else None) == (slot, key)
    assert targets_of(action) == targets
    assert action.label == label


def test_the_types_are_the_action_types() -> None:
    """Every ActionType has its model, and the examples cover them all."""
    assert {action.type for action in EXAMPLES.values()} == set(ActionType)
    assert json.loads(ACTION.dump_json(EXAMPLES["sync of an orphan"]))["type"] == "sync"


def test_leaving_out_none_leaves_out_what_a_type_does_not_carry() -> None:
    """Asked to leave out None (or defaults), an action's dump has only what it carries and
    set: the flat shape is filled in for a full dump only."""
    action = EXAMPLES["rotate_key"]
    assert set(ACTION.dump_python(action, mode="json", exclude_none=True)) == {
        "id",
        "type",
        "environment",
        "key",
        "targets",
        "reason",
    }
    assert set(ACTION.dump_python(action, exclude_defaults=True)) == {
        "id",
        "environment",
        "key",
        "reason",
    }
