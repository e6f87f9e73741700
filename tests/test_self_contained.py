"""The repository is self-contained: no test, script or build step reads beside the checkout.

A fresh clone with nothing next to it must pass its own tests, so the API descriptions the fakes
are checked against live in ``tests/fakes/specs/`` (provenance and licences in its README.md).
Three guards: a scan of the code for paths that leave the repository (the team's shared
directory beside the checkout, a ``Path(__file__)`` chain that climbs above the root), a child
process that records every file
the spec checkers and the Unkey fake open, and checks of the vendored files themselves (each
listed in the README with its licence, each a valid OpenAPI description).
"""

from __future__ import annotations

import ast
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS_DIR = REPO / "tests" / "fakes" / "specs"

# Every vendored description and the licence it is redistributed under; README.md says why.
VENDORED = {
    "github-deployments.openapi.json": "MIT",
    "github-apps-secrets.openapi.json": "MIT",
    "github-pulls-checks.openapi.json": "MIT",
    "chainloop-deployments.openapi.json": "Apache-2.0",
    "unkey-deploy.openapi.json": "Apache-2.0",
}
# The other files of tests/fakes/specs/: the provenance notes and the team's API notes.
NOTES = {"README.md", "API-REFERENCE.md"}

# What a read of the team's shared directory beside the checkout looks like. Written so that
# this file does not match its own patterns.
LEAVING_PATTERNS = (
    re.compile(r"\.\.[/\\]+shared\b"),
    re.compile(r"shared[/\\]+specs"),
    re.compile(r"""["']shared["']\s*[/,]\s*["']specs["']"""),
)


def _code_files() -> list[Path]:
    """The Python code under src/ and tests/, the Makefile, pyproject.toml and the CI scripts."""
    files = [
        path
        for top in ("src", "tests")
        for path in sorted((REPO / top).rglob("*.py"))
        if "__pycache__" not in path.parts
    ]
    files += [REPO / "Makefile", REPO / "pyproject.toml"]
    files += sorted(p for p in (REPO / ".ci").glob("*") if p.is_file())
    return [path for path in files if path.exists()]


def _levels(node: ast.AST) -> int | None:
    """How many directories above the file a ``Path(__file__)…`` chain climbs, or None.

    ``Path(__file__)`` is 0, ``.parent`` adds 1, ``.parents[n]`` adds n + 1; ``.resolve()``
    and ``.absolute()`` keep the count. Anything else is not such a chain.
    """
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Path":
            first = node.args[0] if len(node.args) == 1 else None
            return 0 if isinstance(first, ast.Name) and first.id == "__file__" else None
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute"):
            return _levels(func.value)
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _levels(node.value)
        return None if inner is None else inner + 1
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "parents"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, int)
    ):
        inner = _levels(node.value.value)
        return None if inner is None else inner + node.slice.value + 1
    return None


def leaving_paths(relative: Path, text: str) -> list[str]:
    """Where the file at ``relative`` (to the repository root) points outside the repository."""
    found = [
        f"{relative}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for pattern in LEAVING_PATTERNS
        for match in pattern.finditer(text)
    ]
    if relative.suffix == ".py":
        # tests/fakes/spec.py is 3 levels deep: parents[2] is the root, parents[3] is outside.
        depth = len(relative.parts)
        for node in ast.walk(ast.parse(text)):
            levels = _levels(node)
            if levels is not None and levels > depth:
                found.append(f"{relative}:{node.lineno}: {ast.unparse(node)} leaves the repository")
    return found


def test_no_code_points_outside_the_repository() -> None:
    """No code, Makefile or CI script reads the shared directory or climbs above the root."""
    found = [
        problem
        for path in _code_files()
        for problem in leaving_paths(path.relative_to(REPO), path.read_text(encoding="utf-8"))
    ]

    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        'SPECS = Path(__file__).resolve().parents[3] / "{name}" / "specs"',
        'SPECS = Path(__file__).resolve().parents[3] / "{name}"',
        'SPECS = Path(__file__).parent.parent.parent.parent / "other"',
        'SPECS = Path("../{name}/specs")',
        'SPECS = os.path.join("{name}", "specs")',
    ],
)
def test_the_scan_finds_a_read_beside_the_checkout(line: str) -> None:
    """The scan is not vacuous: each way of reaching the shared directory is found."""
    text = line.format(name="shared") + "\n"

    assert leaving_paths(Path("tests/fakes/spec.py"), text) != []


