"""iftrue (DORA tracking): one deployment event per new record, fed by git history.

Mapping (tests/fakes/specs/API-REFERENCE.md, section 4): ``POST /v1/organization/deployment`` with
``title`` (environment/slot and version), ``branch`` and ``commit_id`` of the revision that
declared the record, ``repository_url`` and ``member_id`` from the target, the pull request number
(from a merge commit "Merge pull request #N" or a squash subject ending "(#N)"; 0 when there is
none, which the plan's sync detail says), ``deployment_duration`` in minutes (the lead time from
the commit to the record), ``deployment_node_id`` (the GitHub deployment's node id when a github
target recorded the same record; iftrue requires it of a repository on GitHub, so for such a
repository the event waits until a github target, which the plan calls first, has the
deployment), ``commits_count`` and ``changelog`` (the commit subjects since
the revision of the record it supersedes), ``is_fix`` / ``is_hotfix`` (conventional-commit
prefixes ``fix:`` / ``hotfix:`` or the slot annotations ``fix`` / ``hotfix`` set to "true"), and
``status`` in that API's own spelling (``succes``).

iftrue documents no idempotency and no way to list what was recorded: every POST makes a new
record. So a POST is journaled before it is sent, retried only when the answer proves nothing
was recorded (a refusal, a 5xx, a connection never made), and when its outcome is unknown (a
timeout after sending, a crash) it is reported and never sent again by itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from slotkeeper import observability as obs
from slotkeeper.errors import PermanentTargetError, UnknownOutcome
from slotkeeper.model import IftrueTargetSpec, RemoteState, SyncStatus, TargetSync, fix_kind
from slotkeeper.targets.base import RecordsOnly, RecordSubject, Remote
from slotkeeper.targets.http import bearer_api

SUCCESS = "succes"  # sic: the API's own spelling
_PR_MERGE = re.compile(r"^Merge pull request #(\d+)")
_PR_SQUASH = re.compile(r"\(#(\d+)\)\s*$")
UNKNOWN = "unknown"
#: hosts whose repositories iftrue knows as GitHub's ("deployment_node_id ... Required for GitHub")
GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})


def pull_request_number(subject: str) -> int | None:
    """The PR number a merge or squash commit subject names, if any."""
    for pattern in (_PR_MERGE, _PR_SQUASH):
        match = pattern.search(subject)
        if match:
            return int(match.group(1))
    return None


class IftrueTarget(RecordsOnly):
    """The ``iftrue`` target."""

    spec_class = IftrueTargetSpec

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        token: str,
        member_id: str,
        repository_url: str,
        timeout: float = 10.0,
        max_rate_wait: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._member_id = member_id
        self._repository_url = repository_url
        self._api = bearer_api(
            name,
            base_url,
            token,
            timeout=timeout,
            max_rate_wait=max_rate_wait,
            clock=clock,
            five_hundred_means_not_done=True,
            may_write=may_write,
        )

    def close(self) -> None:
        self._api.close()

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote:
        if want is not RemoteState.ACTIVE:
            # A tracked deployment stays tracked: there is nothing to retire on iftrue.
            return Remote(current.remote_id if current else None, want)
        if current is not None and current.remote_id is not None:
            return Remote(current.remote_id, RemoteState.ACTIVE, detail=current.remote_detail)
        if current is not None and _outcome_unknown(current):
            raise PermanentTargetError(
                f"{self.name}: an earlier POST for {subject.record.environment}/"
                f"{subject.record.slot} may have been recorded (its answer was lost); not sent "
                "again to avoid a duplicate — check iftrue",
                detail={"outcome": UNKNOWN},
            )
        body, notes = self._event(subject)
        try:
            answer = self._api.send(
                "POST",
                "v1/organization/deployment",
                json=body,
                write=True,
                idempotent=False,
                accept=(200, 201),
            ).json()
        except UnknownOutcome as exc:
            raise UnknownOutcome(
                str(exc), http_status=exc.http_status, detail={"outcome": UNKNOWN}
            ) from exc
        remote_id = str((answer or {}).get("id") or "") or None
        return Remote(
            remote_id,
            RemoteState.ACTIVE,
            detail={"sent": body, "notes": notes},
            location={"base_url": self._api.base_url},
        )

    def _event(self, subject: RecordSubject) -> tuple[dict[str, Any], list[str]]:
        record = subject.record
        revision = subject.revision
        if record.revision is None:
            raise PermanentTargetError(
                f"{self.name}: {record.environment}/{record.slot} has no commit: apply from a "
                "git work tree to track it on iftrue"
            )
        notes: list[str] = []
        subject_line = revision.message.splitlines()[0] if revision and revision.message else ""
        number = pull_request_number(subject_line)
        if number is None:
            number = 0
            notes.append("no pull request number in the commit subject: sent 0")
            obs.get_logger().info(
                "iftrue.no_pull_request", target=self.name, commit=record.revision
            )
        kind = fix_kind(subject_line)
        changes = subject.changes()
        version = record.artifact.version or (record.artifact.digest or "")[:19]
        body: dict[str, Any] = {
            "title": f"{record.environment}/{record.slot} {version}",
            "branch": (revision.branch if revision else None) or "HEAD",
            "commit_id": record.revision,
            "repository_url": self._repository_url,
            "member_id": self._member_id,
            "pull_request_number": number,
            "deployment_duration": _lead_minutes(subject),
            "commits_count": len(changes) if changes is not None else 0,
            "changelog": "\n".join(f"- {c.subject} ({c.sha[:7]})" for c in changes or ()),
            "is_fix": kind == "fix" or record.annotations.get("fix") == "true",
            "is_hotfix": kind == "hotfix" or record.annotations.get("hotfix") == "true",
            "status": SUCCESS,
        }
        node_id = next(
            (
                s.remote_detail.get("node_id")
                for s in subject.others
                if s.remote_detail.get("node_id")
            ),
            None,
        )
        if node_id:
            body["deployment_node_id"] = str(node_id)
        elif urlsplit(self._repository_url).hostname in GITHUB_HOSTS:
            raise PermanentTargetError(
                f"{self.name}: iftrue requires deployment_node_id for a repository on GitHub "
                f"({self._repository_url}), and no github target has recorded a deployment of "
                f"{record.environment}/{record.slot} yet: nothing was sent. Name a github target "
                "in the environment; the event is sent once GitHub has the deployment"
            )
        if changes is None:
            notes.append("git history unavailable: commits_count 0, empty changelog")
        return body, notes


def _outcome_unknown(current: TargetSync) -> bool:
    """An earlier attempt may have been recorded: its answer was lost, or the process died
    between journaling the attempt and hearing back."""
    interrupted = current.status is SyncStatus.PENDING and current.attempts > 0
    return current.remote_detail.get("outcome") == UNKNOWN or interrupted


def _lead_minutes(subject: RecordSubject) -> int:
    if subject.revision is None:
        return 0
    lead = subject.record.created_at - subject.revision.timestamp
    return max(0, round(lead.total_seconds() / 60))
