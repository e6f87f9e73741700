"""BASELINE, not slotkeeper: the hand-written script slotkeeper is compared with.

This is what a team would otherwise write by hand to mirror its manifests to GitHub
deployments: read every ``kind: Environment`` document, and for each slot, one after the other,
create a deployment with PyGithub and post a ``success`` status on it. It is deliberately naive:

- sequential, one slot at a time, no concurrency;
- PyGithub with its defaults (``github.Github(auth=github.Auth.Token(...), base_url=...)``);
- no pacing of its own: no rate-limit headers read, no sleeps, no backoff beyond PyGithub's;
- no ledger: nothing remembers what was recorded before, so every run creates a deployment and
  a status for every slot, changed or not;
- on the first exception it stops and says where (a half-applied run is left as is).

One departure from the most naive version: the status is posted with ``auto_inactive=False``.
All the slots of an environment share its GitHub environment name, and GitHub's default
(``auto_inactive: true``) turns every earlier successful deployment of that environment
``inactive`` when the next slot's ``success`` lands (non-production environments only), so a run
would end with one ``success`` per environment instead of one per slot. slotkeeper sends
``auto_inactive: false`` too; with it both sides end in the same state. It changes no request
count or timing.

"PyGithub with its defaults" includes two behaviours a team gets without asking for them:

- retries: ``github.Github.default_retry`` is a ``github.GithubRetry.GithubRetry`` (a
  ``urllib3.util.Retry``) with urllib3's default ``total=10``. It retries 5xx and, for GET and
  POST, a 403 that carries ``Retry-After`` (sleeping that many seconds, urllib3's
  ``respect_retry_after_header``) or whose message says "rate limit" (sleeping
  ``secondary_rate_wait``, 60 s, or until ``X-RateLimit-Reset`` for the primary limit). The
  total is already bounded (10 retries per request, each sleep at most the server's
  ``Retry-After``), so this script passes no ``retry`` argument: a benchmark cannot hang forever
  with the default;
- throttling: ``seconds_between_requests=0.25`` and ``seconds_between_writes=1.0`` (the
  ``github.Consts.DEFAULT_SECONDS_BETWEEN_*`` values): PyGithub itself sleeps so that two writes
  start at least a second apart. ``--no-throttle`` passes ``None`` for both, as a team that
  found the default too slow would; it is the only knob this script offers.

Usage::

    GITHUB_TOKEN=... python -m tests.bench.baseline_pygithub --manifests DIR \\
        --base-url http://127.0.0.1:PORT [--limit N] [--no-throttle]

It prints one JSON object on stdout: ``slots`` (slots it set out to process: every slot in the
manifests, or ``--limit`` of them), ``deployments`` and ``statuses`` (created), ``stopped_at``
(0-based index of the slot it failed on, or null), ``error`` (short message, or null) and
``seconds`` (wall time). Exit code 0 when every slot was done, 1 when it stopped on an error,
2 on a usage error (no token, unreadable manifests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import github
import yaml

# yaml.safe_load_all with libyaml's loader when PyYAML was built with it
_Loader: type[yaml.CSafeLoader] | type[yaml.SafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

REF = "main"


@dataclass(frozen=True)
class Slot:
    environment: str
    repository: str  # owner/name
    name: str
    artifact: dict[str, Any]


def manifest_files(root: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` under ``root``, sorted, hidden files and directories skipped."""
    found = [
        path
        for path in root.rglob("*")
        if path.suffix in (".yaml", ".yml")
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return sorted(found)


def read_slots(root: Path) -> Iterator[Slot]:
    """The slots of every Environment document, in file order then manifest order."""
    for path in manifest_files(root):
        with path.open(encoding="utf-8") as stream:
            for document in yaml.load_all(stream, Loader=_Loader):
                if not isinstance(document, dict) or document.get("kind") != "Environment":
                    continue
                name = document["metadata"]["name"]
                spec = document["spec"]
                for slot_name, slot in (spec.get("slots") or {}).items():
                    yield Slot(name, spec["repository"], slot_name, dict(slot["artifact"]))


def short_error(exc: BaseException) -> str:
    """One line: the exception type, and the HTTP status and message when PyGithub has them."""
    if isinstance(exc, github.GithubException):
        data = exc.data
        message = data.get("message") if isinstance(data, dict) else data
        text = f"{type(exc).__name__}: {exc.status} {message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def run(
    slots: Sequence[Slot], base_url: str, token: str, *, throttle: bool = True
) -> dict[str, Any]:
    """Create a deployment and a success status per slot, in order; stop at the first error."""
    started = time.monotonic()
    options: dict[str, Any] = {}
    if not throttle:
        options.update(seconds_between_requests=None, seconds_between_writes=None)
    # lazy=True: get_repo builds the Repository without GET /repos/{owner}/{repo} (the
    # non-deprecated spelling of get_repo(name, lazy=True)).
    gh = github.Github(auth=github.Auth.Token(token), base_url=base_url, lazy=True, **options)
    repos: dict[str, Any] = {}
    deployments = statuses = 0
    stopped_at: int | None = None
    error: str | None = None
    try:
        for index, slot in enumerate(slots):
            try:
                repo = repos.get(slot.repository)
                if repo is None:
                    repo = repos[slot.repository] = gh.get_repo(slot.repository)
                artifact = slot.artifact
                deployment = repo.create_deployment(
                    ref=REF,
                    environment=slot.environment,
                    payload={"slot": slot.name, "artifact": artifact},
                    auto_merge=False,
                    required_contexts=[],
                    description=f"{slot.name}: {artifact.get('name')} {artifact.get('version')}",
                )
                deployments += 1
                deployment.create_status(
                    "success",
                    environment=slot.environment,
                    description=f"{artifact.get('version')} deployed"[:140],
                    auto_inactive=False,  # see the module docstring
                )
                statuses += 1
            except Exception as exc:  # a naive script stops at the first failure, whatever it is
                stopped_at, error = index, short_error(exc)
                print(
                    f"baseline: stopped at slot {index} ({slot.environment}/{slot.name} in "
                    f"{slot.repository}): {error}",
                    file=sys.stderr,
                )
                break
    finally:
        gh.close()
    return {
        "slots": len(slots),
        "deployments": deployments,
        "statuses": statuses,
        "stopped_at": stopped_at,
        "error": error,
        "seconds": round(time.monotonic() - started, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="BASELINE (not slotkeeper): sequential PyGithub deployments, no ledger."
    )
    parser.add_argument("--manifests", required=True, type=Path, help="directory of manifests")
    parser.add_argument("--base-url", required=True, help="GitHub API base URL")
    parser.add_argument("--limit", type=int, default=None, help="process at most N slots")
    parser.add_argument(
        "--no-throttle",
        action="store_true",
        help="turn PyGithub's default pacing off (seconds_between_requests/writes=None)",
    )
    args = parser.parse_args(argv)
    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        parser.error("GITHUB_TOKEN is not set")
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    if not args.manifests.is_dir():
        parser.error(f"{args.manifests} is not a directory")
    try:
        slots = list(read_slots(args.manifests))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        print(f"baseline: cannot read manifests: {short_error(exc)}", file=sys.stderr)
        return 2
    if args.limit is not None:
        slots = slots[: args.limit]
    summary = run(slots, args.base_url, token, throttle=not args.no_throttle)
    print(json.dumps(summary))
    return 0 if summary["stopped_at"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