def test_the_scan_accepts_paths_inside_the_repository() -> None:
    """Climbing to the root (tests/fakes/x.py: parents[2]) and below it is fine."""
    text = "ROOT = Path(__file__).resolve().parents[2]\nSPECS = Path(__file__).parent / 'specs'\n"

    assert leaving_paths(Path("tests/fakes/spec.py"), text) == []


def test_every_spec_the_checkers_use_is_inside_the_repository() -> None:
    """The specs named in tests/fakes/spec.py and the Unkey fake's are vendored files here."""
    from tests.fakes import spec, unkey  # openapi-core is slow to import

    named = [spec.GITHUB_SPEC, spec.GITHUB_APPS_SPEC, spec.GITHUB_PULLS_SPEC]
    named += [spec.CHAINLOOP_SPEC, spec.UNKEY_SPEC]
    named += [*spec.GITHUB_SPECS, unkey.SPEC_PATH]
    named += [spec.SPECS / name for name in spec.CONVENTIONS]

    for path in named:
        assert path.resolve().is_relative_to(SPECS_DIR), path
        assert path.is_file(), path
        assert path.name in VENDORED, path


def _outside(path: Path, allowed: list[Path]) -> bool:
    return not any(path.is_relative_to(root) for root in allowed)


def test_loading_the_specs_opens_no_file_outside_the_repository(tmp_path: Path) -> None:
    """A child process loads every checker and the Unkey fake's validators, recording each open;
    apart from Python's own installation and /etc, every file it opens is in the repository."""
    probe = (
        "import json, os, sys\n"
        "opened = []\n"
        "def record(event, args):\n"
        "    if event == 'open' and isinstance(args[0], (str, bytes, os.PathLike)):\n"
        "        opened.append(os.path.abspath(os.fsdecode(args[0])))\n"
        "sys.addaudithook(record)\n"
        "from tests.fakes import spec, unkey\n"
        "for path in (spec.GITHUB_SPEC, spec.CHAINLOOP_SPEC, spec.UNKEY_SPEC):\n"
        "    spec.OpenApiChecker(path)\n"
        "spec.OpenApiChecker(spec.GITHUB_SPECS)\n"
        "unkey._validators()\n"
        "print(json.dumps(opened))\n"
    )
    python_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    opened = [Path(p).resolve() for p in json.loads(result.stdout)]

    allowed = [REPO, *(Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix))]
    allowed += [Path(p).resolve() for p in sysconfig.get_paths().values()]
    if site.ENABLE_USER_SITE and site.USER_SITE:
        allowed.append(Path(site.USER_SITE).resolve())
    allowed += [Path(p) for p in ("/etc", "/dev", "/proc", "/sys")]
    assert [str(p) for p in opened if _outside(p, allowed)] == []
    # The probe saw the reads it is about, so an empty list above means something.
    assert {SPECS_DIR / name for name in VENDORED} <= set(opened)


def test_the_specs_directory_holds_only_what_the_readme_accounts_for() -> None:
    """Each vendored file is named in README.md with its licence; nothing else lies there."""
    readme = (SPECS_DIR / "README.md").read_text(encoding="utf-8")
    present = {path.name for path in SPECS_DIR.iterdir() if path.is_file()}

    assert present == set(VENDORED) | NOTES
    for name, licence in VENDORED.items():
        rows = [line for line in readme.splitlines() if line.startswith(f"| `{name}`")]
        assert len(rows) == 1, name
        assert f"| {licence} |" in rows[0], (name, rows[0])


@pytest.mark.parametrize("name", sorted(VENDORED))
def test_each_vendored_spec_is_a_valid_openapi_description(name: str) -> None:
    """openapi-spec-validator accepts every vendored description (3.0 and 3.1 alike)."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    contents, base_uri = read_from_filename(str(SPECS_DIR / name))

    validate(contents, base_uri=base_uri)


def test_the_unkey_description_is_our_own() -> None:
    """Unkey's published file is AGPL-3.0: ours is Apache-2.0 and carries no generator marks."""
    raw = (SPECS_DIR / "unkey-deploy.openapi.json").read_text(encoding="utf-8")
    document = json.loads(raw)

    assert document["info"]["license"]["identifier"] == "Apache-2.0"
    assert "x-speakeasy" not in raw
    assert set(document["paths"]) == {"/v2/deploy.createDeployment", "/v2/deploy.getDeployment"}
