"""`validate --json`'s document, built in render.py beside the other documents."""

from __future__ import annotations

from pathlib import Path

from slotkeeper.errors import ManifestError, ManifestErrors
from slotkeeper.render import validate_document
from tests.helpers import deploy_key, image
from tests.test_plan import CHAINLOOP, desired, with_targets


def test_valid_manifests_are_counted() -> None:
    """Valid manifests give their counts of environments, slots, deploy keys and targets."""
    state = with_targets(
        desired(
            production={"slots": {"api": image(), "web": image()}, "deployKeys": [deploy_key("k")]},
            staging={"slots": {"api": image()}},
            dev={},
        ),
        chainloop=CHAINLOOP,
    )
    assert validate_document(state) == {
        "valid": True,
        "environments": 3,
        "slots": 3,
        "deploy_keys": 1,
        "targets": 1,
    }


def test_invalid_manifests_list_every_error_in_order() -> None:
    """Invalid manifests give every error, sorted by file and line, with its field path."""
    errors = ManifestErrors(
        [
            ManifestError(Path("b.yaml"), 3, "spec.slots.api", "bad version"),
            ManifestError(Path("a.yaml"), None, None, "is empty"),
        ]
    )
    assert validate_document(errors) == {
        "valid": False,
        "errors": [
            {
                "file": "a.yaml",
                "line": None,
                "field": None,
                "message": "is empty",
            },
            {"file": "b.yaml", "line": 3, "field": "spec.slots.api", "message": "bad version"},
        ],
    }
