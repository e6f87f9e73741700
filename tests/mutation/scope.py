"""The mutation scope (scope.toml), the accepted survivors (accepted.toml), and the stable names
that tie a mutant to its function whatever line it sits on."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
SCOPE_FILE = HERE / "scope.toml"
ACCEPTED_FILE = HERE / "accepted.toml"
SOURCE_ROOT = Path("src/slotkeeper")


@dataclass(frozen=True)
class Module:
    """One scoped module: which of its functions are mutated and which tests judge them."""

    name: str
    path: str  # relative to src/slotkeeper
    functions: tuple[str, ...]
    tests: tuple[str, ...]
    floor: float

    @property
    def source(self) -> Path:
        return SOURCE_ROOT / self.path

    def selects(self, qualname: str) -> bool:
        """Whether a mutant in ``qualname`` ("" for module level) is in scope."""
        return any(
            wanted == "*" or qualname == wanted or qualname.startswith(f"{wanted}.")
            for wanted in self.functions
        )


@dataclass(frozen=True)
class Scope:
    operators: frozenset[str]
    modules: tuple[Module, ...]


def load_scope(path: Path = SCOPE_FILE) -> Scope:
    document = tomllib.loads(path.read_text())
    modules = tuple(
        Module(
            name=name,
            path=table["path"],
            functions=tuple(table["functions"]),
            tests=tuple(table["tests"]),
            floor=float(table.get("floor", 90)),
        )
        for name, table in document["modules"].items()
    )
    return Scope(operators=frozenset(document["operators"]["keep"]), modules=modules)


def load_accepted(path: Path = ACCEPTED_FILE) -> dict[str, str]:
    """Accepted survivors: their stable key (see `mutant_key`) and the reason each is kept."""
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("accepted", [])
    accepted: dict[str, str] = {}
    for entry in entries:
        reason = str(entry.get("reason", "")).strip()
        if not reason:
            raise ValueError(f"{path}: accepted mutant {entry.get('mutant')!r} gives no reason")
        accepted[str(entry["mutant"])] = reason
    return accepted


class Definitions:
    """The qualified name of the innermost function or class around each line of a module, and
    where its annotations are: they are types for mypy, never evaluated at run time (every
    module has ``from __future__ import annotations``), so a mutant inside one is no mutant.
    Nor is one of the bare ``*`` that makes the parameters after it keyword-only: cosmic-ray
    takes it for a multiplication and turns it into ``/``."""

    def __init__(self, source: str) -> None:
        self._lines = source.splitlines()
        self._spans: list[tuple[int, int, str]] = []
        tree = ast.parse(source)
        self._collect(tree, prefix="")
        self._annotations = [
            ((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset))
            for node in _annotations(tree)
            if node.end_lineno is not None and node.end_col_offset is not None
        ]

    def _collect(self, parent: ast.AST, *, prefix: str) -> None:
        for node in ast.iter_child_nodes(parent):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{node.name}"
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                self._spans.append((first, node.end_lineno or node.lineno, name))
                self._collect(node, prefix=f"{name}.")
            else:
                self._collect(node, prefix=prefix)

    def at(self, line: int) -> str:
        """The innermost definition holding ``line`` ("" at module level)."""
        found = ""
        width = None
        for first, last, name in self._spans:
            if first <= line <= last and (width is None or last - first < width):
                found, width = name, last - first
        return found

    def in_annotation(self, position: tuple[int, int]) -> bool:
        """Whether (line, column) lies inside an annotation."""
        return any(first <= position < last for first, last in self._annotations)

    def is_keyword_marker(self, position: tuple[int, int]) -> bool:
        """Whether (line, column) is a parameter list's bare ``*``."""
        line, column = position
        text = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        after = text[column + 1 :].lstrip()[:1]
        return text[column : column + 1] == "*" and after in (",", ")", "")

    def is_mutant(self, position: tuple[int, int]) -> bool:
        """Whether a mutation at (line, column) changes what the code does at all."""
        return not self.in_annotation(position) and not self.is_keyword_marker(position)


def _annotations(tree: ast.AST) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return found


def changed_lines(diff: str) -> tuple[str, str]:
    """The source before and after a mutation, from its unified diff, whitespace collapsed."""
    before: list[str] = []
    after: list[str] = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            before.append(" ".join(line[1:].split()))
        elif line.startswith("+"):
            after.append(" ".join(line[1:].split()))
    return " / ".join(before), " / ".join(after)


def mutant_key(module: Module, qualname: str, operator: str, diff: str) -> str:
    """A mutant's stable name: file, function, operator and the changed source, no line number
    (so that edits elsewhere in the file keep an accepted survivor accepted)."""
    before, after = changed_lines(diff)
    return f"{module.path} | {qualname or '<module>'} | {operator} | {before} -> {after}"
