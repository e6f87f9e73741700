"""What the help, the README and the examples say matches what slotkeeper does and ships."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
import yaml

from slotkeeper.cli import cli
from tests.helpers import Run, deploy_key, environment, image, write_manifests, write_targets

Sk = Callable[..., Run]
ROOT = Path(__file__).resolve().parent.parent


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command that takes --state (``("keys", "list")``...)."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        elif any(param.name == "state" for param in command.params):
            yield (*path, name)


STATEFUL = list(commands(cli))


def test_every_command_with_a_ledger_is_listed() -> None:
    """Every command that reads or writes a ledger takes --state (and is checked below)."""
    assert {" ".join(path) for path in STATEFUL} == {
        "plan",
        "apply",
        "status",
        "history",
        "keys list",
        "keys rotate",
        "run",
        "ui",
    }


@pytest.mark.parametrize("path", STATEFUL, ids=" ".join)
def test_every_state_option_names_postgresql_urls(sk: Sk, path: tuple[str, ...]) -> None:
    """Each command's --state help names both sqlite:/// and postgresql:// URLs."""
    result = sk(*path, "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "--state" in text
    assert "sqlite:///" in text and "postgresql://" in text


def target(name: str) -> dict[str, object]:
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": "Target",
        "metadata": {"name": name},
        "spec": {"type": "github", "token": {"env": "GITHUB_TOKEN"}},
    }


def test_counts_are_in_the_right_number(sk: Sk, workdir: Path) -> None:
    """validate says "1 environment, 1 slot, 1 deploy key, 1 target" and plural otherwise;
    a plan with nothing to do says "1 slot unchanged"."""
    write_manifests(
        workdir / "one",
        environment("production", {"api": image()}, deployKeys=[deploy_key("d")]),
    )
    write_targets(target("github"))
    one = sk("validate", "-m", "one")
    assert one.out.strip() == "Valid: 1 environment, 1 slot, 1 deploy key, 1 target."
    write_manifests(
        workdir / "two",
        environment("production", {"api": image(), "web": image("web")}),
        environment("staging", {}, deployKeys=[deploy_key("a"), deploy_key("b")]),
    )
    write_targets(target("github"), target("mirror"))
    two = sk("validate", "-m", "two")
    assert two.out.strip() == "Valid: 2 environments, 2 slots, 2 deploy keys, 2 targets."
    write_targets()
    write_manifests(workdir / "none", environment("production", {}))
    assert sk("validate", "-m", "none").out.strip() == (
        "Valid: 1 environment, 0 slots, 0 deploy keys, 0 targets."
    )

    write_manifests(workdir / "m", environment("production", {"api": image()}))
    first = sk("plan", "-m", "m")
    assert "0 key changes (0 create, 0 rotate, 0 revoke)." in first.out
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert "(1 slot unchanged)" in sk("plan", "-m", "m").out
    assert "**No changes.** 1 slot unchanged." in sk("plan", "-m", "m", "--format", "markdown").out
    write_manifests(
        workdir / "m", environment("production", {"api": image()}, deployKeys=[deploy_key("d")])
    )
    assert "1 key change (1 create, 0 rotate, 0 revoke)." in sk("plan", "-m", "m").out


def test_a_protected_environment_guards_removals_not_deploys(sk: Sk, workdir: Path) -> None:
    """As the README says: in a protected environment a new version and a new slot apply
    without --allow-decommission, while removing a slot is held back."""
    m = workdir / "m"
    write_manifests(
        m, environment("production", {"api": image(), "worker": image("w")}, protected=True)
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    write_manifests(
        m,
        environment(
            "production", {"api": image(version="v2"), "web": image("web")}, protected=True
        ),
    )
    applied = sk("apply", "--yes", "-m", "m")
    assert applied.code == 0
    assert "2 applied, 0 failed, 1 blocked" in applied.out
    rows = {row["slot"]: row for row in sk("status", "--json").json()["slots"]}
    assert rows["api"]["artifact"]["version"] == "v2" and rows["api"]["status"] == "DEPLOYED"
    assert rows["web"]["status"] == "DEPLOYED"
    assert rows["worker"]["status"] == "DEPLOYED"
    assert "protected" in rows["worker"]["pending"]["blocked"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "guard **removals**, not deploys" in readme


# -- the examples pin only what you build ------------------------------------------------------

SHIPPED = [
    ROOT / "README.md",
    ROOT / ".pre-commit-hooks.yaml",
    *sorted((ROOT / "examples").rglob("*")),
    *sorted((ROOT / "deploy").rglob("*")),
]


@pytest.mark.parametrize(
    "path", [p for p in SHIPPED if p.is_file()], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_example_pins_a_slotkeeper_release_that_does_not_exist(path: Path) -> None:
    """No tag, package or image of slotkeeper that nobody published is pinned (acme's
    repository, a ghcr.io slotkeeper image, v0.1.0)."""
    text = path.read_text(encoding="utf-8")
    assert "acme/slotkeeper" not in text
    assert not re.search(r"ghcr\.io/\S*slotkeeper", text)
    assert "v0.1.0" not in text


def test_the_kubernetes_image_is_a_placeholder_the_overlay_pins_by_digest() -> None:
    """Both Deployments name the image `slotkeeper`; the README's overlay replaces that name
    with a build of yours, by digest."""
    for variant in ("base", "postgres"):
        deployment = yaml.safe_load(
            (ROOT / "deploy" / "kubernetes" / variant / "deployment.yaml").read_text()
        )
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "slotkeeper"
    readme = (ROOT / "deploy" / "kubernetes" / "README.md").read_text(encoding="utf-8")
    overlay = yaml.safe_load(readme.split("```yaml", 1)[1].split("```", 1)[0])
    [entry] = overlay["images"]
    assert entry["name"] == "slotkeeper"
    assert entry["newName"] and entry["digest"].startswith("sha256:")


def test_the_ci_example_recommends_postgresql() -> None:
    """The workflow says PostgreSQL is the recommended ledger for CI (no "not supported"), takes
    its password from a secret, and installs slotkeeper from a pin the operator sets."""
    text = (ROOT / "examples" / "ci" / "github-actions.yml").read_text(encoding="utf-8")
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert "PostgreSQL is the recommended ledger for CI" in header
    assert "postgresql://" in header
    assert "not supported" not in text.lower() and "once slotkeeper supports" not in text
    env = yaml.safe_load(text)["env"]
    assert env["PGPASSWORD"].startswith("${{ secrets.")
    assert env["SLOTKEEPER_PIP_SPEC"] == "${{ vars.SLOTKEEPER_PIP_SPEC }}"


def test_the_readme_gives_the_image_command_of_the_dockerfile() -> None:
    """The README quotes the Dockerfile's CMD exactly, --source and --cache-dir included."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    [line] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    command = json.loads(line.removeprefix("CMD "))
    assert "--source" in command and "--cache-dir" in command
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"`CMD {json.dumps(command)}`" in readme
