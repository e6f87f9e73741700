"""Saved plans read back exactly as they were written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotkeeper.errors import PlanFileError
from slotkeeper.model import DesiredState, EnvironmentSpec, RecordedState, Revision
from slotkeeper.plan import PlanOptions, diff
from slotkeeper.planfile import load_plan, save_plan

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
