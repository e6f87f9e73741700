"""What only the entry point does to its process: the interpreter's tuning (and nothing in the
library changes it), and the HTTP server's libraries loaded only by the commands that serve."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import slotkeeper
from slotkeeper.ledger import open_ledger

SOURCE = Path(slotkeeper.__file__).parent
#: calls that change the whole process, whoever shares it
PROCESS_WIDE = {
    ("gc", "set_threshold"),
    ("gc", "disable"),
    ("gc", "enable"),
    ("gc", "freeze"),
    ("sys", "setswitchinterval"),
    ("resource", "setrlimit"),
}


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def slotkeeper_imports(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``slotkeeper ARGS`` in its own process (``env`` added to this one's), and the modules
    it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "slotkeeper", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    return done, {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}


def test_the_entry_point_tunes_the_interpreter_once_for_the_process() -> None:
    """`main` raises the young-generation threshold to 100,000 and the switch interval to
    0.5 ms, whatever the command (here --version)."""
    done = python(
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print(gc.get_threshold()[0], sys.getswitchinterval()))\n"
        "from slotkeeper.cli import main\n"
        "main(['--version'])\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "100000 0.0005"


def test_the_process_freezes_its_objects_at_exit_and_a_caller_keeps_its_collector() -> None:
    """Run as the process (no argv), main freezes the collector's objects before it exits (the
    interpreter's last collection would walk them all); called with arguments, it leaves the
    caller's collector as it was."""
    done = python(
        "import atexit, gc, sys\n"
        "from slotkeeper.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    print('frozen:', gc.get_freeze_count())\n"
        "atexit.register(lambda: print(gc.get_freeze_count() > 0))\n"
        "sys.argv = ['slotkeeper', '--version']\n"
        "main()\n"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "frozen: 0" in lines
    assert lines[-1] == "True"


def test_no_library_module_changes_the_process() -> None:
    """Only the entry point (the cli package: its main and the commands that run for long)
    calls gc.set_threshold, sys.setswitchinterval, resource.setrlimit and the like."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and (node.func.value.id, node.func.attr) in PROCESS_WIDE
            ):
                found.append(f"{path.relative_to(SOURCE)}: {node.func.value.id}.{node.func.attr}")
    assert found and all(place.startswith("cli/") for place in found), found


def test_only_the_serving_commands_load_the_web_server() -> None:
    """`slotkeeper --version` (and any command but run and ui) imports neither Starlette nor
    uvicorn nor slotkeeper's web layer or daemon (httpx brings h11, the client side)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "slotkeeper", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "slotkeeper.cli" in imported
    for module in ("starlette", "uvicorn", "slotkeeper.web", "slotkeeper.daemon"):
        assert module not in imported, module


def test_the_version_is_the_installed_distributions() -> None:
    """`--version` reads slotkeeper.__version__ (no package metadata to load at start-up),
    which must be the version the package was installed as (pyproject.toml's)."""
    from importlib.metadata import version

    import slotkeeper

    assert slotkeeper.__version__ == version("slotkeeper")


def test_a_plan_without_a_refresh_loads_neither_the_executor_nor_the_clients(
    tmp_path: Path,
) -> None:
    """`slotkeeper plan --no-refresh` opens no target: it imports neither the executor nor
    any target's HTTP client, nor the key cryptography or the file watcher, yet plans. On a
    ledger that exists (the second plan), with nothing to log, it imports neither the logging
    nor the metrics library, nor the writer's lock file."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "env.yaml").write_text(
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: dev}\n"
        "spec:\n  slots:\n    api:\n      artifact: {kind: CONTAINER_IMAGE, name: x, version: v1}\n"
    )
    state = f"sqlite:///{tmp_path / 'state.db'}"
    command = ["plan", "--no-refresh", "-m", str(manifests), "--state", state]
    for _ in ("no ledger yet", "the ledger exists"):
        done, imported = slotkeeper_imports(tmp_path, *command)
        assert done.returncode == 0, done.stderr
        open_ledger(state, now=datetime.now(UTC)).close()  # empty: the slot stays planned
    assert "dev/api" in done.stdout, done.stdout
    assert "slotkeeper.reconcile" in imported and "slotkeeper.plan" in imported
    for module in (
        "slotkeeper.execute",
        "slotkeeper.targets.registry",
        "httpx",
        "cryptography",
        "watchfiles",
        "rich.progress",
        "structlog",
        "prometheus_client",
        "filelock",
    ):
        assert module not in imported, module


def test_a_plan_of_manifests_already_applied_does_not_load_the_yaml_parser(
    tmp_path: Path,
) -> None:
    """Once applied, every file's parse is kept in the ledger: the next plan of the same files
    reads those and never imports PyYAML (nor the parser's module). A file edited since is
    parsed, and its change planned."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    env = manifests / "env.yaml"
    env.write_text(
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: dev}\n"
        "spec:\n  slots:\n    api:\n      artifact: {kind: CONTAINER_IMAGE, name: x, version: v1}\n"
    )
    state = f"sqlite:///{tmp_path / 'state.db'}"
    common = ["--no-refresh", "-m", str(manifests), "--state", state]
    applied, _ = slotkeeper_imports(
        tmp_path, "apply", "--yes", *common, "--secrets-dir", str(tmp_path / "s")
    )
    assert applied.returncode == 0, applied.stderr
    unchanged, imported = slotkeeper_imports(tmp_path, "plan", *common, "--detailed-exitcode")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "slotkeeper.manifests" in imported
    assert not {"yaml", "slotkeeper.yamlsource"} & imported
    env.write_text(env.read_text().replace("version: v1", "version: v2"))
    edited, imported = slotkeeper_imports(tmp_path, "plan", *common, "--detailed-exitcode")
    assert edited.returncode == 2, edited.stdout + edited.stderr
    assert "dev/api" in edited.stdout and {"yaml", "slotkeeper.yamlsource"} <= imported


def test_an_apply_that_logs_nothing_does_not_load_the_logging_library_and_one_that_does_logs(
    tmp_path: Path,
) -> None:
    """At the default level an apply that goes well logs nothing: it never imports structlog.
    One whose target call fails logs the warning from the worker that made it, as JSON on
    stderr with the context that worker bound (target, action) and nothing on stdout. A
    target that authenticates with a token loads neither the App module nor cryptography."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    env = manifests / "env.yaml"
    head = "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: dev}\n"
    slots = "  slots:\n    api:\n      artifact: {kind: CONTAINER_IMAGE, name: x, version: v1}\n"
    env.write_text(head + "spec:\n" + slots)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    common = ["--no-refresh", "-m", str(manifests), "--state", state]
    common += ["--secrets-dir", str(tmp_path / "s")]
    quiet, imported = slotkeeper_imports(tmp_path, "apply", "--yes", *common)
    assert quiet.returncode == 0, quiet.stderr
    assert "slotkeeper.execute" in imported and "structlog" not in imported
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "apiVersion: slotkeeper/v1\nkind: Target\nmetadata: {name: github}\n"
        "spec: {type: github, baseUrl: 'http://127.0.0.1:9', token: {env: GITHUB_TOKEN}}\n"
    )
    github = "spec:\n  targets: [github]\n  repository: o/r\n"
    env.write_text(head + github + slots + "      ref: main\n")
    refused, imported = slotkeeper_imports(
        tmp_path,
        *("apply", "--yes", *common, "--targets", str(targets)),
        env={"GITHUB_TOKEN": "ghp_" + "x" * 36, "SLOTKEEPER_EGRESS_ALLOW": ""},
    )
    # a token target: the App module and the key cryptography are not loaded
    assert "slotkeeper.targets.registry" in imported
    assert not {"slotkeeper.targets.githubapp", "cryptography"} & imported
    events = [json.loads(line) for line in refused.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "target.sync_failed"]
    assert failed, refused.stderr
    assert failed[0]["target"] == "github" and failed[0]["action_id"], failed[0]
    assert failed[0]["level"] == "warning" and failed[0]["error"].startswith("github: ")
    assert "target.sync_failed" not in refused.stdout
