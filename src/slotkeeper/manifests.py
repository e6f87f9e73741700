"""Find, parse and validate manifest files into a :class:`DesiredState`.

Every YAML file under the manifest path (hidden directories and files skipped) must hold
slotkeeper documents: a stray or misspelt file is an error, never ignored, because an ignored
environment would look removed and be decommissioned. All problems of one load are collected and
raised together as :class:`ManifestErrors`, each naming file, line and field path.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from slotkeeper.errors import ConfigError, ManifestError, ManifestErrors
from slotkeeper.fanout import may_fork, split_map
from slotkeeper.lined import (
    LineDict,
    LineList,
    is_yaml_name,
    line_of,
    lined_to_plain,
    plain_to_lined,
)
from slotkeeper.model import (
    API_VERSION,
    DIGEST_PATTERN,
    DURATION_PATTERN,
    ENV_VAR_PATTERN,
    KEY_TITLE_PATTERN,
    REPOSITORY_PATTERN,
    SLUG_PATTERN,
    BrokenFile,
    DesiredState,
    EnvironmentDocument,
    EnvironmentSpec,
    KeySecret,
    Location,
    Revision,
    SinkPolicy,
    TargetDocument,
    TargetSpec,
    decide_ref,
    target_types,
)
from slotkeeper.notify.spec import NOTIFIER_TYPES, NotifierDocument, NotifierSpec

#: compared in lower case: ``prod.YAML`` is read like ``prod.yaml``, never silently skipped
DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILE_BYTES_ENV = "SLOTKEEPER_MAX_MANIFEST_BYTES"

#: a document model of the manifests or of the operator's targets file
DocumentModel = type[EnvironmentDocument] | type[TargetDocument] | type[NotifierDocument]

_KINDS: dict[str, DocumentModel] = {
    "Environment": EnvironmentDocument,
    "Target": TargetDocument,
    "Notifier": NotifierDocument,
}
#: the kinds each kind of file holds
_FILE_KINDS = {"Environment": ("Environment",), "Target": ("Target", "Notifier")}

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


#: the environment variable naming the operator's targets file (the ``--targets`` option)
TARGETS_ENV = "SLOTKEEPER_TARGETS"


@dataclass(frozen=True)
class OperatorTargets:
    """The targets the operator configured: where each one is and which credential it carries.

    They come from the operator's targets file (``--targets`` / ``SLOTKEEPER_TARGETS``), never
    from the manifests: whoever can push or open a pull request writes the manifests, so a
    manifest may only name a target (an environment's ``spec.targets``), never choose its URL or
    its credential."""

    #: the file or directory they were read from; None when the operator gave none
    source: Path | None = None
    specs: Mapping[str, TargetSpec] = field(default_factory=dict)
    locations: Mapping[str, Location] = field(default_factory=dict)
    #: where messages about transitions go (the targets file's Notifier documents)
    notifiers: Mapping[str, NotifierSpec] = field(default_factory=dict)
    #: where deploy keys may be delivered beyond the secrets directory (the operator's flags)
    sinks: SinkPolicy = field(default_factory=SinkPolicy)


#: no targets file: the ledger alone records; an environment naming a target is an error
NO_TARGETS = OperatorTargets()

_OPERATOR_KIND_IN_MANIFESTS = (
    "{kind} documents belong to the operator, not to the manifests (whoever can push writes "
    "those): move this one to the targets file given with --targets or " + TARGETS_ENV + "; "
    "an environment only names its targets in spec.targets"
)


@dataclass
class _Collector:
    """Accumulates documents and errors across files."""

    #: the document kinds these files may hold: Environment (manifests) or Target (targets file)
    kind: str = "Environment"
    #: the operator's targets, which the manifests' references must name
    operator: OperatorTargets = NO_TARGETS
    errors: list[ManifestError] = field(default_factory=list)
    environments: dict[str, tuple[EnvironmentSpec, Location]] = field(default_factory=dict)
    targets: dict[str, tuple[TargetSpec, Location]] = field(default_factory=dict)
    notifiers: dict[str, tuple[NotifierSpec, Location]] = field(default_factory=dict)
    #: (target name, where, environment name when known, index in spec.targets)
    target_refs: list[tuple[str, Location, str | None, int]] = field(default_factory=list)
    environment_data: dict[str, LineDict] = field(default_factory=dict)
    #: the line of each slot, by environment and slot
    slot_lines: dict[tuple[str, str], int] = field(default_factory=dict)


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
        if is_yaml_name(path):
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
                if is_yaml_name(entry) and not entry.is_dir():
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
        if not is_yaml_name(link):
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


def load_manifests(
    root: Path, *, max_file_bytes: int | None = None, targets: OperatorTargets = NO_TARGETS
) -> DesiredState:
    """Load and validate every manifest under ``root`` against the operator's ``targets``;
    raise ``ManifestErrors`` on any problem.

    ``max_file_bytes`` defaults to ``SLOTKEEPER_MAX_MANIFEST_BYTES`` (4 MiB when unset; a bad
    value raises ``ConfigError``)."""
    tree = read_tree(root, max_file_bytes=max_file_bytes)
    return parse(tree.files, errors=tree.errors, targets=targets)


@dataclass(frozen=True)
class ManifestTree:
    """The manifest files under one root, read into memory: what a load parses."""

    root: Path
    #: content of every readable YAML file, by its path (``root``/relative, as found)
    files: dict[Path, bytes]
    #: problems of the tree itself and of files that could not be read
    errors: tuple[ManifestError, ...] = ()

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, in POSIX form: the key a file is remembered by."""
        if path == self.root:
            return path.name
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def read_tree(root: Path, *, max_file_bytes: int | None = None) -> ManifestTree:
    """Read every manifest file under ``root`` (see ``find_manifest_files``) into memory."""
    limit = max_file_bytes_from_env() if max_file_bytes is None else max_file_bytes
    paths, errors = _scan(root)
    refused = {error.file for error in errors}
    files: dict[Path, bytes] = {}
    for path in paths:
        if path in refused:
            continue
        raw = _read_file(path, limit, errors)
        if raw is not None:
            files[path] = raw
    return ManifestTree(root=root, files=files, errors=tuple(errors))


def parse(
    files: Mapping[Path, bytes],
    *,
    errors: Iterable[ManifestError] = (),
    targets: OperatorTargets = NO_TARGETS,
    parse_cache: ParseCache | None = None,
) -> DesiredState:
    """Validate manifest contents (by the path they are reported under) into a DesiredState;
    raise ``ManifestErrors`` with every problem, ``errors`` (found while reading) included.
    The environments may only name the operator's ``targets``. With a ``parse_cache``, a file whose
    content it has seen is not parsed again."""
    collector = _Collector(operator=targets)
    collector.errors.extend(errors)
    ahead = _read_ahead(files, collector.kind, parse_cache)
    for path in sorted(files):
        # popped: a parse is let go once added (a plan keeps no file's lines it does not need)
        _parse_file(
            path, files[path], collector, parse_cache=parse_cache, ahead=ahead.pop(path, None)
        )
    _check_references(collector)
    if collector.errors:
        raise ManifestErrors(collector.errors)
    return DesiredState(
        environments={name: spec for name, (spec, _) in collector.environments.items()},
        targets=dict(targets.specs),
        sink_policy=targets.sinks,
        locations={
            **{name: loc for name, (_, loc) in collector.environments.items()},
            **{f"target/{name}": loc for name, loc in targets.locations.items()},
        },
        slot_lines=collector.slot_lines,
    )


def load_targets(source: Path) -> OperatorTargets:
    """The operator's targets file (or a directory of them: a mounted ConfigMap): Target and
    Notifier documents only; raise ``ManifestErrors`` naming file, line and field on any problem. An
    empty file configures no target."""
    tree = read_tree(source)
    collector = _Collector(kind="Target")
    collector.errors.extend(tree.errors)
    for path in sorted(tree.files):
        _parse_file(path, tree.files[path], collector, empty_ok=True)
    if collector.errors:
        raise ManifestErrors(collector.errors)
    return OperatorTargets(
        source=source,
        specs={name: spec for name, (spec, _) in sorted(collector.targets.items())},
        locations={name: location for name, (_, location) in collector.targets.items()},
        notifiers={name: spec for name, (spec, _) in sorted(collector.notifiers.items())},
    )


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


def load_tolerant(
    tree: ManifestTree,
    last_good: Callable[[], Mapping[str, bytes]],
    check: Callable[[DesiredState], list[ManifestError]] = lambda _: [],
    targets: OperatorTargets = NO_TARGETS,
    parse_cache: ParseCache | None = None,
) -> DesiredState:
    """Load ``tree`` even when some files are broken: each broken file is left out, or replaced
    by its last good version (``last_good()``: content by relative path, read only when needed).
    ``check`` adds rules beyond one file's schema (a GitHub slot must have a decidable ref): a
    file it finds fault with counts as broken too.

    The result lists the broken files in ``DesiredState.broken`` and the environments that only
    a last good version declares in ``stand_ins``: the planner blocks every removal outside the
    environments of valid files while anything is broken. A valid file that only fails because
    of a broken one (it names a target the broken file declared) counts as broken too.
    """

    def load(files: Mapping[Path, bytes], errors: Iterable[ManifestError] = ()) -> DesiredState:
        desired = parse(files, errors=errors, targets=targets, parse_cache=parse_cache)
        if found := check(desired):
            raise ManifestErrors(found)
        return desired

    try:
        return load(tree.files, tree.errors)
    except ManifestErrors as first:
        failed = first
    problems: dict[Path, list[str]] = {}
    broken: set[Path] = set()
    valid = dict(tree.files)
    desired = DesiredState(environments={}, targets=dict(targets.specs), sink_policy=targets.sinks)
    while True:  # every round drops at least one file, so this ends
        for error in failed.errors:
            broken.add(error.file)
            problems.setdefault(error.file, []).append(str(error))
        valid = {p: c for p, c in valid.items() if not _under_any(tree, p, broken)}
        try:
            desired = load(valid)
            break
        except ManifestErrors as exc:
            failed = exc
    stand_ins = {
        tree.root / relative: content
        for relative, content in sorted(last_good().items())
        if _under_any(tree, tree.root / relative, broken)
    }
    desired, stood_in = _with_stand_ins(desired, valid, stand_ins, load)
    return desired.model_copy(
        update={
            "broken": tuple(
                BrokenFile(
                    file=str(path),
                    errors=tuple(problems[path]),
                    last_good=path in stood_in,
                )
                for path in sorted(problems)
            ),
            "stand_ins": frozenset(
                name
                for name, location in desired.locations.items()
                if name in desired.environments and Path(location.file) in stood_in
            ),
        }
    )


def _under_any(tree: ManifestTree, path: Path, broken: set[Path]) -> bool:
    """Whether ``path`` is a broken file or lies under a broken directory (one that could not
    be listed, or a symlink out of the tree)."""
    relative = tree.relative(path)
    for entry in broken:
        known = tree.relative(entry)
        if relative == known or relative.startswith(known + "/"):
            return True
    return False


def _with_stand_ins(
    desired: DesiredState,
    valid: dict[Path, bytes],
    stand_ins: dict[Path, bytes],
    load: Callable[[Mapping[Path, bytes]], DesiredState],
) -> tuple[DesiredState, set[Path]]:
    """Add the last good versions of broken files to the valid ones: all together when they fit,
    else one by one, leaving out any that no longer fits (e.g. its environment moved to a valid
    file since)."""
    if not stand_ins:
        return desired, set()
    try:
        return load({**valid, **stand_ins}), set(stand_ins)
    except ManifestErrors:
        pass
    accepted: dict[Path, bytes] = {}
    for path, content in stand_ins.items():
        try:
            desired = load({**valid, **accepted, path: content})
        except ManifestErrors:
            continue
        accepted[path] = content
    return desired, set(accepted)


def _read_file(path: Path, max_file_bytes: int, errors: list[ManifestError]) -> bytes | None:
    try:
        with path.open("rb") as stream:
            raw = stream.read(max_file_bytes + 1)
    except OSError as exc:
        errors.append(ManifestError(path, None, None, f"cannot read: {exc.strerror or exc}"))
        return None
    if len(raw) > max_file_bytes:
        size = max(len(raw), _size(path))
        errors.append(
            ManifestError(
                path,
                None,
                None,
                f"file is {size} bytes, over the limit of {max_file_bytes} "
                f"(set {MAX_FILE_BYTES_ENV} to change it)",
            )
        )
        return None
    return raw


@dataclass(frozen=True)
class _Kept:
    """A valid Environment document of a file, as a stored parse holds it."""

    document: EnvironmentDocument
    data: LineDict  # without its slots (see ``_without_slots``)
    line: int
    name_line: int
    slots: dict[tuple[str, str], int]

    def plain(self) -> dict[str, Any]:
        return {
            "document": self.document.model_dump(mode="json", by_alias=True),
            "data": lined_to_plain(self.data),
            "line": self.line,
            "name_line": self.name_line,
            "slots": [[slot, line] for (_, slot), line in self.slots.items()],
        }


@dataclass(frozen=True)
class _FileResult:
    """What one file contributes to a load, worked out from its content alone: its own errors,
    and the steps that add its documents to the load (which depend on the other files: a name
    declared twice, references). Immutable, so a file whose content did not change reuses it."""

    errors: tuple[ManifestError, ...]
    steps: tuple[Callable[[_Collector], None], ...]
    #: the valid Environment documents, to be stored (None: the file cannot be, e.g. it has
    #: errors, or it is not a manifest file)
    kept: tuple[_Kept, ...] | None = None

    def apply(self, collector: _Collector) -> None:
        collector.errors.extend(self.errors)
        for step in self.steps:
            step(collector)


class ParseCache:
    """Each file's parse and validation, by path, content digest and the kind of file: a file
    that did not change is not parsed again. The daemon keeps one across its reconciles; what a
    load did not use is dropped at its end, so the cache holds one version of each file.

    ``stored``: parses kept in the ledger by an earlier apply (:func:`stored_parse`), by content
    digest: a manifest file whose content has one is validated from it instead of parsed (the
    same documents, lines and errors; validated again, so a stored parse can say nothing a
    manifest could not). A stored parse that no longer validates is ignored."""

    def __init__(self, stored: Mapping[str, str] | None = None) -> None:
        self._stored = stored or {}
        self._keep_fresh = stored is not None
        #: the storable parses of manifest files this cache parsed, by content digest (with
        #: ``stored`` only: what an apply stores next)
        self.fresh: dict[str, tuple[_Kept, ...]] = {}
        self._entries: dict[tuple[Path, str, str, bool], _FileResult] = {}
        self._used: set[tuple[Path, str, str, bool]] = set()
        #: files reused and parsed since the last ``forget_unused``
        self.hits = self.misses = 0
        self._parsed: set[Path] = set()
        #: the files the last load parsed (new, or changed since the load before)
        self.last_parsed: frozenset[Path] = frozenset()

    def needs(self, path: Path, raw: bytes, kind: str, empty_ok: bool) -> bool:
        """Whether ``result`` would parse this file (it has neither a parse nor a stored one)."""
        digest = hashlib.sha256(raw).hexdigest()
        if (path, digest, kind, empty_ok) in self._entries:
            return False
        return not (kind == "Environment" and digest in self._stored)

    def result(
        self, path: Path, raw: bytes, kind: str, empty_ok: bool, ahead: _FileResult | None = None
    ) -> _FileResult:
        """The file's parse: kept, stored, or made now (``ahead``: made already)."""
        digest = hashlib.sha256(raw).hexdigest()
        key = (path, digest, kind, empty_ok)
        self._used.add(key)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found
        if kind == "Environment" and (stored := self._stored.get(digest)) is not None:
            found = _from_stored(path, stored)
            if found is not None:
                self.hits += 1
                self._entries[key] = found
                return found
        self.misses += 1
        self._parsed.add(path)
        if ahead is None:
            ahead = _read_documents(path, raw, kind, empty_ok=empty_ok)
        found = self._entries[key] = ahead
        if found.kept is not None and self._keep_fresh:
            self.fresh[digest] = found.kept
        return found

    def forget_unused(self) -> tuple[int, int]:
        """Drop what the last load did not use (older versions, deleted files); the files it
        reused and parsed (and count from zero again)."""
        self._entries = {key: value for key, value in self._entries.items() if key in self._used}
        self._used = set()
        self.last_parsed, self._parsed = frozenset(self._parsed), set()
        counts, self.hits, self.misses = (self.hits, self.misses), 0, 0
        return counts


#: what a stored parse is valid for: this slotkeeper's manifest model and parser, by digest of
#: their source (a new version, or a changed model, parses again)
PARSE_FORMAT = hashlib.sha256(
    b"".join(
        (Path(__file__).parent / name).read_bytes()
        for name in ("model.py", "manifests.py", "yamlsource.py", "lined.py")
    )
).hexdigest()[:16]


def stored_parse(kept: tuple[_Kept, ...]) -> str | None:
    """A manifest file's valid documents as the ledger keeps them (None when they hold a
    value JSON cannot, e.g. a YAML timestamp: such a file is parsed every time)."""
    try:
        return json.dumps([one.plain() for one in kept], separators=(",", ":"))
    except TypeError:
        return None


def storable(cache: ParseCache) -> dict[str, str]:
    """What the ledger stores of the files ``cache`` parsed, by content digest."""
    return {digest: text for digest, kept in cache.fresh.items() if (text := stored_parse(kept))}


def _from_stored(path: Path, stored: str) -> _FileResult | None:
    """A file's result from its stored parse (None: it does not validate any more)."""
    steps: list[Callable[[_Collector], None]] = []
    kept: list[_Kept] = []
    try:
        for plain in json.loads(stored):
            document = EnvironmentDocument.model_validate(
                plain["document"], by_alias=True, by_name=False
            )
            data = plain_to_lined(plain["data"])
            name = document.metadata.name
            slots = {(name, slot): line for slot, line in plain["slots"]}
            location = Location(file=str(path), line=plain["line"])
            kept.append(_Kept(document, data, plain["line"], plain["name_line"], slots))
            steps.append(
                partial(_add_step, path, document, data, location, plain["name_line"], slots)
            )
    except (ValueError, KeyError, TypeError):  # pydantic's ValidationError is a ValueError
        return None
    return _FileResult((), tuple(steps), tuple(kept))


def _parse_file(
    path: Path,
    raw: bytes,
    collector: _Collector,
    *,
    empty_ok: bool = False,
    parse_cache: ParseCache | None = None,
    ahead: _FileResult | None = None,
) -> None:
    if parse_cache is not None:
        found = parse_cache.result(path, raw, collector.kind, empty_ok, ahead)
    else:
        found = (
            ahead
            if ahead is not None
            else _read_documents(path, raw, collector.kind, empty_ok=empty_ok)
        )
    found.apply(collector)


#: the bytes of manifests to parse from which a second processor takes half of them: below,
#: forking a worker and sending its results back would cost about what it saves
READ_AHEAD_BYTES = 1_000_000


def _read_ahead(
    files: Mapping[Path, bytes], kind: str, parse_cache: ParseCache | None
) -> dict[Path, _FileResult]:
    """The parses of the files a load must parse, made ahead in two processes (see
    :mod:`slotkeeper.fanout`); nothing when there is too little to parse or no worker may be
    forked (the daemon): each file is then parsed in turn, as without this, and no file's
    digest is taken twice on the daemon's path."""
    if sum(map(len, files.values())) < READ_AHEAD_BYTES or not may_fork():
        return {}
    todo = [
        (path, raw, kind)
        for path, raw in sorted(files.items())
        if parse_cache is None or parse_cache.needs(path, raw, kind, False)
    ]
    if sum(len(raw) for _, raw, _ in todo) < READ_AHEAD_BYTES:
        return {}
    results = split_map(
        _read_one, todo, weight=lambda item: len(item[1]), worth=0, ship=_shipped, land=_landed
    )
    return {path: result for (path, _, _), result in zip(todo, results, strict=True)}


def _read_one(item: tuple[Path, bytes, str]) -> _FileResult:
    path, raw, kind = item
    return _read_documents(path, raw, kind, empty_ok=False)


def _shipped(item: tuple[Path, bytes, str]) -> str | None:
    """A file's parse in the worker, sent back as its stored parse (JSON: quick to send and
    to validate again, see ``stored_parse``); None for one that has none (errors, another
    kind of file, a value JSON cannot hold), which is parsed here."""
    result = _read_one(item)
    return stored_parse(result.kept) if item[2] == "Environment" and result.kept else None


def _landed(item: tuple[Path, bytes, str], shipped: str | None) -> _FileResult:
    """What ``_shipped`` sent back, as the file's parse (the same as ``_read_one`` gives)."""
    landed = _from_stored(item[0], shipped) if shipped is not None else None
    return landed if landed is not None else _read_one(item)


def _read_documents(path: Path, raw: bytes, kind: str, *, empty_ok: bool) -> _FileResult:
    errors: list[ManifestError] = []
    steps: list[Callable[[_Collector], None]] = []

    def error(line: int | None, field_path: str | None, message: str) -> None:
        errors.append(ManifestError(path, line, field_path, message))

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        error(raw.count(b"\n", 0, exc.start) + 1, None, f"not valid UTF-8 (byte {exc.start})")
        return _FileResult(tuple(errors), ())
    # the parser (and PyYAML) is imported by the first file that is parsed: a load whose files
    # all have a stored parse (a plan with nothing new) never needs it
    import yaml

    from slotkeeper.yamlsource import YamlRefused, describe_yaml_error, parse_documents

    try:
        documents, problems = parse_documents(text)
    except yaml.YAMLError as exc:
        line, message = describe_yaml_error(exc, text)
        error(line, None, message)
        return _FileResult(tuple(errors), ())
    except YamlRefused as exc:
        error(exc.line, exc.path, exc.message)
        return _FileResult(tuple(errors), ())
    for problem in problems:
        error(problem.line, problem.path, problem.message)
    if not documents and not empty_ok:
        error(None, None, "holds no slotkeeper document (an empty manifest file is not allowed)")
    kept: list[_Kept] = []
    for document in documents:
        _load_document(path, document.data, document.line, kind, errors, steps, kept)
    storable = kind == "Environment" and not errors and len(kept) == len(steps)
    return _FileResult(tuple(errors), tuple(steps), tuple(kept) if storable else None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _load_document(
    path: Path,
    data: Any,
    line: int,
    kind_of_file: str,
    errors: list[ManifestError],
    steps: list[Callable[[_Collector], None]],
    kept: list[_Kept] | None = None,
) -> None:
    def error(at: int, field_path: str | None, message: str) -> None:
        errors.append(ManifestError(path, at, field_path, message))

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
    if kind not in _FILE_KINDS[kind_of_file]:
        at = line_of(data, ("kind",), line)
        if kind_of_file == "Environment":
            error(at, "kind", _OPERATOR_KIND_IN_MANIFESTS.format(kind=kind))
        else:
            error(at, "kind", "the targets file holds Target and Notifier documents only")
        return
    try:
        # By alias only: the wire names are camelCase (deployKeys), as the JSON Schema says.
        document = model.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        details = _optional_branches(exc.errors(include_input=False, include_url=False))
        for detail in details:
            loc = _without_union_tag(tuple(detail["loc"]), detail)
            at = line_of(data, loc, line)
            field_path, message = _describe(loc, detail)
            if detail["type"] == "extra_forbidden":
                message = _unknown_field(model, tuple(detail["loc"]))
            error(at, field_path, message)
        where = Location(file=str(path), line=line)
        steps.append(partial(_salvage_step, model, data, details, where))
        return
    location = Location(file=str(path), line=line)
    name_line = line_of(data, ("metadata", "name"), line)
    slots = {}
    if isinstance(document, EnvironmentDocument):
        slots = _slot_lines(document, data, line)
        data = _without_slots(data)  # what a parse cache keeps holds no slot twice
        if kept is not None:
            kept.append(_Kept(document, data, line, name_line, slots))
    steps.append(partial(_add_step, path, document, data, location, name_line, slots))


def _slot_lines(
    document: EnvironmentDocument, data: LineDict, line: int
) -> dict[tuple[str, str], int]:
    """The line of each slot of an Environment document (worked out once per file content: a
    parse cache keeps it)."""
    name = document.metadata.name
    return {
        (name, slot): line_of(data, ("spec", "slots", slot), line) for slot in document.spec.slots
    }


def _salvage_step(
    model: DocumentModel,
    data: LineDict,
    details: list[ErrorDetails],
    location: Location,
    collector: _Collector,
) -> None:
    _salvage_references(model, data, details, location, collector)


def _add_step(
    path: Path,
    document: EnvironmentDocument | TargetDocument | NotifierDocument,
    data: LineDict,
    location: Location,
    name_line: int,
    slots: dict[tuple[str, str], int],
    collector: _Collector,
) -> None:
    """Add a valid document to the load: names are unique across files."""

    def error(at: int, field_path: str | None, message: str) -> None:
        collector.errors.append(ManifestError(path, at, field_path, message))

    if isinstance(document, EnvironmentDocument):
        if _add_environment(document, data, location, name_line, collector, error):
            collector.slot_lines.update(slots)
    elif isinstance(document, NotifierDocument):
        _add_named("notifier", collector.notifiers, document, location, name_line, error)
    else:
        _add_named("target", collector.targets, document, location, name_line, error)


def _add_environment(
    document: EnvironmentDocument,
    data: LineDict,
    location: Location,
    name_line: int,
    collector: _Collector,
    error: Any,
) -> bool:
    """Add an environment unless its name is taken (then say where); whether it was added."""
    name = document.metadata.name
    if name in collector.environments:
        first = collector.environments[name][1]
        error(name_line, "metadata.name", f"environment {name!r} is already declared at {first}")
        return False
    collector.environments[name] = (document.spec, location)
    for index, target in enumerate(document.spec.targets):
        at = line_of(data, ("spec", "targets", index), location.line)
        collector.target_refs.append((target, Location(file=location.file, line=at), name, index))
    collector.environment_data[name] = data  # without its slots (``_load_document``)
    return True


def _without_slots(data: LineDict) -> LineDict:
    """An Environment document's data for the checks across files (deploy keys, promotion),
    without its slots: each slot's line is kept already (``_slot_lines``), and the slots
    are nearly all of a large estate's documents, which a load would otherwise hold to its end."""
    spec = data.get("spec")
    if not isinstance(spec, LineDict) or "slots" not in spec:
        return data
    kept = LineDict((key, value) for key, value in spec.items() if key != "slots")
    kept.line, kept.key_lines = spec.line, spec.key_lines
    pruned = LineDict(data)
    pruned.line, pruned.key_lines = data.line, data.key_lines
    pruned["spec"] = kept
    return pruned


def _add_named(
    what: str,
    table: dict[str, tuple[Any, Location]],
    document: TargetDocument | NotifierDocument,
    location: Location,
    name_line: int,
    error: Any,
) -> None:
    """Keep an operator's target or notifier under its name, once."""
    name = document.metadata.name
    if name in table:
        first = table[name][1]
        error(name_line, "metadata.name", f"{what} {name!r} is already declared at {first}")
        return
    table[name] = (document.spec, location)


def _salvage_references(
    model: DocumentModel,
    data: LineDict,
    details: list[ErrorDetails],
    location: Location,
    collector: _Collector,
) -> None:
    """What the references check needs from an Environment that failed validation, read from
    its raw data, so that one run reports every error: its target names (those that are
    themselves valid names)."""
    if model is not EnvironmentDocument:
        return
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, LineDict) else None
    name = name if isinstance(name, str) else None
    spec = data.get("spec")
    targets = spec.get("targets") if isinstance(spec, LineDict) else None
    if not isinstance(targets, LineList):
        return
    # A name that is itself refused (not a valid name) is reported once, as that.
    refused = {
        detail["loc"][2]
        for detail in details
        if detail["loc"][:2] == ("spec", "targets") and len(detail["loc"]) > 2
    }
    for index, target in enumerate(targets):
        if isinstance(target, str) and index not in refused:
            at = line_of(data, ("spec", "targets", index), location.line)
            collector.target_refs.append(
                (target, Location(file=location.file, line=at), name, index)
            )


def _check_references(collector: _Collector) -> None:
    """Cross-document rules: target references name the operator's targets, keys and secret
    files are unique."""
    target_names = set(collector.operator.specs)
    source = collector.operator.source
    where = (
        f"the targets file {source} does not configure it"
        if source is not None
        else f"no targets file is given (--targets or {TARGETS_ENV})"
    )
    for target, location, environment, index in collector.target_refs:
        if target not in target_names:
            who = f"environment {environment!r}" if environment else "this environment"
            collector.errors.append(
                ManifestError(
                    Path(location.file),
                    location.line,
                    f"spec.targets[{index}]",
                    f"{who} names target {target!r}, which the operator has not configured: "
                    + where
                    + _did_you_mean(target, sorted(target_names)),
                )
            )
    _check_promotions(collector)
    keys: dict[tuple[str, str], tuple[str, Location]] = {}
    sinks: dict[str, tuple[str, Location]] = {}
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
            for number, sink in enumerate(key.sinks):
                base = ("secret",) if key.secret is not None else ("secrets", number)
                kind, detail = _sink_fields(sink)
                sink_field = (
                    f"{field_path}.secret"
                    if key.secret is not None
                    else f"{field_path}.secrets[{number}]"
                )
                kind_at = line_of(data, ("spec", "deployKeys", index, *base, kind), at)
                for problem in collector.operator.sinks.refusals(sink):
                    detail_at = line_of(
                        data, ("spec", "deployKeys", index, *base, kind, detail), kind_at
                    )
                    collector.errors.append(
                        ManifestError(
                            Path(location.file), detail_at, f"{sink_field}.{kind}.{detail}", problem
                        )
                    )
                owner = f"{key.repository}/{key.title}"
                if sink.label in sinks:
                    other, first = sinks[sink.label]
                    collector.errors.append(
                        ManifestError(
                            Path(location.file),
                            kind_at,
                            f"{sink_field}.{kind}",
                            f"{_sink_words(sink)} is already used by deploy key {other} at {first}",
                        )
                    )
                sink_where = Location(file=location.file, line=kind_at)
                sinks.setdefault(sink.label, (owner, sink_where))


def _check_promotions(collector: _Collector) -> None:
    """Promotion policies name a declared upstream environment (not themselves, no cycle), and
    required targets that environment is mirrored to."""
    environments = collector.environments
    for name, (spec, declared) in sorted(environments.items()):
        if spec.promotion is None:
            continue
        data = collector.environment_data[name]
        for path, message in _promotion_problems(name, spec, environments):
            at = line_of(data, ("spec", *path), declared.line)
            field_path = "spec." + ".".join(str(part) for part in path)
            collector.errors.append(ManifestError(Path(declared.file), at, field_path, message))


def _promotion_problems(
    name: str, spec: EnvironmentSpec, environments: Mapping[str, tuple[EnvironmentSpec, Location]]
) -> list[tuple[tuple[str, ...], str]]:
    policy = spec.promotion
    assert policy is not None
    if policy.from_ == name:
        return [(("promotion", "from"), f"{name!r} cannot be promoted from itself")]
    upstream = environments.get(policy.from_)
    if upstream is None:
        known = sorted(environments)
        return [
            (
                ("promotion", "from"),
                f"no environment {policy.from_!r} is declared" + _did_you_mean(policy.from_, known),
            )
        ]
    problems: list[tuple[tuple[str, ...], str]] = []
    seen = [name]
    step: str | None = policy.from_
    while step is not None and step not in seen:
        seen.append(step)
        found = environments.get(step)
        step = found[0].promotion.from_ if found and found[0].promotion else None
    if step is not None:
        circle = " <- ".join([*seen, step])
        problems.append((("promotion", "from"), f"promotion goes round in a circle: {circle}"))
    rules: list[tuple[tuple[str, ...], list[str]]] = [
        (("promotion", "requireTargets"), policy.require_targets)
    ]
    for slot_name, slot in sorted(spec.slots.items()):
        if slot.promotion is not None and slot.promotion.require_targets is not None:
            at = ("slots", slot_name, "promotion", "requireTargets")
            rules.append((at, slot.promotion.require_targets))
    offered = upstream[0].targets
    for path, required in rules:
        problems.extend(
            (
                path,
                f"target {target!r} is not one of {policy.from_!r}'s targets "
                f"({', '.join(offered) or 'none'})",
            )
            for target in required
            if target not in offered
        )
    return problems


def _sink_fields(sink: KeySecret) -> tuple[str, str]:
    """The wire name of a place's kind, and of the field an operator's refusal concerns."""
    if sink.kubernetes is not None:
        return "kubernetes", "namespace"
    if sink.github_actions is not None:
        return "githubActions", "repository"
    return "file", "file"


def _sink_words(sink: KeySecret) -> str:
    if sink.file is not None:
        return f"secret file {sink.file!r}"
    return sink.label


def _did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``name``, else nothing."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_field(model: DocumentModel, loc: tuple[int | str, ...]) -> str:
    """The message for a field the model does not have at ``loc`` (pydantic's location, with a
    union's tag): its name, and the wire name it is probably a misspelling of."""
    name = str(loc[-1])
    root = _document_schema(model, target_types())
    allowed = _field_names(_schema_at(root, loc[:-1]), root)
    return f"unknown field {name!r}" + _did_you_mean(name, sorted(allowed))


@cache
def _document_schema(model: DocumentModel, types: tuple[str, ...]) -> dict[str, Any]:
    """The model's JSON Schema while ``types`` are the known target types (a key of the cache:
    the schema of a Target document changes with them)."""
    return model.model_json_schema(by_alias=True)


def _schema_at(root: dict[str, Any], loc: tuple[int | str, ...]) -> dict[str, Any]:
    """The JSON Schema of what sits at ``loc`` in a document ({} when the schema cannot say)."""
    node = root
    for step in loc:
        found = _schema_child(node, step, root)
        if found is None:
            return {}
        node = _deref(found, root)
    return node


def _schema_child(node: dict[str, Any], step: int | str, root: dict[str, Any]) -> Any:
    node = _deref(node, root)
    tags = node.get("discriminator", {}).get("mapping", {})
    if step in tags:  # pydantic names a tagged union's member by its tag
        return _deref({"$ref": tags[step]}, root)
    if isinstance(step, int) and "items" in node:
        return node["items"]
    if isinstance(step, str):
        if step in node.get("properties", {}):
            return node["properties"][step]
        # a mapping of names to values (slots): every key leads to the same schema
        patterns = node.get("patternProperties")
        if patterns:
            return next(iter(patterns.values()))
        if isinstance(node.get("additionalProperties"), dict):
            return node["additionalProperties"]
    for branch in (*node.get("anyOf", ()), *node.get("oneOf", ())):
        found = _schema_child(branch, step, root)
        if found is not None:
            return found
    return None


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][str(node["$ref"]).rsplit("/", 1)[-1]]
    return node


