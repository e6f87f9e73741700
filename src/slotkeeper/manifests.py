"""Find, parse and validate manifest files into a :class:`DesiredState`.

Every YAML file under the manifest path (hidden directories and files skipped) must hold
slotkeeper documents: a stray or misspelt file is an error, never ignored, because an ignored
environment would look removed and be decommissioned. All problems of one load are collected and
raised together as :class:`ManifestErrors`, each naming file, line and field path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from slotkeeper.errors import ConfigError, ManifestError, ManifestErrors
from slotkeeper.gctuning import fewer_collections
from slotkeeper.model import (
    API_VERSION,
    DIGEST_PATTERN,
    DURATION_PATTERN,
    ENV_VAR_PATTERN,
    KEY_TITLE_PATTERN,
    REPOSITORY_PATTERN,
    SLUG_PATTERN,
    DesiredState,
    Document,
    EnvironmentDocument,
    EnvironmentSpec,
    Location,
    Revision,
    TargetDocument,
    TargetSpec,
    decide_ref,
)
from slotkeeper.yamlsource import (
    LineDict,
    YamlRefused,
    describe_yaml_error,
    line_of,
    parse_documents,
)

YAML_SUFFIXES = (".yaml", ".yml")
DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILE_BYTES_ENV = "SLOTKEEPER_MAX_MANIFEST_BYTES"

_KINDS: dict[str, type[EnvironmentDocument] | type[TargetDocument]] = {
    "Environment": EnvironmentDocument,
    "Target": TargetDocument,
}

_TARGET_TYPES = frozenset({"github", "chainloop", "unkey", "iftrue"})

_PATTERN_MESSAGES = {
    SLUG_PATTERN: "must be a lowercase name of a-z, 0-9 and '-', 1 to 63 characters, "
    "starting and ending with a letter or digit",
    DIGEST_PATTERN: "must be 'sha256:' followed by 64 lowercase hex digits",
    REPOSITORY_PATTERN: "must be 'owner/repo'",
    DURATION_PATTERN: "must be a duration such as 90m, 12h, 30d or 2w",
    KEY_TITLE_PATTERN: "must be 1 to 80 characters of letters, digits, '.', '_' and '-'",
    ENV_VAR_PATTERN: "must be an environment variable name",
}

_TYPE_MESSAGES = {
    "string_type": "must be a string (quote it in YAML)",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "union_tag_not_found": "is required",
    "enum": "must be one of CONTAINER_IMAGE, HELM_CHART",
}


@dataclass
class _Collector:
    """Accumulates documents and errors across files."""

    errors: list[ManifestError] = field(default_factory=list)
    environments: dict[str, tuple[EnvironmentSpec, Location]] = field(default_factory=dict)
    targets: dict[str, tuple[TargetSpec, Location]] = field(default_factory=dict)
    target_refs: list[tuple[str, Location, str, int]] = field(default_factory=list)
    environment_data: dict[str, LineDict] = field(default_factory=dict)


def find_manifest_files(root: Path) -> list[Path]:
    """Every YAML file under ``root`` (or ``root`` itself), hidden paths skipped, sorted.

    A symlink that leads out of the tree is listed when it looks like a YAML file (so that a
    caller can tell it is broken) but never descended into; ``load_manifests`` refuses it."""
    files, _ = _scan(root)
    return files


def _scan(root: Path) -> tuple[list[Path], list[ManifestError]]:
    """The YAML files under ``root`` and the problems of the tree itself (escaping or broken
    symlinks, unreadable directories)."""
    errors: list[ManifestError] = []
    if root.is_file():
        return [root], errors
    if not root.is_dir():
        raise ManifestErrors([ManifestError(root, None, None, "no such file or directory")])
    found: list[Path] = []
    for path in _walk(root, root.resolve(), set(), errors):
        if path.suffix in YAML_SUFFIXES:
            found.append(path)
    return sorted(found), errors


def _walk(
    directory: Path, top: Path, seen: set[Path], errors: list[ManifestError]
) -> Iterator[Path]:
    real = directory.resolve()
    if real in seen:  # a symlink back into the tree: read every file once, never loop
        return
    seen.add(real)
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        errors.append(ManifestError(directory, None, None, f"cannot list: {exc.strerror}"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            problem = _symlink_problem(entry, top)
            if problem is not None:
                errors.append(ManifestError(entry, None, None, problem))
                if entry.suffix in YAML_SUFFIXES and not entry.is_dir():
                    yield entry  # listed, so that callers see it; never read
                continue
        if entry.is_dir():
            yield from _walk(entry, top, seen, errors)
        elif entry.is_file():
            yield entry


def _symlink_problem(link: Path, top: Path) -> str | None:
    """Why the symlink ``link`` may not be followed, or None when it stays inside ``top``."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # dangling, or a loop (RuntimeError before 3.13)
        if link.suffix not in YAML_SUFFIXES:
            return None  # would not be read anyway
        if isinstance(exc, FileNotFoundError):
            return f"broken symlink: {link.readlink()} does not exist"
        return "symlink loop: the link never reaches a file"
    if target != top and not target.is_relative_to(top):
        return f"symlink leads out of the manifest tree (to {target})"
    return None


