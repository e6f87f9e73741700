"""YAML parsing that remembers where every value came from.

PyYAML's libyaml-backed loader (``CSafeLoader``) does the parsing when it is available; we only
swap in constructors that build :class:`LineDict` / :class:`LineList` (plain dicts and lists that
also know the line of each key and item) and that report duplicate keys instead of silently
keeping the last one.

Hostile input is refused before anything is built: an event pre-scan (libyaml's parser is a
state machine, so this never recurses) bounds the nesting depth — libyaml's composer recurses in
C and would crash the process on a few hundred thousand ``[`` — and the number and expansion of
aliases ("billion laughs": a small text whose aliases expand to millions of nodes when validated
as a tree). Anything a constructor raises (an impossible date, a huge integer) becomes a YAML
error at the value's line.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from slotkeeper.lined import LineDict, LineList

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:  # libyaml's C parser when PyYAML was built with it
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Problem:
    """Something wrong in the YAML itself, at a line, under a field path."""

    line: int
    path: str | None
    message: str


#: the deepest nesting of mappings and sequences a document may have
MAX_DEPTH = 64
#: how many alias uses (``*name``) a document may have
MAX_ALIASES = 100
#: how many nodes the aliases of a document may expand to in total
MAX_ALIAS_NODES = 10_000


class YamlRefused(Exception):
    """A YAML text refused (too deep, too many aliases, a value no constructor can build), at a
    line and, when known, a field path."""

    def __init__(self, line: int, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


class _Frame:
    __slots__ = ("anchor", "height", "size")

    def __init__(self, anchor: str | None) -> None:
        self.anchor = anchor
        self.size = 1
        self.height = 1


#: characters that make the cheap bound of ``_plainly_within_limits`` unsound: anchors (only
#: they make aliases possible) and line breaks YAML knows besides ``\n`` and ``\r``
_NEEDS_SCAN = re.compile("[&\x85\u2028\u2029]")
#: what may stand before a block collection's first key or entry on its line: each line's run
_LEADING = re.compile(r"^[ ?:-]*", re.MULTILINE)


def _plainly_within_limits(text: str) -> bool:
    """True when ``text`` cannot break the limits, judged without parsing it.

    A text without anchors has no aliases. In block style every second level of nesting starts
    at least one column further right, and a block collection starts after the line's run of
    spaces and indicators (``-``, ``?``, ``:``); each flow level needs a ``[`` or ``{``. So the
    depth is at most twice the longest such run plus the brackets, plus one for the document.
    """
    if _NEEDS_SCAN.search(text):
        return False
    widest = max(map(len, _LEADING.findall(text)))
    depth_bound = 2 * (widest + 1) + text.count("[") + text.count("{") + 1
    return depth_bound <= MAX_DEPTH


def check_limits(text: str) -> None:
    """Refuse (``YamlRefused``) a text nested deeper than ``MAX_DEPTH`` or whose aliases are too
    many or expand too far, looking only at parser events (or not at all when a cheap bound
    shows the text is within them). Syntax errors are raised as ``yaml.MarkedYAMLError``, as the
    real parse would."""
    if _plainly_within_limits(text):
        return
    parser = _BaseLoader(text)
    try:
        stack: list[_Frame] = []
        anchors: dict[str, tuple[int, int]] = {}  # completed anchor -> (size, height)
        aliases = expansion = 0
        while parser.check_event():
            event = parser.get_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1
            if isinstance(event, yaml.DocumentStartEvent):
                anchors, aliases, expansion = {}, 0, 0
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
                stack.append(_Frame(event.anchor))
            elif isinstance(event, yaml.CollectionEndEvent):
                frame = stack.pop()
                _close(stack, anchors, frame.anchor, frame.size, frame.height)
            elif isinstance(event, yaml.ScalarEvent):
                _close(stack, anchors, event.anchor, 1, 0)
            elif isinstance(event, yaml.AliasEvent):
                name = str(event.anchor)
                if any(frame.anchor == name for frame in stack):
                    raise YamlRefused(line, f"alias *{name} refers to a node that contains it")
                size, height = anchors.get(name, (1, 0))  # undefined: the composer says so
                aliases += 1
                expansion += size
                if aliases > MAX_ALIASES or expansion > MAX_ALIAS_NODES:
                    raise YamlRefused(
                        line,
                        f"too many YAML aliases (alias bomb?): more than {MAX_ALIASES} uses or "
                        f"{MAX_ALIAS_NODES} nodes expanded",
                    )
                if len(stack) + height > MAX_DEPTH:
                    raise YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
                _close(stack, {}, None, size, height)
    except yaml.scanner.ScannerError as exc:
        # libyaml 0.2.5+ refuses flow nesting past 1000 levels itself, while it still scans
        # ahead, before our count of events reaches the limit: the same refusal, in our words.
        if "maximum nesting depth" not in str(exc.problem) or exc.problem_mark is None:
            raise
        raise YamlRefused(
            exc.problem_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels"
        ) from exc
    finally:
        parser.dispose()


def _close(
    stack: list[_Frame],
    anchors: dict[str, tuple[int, int]],
    anchor: str | None,
    size: int,
    height: int,
) -> None:
    if anchor is not None:
        anchors[anchor] = (size, height)
    if stack:
        stack[-1].size += size
        stack[-1].height = max(stack[-1].height, height + 1)


#: libyaml contexts of a construct that runs on past its line when it is not closed: what to
#: call it, and the problems that mean it was not closed. Such an error is found where the text
#: ends (or a later line starts), but the fix is where the construct starts: it is reported there.
_UNCLOSED = {
    "while scanning a quoted scalar": (
        "unterminated quoted string starting here",
        ("end of stream", "document indicator", "document separator"),
    ),
    "while parsing a flow sequence": ("unclosed flow sequence '[' starting here", ("or ']'",)),
    "while parsing a flow mapping": ("unclosed flow mapping '{' starting here", ("or '}'",)),
    "while scanning a simple key": ("a key without ':' here", ("expected ':'",)),
}


def describe_yaml_error(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """The line and a message for a YAML error; a tab in the indentation is named as such, and
    a construct left open (a quote, a bracket, a key) is reported where it starts."""
    if isinstance(exc, yaml.reader.ReaderError):
        position = exc.position if isinstance(exc.position, int) else 0
        return text.count("\n", 0, position) + 1, (
            f"invalid YAML: character #x{exc.character:04x} is not allowed ({exc.reason})"
            if isinstance(exc.character, int)
            else f"invalid YAML: {exc.reason}"
        )
    if not isinstance(exc, yaml.MarkedYAMLError):
        return None, f"invalid YAML: {exc}"
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or exc.context or "syntax error"
    lines = text.split("\n")
    for candidate in (exc.problem_mark, exc.context_mark):
        if candidate is None or not 0 <= candidate.line < len(lines):
            continue
        source = lines[candidate.line]
        indentation = source[: len(source) - len(source.lstrip(" \t"))]
        if "\t" in indentation or source[candidate.column : candidate.column + 1] == "\t":
            return candidate.line + 1, (
                f"invalid YAML: tab characters are not allowed for indentation ({problem})"
            )
    opened, found = exc.context_mark, exc.problem_mark
    if exc.context in _UNCLOSED and opened is not None and found is not None:
        what, signs = _UNCLOSED[exc.context]
        if any(sign in problem for sign in signs) and (
            found.line > opened.line or "end of stream" in problem
        ):
            return opened.line + 1, f"invalid YAML: {what} ({problem} at line {found.line + 1})"
    return line, f"invalid YAML: {problem}"


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
#: the keys PyYAML's ``flatten_mapping`` acts on: merges (``<<``) and ``=`` value keys
_FLATTENED = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})

#: where a value sits: (the place of its parent, its key or index); None for a document's root.
#: Built as one small tuple per value and only turned into a field path when there is an error.
Place = tuple["Place", Any] | None


def _field_path(place: Place) -> str:
    steps: list[Any] = []
    while place is not None:
        place, step = place
        steps.append(step)
    text = ""
    for step in reversed(steps):
        if isinstance(step, int) and not isinstance(step, bool):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


class _Loader(_BaseLoader):
    """Builds documents from libyaml's nodes: plain strings, mappings and sequences directly,
    every other value through PyYAML's own constructors."""

    problems: list[Problem]

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems = []
        self._place: Place = None  # of the value PyYAML's constructors are building

    def build(self, node: yaml.Node, place: Place) -> Any:
        tag = node.tag
        if tag == _STR and isinstance(node, yaml.ScalarNode):
            return node.value
        if tag == _MAP and isinstance(node, yaml.MappingNode):
            return _construct_mapping(self, node, place)
        if tag == _SEQ and isinstance(node, yaml.SequenceNode):
            return _construct_sequence(self, node, place)
        self._place = place
        return self.construct_object(node, deep=True)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, YamlRefused):
            raise
        except Exception as exc:  # e.g. 2026-13-45, !!int abc, a 5000-digit number
            kind = str(node.tag).rsplit(":", 1)[-1]
            detail = str(exc).split(";")[0] if isinstance(exc, ValueError) else ""
            raise YamlRefused(
                node.start_mark.line + 1,
                f"cannot read this value as {kind}" + (f" ({detail})" if detail else ""),
                _field_path(self._place) or None,
            ) from exc

    def build_document(self, node: yaml.Node) -> Any:
        try:
            return self.build(node, None)
        finally:
            self.constructed_objects.clear()
            self.recursive_objects.clear()


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, place: Place) -> LineDict:
    pairs = node.value
    own_keys: set[int] | None = None  # None: every key is the mapping's own
    if any(key_node.tag in _FLATTENED for key_node, _ in pairs):
        own_keys = {id(key_node) for key_node, _ in pairs}
        loader.flatten_mapping(node)  # merged (<<) entries come first; own keys may override
        pairs = node.value
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = key_lines = {}
    own_lines: dict[Any, int] = {}
    for key_node, value_node in pairs:
        if key_node.tag == _STR and isinstance(key_node, yaml.ScalarNode):
            key = key_node.value  # nearly every key: a plain string
        else:
            key = loader.build(key_node, place)
        key_line = key_node.start_mark.line + 1
        if type(key) is not str and not isinstance(key, Hashable):
            loader.problems.append(
                Problem(key_line, _field_path(place) or None, "a mapping key must be a plain value")
            )
            continue
        if own_keys is None or id(key_node) in own_keys:
            if key in own_lines:
                loader.problems.append(
                    Problem(
                        key_line,
                        _field_path((place, key)),
                        f"duplicate key {key!r} (first at line {own_lines[key]})",
                    )
                )
                continue
            own_lines[key] = key_line
        data[key] = loader.build(value_node, (place, key))
        key_lines[key] = key_line
    return data


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode, place: Place) -> LineList:
    data = LineList(loader.build(child, (place, index)) for index, child in enumerate(node.value))
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


# Mappings and sequences met inside values PyYAML builds itself (``!!set``, ``!!omap``...).
def _nested_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    return _construct_mapping(loader, node, loader._place)


def _nested_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    return _construct_sequence(loader, node, loader._place)


_Loader.add_constructor(_MAP, _nested_mapping)
_Loader.add_constructor(_SEQ, _nested_sequence)


@dataclass(frozen=True)
class ParsedDocument:
    """One YAML document with its starting line and the problems found while building it."""

    data: Any
    line: int


def parse_documents(text: str) -> tuple[list[ParsedDocument], list[Problem]]:
    """Parse every document of a multi-document YAML text.

    Returns the non-empty documents and every duplicate-key problem. A syntax error is raised as
    ``yaml.MarkedYAMLError`` (``describe_yaml_error`` words it), a text too deep or with too many
    aliases as ``YamlRefused``.
    """
    check_limits(text)
    loader = _Loader(text)
    documents: list[ParsedDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.build_document(node)
            if data is None:  # an empty document, e.g. after a trailing `---`
                continue
            documents.append(ParsedDocument(data=data, line=node.start_mark.line + 1))
    finally:
        loader.dispose()
    return documents, loader.problems