def _field_names(node: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """The field names a schema node allows (those of every branch of a union)."""
    node = _deref(node, root)
    names = set(node.get("properties", {}))
    for branch in (*node.get("anyOf", ()), *node.get("oneOf", ())):
        names |= _field_names(branch, root)
    return names


def _optional_branches(details: list[ErrorDetails]) -> list[ErrorDetails]:
    """pydantic checks an optional model field (``SecretRef | None``) as a union of two
    branches: a wrong value is reported twice, once as "should be None", and the other error's
    location names the branch (``token.function-after[...]``). One error, at the field."""
    optional = {
        tuple(d["loc"][:-1])
        for d in details
        if d["type"] == "none_required" and d["loc"] and d["loc"][-1] == "none"
    }
    if not optional:
        return details
    kept: list[ErrorDetails] = []
    for detail in details:
        loc = tuple(detail["loc"])
        if detail["type"] == "none_required" and loc[:-1] in optional:
            continue
        for prefix in optional:
            if len(loc) > len(prefix) and loc[: len(prefix)] == prefix:
                loc = prefix + loc[len(prefix) + 1 :]
                break
        kept.append({**detail, "loc": loc})
    return kept


def _without_union_tag(loc: tuple[int | str, ...], detail: ErrorDetails) -> tuple[int | str, ...]:
    """Pydantic puts a discriminated union's tag into the location; YAML has no such level."""
    if detail["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "type")
    if len(loc) >= 2 and loc[0] == "spec" and loc[1] in (*target_types(), *NOTIFIER_TYPES):
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


def json_schema(kind: str = "Environment") -> dict[str, Any]:
    """The JSON Schema of one manifest document (``Environment``) or of one document of the
    operator's targets file (``Target``), for editors and other tools.

    Shaped so that one mistake is one error in an editor: a validator reports every failing
    branch of an ``anyOf``/``oneOf`` (an unquoted ``version: 1.10`` failed both "string" and
    "null"; a typo in a target failed all four target types), so optional values are a list of
    types instead, and the target type selects its fields with ``if``/``then``. Every field
    carries its description (from ``model.py``) for the editor's hover.
    """
    schema = TypeAdapter(_KINDS[kind]).json_schema(by_alias=True)
    _keys_by_pattern(schema)
    _nullable_as_types(schema)
    _tagged_unions_as_if_then(schema)
    _without_field_titles(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = {
        "Environment": "slotkeeper manifest document",
        "Target": "slotkeeper target document",
        "Notifier": "slotkeeper notifier document",
    }[kind]
    return schema


#: keywords that only ever constrain a value of their own JSON type (a null passes them all)
_TYPE_BOUND_KEYWORDS = frozenset(
    {
        "type",
        "pattern",
        "minLength",
        "maxLength",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "additionalProperties",
        "propertyNames",
        "required",
    }
)


def _nullable_as_types(node: Any) -> None:
    """pydantic writes ``X | None`` as ``anyOf: [X, {type: null}]``; where X's keywords bind only
    its own type, ``{...X, type: [X's type, null]}`` means the same with one error, not two."""
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
            [value] = [branch for branch in branches if branch != {"type": "null"}]
            if isinstance(value.get("type"), str) and set(value) <= _TYPE_BOUND_KEYWORDS:
                del node["anyOf"]
                node.update(value, type=[value["type"], "null"])
        for child in node.values():
            _nullable_as_types(child)
    elif isinstance(node, list):
        for child in node:
            _nullable_as_types(child)


def _tagged_unions_as_if_then(node: Any) -> None:
    """pydantic writes a tagged union (the target ``type``) as a ``oneOf`` with an OpenAPI
    ``discriminator``, which JSON Schema validators do not read: they try every branch and report
    the failures of all. Select the branch by the tag with ``if``/``then`` instead, so only the
    chosen type's rules apply; an unknown tag is one ``enum`` error. (The ``discriminator`` stays
    for OpenAPI-minded tools.)"""
    if isinstance(node, dict):
        tag = node.get("discriminator")
        if isinstance(tag, dict) and "oneOf" in node:
            name, mapping = str(tag["propertyName"]), dict(tag["mapping"])
            del node["oneOf"]
            node["type"] = "object"
            node["required"] = [name]
            node["properties"] = {
                name: {
                    "enum": list(mapping),
                    "description": f"Which kind this is ({', '.join(mapping)}): it decides "
                    "the other fields.",
                }
            }
            node["allOf"] = [
                {
                    "if": {"properties": {name: {"const": value}}, "required": [name]},
                    "then": {"$ref": ref},
                }
                for value, ref in mapping.items()
            ]
        for child in node.values():
            _tagged_unions_as_if_then(child)
    elif isinstance(node, list):
        for child in node:
            _tagged_unions_as_if_then(child)


def _without_field_titles(node: Any) -> None:
    """Leave out the title pydantic derives from each Python field name ("Deploykeys" for
    ``deployKeys``): an editor shows it as the field's heading, and the description says more."""
    if isinstance(node, dict):
        for child in node.get("properties", {}).values():
            if isinstance(child, dict):
                child.pop("title", None)
        for child in node.values():
            _without_field_titles(child)
    elif isinstance(node, list):
        for child in node:
            _without_field_titles(child)


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