def max_file_bytes_from_env() -> int:
    """The file size limit: ``SLOTKEEPER_MAX_MANIFEST_BYTES`` when set, else 4 MiB."""
    raw = os.environ.get(MAX_FILE_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FILE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{MAX_FILE_BYTES_ENV} must be a positive whole number of bytes, not {raw[:40]!r}"
        )
    return value


def load_manifests(root: Path, *, max_file_bytes: int | None = None) -> DesiredState:
    """Load and validate every manifest under ``root``; raise ``ManifestErrors`` on any problem.

    ``max_file_bytes`` defaults to ``SLOTKEEPER_MAX_MANIFEST_BYTES`` (4 MiB when unset; a bad
    value raises ``ConfigError``)."""
    limit = max_file_bytes_from_env() if max_file_bytes is None else max_file_bytes
    with fewer_collections():
        return _load_all(root, limit)


def _load_all(root: Path, limit: int) -> DesiredState:
    collector = _Collector()
    files, tree_errors = _scan(root)
    collector.errors.extend(tree_errors)
    refused = {error.file for error in tree_errors}
    for path in files:
        if path not in refused:
            _load_file(path, collector, max_file_bytes=limit)
    _check_references(collector)
    if collector.errors:
        raise ManifestErrors(collector.errors)
    return DesiredState(
        environments={name: spec for name, (spec, _) in collector.environments.items()},
        targets={name: spec for name, (spec, _) in collector.targets.items()},
        locations={
            **{name: loc for name, (_, loc) in collector.environments.items()},
            **{f"target/{name}": loc for name, (_, loc) in collector.targets.items()},
            **_slot_locations(collector),
        },
    )


def _slot_locations(collector: _Collector) -> dict[str, Location]:
    return {
        f"slot/{name}/{slot}": Location(
            file=declared.file,
            line=line_of(collector.environment_data[name], ("spec", "slots", slot), declared.line),
        )
        for name, (spec, declared) in collector.environments.items()
        for slot in spec.slots
    }


def check_refs(desired: DesiredState, revision: Revision | None) -> list[ManifestError]:
    """A slot mirrored to a target that deploys a git ref (GitHub) whose ref cannot be decided
    (see ``decide_ref``) is an error naming the slot, found before anything is sent rather than
    refused by GitHub (422) at apply time. Pure: ``revision`` is the manifests' git revision."""
    errors: list[ManifestError] = []
    for name in sorted(desired.environments):
        spec = desired.environments[name]
        targets = [desired.targets[t] for t in spec.targets if t in desired.targets]
        if not any(target.needs_git_ref for target in targets):
            continue
        for slot_name in sorted(spec.slots):
            decided = decide_ref(spec.slots[slot_name], spec, revision)
            if decided.ref is not None:
                continue
            location = desired.slot_location(name, slot_name)
            errors.append(
                ManifestError(
                    Path(location.file if location else f"environment {name}"),
                    location.line if location else None,
                    f"spec.slots.{slot_name}",
                    decided.reason,
                )
            )
    return errors


