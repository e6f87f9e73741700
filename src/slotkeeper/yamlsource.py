"""YAML parsing that remembers where every value came from.

PyYAML's libyaml-backed loader (``CSafeLoader``) does the parsing when it is available; we only
swap in constructors that build :class:`LineDict` / :class:`LineList` (plain dicts and lists that
also know the line of each key and item) and that report duplicate keys instead of silently
keeping the last one.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:  # libyaml's C parser when PyYAML was built with it
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict[Any, Any]):
    """A mapping that also knows the 1-based line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence that also knows the 1-based line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


@dataclass(frozen=True)
class Problem:
    """Something wrong in the YAML itself, at a line, under a field path."""

    line: int
    path: str | None
    message: str


class _Loader(_BaseLoader):
    problems: list[Problem]
    path: list[Any]  # keys and indexes from the document root to the node being built

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems = []
        self.path = []

    def construct_at(self, step: Any, node: yaml.Node) -> Any:
        self.path.append(step)
        try:
            return self.construct_object(node, deep=True)
        finally:
            self.path.pop()


def _field_path(steps: list[Any]) -> str:
    text = ""
    for step in steps:
        if isinstance(step, int) and not isinstance(step, bool):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    own_keys = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)  # merged (<<) entries come first; own keys may override them
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    own_lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):
            loader.problems.append(Problem(key_line, None, "a mapping key must be a plain value"))
            continue
        if id(key_node) in own_keys:
            if key in own_lines:
                loader.problems.append(
                    Problem(
                        key_line,
                        _field_path([*loader.path, key]),
                        f"duplicate key {key!r} (first at line {own_lines[key]})",
                    )
                )
                continue
            own_lines[key] = key_line
        data[key] = loader.construct_at(key, value_node)
        data.key_lines[key] = key_line
    return data


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    data = LineList(loader.construct_at(index, child) for index, child in enumerate(node.value))
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    return data


# YAML 1.1 reads yes/no/on/off as booleans (the "Norway problem": a slot named `no` would turn
# into False). Manifests follow YAML 1.2 here: only true and false are booleans.
_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


@dataclass(frozen=True)
class ParsedDocument:
    """One YAML document with its starting line and the problems found while building it."""

    data: Any
    line: int


def parse_documents(text: str) -> tuple[list[ParsedDocument], list[Problem]]:
    """Parse every document of a multi-document YAML text.

    Returns the non-empty documents and every duplicate-key problem. A syntax error is raised as
    ``yaml.MarkedYAMLError``; callers translate it.
    """
    loader = _Loader(text)
    documents: list[ParsedDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is None:  # an empty document, e.g. after a trailing `---`
                continue
            documents.append(ParsedDocument(data=data, line=node.start_mark.line + 1))
    finally:
        loader.dispose()
    return documents, loader.problems


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
