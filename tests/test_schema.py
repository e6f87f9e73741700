"""`slotkeeper schema` documents itself and gives one error per mistake, as an editor checks it.

An editor (the YAML language server, or any JSON Schema validator) lists every failing branch of a
union, so the printed schemas have none: each mistake below is exactly one error, at the field
path that `slotkeeper validate` names too. Every field carries a description for the hover.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from slotkeeper.manifests import _nullable_as_types, _tagged_unions_as_if_then
from tests.helpers import Run, write_targets

Sk = Callable[..., Run]
ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "a" * 64


class EditorLoader(yaml.SafeLoader):
    """YAML as an editor reads it (the YAML 1.2 core schema): a timestamp stays a string."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def editor_documents(text: str) -> list[Any]:
    """The YAML documents of ``text`` as an editor reads them (empty ones left out)."""
    return [doc for doc in yaml.load_all(text, Loader=EditorLoader) if doc is not None]


def schema_of(sk: Sk, kind: str) -> dict[str, Any]:
    """The schema `slotkeeper schema` prints for ``kind`` (``--targets`` for a Target)."""
    run = sk("schema", "--targets") if kind == "Target" else sk("schema")
    assert run.code == 0, run.err
    schema: dict[str, Any] = run.json()
    return schema


def reported(schema: dict[str, Any], document: Any) -> list[tuple[str, str]]:
    """Every error a validator can show for ``document`` — the errors and, recursively, those of
    the union branches they stand for (what an editor lists) — as (field path, message)."""
    found: list[tuple[str, str]] = []

    def walk(errors: Iterable[jsonschema.ValidationError]) -> None:
        for error in errors:
            found.append((yaml_path(error.absolute_path), error.message))
            walk(error.context or ())

    jsonschema.Draft202012Validator.check_schema(schema)
    walk(jsonschema.Draft202012Validator(schema).iter_errors(document))
    return found


def yaml_path(steps: Iterable[str | int]) -> str:
    """A validator's path in the notation of slotkeeper's messages: ``spec.deployKeys[0].title``."""
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(document)"


# -- the examples ------------------------------------------------------------------------------

EXAMPLES = sorted(
    path
    for path in (ROOT / "examples").rglob("*")
    if path.suffix in (".yaml", ".yml") and path.parent.name != "ci"
)


def kind_of(path: Path) -> str:
    """Which schema an example file is written against: its documents' kind."""
    [kind] = {doc["kind"] for doc in editor_documents(path.read_text(encoding="utf-8"))}
    return str(kind)


def test_every_example_is_listed() -> None:
    """The examples checked below are the shipped manifests and targets files, both kinds."""
    assert {kind_of(path) for path in EXAMPLES} == {"Environment", "Target"}
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_schema_accepts_every_shipped_example(sk: Sk, path: Path) -> None:
    """Each document of examples/ validates against the schema of its kind without an error."""
    schema = schema_of(sk, kind_of(path))
    for document in editor_documents(path.read_text(encoding="utf-8")):
        assert reported(schema, document) == []


# -- one mistake, one error --------------------------------------------------------------------


def environment_text(slot: str = "", spec: str = "") -> str:
    """A valid Environment document, with ``slot`` lines added to slot ``api`` and ``spec``
    lines to its spec (each a YAML fragment at the right indentation)."""
    return (
        "apiVersion: slotkeeper/v1\n"
        "kind: Environment\n"
        "metadata: {name: production}\n"
        "spec:\n"
        "  repository: acme/web\n"
        f"{spec}"
        "  slots:\n"
        "    api:\n"
        "      artifact:\n"
        "        kind: CONTAINER_IMAGE\n"
        "        name: ghcr.io/acme/api\n"
        f"{slot or '        version: v1.4.2' + chr(10)}"
        "  deployKeys:\n"
        "    - {repository: acme/web, title: deployer, rotateAfter: 30d, "
        "secret: {file: deployer}}\n"
    )


def target_text(spec: str = "  token: {env: GITHUB_TOKEN}\n", kind: str = "github") -> str:
    """A Target document of type ``kind`` with ``spec`` lines (the token by default)."""
    return (
        "apiVersion: slotkeeper/v1\n"
        "kind: Target\n"
        "metadata: {name: github}\n"
        "spec:\n"
        f"  type: {kind}\n"
        f"{spec}"
    )