def _load_file(path: Path, collector: _Collector, *, max_file_bytes: int) -> None:
    def error(line: int | None, field_path: str | None, message: str) -> None:
        collector.errors.append(ManifestError(path, line, field_path, message))

    try:
        with path.open("rb") as stream:
            raw = stream.read(max_file_bytes + 1)
    except OSError as exc:
        error(None, None, f"cannot read: {exc.strerror or exc}")
        return
    if len(raw) > max_file_bytes:
        size = max(len(raw), _size(path))
        error(
            None,
            None,
            f"file is {size} bytes, over the limit of {max_file_bytes} "
            f"(set {MAX_FILE_BYTES_ENV} to change it)",
        )
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        error(raw.count(b"\n", 0, exc.start) + 1, None, f"not valid UTF-8 (byte {exc.start})")
        return
    try:
        documents, problems = parse_documents(text)
    except yaml.YAMLError as exc:
        line, message = describe_yaml_error(exc, text)
        error(line, None, message)
        return
    except YamlRefused as exc:
        error(exc.line, exc.path, exc.message)
        return
    for problem in problems:
        error(problem.line, problem.path, problem.message)
    if not documents:
        error(None, None, "holds no slotkeeper document (an empty manifest file is not allowed)")
    for document in documents:
        _load_document(path, document.data, document.line, collector)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _load_document(path: Path, data: Any, line: int, collector: _Collector) -> None:
    def error(at: int, field_path: str | None, message: str) -> None:
        collector.errors.append(ManifestError(path, at, field_path, message))

    if not isinstance(data, LineDict):
        error(line, None, f"a document must be a mapping with apiVersion: {API_VERSION}")
        return
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        at = line_of(data, ("apiVersion",), line)
        what = "is missing" if api_version is None else "is not supported"
        error(at, "apiVersion", f"{what}: a slotkeeper manifest needs apiVersion: {API_VERSION}")
        return
    kind = data.get("kind")
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        error(line_of(data, ("kind",), line), "kind", f"must be one of {', '.join(_KINDS)}")
        return
    try:
        # By alias only: the wire names are camelCase (deployKeys), as the JSON Schema says.
        document = model.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        for detail in exc.errors(include_input=False, include_url=False):
            loc = _without_union_tag(tuple(detail["loc"]), detail)
            at = line_of(data, loc, line)
            field_path, message = _describe(loc, detail)
            error(at, field_path, message)
        return
    location = Location(file=str(path), line=line)
    name_line = line_of(data, ("metadata", "name"), line)
    if isinstance(document, EnvironmentDocument):
        _add_environment(document, data, location, name_line, collector, error)
    else:
        _add_target(document, location, name_line, collector, error)


def _add_environment(
    document: EnvironmentDocument,
    data: LineDict,
    location: Location,
    name_line: int,
    collector: _Collector,
    error: Any,
) -> None:
    name = document.metadata.name
    if name in collector.environments:
        first = collector.environments[name][1]
        error(name_line, "metadata.name", f"environment {name!r} is already declared at {first}")
        return
    collector.environments[name] = (document.spec, location)
    for index, target in enumerate(document.spec.targets):
        at = line_of(data, ("spec", "targets", index), location.line)
        collector.target_refs.append((target, Location(file=location.file, line=at), name, index))
    collector.environment_data[name] = data


def _add_target(
    document: TargetDocument,
    location: Location,
    name_line: int,
    collector: _Collector,
    error: Any,
) -> None:
    name = document.metadata.name
    if name in collector.targets:
        first = collector.targets[name][1]
        error(name_line, "metadata.name", f"target {name!r} is already declared at {first}")
        return
    collector.targets[name] = (document.spec, location)


