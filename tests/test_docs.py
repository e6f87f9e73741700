"""What the help, the README, the reference in docs/ and the examples say matches what slotkeeper
does and ships, and every link in them lands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from slotkeeper.cli import cli
from slotkeeper.cli.lazy import LazyGroup
from tests.helpers import Run, deploy_key, environment, image, write_manifests, write_targets
from tests.test_schema import editor_documents

Sk = Callable[..., Run]
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: the pages people read: the front door, the map of the code and the reference
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted(DOCS.glob("*.md"))]


def page(name: str) -> str:
    """A reference page (``docs/NAME``) with its lines joined, for phrases that wrap."""
    return " ".join((DOCS / name).read_text(encoding="utf-8").split())


def every(group: click.Command) -> dict[str, click.Command]:
    """A group's commands, each imported (the root group imports its own when used)."""
    if isinstance(group, LazyGroup):
        return group.every_command
    return group.commands if isinstance(group, click.Group) else {}


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command that takes --state (``("keys", "list")``...)."""
    for name, command in sorted(every(group).items()):
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
        "events",
        "diff",
        "approve",
        "reject",
        "release-hold",
        "promote",
        "rollback",
        "dora",
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
    """As the reference says (Safety guards): in a protected environment a new version and a
    new slot apply without --allow-decommission, while removing a slot is held back."""
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
    assert "guard **removals**, not deploys" in page("safety.md")


# -- the examples pin only what you build ------------------------------------------------------

SHIPPED = [
    *PAGES,
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


def test_the_reference_gives_the_image_command_of_the_dockerfile() -> None:
    """The reference (Run in a cluster) quotes the Dockerfile's CMD exactly, --source and
    --cache-dir included."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    [line] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    command = json.loads(line.removeprefix("CMD "))
    assert "--source" in command and "--cache-dir" in command
    assert f"`CMD {json.dumps(command)}`" in page("cluster.md")


# -- the README is the front door, the reference is in docs/ -----------------------------------

#: pages reached through another one: the site's home (the README's top part), the Architecture
#: page (ARCHITECTURE.md, which the README links itself) and the checklist ARCHITECTURE.md links
REACHED_OTHERWISE = {"index.md", "architecture.md", "adding-a-target.md"}