ENVIRONMENT_MISTAKES = {
    "unquoted version": (
        environment_text(slot="        version: 1.10\n"),
        "spec.slots.api.artifact.version",
    ),
    "misspelt field": (
        environment_text(slot="        versoin: v1.4.2\n"),
        "spec.slots.api.artifact",
        "spec.slots.api.artifact.versoin",
    ),
    "unquoted number as ref": (
        environment_text(slot="        version: v1\n      ref: 7\n"),
        "spec.slots.api.ref",
    ),
    "bad digest": (
        environment_text(slot="        digest: sha256:abc\n"),
        "spec.slots.api.artifact.digest",
    ),
    "bad artifact kind": (
        environment_text().replace("CONTAINER_IMAGE", "DOCKER_IMAGE"),
        "spec.slots.api.artifact.kind",
    ),
    "slot name not a slug": (
        environment_text().replace("    api:", "    Web_Api:"),
        "spec.slots",
        "spec.slots.Web_Api",
    ),
    "duration as a number": (
        environment_text().replace("rotateAfter: 30d", "rotateAfter: 30"),
        "spec.deployKeys[0].rotateAfter",
    ),
    "protected as text": (
        environment_text(spec='  protected: "yes"\n'),
        "spec.protected",
    ),
    "freeze window with a bad duration": (
        environment_text(spec="  freeze: [{cron: '0 18 * * 5', duration: 64}]\n"),
        "spec.freeze[0].duration",
    ),
    "a target name not a slug": (
        environment_text(spec="  targets: [GitHub]\n"),
        "spec.targets[0]",
    ),
    "wrong kind": (
        environment_text().replace("kind: Environment", "kind: Enviroment"),
        "kind",
    ),
}

TARGET_MISTAKES = {
    "timeout as text": (
        target_text("  token: {env: GITHUB_TOKEN}\n  timeoutSeconds: '10'\n"),
        "spec.timeoutSeconds",
    ),
    "misspelt field": (
        target_text("  token: {env: GITHUB_TOKEN}\n  baseUrll: https://api.github.com\n"),
        "spec",
        "spec.baseUrll",
    ),
    "unknown type": (target_text(kind="gitlab"), "spec.type"),
    "no type": (target_text().replace("  type: github\n", ""), "spec", "spec.type"),
    "inline token": (target_text("  token: ghp_abc\n"), "spec.token"),
    "missing credential": (
        target_text("  project: acme\n  app: api\n", kind="unkey"),
        "spec",
        "spec.rootKey",
    ),
    "a field of another type": (
        target_text("  token: {env: T}\n  heartbeatInterval: 1h\n"),
        "spec",
        "spec.heartbeatInterval",
    ),
    "write limit out of range": (
        target_text("  token: {env: T}\n  writeLimits: [{writes: 0, perSeconds: 10}]\n"),
        "spec.writeLimits[0].writes",
    ),
    "bad duration on chainloop": (
        target_text("  token: {env: T}\n  heartbeatInterval: 1 hour\n", kind="chainloop"),
        "spec.heartbeatInterval",
    ),
    "no member id on iftrue": (
        target_text(
            "  token: {env: T}\n  repositoryUrl: https://github.com/acme/web\n", kind="iftrue"
        ),
        "spec",
        "spec.memberId",
    ),
}


def cases(table: dict[str, tuple[str, ...]]) -> list[tuple[str, str, str]]:
    """(text, the schema's path, the path `validate` names): the same unless the mistake is an
    unknown or a missing field, which `validate` names and a schema reports on its parent."""
    return [(text, path, named[0] if named else path) for text, path, *named in table.values()]


def assert_validate_says_one_error(sk: Sk, named: str) -> None:
    """`slotkeeper validate` refuses the tree with exactly one error, at field path ``named``."""
    validate = sk("validate", "-m", "m")
    assert validate.code == 1
    assert validate.err.startswith("Error: 1 manifest error:"), validate.err
    assert f": {named}: " in validate.err, validate.err


@pytest.mark.parametrize("text, path, named", cases(ENVIRONMENT_MISTAKES), ids=ENVIRONMENT_MISTAKES)
def test_one_mistake_in_a_manifest_is_one_error_at_its_path(
    sk: Sk, workdir: Path, text: str, path: str, named: str
) -> None:
    """Each mistake is exactly one error of the schema, at its field path, and one error of
    `validate` at the same place."""
    errors = reported(schema_of(sk, "Environment"), editor_documents(text)[0])
    assert [where for where, _ in errors] == [path], errors
    (workdir / "m").mkdir()
    (workdir / "m" / "env.yaml").write_text(text)
    assert_validate_says_one_error(sk, named)


@pytest.mark.parametrize("text, path, named", cases(TARGET_MISTAKES), ids=TARGET_MISTAKES)
def test_one_mistake_in_a_target_is_one_error_at_its_path(
    sk: Sk, workdir: Path, text: str, path: str, named: str
) -> None:
    """A mistake in a targets-file document is one error of the `--targets` schema (only the
    chosen type's rules apply), and `validate` refuses the targets file with one error there."""
    errors = reported(schema_of(sk, "Target"), editor_documents(text)[0])
    assert [where for where, _ in errors] == [path], errors
    write_targets(editor_documents(text)[0])
    (workdir / "m").mkdir()
    (workdir / "m" / "env.yaml").write_text(environment_text())
    assert_validate_says_one_error(sk, named)