def _check_references(collector: _Collector) -> None:
    """Cross-document rules: target references resolve, keys and secret files are unique."""
    for target, location, environment, index in collector.target_refs:
        if target not in collector.targets:
            collector.errors.append(
                ManifestError(
                    Path(location.file),
                    location.line,
                    f"spec.targets[{index}]",
                    f"environment {environment!r} names target {target!r}, "
                    "which no Target document declares",
                )
            )
    keys: dict[tuple[str, str], tuple[str, Location]] = {}
    secret_files: dict[str, tuple[str, Location]] = {}
    for name, (spec, declared) in collector.environments.items():
        data = collector.environment_data[name]
        for index, key in enumerate(spec.deploy_keys):
            field_path = f"spec.deployKeys[{index}]"
            at = line_of(data, ("spec", "deployKeys", index), declared.line)
            location = Location(file=declared.file, line=at)
            identity = (key.repository, key.title)
            if identity in keys:
                first_env, first = keys[identity]
                collector.errors.append(
                    ManifestError(
                        Path(location.file),
                        location.line,
                        field_path,
                        f"deploy key {key.repository}/{key.title} is already declared "
                        f"in environment {first_env!r} at {first}",
                    )
                )
            keys.setdefault(identity, (name, location))
            if key.secret.file in secret_files:
                owner, first = secret_files[key.secret.file]
                file_at = line_of(data, ("spec", "deployKeys", index, "secret", "file"), at)
                collector.errors.append(
                    ManifestError(
                        Path(location.file),
                        file_at,
                        f"{field_path}.secret.file",
                        f"secret file {key.secret.file!r} is already used by deploy key "
                        f"{owner} at {first}",
                    )
                )
            secret_files.setdefault(key.secret.file, (f"{key.repository}/{key.title}", location))


def _without_union_tag(loc: tuple[int | str, ...], detail: ErrorDetails) -> tuple[int | str, ...]:
    """Pydantic puts a discriminated union's tag into the location; YAML has no such level."""
    if detail["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "type")
    if len(loc) >= 2 and loc[0] == "spec" and loc[1] in _TARGET_TYPES:
        return (loc[0], *loc[2:])
    return loc


def _describe(loc_in: tuple[int | str, ...], detail: ErrorDetails) -> tuple[str, str]:
    """A field path in YAML notation and a message a person can act on, from a pydantic error."""
    loc = list(loc_in)
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc.pop()
    field_path = ""
    for step in loc:
        if isinstance(step, int):
            field_path += f"[{step}]"
        else:
            field_path += f".{step}" if field_path else str(step)
    kind = detail["type"]
    message = detail["msg"]
    if kind == "string_pattern_mismatch":
        pattern = str(detail.get("ctx", {}).get("pattern", ""))
        message = _PATTERN_MESSAGES.get(pattern, message)
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "union_tag_invalid":
        expected = str(detail.get("ctx", {}).get("expected_tags", ""))
        message = f"must be one of {expected}"
    elif kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
    if is_key:
        message = f"name {message}"
    return field_path or "(document)", message


DOCUMENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Document)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one manifest document, for editors and other tools."""
    schema = DOCUMENT_ADAPTER.json_schema(by_alias=True)
    _keys_by_pattern(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "slotkeeper manifest document"
    return schema


def _keys_by_pattern(node: Any) -> None:
    """pydantic writes ``dict[Slug, X]`` as ``patternProperties``, which lets any other key pass;
    say what the validator means instead: every key matches the pattern, every value is an X."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in node:
            ((pattern, value),) = patterns.items()
            del node["patternProperties"]
            node["propertyNames"] = {"pattern": pattern}
            node["additionalProperties"] = value
        for child in node.values():
            _keys_by_pattern(child)
    elif isinstance(node, list):
        for child in node:
            _keys_by_pattern(child)
