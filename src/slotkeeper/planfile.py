"""Saved plans: the plan document as JSON on disk, read back exactly."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from slotkeeper.actions import ActionType
from slotkeeper.errors import PlanFileError
from slotkeeper.plan import PLAN_FORMAT_VERSION, Plan


def save_plan(plan: Plan, path: Path) -> None:
    """Write ``plan`` atomically; it holds no secret (key material is made at apply time)."""
    text = plan.model_dump_json(indent=2) + "\n"
    directory = path.parent if str(path.parent) else Path()
    try:
        handle, temp_name = tempfile.mkstemp(dir=directory, prefix=".plan-")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(temp_name).replace(path)
    except OSError as exc:
        raise PlanFileError(f"cannot write plan file {path}: {exc.strerror}") from exc


def load_plan(path: Path) -> Plan:
    """Read a plan file written by :func:`save_plan` (of this format version); anything else is
    refused with one line naming the first field that is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanFileError(f"cannot read plan file {path}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{path} is not a slotkeeper plan file (not JSON)") from exc
    if not isinstance(raw, dict) or raw.get("format_version") != PLAN_FORMAT_VERSION:
        raise PlanFileError(
            f"{path} is not a slotkeeper plan file of format version {PLAN_FORMAT_VERSION}"
        )
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"]
        if first["type"] == "union_tag_not_found":  # an action without a type
            where, message = f"{where}.type", "Field required"
        elif first["type"] == "union_tag_invalid":  # an action of a type that is none of ours
            *kinds, last = (f"'{kind.value}'" for kind in ActionType)
            where, message = f"{where}.type", f"Input should be {', '.join(kinds)} or {last}"
        raise PlanFileError(f"{path} is not a valid plan file: {where}: {message}") from exc
