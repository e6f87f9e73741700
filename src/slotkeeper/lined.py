"""Parsed YAML that knows its lines, and its plain JSON form: what a manifest's parse is made
of, without the parser (:mod:`slotkeeper.yamlsource`), so that a load whose files all have a
stored parse never imports PyYAML.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

YAML_SUFFIXES = (".yaml", ".yml")


def is_yaml_name(path: PurePath) -> bool:
    """Whether ``path`` is named like a YAML file (``.yaml`` / ``.yml`` in any case): every such
    file under the manifest path is read, since one skipped would look like a removal."""
    return path.suffix.lower() in YAML_SUFFIXES


class LineDict(dict[Any, Any]):
    """A mapping that also knows the 1-based line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence that also knows the 1-based line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


def lined_to_plain(data: Any) -> Any:
    """Parsed data with its lines as plain JSON values: a mapping as ``{"m": [[key, value,
    key line]...], "l": line}``, a sequence as ``{"s": [[value, line]...], "l": line}``, a
    scalar as ``{"v": value}`` (keys are strings or scalars JSON holds)."""
    if isinstance(data, LineDict):
        pairs = [[key, lined_to_plain(value), data.key_lines[key]] for key, value in data.items()]
        return {"m": pairs, "l": data.line}
    if isinstance(data, LineList):
        return {
            "s": [[lined_to_plain(v), n] for v, n in zip(data, data.item_lines, strict=True)],
            "l": data.line,
        }
    return {"v": data}


def plain_to_lined(plain: Any) -> Any:
    """What :func:`lined_to_plain` made, back as ``LineDict`` / ``LineList`` / scalars."""
    if "m" in plain:
        mapping = LineDict()
        mapping.line, mapping.key_lines = plain["l"], {}
        for key, value, line in plain["m"]:
            mapping[key] = plain_to_lined(value)
            mapping.key_lines[key] = line
        return mapping
    if "s" in plain:
        sequence = LineList(plain_to_lined(value) for value, _ in plain["s"])
        sequence.line, sequence.item_lines = plain["l"], [line for _, line in plain["s"]]
        return sequence
    return plain["v"]


def line_of(data: Any, path: tuple[int | str, ...], default: int) -> int:
    """The line of the deepest part of ``path`` that exists in ``data``."""
    line = getattr(data, "line", default) or default
    current = data
    for step in path:
        if isinstance(current, LineDict) and step in current:
            line = current.key_lines.get(step, line)
            current = current[step]
        elif isinstance(current, LineList) and isinstance(step, int) and 0 <= step < len(current):
            line = current.item_lines[step]
            current = current[step]
        else:
            break
    return line
