"""How the tests themselves read: every test says, in its docstring, what it guarantees."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def undocumented_tests(root: Path) -> list[str]:
    """``path:line name`` of every test function or method under ``root`` (what pytest
    collects: ``test*`` at module level or in a ``Test*`` class) without a docstring."""
    found: list[str] = []
    for path in sorted(root.rglob("test*.py")):
        module = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        candidates: list[ast.stmt] = list(module.body)
        for node in module.body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                candidates += node.body
        for node in candidates:
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name.startswith("test")
                and not (ast.get_docstring(node) or "").strip()
            ):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}")
    return found


def test_every_test_says_what_it_guarantees() -> None:
    """Every test function under tests/ has a docstring saying the behaviour it pins."""
    assert undocumented_tests(TESTS) == []


def test_a_test_without_a_docstring_is_named(tmp_path: Path) -> None:
    """The check names each test without a docstring by file, line and name, in classes too,
    and leaves helpers and documented tests alone."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_some.py").write_text(
        "def helper():\n    pass\n\n"
        'def test_said():\n    """It says."""\n\n'
        "def test_silent():\n    pass\n\n"
        "class TestGroup:\n    def test_method(self):\n        pass\n"
    )
    assert undocumented_tests(tmp_path / "tests") == [
        "tests/test_some.py:7 test_silent",
        "tests/test_some.py:11 test_method",
    ]