def test_an_unquoted_version_says_it_must_be_a_string(sk: Sk) -> None:
    """`version: 1.10` (read as the number 1.1) is one error saying a string is wanted."""
    text = environment_text(slot="        version: 1.10\n")
    [(path, message)] = reported(schema_of(sk, "Environment"), editor_documents(text)[0])
    assert path == "spec.slots.api.artifact.version"
    assert message == "1.1 is not of type 'string', 'null'"


# -- every field says what it is -----------------------------------------------------------------


def properties(node: Any, where: str = "") -> Iterable[tuple[str, Any]]:
    """Every property schema anywhere in ``node``, with where it is (an ``if`` is a condition
    on a value, not where a field is defined)."""
    if isinstance(node, dict):
        for name, child in node.get("properties", {}).items():
            yield f"{where}/properties/{name}", child
        for key, child in node.items():
            if key != "if":
                yield from properties(child, f"{where}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from properties(child, f"{where}/{index}")


@pytest.mark.parametrize("kind", ["Environment", "Target"])
def test_every_field_has_a_description(sk: Sk, kind: str) -> None:
    """Every property of the schema, at any depth, has a description an editor can show, and
    no union is left for a validator to report branch by branch."""
    schema = schema_of(sk, kind)
    found = dict(properties(schema))
    assert len(found) > (30 if kind == "Environment" else 40)
    undescribed = [where for where, child in found.items() if not child.get("description")]
    assert undescribed == []
    assert "anyOf" not in str(schema) and "oneOf" not in str(schema)
    # The derived titles ("Deploykeys") are gone; the names and descriptions say it better.
    assert not [where for where, child in found.items() if "title" in child]


def test_the_fields_say_what_the_manifests_reference_says(sk: Sk) -> None:
    """A few descriptions carry the rules people trip over: quoting versions, what protected
    guards, where a deploy key's private half goes."""
    defs = schema_of(sk, "Environment")["$defs"]
    assert '"1.4"' in defs["Artifact"]["properties"]["version"]["description"]
    assert (
        "removals, not deploys" in defs["EnvironmentSpec"]["properties"]["protected"]["description"]
    )
    assert "--secrets-dir" in defs["KeySecret"]["properties"]["file"]["description"]
    target_defs = schema_of(sk, "Target")["$defs"]
    assert "api/v3" in target_defs["GithubTargetSpec"]["properties"]["baseUrl"]["description"]


# -- the shaping, rule by rule -----------------------------------------------------------------

NULLABLE = {
    "a pattern binds strings only": (
        {"anyOf": [{"type": "string", "pattern": "^a$"}, {"type": "null"}], "default": None},
        {"type": ["string", "null"], "pattern": "^a$", "default": None},
    ),
    "bounds bind numbers only": (
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
        {"type": ["integer", "null"], "minimum": 1},
    ),
    "a const would refuse null: kept": (
        {"anyOf": [{"type": "string", "const": "a"}, {"type": "null"}]},
        {"anyOf": [{"type": "string", "const": "a"}, {"type": "null"}]},
    ),
    "a reference has no type of its own: kept": (
        {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]},
        {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]},
    ),
    "a union of two types: kept": (
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    ),
}


@pytest.mark.parametrize("before, after", NULLABLE.values(), ids=NULLABLE)
def test_optional_values_become_a_list_of_types_only_where_that_means_the_same(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    """``X | None`` becomes ``type: [X, null]`` only when every keyword of X binds X's own type,
    so the schema accepts and refuses exactly what it did."""
    node = {"properties": {"field": copy.deepcopy(before)}}
    _nullable_as_types(node)
    assert node == {"properties": {"field": after}}


def test_a_tagged_union_selects_its_branch_by_the_tag() -> None:
    """A ``oneOf`` with a discriminator becomes ``if``/``then`` per tag value, the tag required
    and limited to the known values; the discriminator stays for OpenAPI-minded tools."""
    tag = {"propertyName": "type", "mapping": {"a": "#/$defs/A", "b": "#/$defs/B"}}
    node = {"oneOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}], "discriminator": tag}
    _tagged_unions_as_if_then(node)
    assert "oneOf" not in node and node["discriminator"] == tag
    assert node["required"] == ["type"]
    assert node["properties"]["type"]["enum"] == ["a", "b"]
    assert node["allOf"] == [
        {
            "if": {"properties": {"type": {"const": value}}, "required": ["type"]},
            "then": {"$ref": f"#/$defs/{value.upper()}"},
        }
        for value in ("a", "b")
    ]