def test_the_readme_is_the_front_door() -> None:
    """The README keeps what it is, the two set-up commands for a fresh clone, the quickstart
    and the picture, links every reference page and the architecture, and stays short."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "$ make run " in text and "$ make test " in text
    assert "slotkeeper validate -m examples/quickstart/1-initial" in text
    assert "](docs/dashboard.png)" in text
    linked = {target for _, target in links(text)}
    for reference in sorted(DOCS.glob("*.md")):
        if reference.name not in REACHED_OTHERWISE:
            assert f"docs/{reference.name}" in linked, f"the README does not link {reference.name}"
    assert "ARCHITECTURE.md" in linked
    assert "docs/adding-a-target.md" in {t for _, t in links(read(ROOT / "ARCHITECTURE.md"))}
    assert len(text.splitlines()) < 150


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def without_code_blocks(text: str) -> str:
    """``text`` without its fenced code blocks (a ``#`` there is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def prose(text: str) -> str:
    """``text`` without its code, blocks and inline (their brackets are no links)."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def links(text: str) -> list[tuple[str, str]]:
    """The (text, target) of every Markdown link and image in the prose of ``text``."""
    return re.findall(r"!?\[([^\]]*)\]\(([^)\s]+)\)", prose(text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors a page's headings get both on GitHub and on the mkdocs site (the toc
    extension's slugify): a link lands in both only when the two agree."""
    from markdown.extensions.toc import slugify  # mkdocs' dependency, in the dev lock

    found = set()
    for line in without_code_blocks(read(path)).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            heading = re.sub(r"[*_`]", "", match.group(1))
            if github_slug(heading) == slugify(heading, "-"):
                found.add(github_slug(heading))
    return found


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands(path: Path) -> None:
    """Each relative link or image of a page names a file that exists, and each #anchor a
    heading of the page it leads to, with the same anchor on GitHub and on the site."""
    for text, target in links(read(path)):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto: ...
        file, _, anchor = target.partition("#")
        landing = (path.parent / file).resolve() if file else path
        assert landing.is_file(), f"[{text}]({target}): no {landing.relative_to(ROOT)}"
        if anchor:
            assert anchor in anchors(landing), f"[{text}]({target}): no such heading"


def test_the_anchor_rule_tells_a_heading_only_one_side_finds() -> None:
    """A heading whose GitHub anchor differs from the site's (a dash between spaces) gives no
    anchor, so a link to it fails the check above instead of landing on one side only."""
    assert github_slug("Run in a cluster") == "run-in-a-cluster"
    assert github_slug("iftrue (DORA tracking)") == "iftrue-dora-tracking"
    assert github_slug("A — b") == "a--b"  # the site's would be "a-b"


def all_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command (``("keys", "rotate")``...)."""
    for name, command in sorted(every(group).items()):
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.parametrize("path", list(all_commands(cli)), ids=" ".join)
def test_every_command_and_flag_is_in_the_commands_page(path: tuple[str, ...]) -> None:
    """Each command has its row in the Commands table, and each of its flags is written there
    or in the paragraphs on the flags every command shares."""
    text = read(DOCS / "commands.md")
    shared = text.split("| command |", 1)[0]
    name = "slotkeeper " + " ".join(path)
    [row] = [line for line in text.splitlines() if re.match(rf"\| `{name}( [A-Z\[]|`)", line)]
    command = cli
    for step in path:
        command = every(command)[step]
    flags = [
        flag
        for param in command.params
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
        if flag.startswith("--")
    ]
    for flag in flags:
        assert flag in row or flag in shared, f"{name} {flag} is not documented"
    for flag in ("--version", "--log-format", "--log-level", "--no-color"):
        assert flag in shared


def test_make_test_builds_the_docs_strictly() -> None:
    """`make test` runs `make docs`: mkdocs in strict mode, not quieted (--quiet also silences
    the warnings strict mode counts, and a broken link would pass)."""
    dry = subprocess.run(
        ["make", "-n", "docs", "test"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    [build, *_] = [line for line in dry.splitlines() if "mkdocs build" in line]
    assert "--strict" in build.split()
    assert "--quiet" not in build.split() and "-q" not in build.split()
    assert re.search(r"^test:.*\bdocs\b", read(ROOT / "Makefile"), flags=re.MULTILINE)
    assert "site/" in read(ROOT / ".gitignore").splitlines()


def test_the_site_build_refuses_a_broken_anchor(tmp_path: Path) -> None:
    """The site builds from the repository as it is, and the same build fails, naming the
    anchor, once a page links a heading that does not exist."""
    for name in ("mkdocs.yml", "README.md", "ARCHITECTURE.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DOCS, tmp_path / "docs")
    build = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "-f",
        str(tmp_path / "mkdocs.yml"),
    ]
    good = subprocess.run(build, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "Quickstart" in read(tmp_path / "site" / "index.html")
    assert "One manifest edit" in read(tmp_path / "site" / "architecture" / "index.html")
    with (tmp_path / "docs" / "logging.md").open("a", encoding="utf-8") as logging_page:
        logging_page.write("\nSee [the guards](safety.md#no-such-heading).\n")
    broken = subprocess.run(build, capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0
    assert "no-such-heading" in broken.stderr


# -- the YAML in the docs is what the schema accepts --------------------------------------------


def yaml_blocks(path: Path) -> list[str]:
    """The fenced ``yaml`` blocks of a page."""
    return re.findall(r"^```yaml\n(.*?)^```", read(path), flags=re.MULTILINE | re.DOTALL)


def as_documents(block: str) -> list[tuple[dict[str, Any], bool]]:
    """The slotkeeper documents a YAML example shows, read as an editor reads them, each with
    whether it is a fragment: a bare ``spec:`` is completed into a document of the kind it
    belongs to (a Target when it names a type)."""
    found = []
    for document in editor_documents(block):
        if not isinstance(document, dict):
            continue
        if "kind" in document:
            found.append((document, False))
        elif set(document) == {"spec"}:
            kind = "Target" if "type" in document["spec"] else "Environment"
            head = {"apiVersion": "slotkeeper/v1", "kind": kind, "metadata": {"name": "x"}}
            found.append(({**head, **document}, True))
    return found


EXAMPLE_PAGES = [path for path in PAGES if any(as_documents(b) for b in yaml_blocks(path))]


def test_the_docs_show_both_kinds_of_document() -> None:
    """The YAML examples checked below cover manifests and targets files, every target type
    and every notifier type."""
    shown = [doc for path in EXAMPLE_PAGES for b in yaml_blocks(path) for doc, _ in as_documents(b)]
    assert {doc["kind"] for doc in shown} == {"Environment", "Target", "Notifier"}
    notifiers = {doc["spec"]["type"] for doc in shown if doc["kind"] == "Notifier"}
    assert notifiers == {"webhook", "slack"}
    types = {doc["spec"]["type"] for doc in shown if doc["kind"] == "Target"}
    assert types == {"github", "chainloop", "unkey", "iftrue"}


@pytest.mark.parametrize("path", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_example_in_the_docs_is_valid(sk: Sk, path: Path) -> None:
    """Each manifest or targets-file example in the docs validates against `slotkeeper schema`
    (or `--targets`, `--notifier`): no unknown field, no wrong type. A fragment may leave out
    required fields, and a placeholder (`sha256:<64 lowercase hex>`, `…`) may miss its pattern."""
    schemas = {
        "Environment": sk("schema").json(),
        "Target": sk("schema", "--targets").json(),
        "Notifier": sk("schema", "--notifier").json(),
    }
    for block in yaml_blocks(path):
        for document, fragment in as_documents(block):
            validator = jsonschema.Draft202012Validator(schemas[document["kind"]])
            errors = [
                f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
                for error in validator.iter_errors(document)
                if not (fragment and error.validator == "required")
                and not (
                    error.validator == "pattern"
                    and any(mark in str(error.instance) for mark in ("<", "…"))
                )
            ]
            assert errors == [], f"{path.name}: {document['metadata']}"
