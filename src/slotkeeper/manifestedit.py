"""Byte-preserving edits of one slot's artifact in a hand-written manifest file.

``slotkeeper promote`` and ``slotkeeper rollback`` write an artifact into manifests that people
write by hand. Such a file is never re-emitted: PyYAML's composer (libyaml's when PyYAML has it)
finds the nodes, whose marks are character offsets into the text, and only the text of what
changes is replaced. A changed value keeps its quoting style when it can; a field that appears is
inserted as one new line after the mapping's last entry (in a flow mapping: ``, key: value``
before the closing brace); a field that goes away loses its line (in a flow mapping: its
``key: value`` and comma). Everything else (comments, key order, quoting, flow style, anchors,
blank lines, indentation, line endings, a missing final newline, a byte order mark) stays byte
for byte as it was.

What cannot be changed safely by machine is refused with :class:`EditRefused`, naming the file
and the line: a value reached through an alias, or carrying an anchor that is aliased elsewhere
(changing it would change the other place too), a merge key, a block scalar, an explicit tag
other than ``!!str``, an environment or slot the file does not have, two documents for the same
environment, invalid YAML. The result is parsed again with the same loader: the slot's artifact
must read back as the requested one and everything else as it was, or the edit is refused too.

Nothing here reads or writes a file: the caller passes the text and writes what comes back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import yaml

from slotkeeper.errors import SlotkeeperError
from slotkeeper.model import Artifact
from slotkeeper.yamlsource import YamlRefused, check_limits, describe_yaml_error

if TYPE_CHECKING:
    _Loader = yaml.SafeLoader
else:  # libyaml's parser when PyYAML was built with it, as the manifests are read
    _Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: the fields of an artifact in a manifest, in the order they are inserted
FIELDS: Final = ("kind", "name", "version", "digest")

_STR: Final = "tag:yaml.org,2002:str"
_MERGE: Final = "tag:yaml.org,2002:merge"
#: the characters YAML (1.1, as PyYAML and libyaml read it) takes as line breaks
_BREAKS: Final = "\r\n\x85\u2028\u2029"
_BOM: Final = "\ufeff"
#: characters that may not start a plain scalar we write (some could, in some places: quoting
#: them is never wrong, and a value starting with one is rare in an artifact)
_INDICATORS: Final = "-?:,[]{}#&*!|>'\"%@`"
#: plain values PyYAML reads as strings but other readers do not: YAML 1.2's core schema takes
#: ``1e3``, ``0o17`` or ``.5`` for numbers, YAML 1.1's full boolean set has ``y`` and ``n``.
#: Written plain, such a version would change type in some other tool: they are quoted.
_NOT_A_STRING_ELSEWHERE: Final = re.compile(
    r"""[-+]?(?:[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+|0b[01]+)
    |[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[yYnN]|yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
    |null|Null|NULL|~""",
    re.VERBOSE,
)
_ESCAPES: Final = {
    "\0": "0",
    "\a": "a",
    "\b": "b",
    "\t": "t",
    "\n": "n",
    "\v": "v",
    "\f": "f",
    "\r": "r",
    "\x1b": "e",
    '"': '"',
    "\\": "\\",
    "\x85": "N",
    "\u2028": "L",
    "\u2029": "P",
}


class EditRefused(SlotkeeperError):
    """An edit that cannot be made safely by machine; says file, line and why.

    ``line`` is 1-based; None when the refusal has no place in the file (the environment is not
    in it). Nothing should be written after this: the text is left as it was.
    """

    file: str
    line: int | None
    message: str

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(file, line, message)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


def set_artifact(text: str, *, file: str, environment: str, slot: str, artifact: Artifact) -> str:
    """``text`` (one manifest file, possibly several `---` documents) with the artifact of
    ``slot`` in the Environment document named ``environment`` set to ``artifact``.

    Only the fields whose value differs are touched; when none does, ``text`` comes back as it
    is. ``file`` only names the file in refusals. Raises :class:`EditRefused` when the edit
    cannot be made safely (see the module's description), and when the edited text does not
    read back as intended.
    """
    wanted: dict[str, str | None] = {
        "kind": artifact.kind.value,
        "name": artifact.name,
        "version": artifact.version,
        "digest": artifact.digest,
    }
    # libyaml does not count a byte order mark in its offsets: edit the text after it
    bom = _BOM if text.startswith(_BOM) else ""
    source = _Source(text[len(bom) :], file)
    place = source.locate(environment, slot)
    result = _apply(source, _Planner(source, place).plan(wanted))
    _verify(source, place, result, environment, slot, wanted)
    return bom + result


@dataclass(frozen=True)
class _Edit:
    """Replace ``text[start:end]`` with ``replacement``."""

    start: int
    end: int
    replacement: str


@dataclass(frozen=True)
class _Place:
    """Where the slot's artifact is: its document and the (key, value) pairs leading to it."""

    document: int
    root: yaml.MappingNode
    path: tuple[tuple[yaml.Node, yaml.Node], ...]  # spec, slots, the slot, artifact

    @property
    def artifact(self) -> tuple[yaml.Node, yaml.Node]:
        """The ``artifact`` key and its value."""
        return self.path[-1]


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _start(node: yaml.Node) -> int:
    return int(node.start_mark.index)


def _end(node: yaml.Node) -> int:
    return int(node.end_mark.index)


def _is_str(node: yaml.Node, value: str | None = None) -> bool:
    """Whether ``node`` is a string scalar (equal to ``value`` when given)."""
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == _STR
        and (value is None or node.value == value)
    )


def _is_block_scalar(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")


def _among(pair: tuple[yaml.Node, yaml.Node], pairs: list[tuple[yaml.Node, yaml.Node]]) -> bool:
    """Whether the mapping entry ``pair`` is one of ``pairs`` (the same key node)."""
    return any(pair[0] is other[0] for other in pairs)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _references(root: yaml.Node) -> dict[int, int]:
    """How many places of the document refer to each node (by id): more than one means the node
    carries an anchor and is aliased (or merged) somewhere."""
    counts: dict[int, int] = {}
    seen = {id(root)}
    stack = [root]
    while stack:
        for child in _children(stack.pop()):
            counts[id(child)] = counts.get(id(child), 0) + 1
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return counts


def _compose(text: str, file: str) -> list[yaml.Node]:
    """The root node of every document of ``text``; invalid or hostile YAML is refused."""
    try:
        check_limits(text)
        loader = _Loader(text)
        try:
            roots: list[yaml.Node] = []
            while loader.check_node():
                node = loader.get_node()
                if node is not None:
                    roots.append(node)
            return roots
        finally:
            loader.dispose()
    except YamlRefused as exc:
        raise EditRefused(file, exc.line, exc.message) from exc
    except yaml.YAMLError as exc:
        line, message = describe_yaml_error(exc, text)
        raise EditRefused(file, line, message) from exc


def _get(mapping: yaml.Node, name: str) -> yaml.Node | None:
    """The value of key ``name`` in ``mapping`` as a loader reads it (the last one wins)."""
    if not isinstance(mapping, yaml.MappingNode):
        return None
    found = None
    for key, value in mapping.value:
        if _is_str(key, name):
            found = value
    return found


class _Source:
    """One manifest text with its documents composed, and what finds places in it."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.roots = _compose(text, file)
        self._scalar_starts: dict[int, int] | None = None

    def refuse(self, line: int | None, message: str) -> EditRefused:
        """A refusal at ``line`` of this file."""
        return EditRefused(self.file, line, message)

    # -- lines ---------------------------------------------------------------------------------

    def line_start(self, position: int) -> int:
        """Where the line holding ``position`` starts."""
        while position > 0 and self.text[position - 1] not in _BREAKS:
            position -= 1
        return position

    def line_end(self, position: int) -> int:
        """Where the line holding ``position`` ends: at its line break, or the end of the text."""
        while position < len(self.text) and self.text[position] not in _BREAKS:
            position += 1
        return position

    def break_at(self, position: int) -> str:
        """The line break starting at ``position`` (``\\r\\n`` counts as one), or ``""``."""
        if self.text.startswith("\r\n", position):
            return "\r\n"
        if position < len(self.text) and self.text[position] in _BREAKS:
            return self.text[position]
        return ""

    def break_before(self, position: int) -> str:
        """The line break that ends just before ``position``, or ``""``."""
        if position >= 2 and self.text[position - 2 : position] == "\r\n":
            return "\r\n"
        if position >= 1 and self.text[position - 1] in _BREAKS:
            return self.text[position - 1]
        return ""

    def first_break(self) -> str:
        """The file's line break as its first line ends, ``\\n`` when it has none."""
        return self.break_at(self.line_end(0)) or "\n"

    # -- scalars -------------------------------------------------------------------------------

    def content_start(self, node: yaml.ScalarNode) -> int:
        """Where the text of a scalar starts, after its anchor and tag, if any (a node's start
        mark is where those start). An empty scalar's content starts where it ends."""
        start = _start(node)
        if start >= len(self.text) or self.text[start] not in "&!":
            return start
        if self._scalar_starts is None:
            self._scalar_starts = {}
            scanner = _Loader(self.text)
            try:
                while scanner.check_token():
                    token = scanner.get_token()  # type: ignore[no-untyped-call]
                    if isinstance(token, yaml.ScalarToken):
                        self._scalar_starts[int(token.end_mark.index)] = int(token.start_mark.index)
            finally:
                scanner.dispose()
        found = self._scalar_starts.get(_end(node), _end(node))
        return found if found >= start else _end(node)

    def word_at(self, position: int) -> str:
        """The run of characters from ``position`` up to a space, break or flow indicator."""
        end = position
        while end < len(self.text) and self.text[end] not in " \t,[]{}" + _BREAKS:
            end += 1
        return self.text[position:end]

    def anchor_of(self, node: yaml.Node) -> str | None:
        """The anchor written on ``node`` (``&name``), if any."""
        position = _start(node)
        while position < len(self.text) and self.text[position] in "&!":
            word = self.word_at(position)
            if word.startswith("&"):
                return word[1:]
            position += len(word)
            while position < len(self.text) and self.text[position] in " \t":
                position += 1
        return None

    def alias_at(self, key: yaml.Node) -> int | None:
        """Where the alias written as the value of ``key`` (``key: *name``) starts, if the value
        is one. (An alias's node is the node it refers to, marks included: they tell where the
        anchor is, not where the alias is.)"""
        position = _end(key)
        while position < len(self.text) and self.text[position] in ": \t" + _BREAKS:
            position += 1
        return position if self.text.startswith("*", position) else None

    def alias_after(self, key: yaml.Node) -> str | None:
        """The alias name written as the value of ``key``, if it is one."""
        position = self.alias_at(key)
        return None if position is None else self.word_at(position)[1:]

    # -- the slot's artifact -------------------------------------------------------------------

    def environments(self) -> list[tuple[int, yaml.MappingNode, yaml.Node]]:
        """Each Environment document: its index, root and ``metadata.name`` node."""
        found = []
        for index, root in enumerate(self.roots):
            kind = _get(root, "kind")
            metadata = _get(root, "metadata")
            name = _get(metadata, "name") if metadata is not None else None
            if (
                isinstance(root, yaml.MappingNode)
                and kind is not None
                and _is_str(kind, "Environment")
                and name is not None
                and _is_str(name)
            ):
                found.append((index, root, name))
        return found

    def child(self, mapping: yaml.MappingNode, name: str) -> tuple[yaml.Node, yaml.Node] | None:
        """The key ``name`` of ``mapping`` and its value, when written there once; a duplicate
        key, or a merge key that may bring it, is refused."""
        found: tuple[yaml.Node, yaml.Node] | None = None
        merge: yaml.Node | None = None
        for key, value in mapping.value:
            if key.tag == _MERGE:
                merge = key
            elif _is_str(key, name):
                if found is not None:
                    raise self.refuse(
                        _line(key),
                        f"duplicate key {name!r} (also at line {_line(found[0])}): "
                        "which one counts is ambiguous",
                    )
                found = (key, value)
        if found is None and merge is not None:
            raise self.refuse(
                _line(merge),
                f"{name!r} may come from a merge key (<<): edit the mapping it merges by hand",
            )
        return found

    def locate(self, environment: str, slot: str) -> _Place:
        """Where the artifact of ``slot`` in ``environment`` is, or a refusal saying why not."""
        matches = [entry for entry in self.environments() if entry[2].value == environment]
        if not matches:
            names = ", ".join(sorted({entry[2].value for entry in self.environments()}))
            raise self.refuse(
                None,
                f"no Environment document named {environment!r} in this file"
                + (f" (it has: {names})" if names else ""),
            )
        if len(matches) > 1:
            raise self.refuse(
                _line(matches[1][2]),
                f"a second Environment document named {environment!r} (the first is at line "
                f"{_line(matches[0][2])}): which one to edit is ambiguous",
            )
        index, root, _ = matches[0]
        where = f"environment {environment!r}"
        spec = self._mapping(root, "spec", root, where)
        slots = self._mapping(spec[1], "slots", spec[0], f"{where}'s spec")
        assert isinstance(slots[1], yaml.MappingNode)
        found = self.child(slots[1], slot)
        if found is None:
            names = ", ".join(
                str(key.value) for key, _ in slots[1].value if isinstance(key, yaml.ScalarNode)
            )
            raise self.refuse(
                _line(slots[0]),
                f"{where} has no slot {slot!r}" + (f" (its slots: {names})" if names else ""),
            )
        if not isinstance(found[1], yaml.MappingNode):
            raise self.refuse(_line(found[0]), f"slot {slot!r} of {where} is not a mapping")
        artifact = self._mapping(found[1], "artifact", found[0], f"slot {slot!r} of {where}")
        place = _Place(index, root, (spec, slots, found, artifact))
        self._refuse_shared(place)
        return place

    def _mapping(
        self, parent: yaml.Node, name: str, parent_key: yaml.Node, where: str
    ) -> tuple[yaml.Node, yaml.Node]:
        assert isinstance(parent, yaml.MappingNode)
        found = self.child(parent, name)
        if found is None:
            raise self.refuse(_line(parent_key), f"{where} has no {name!r}")
        if not isinstance(found[1], yaml.MappingNode):
            raise self.refuse(_line(found[0]), f"{where}'s {name!r} is not a mapping")
        return found

    def _refuse_shared(self, place: _Place) -> None:
        """Refuse when the artifact, or a mapping on the way to it, is shared with another place
        through an anchor and alias: an edit there would change the other place too."""
        counts = _references(place.root)
        slot = f"spec.slots.{place.path[2][0].value}"
        labels = ("spec", "spec.slots", slot, f"{slot}.artifact")
        for (key, value), label in zip(place.path, labels, strict=True):
            if counts.get(id(value), 0) > 1:
                raise self.shared(key, value, label)
        for key, _value in place.artifact[1].value:
            if key.tag == _MERGE:
                raise self.refuse(
                    _line(key),
                    "the artifact uses a merge key (<<): its fields come from another mapping; "
                    "write them out here to let slotkeeper edit them",
                )

    def shared(self, key: yaml.Node, value: yaml.Node, what: str) -> EditRefused:
        """The refusal for a ``value`` (of ``key``) that is shared through an anchor."""
        if _start(value) < _end(key):  # defined before its key: this place is an alias
            alias = self.alias_after(key)
            written = f" (*{alias})" if alias else ""
            return self.refuse(
                _line(key),
                f"{what} is an alias{written} of the node at line {_line(value)}: changing it "
                "would change that node and every alias of it; write the value out here or "
                "edit it there by hand",
            )
        anchor = self.anchor_of(value)
        written = f" (&{anchor})" if anchor else ""
        return self.refuse(
            _line(key),
            f"{what} carries an anchor{written} that is aliased elsewhere in the document: "
            "changing it would change those places too; edit it by hand",
        )


class _Planner:
    """Works out the edits that set one artifact mapping to the wanted fields."""

    def __init__(self, source: _Source, place: _Place) -> None:
        self.source = source
        self.key, mapping = place.artifact
        assert isinstance(mapping, yaml.MappingNode)
        self.mapping = mapping
        self.flow = bool(mapping.flow_style)
        self.counts = _references(place.root)

    def plan(self, wanted: dict[str, str | None]) -> list[_Edit]:
        """The edits, in no particular order; none when every field already reads as wanted."""
        fields = self._fields()
        edits: list[_Edit] = []
        removed: list[tuple[yaml.Node, yaml.Node]] = []
        inserted: list[tuple[str, str]] = []
        for name in FIELDS:
            want, have = wanted[name], fields.get(name)
            if have is None:
                if want is not None:
                    inserted.append((name, want))
            elif want is None:
                self._check_removable(name, *have)
                removed.append(have)
            elif not _is_str(have[1], want):
                edits.append(self._change(name, have[0], have[1], want))
        kept = [pair for pair in self.mapping.value if not _among(pair, removed)]
        if (removed or inserted) and not kept:
            raise self.source.refuse(
                _line(self.key),
                "the artifact would have no field left to place the others after; write it by hand",
            )
        if self.flow:
            edits += self._remove_flow(removed)
            if inserted:
                edits.append(self._insert_flow(kept, inserted))
        else:
            edits += self._remove_block(removed)
            if inserted:
                edits.append(self._insert_block(kept, inserted))
        return edits

    def _value_end(self, key: yaml.Node, value: yaml.Node) -> int:
        """Where the value of ``key`` ends in the text: for an alias (``key: *name``) the end of
        the alias, not of the node it refers to."""
        if _start(value) >= _end(key):
            return _end(value)
        position = self.source.alias_at(key)
        if position is None:
            raise self.source.refuse(
                _line(key), f"cannot find the alias that is the value of {key.value!r}"
            )
        return position + len(self.source.word_at(position))

    def _fields(self) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        fields: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in self.mapping.value:
            if self.counts.get(id(key), 0) > 1:
                raise self.source.refuse(
                    _line(key), "an artifact key that is an anchor or alias: edit it by hand"
                )
            if not _is_str(key) or key.value not in FIELDS:
                shown = key.value if isinstance(key, yaml.ScalarNode) else "a non-scalar key"
                raise self.source.refuse(
                    _line(key),
                    f"the artifact has a field slotkeeper does not know: {shown!r} "
                    f"(known: {', '.join(FIELDS)})",
                )
            if key.value in fields:
                raise self.source.refuse(
                    _line(key),
                    f"duplicate artifact field {key.value!r} (also at line "
                    f"{_line(fields[key.value][0])}): which one counts is ambiguous",
                )
            fields[key.value] = (key, value)
        return fields

    def _scalar(self, key: yaml.Node, value: yaml.Node, doing: str) -> yaml.ScalarNode:
        """``value`` (of ``key``) when it is a scalar this edit may touch; a refusal otherwise."""
        if not isinstance(value, yaml.ScalarNode):
            raise self.source.refuse(
                _line(key), f"the artifact's {key.value} is not a string: {doing} it by hand"
            )
        if _is_block_scalar(value):
            raise self.source.refuse(
                _line(key),
                f"the artifact's {key.value} is a block scalar ({value.style}): {doing} it by hand",
            )
        return value

    def _check_removable(self, name: str, key: yaml.Node, value: yaml.Node) -> None:
        # removing an alias (``digest: *d``) changes this place only; removing a value whose
        # anchor is aliased elsewhere would break those aliases
        scalar = self._scalar(key, value, "remove")
        if _start(scalar) >= _end(key) and self.counts.get(id(scalar), 0) > 1:
            raise self.source.shared(key, scalar, f"the artifact's {name}")

    def _change(self, name: str, key: yaml.Node, value: yaml.Node, want: str) -> _Edit:
        if self.counts.get(id(value), 0) > 1:
            raise self.source.shared(key, value, f"the artifact's {name}")
        scalar = self._scalar(key, value, "change")
        start, end = self.source.content_start(scalar), _end(scalar)
        properties = self.source.text[_start(scalar) : start]
        if "!" in properties and scalar.tag != _STR:
            raise self.source.refuse(
                _line(scalar),
                f"the artifact's {name} carries an explicit tag ({properties.strip()}): "
                "change it by hand",
            )
        replacement = _render(want, scalar.style, flow=self.flow)
        if start == end and start > 0 and self.source.text[start - 1] not in " \t":
            replacement = " " + replacement  # an empty value right after its ':' or anchor
        return _Edit(start, end, replacement)

    # -- block mappings: one field a line ------------------------------------------------------

    def _insert_block(
        self, kept: list[tuple[yaml.Node, yaml.Node]], inserted: list[tuple[str, str]]
    ) -> _Edit:
        last_key, last_value = kept[-1]
        if _is_block_scalar(last_value):
            raise self.source.refuse(
                _line(last_key),
                "the artifact's last field is a block scalar: add the new field by hand",
            )
        at = self.source.line_end(self._value_end(last_key, last_value))
        eol = self.source.break_at(at) or self.source.first_break()
        start = _start(last_key)
        indent = " " * (start - self.source.line_start(start))
        lines = "".join(
            f"{eol}{indent}{name}: {_render_new(name, want, flow=False)}" for name, want in inserted
        )
        return _Edit(at, at, lines)

    def _remove_block(self, removed: list[tuple[yaml.Node, yaml.Node]]) -> list[_Edit]:
        spans: list[tuple[int, int]] = []
        for key, value in removed:
            start = self.source.line_start(_start(key))
            if self.source.text[start : _start(key)].strip(" \t"):
                raise self.source.refuse(
                    _line(key),
                    f"the artifact's {key.value} shares its line with what comes before it: "
                    "remove it by hand",
                )
            end = self.source.line_end(self._value_end(key, value))
            spans.append((start, end + len(self.source.break_at(end))))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        edits = []
        for start, end in merged:
            if end == len(self.source.text) and not self.source.break_before(end):
                # the last line of a file without a final newline: the break before it goes
                start -= len(self.source.break_before(start))
            edits.append(_Edit(start, end, ""))
        return edits

    # -- flow mappings: {key: value, ...} ------------------------------------------------------

    def _insert_flow(
        self, kept: list[tuple[yaml.Node, yaml.Node]], inserted: list[tuple[str, str]]
    ) -> _Edit:
        at = self._value_end(*kept[-1])
        entries = "".join(
            f", {name}: {_render_new(name, want, flow=True)}" for name, want in inserted
        )
        return _Edit(at, at, entries)

    def _remove_flow(self, removed: list[tuple[yaml.Node, yaml.Node]]) -> list[_Edit]:
        pairs: list[tuple[yaml.Node, yaml.Node]] = list(self.mapping.value)
        gone = [_among(pair, removed) for pair in pairs]
        if not any(gone):
            return []
        first_kept = gone.index(False)  # the caller made sure one is kept
        # (start, end) to remove, the gap between entries in it, and the line to blame
        spans: list[tuple[int, int, int, int, int]] = []
        if first_kept > 0:  # leading entries go with the comma after them
            start, end = _start(pairs[0][0]), _start(pairs[first_kept][0])
            gap = self._value_end(*pairs[first_kept - 1])
            spans.append((start, end, gap, end, _line(pairs[0][0])))
        for index in range(first_kept + 1, len(pairs)):
            if gone[index]:  # later ones with the comma before them
                start, key = self._value_end(*pairs[index - 1]), pairs[index][0]
                end = self._value_end(*pairs[index])
                spans.append((start, end, start, _start(key), _line(key)))
        edits = []
        for start, end, gap_start, gap_end, line in spans:
            if "#" in self.source.text[gap_start:gap_end]:
                raise self.source.refuse(
                    line,
                    "a comment sits in the flow mapping where a field would be removed: "
                    "remove it by hand",
                )
            edits.append(_Edit(start, end, ""))
        return edits


# -- scalars as they are written ---------------------------------------------------------------


def _printable(char: str) -> bool:
    """Whether ``char`` may stand as itself in a quoted scalar (else it is escaped)."""
    code = ord(char)
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    )


def _double_quoted(value: str) -> str:
    """``value`` as a double-quoted scalar, escaped where needed; always one line."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append("\\" + _ESCAPES[char])
        elif _printable(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02X}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(f"\\U{ord(char):08X}")
    return '"' + "".join(out) + '"'


def _single_quoted(value: str) -> str | None:
    """``value`` as a single-quoted scalar, or None when it holds what such a scalar cannot
    show on one line (a line break, a tab, a character that must be escaped)."""
    if not all(_printable(char) and char not in _BREAKS for char in value):
        return None
    return "'" + value.replace("'", "''") + "'"


def _reads_back(sample: str, value: str) -> bool:
    """Whether ``sample`` reads as ``{"k": value}`` with libyaml's loader and PyYAML's own:
    they differ at the edges (PyYAML ends a plain scalar at ``?`` in a flow mapping, libyaml
    does not), and the file may be read by either."""
    for loader in {_Loader, yaml.SafeLoader}:
        try:
            data = yaml.load(sample, Loader=loader)
        except yaml.YAMLError:
            return False
        if not (isinstance(data, dict) and data == {"k": value} and type(data["k"]) is str):
            return False
    return True


def _plain_ok(value: str, *, flow: bool) -> bool:
    """Whether ``value`` written plain (unquoted) reads back as that very string, where it
    stands: a mapping value followed by a comment (block), or in a flow mapping."""
    if not value or value != value.strip(" ") or value[0] in _INDICATORS:
        return False
    if _NOT_A_STRING_ELSEWHERE.fullmatch(value):
        return False
    if not all(_printable(char) and char not in _BREAKS for char in value):
        return False
    if flow and any(char in value for char in ",[]{}"):
        return False
    sample = f"{{k: {value}}}" if flow else f"k: {value} #\n"
    return _reads_back(sample, value)


def _render(value: str, style: str | None, *, flow: bool) -> str:
    """``value`` written in the style of the scalar it replaces: plain stays plain when it reads
    back as the same string (else double-quoted), single-quoted stays single-quoted when it can
    show the value, double-quoted stays double-quoted."""
    if style == '"':
        return _double_quoted(value)
    if style == "'":
        return _single_quoted(value) or _double_quoted(value)
    return value if _plain_ok(value, flow=flow) else _double_quoted(value)


def _render_new(name: str, value: str, *, flow: bool) -> str:
    """An inserted field's value: a digest double-quoted (as manifests write it), anything
    else plain when that is safe."""
    return _render(value, '"' if name == "digest" else None, flow=flow)


# -- splicing and the self-check ---------------------------------------------------------------


def _apply(source: _Source, edits: list[_Edit]) -> str:
    """The text with the edits spliced in; they must not overlap."""
    out: list[str] = []
    position = 0
    for edit in sorted(edits, key=lambda edit: (edit.start, edit.end)):
        if edit.start < position:  # a bug here, not in the file: never write such a text
            raise source.refuse(None, "internal error: overlapping edits; nothing changed")
        out.append(source.text[position : edit.start])
        out.append(edit.replacement)
        position = edit.end
    out.append(source.text[position:])
    return "".join(out)


def _same(a: yaml.Node, b: yaml.Node, skip: yaml.Node, seen: set[tuple[int, int]]) -> bool:
    """Whether two node trees read as the same data (tags and values; style and place aside),
    not looking inside ``skip`` (the artifact, checked on its own)."""
    if a is skip or (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if type(a) is not type(b) or a.tag != b.tag:
        return False
    if isinstance(a, yaml.ScalarNode):
        return bool(a.value == b.value)
    if len(a.value) != len(b.value):
        return False
    if isinstance(a, yaml.SequenceNode):
        return all(_same(x, y, skip, seen) for x, y in zip(a.value, b.value, strict=True))
    return all(
        _same(ka, kb, skip, seen) and _same(va, vb, skip, seen)
        for (ka, va), (kb, vb) in zip(a.value, b.value, strict=True)
    )


def _verify(
    before: _Source,
    place: _Place,
    text: str,
    environment: str,
    slot: str,
    wanted: dict[str, str | None],
) -> None:
    """Parse the edited text again: the slot's artifact must read back as ``wanted`` and every
    other value as it was; otherwise refuse (the edit is not to be written)."""
    line = _line(place.artifact[0])

    def failed(why: str) -> EditRefused:
        return before.refuse(line, f"the edited file did not read back as intended ({why})")

    try:
        after = _Source(text, before.file)
        moved = after.locate(environment, slot)
    except EditRefused as exc:
        raise failed(str(exc)) from exc
    if len(after.roots) != len(before.roots) or moved.document != place.document:
        raise failed("the documents changed")
    for index, (old, new) in enumerate(zip(before.roots, after.roots, strict=True)):
        if index == place.document:
            if not _same(old, new, place.artifact[1], set()):
                raise failed("a value outside the artifact changed")
        elif not _same(old, new, _NOTHING, set()):
            raise failed(f"document {index + 1} changed")
    mapping = moved.artifact[1]
    read: dict[str, str] = {}
    for key, value in mapping.value:
        if not (_is_str(key) and _is_str(value)) or key.value in read:
            raise failed(f"the artifact's {key.value!r} does not read as one string")
        read[str(key.value)] = str(value.value)
    expected = {name: value for name, value in wanted.items() if value is not None}
    if read != expected:
        raise failed(f"read {read!r}, wanted {expected!r}")


#: a node that is in no document (what ``_same`` skips when nothing is to be skipped)
_NOTHING: Final = yaml.ScalarNode(_STR, "")

__all__ = ["FIELDS", "EditRefused", "set_artifact"]
