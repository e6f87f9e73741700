"""Writing promotions and rollbacks into the manifests: which files change and how (a
byte-preserving edit of each artifact, see :mod:`slotkeeper.manifestedit`), the diff a person
reads, the files written in place, and the git commit that says what moved."""

from __future__ import annotations

import difflib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from slotkeeper.errors import ConfigError
from slotkeeper.ledger import PromotionReads, StateReads
from slotkeeper.manifestedit import set_artifact
from slotkeeper.model import Artifact, DesiredState, EnvironmentSpec
from slotkeeper.promotion import Move, Stage, behind, candidates, decide, pipelines

GIT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Change:
    """The manifest files a set of moves changes: each with its text before and after."""

    moves: tuple[Move, ...]
    files: dict[Path, tuple[str, str]]

    def diff(self) -> str:
        """A unified diff of every changed file, as ``git diff`` shows it."""
        parts: list[str] = []
        for path, (before, after) in sorted(self.files.items()):
            parts.extend(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    after.splitlines(keepends=True),
                    fromfile=f"a/{str(path).lstrip('/')}",
                    tofile=f"b/{str(path).lstrip('/')}",
                )
            )
        return "".join(line if line.endswith("\n") else line + "\n" for line in parts)


def edit(desired: DesiredState, moves: Sequence[Move]) -> Change:
    """The files ``moves`` change, edited in memory (nothing is written)."""
    texts: dict[Path, tuple[str, str]] = {}
    for move in moves:
        location = desired.locations.get(move.environment)
        if location is None:
            raise ConfigError(f"environment {move.environment!r} is not in the manifests")
        path = Path(location.file)
        before, current = texts.get(path) or (_read(path),) * 2
        after = set_artifact(
            current,
            file=str(path),
            environment=move.environment,
            slot=move.slot,
            artifact=move.artifact,
        )
        texts[path] = (before, after)
    return Change(moves=tuple(moves), files={p: t for p, t in texts.items() if t[0] != t[1]})


def write(change: Change) -> None:
    """Write every changed file in place, each atomically (a crash leaves the old or the new
    file, never half of one), keeping its mode."""
    for path, (_, after) in change.files.items():
        mode = path.stat().st_mode & 0o7777
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                out.write(after)
            Path(temporary).chmod(mode)
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def message(verb: str, title: str, moves: Sequence[Move], *, forced: str | None = None) -> str:
    """A commit message: the subject says what moved where, the body one line per slot (with
    its source and the full artifact), and a forced change its reason and what it overrode."""
    names = ", ".join(f"{move.slot} {_short(move.artifact)}" for move in moves)
    subject = f"{verb} {title}: {names}"
    if len(subject) > 72:
        subject = f"{verb} {title}: {len(moves)} slot{'s' if len(moves) != 1 else ''}"
    body = [
        f"- {move.environment}/{move.slot}: "
        f"{move.previous.describe() if move.previous else '(none)'} -> {_full(move.artifact)} "
        f"(from {move.source})"
        for move in moves
    ]
    if forced is not None:
        body.append("")
        body.append(f"Forced: {forced}")
        body.extend(f"  held: {move.held}" for move in moves if move.held)
    return "\n".join([subject, "", *body]) + "\n"


def commit(root: Path, change: Change, text: str) -> str:
    """Commit the changed files (and only them) in the git work tree holding ``root``; the
    new commit's sha."""
    top = _git(root, "rev-parse", "--show-toplevel").strip()
    paths = [str(path.resolve().relative_to(Path(top).resolve())) for path in change.files]
    _git(Path(top), "add", "--", *paths)
    _git(Path(top), "commit", "-q", "-F", "-", "--", *paths, stdin=text)
    return _git(Path(top), "rev-parse", "HEAD").strip()


def is_clean(root: Path, paths: Sequence[Path]) -> bool:
    """Whether git holds ``paths`` exactly as they are on disk (nothing uncommitted to lose in
    a commit of the edit)."""
    top = Path(_git(root, "rev-parse", "--show-toplevel").strip())
    relative = [str(path.resolve().relative_to(top.resolve())) for path in paths]
    return not _git(top, "status", "--porcelain", "--", *relative).strip()


def _git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"git {args[0]} in {cwd}: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise ConfigError(f"git {args[0]} in {cwd} failed: {said[-1] if said else done.returncode}")
    return done.stdout


def _read(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()


def _short(artifact: Artifact) -> str:
    return artifact.version or (artifact.digest or "")[:19]


def _full(artifact: Artifact) -> str:
    text = artifact.name + (f" {artifact.version}" if artifact.version else "")
    return text + (f"@{artifact.digest}" if artifact.digest else "")


class _PipelineLedger(StateReads, PromotionReads, Protocol):
    """What reading the pipelines takes."""


def read_pipelines(
    environments: Mapping[str, EnvironmentSpec], ledger: _PipelineLedger, now: datetime
) -> dict[str, list[Stage]]:
    """Every slot's promotion pipeline as the ledger holds it now (see
    :func:`slotkeeper.promotion.pipelines`), each behind stage with its next move decided."""
    deployed = ledger.read_state().deployed
    moves = behind(environments, deployed)
    facts = ledger.promotion_evidence(candidates(moves)) if moves else {}
    return pipelines(environments, deployed, decide(moves, environments, facts, now))
