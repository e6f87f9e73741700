"""Unkey: container images deployed through Unkey's (internal) deploy API.

Mapping (tests/fakes/specs/API-REFERENCE.md, section 3): a new DEPLOYED record of a container
image is one ``deploy.createDeployment`` (wire names camelCase: ``project`` and ``app`` slugs
from the target, ``branch`` and ``gitCommit`` from the revision that declared the record,
``environmentSlug`` = the environment, ``dockerImage`` = ``name:version@digest`` as available),
then ``deploy.getDeployment`` is polled with backoff until a final status or the poll timeout.
READY is success; FAILED, CANCELLED, SKIPPED, STOPPED and SUPERSEDED are final failures;
AWAITING_APPROVAL waits for a human; anything else is still in progress. The remote status,
steps and error message are kept in the ledger (``history`` shows them). Helm charts are not
deployable on Unkey: the planner never sends them here. Unkey has no "undeploy" call: retiring
a record there changes nothing remotely (so there is no 404 to read as "already gone"). The base
URL, project and app a deployment was made in are kept with its sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from slotkeeper.errors import PermanentTargetError, TargetFailed, TemporaryTargetError
from slotkeeper.model import RemoteState, TargetSync, UnkeyTargetSpec
from slotkeeper.targets.base import RecordsOnly, RecordSubject, Remote
from slotkeeper.targets.http import bearer_api

READY = "READY"
FAILED = frozenset({"FAILED", "CANCELLED", "SKIPPED", "STOPPED", "SUPERSEDED"})
AWAITING = "AWAITING_APPROVAL"


def docker_image(name: str, version: str | None, digest: str | None) -> str:
    """``name:version@digest`` with whichever of version and digest are known."""
    image = f"{name}:{version}" if version else name
    return f"{image}@{digest}" if digest else image


class UnkeyTarget(RecordsOnly):
    """The ``unkey`` target."""

    spec_class = UnkeyTargetSpec

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        root_key: str,
        project: str,
        app: str,
        keyspace_id: str | None = None,
        poll_timeout: float = 300.0,
        timeout: float = 10.0,
        max_rate_wait: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._project = project
        self._app = app
        self._keyspace_id = keyspace_id
        self._poll_timeout = poll_timeout
        self._sleep = sleep
        # Unkey's description tells clients to retry 5xx: such an answer creates nothing.
        self._api = bearer_api(
            name,
            base_url,
            root_key,
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
            return Remote(current.remote_id if current else None, want)
        deployment_id = current.remote_id if current else None
        last = (current.remote_detail.get("status") if current else None) or ""
        if deployment_id is None or last in FAILED:
            if current is not None and current.attempts > 0 and deployment_id is None:
                # Unkey has no way to find a deployment by what it was created from: an
                # earlier attempt whose answer was lost may have made one. Say so; do not guess.
                raise PermanentTargetError(
                    f"{self.name}: an earlier createDeployment for {subject.record.environment}/"
                    f"{subject.record.slot} got no answer; check Unkey before deploying again"
                )
            deployment_id = self._create(subject)
        remote = self._await(deployment_id)
        where = {"base_url": self._api.base_url, "project": self._project, "app": self._app}
        return replace(remote, location=where)

    def _create(self, subject: RecordSubject) -> str:
        record = subject.record
        revision = subject.revision
        body: dict[str, Any] = {
            "project": self._project,
            "app": self._app,
            "branch": (revision.branch if revision and revision.branch else None) or "main",
            "environmentSlug": record.environment,
            "dockerImage": docker_image(
                record.artifact.name, record.artifact.version, record.artifact.digest
            ),
        }
        if self._keyspace_id:
            body["keyspaceId"] = self._keyspace_id
        if revision is not None:
            body["gitCommit"] = {
                "commitSha": revision.sha,
                "commitMessage": revision.message.splitlines()[0][:200] if revision.message else "",
                "authorHandle": revision.author.split(" <")[0],
                "timestamp": int(revision.timestamp.timestamp() * 1000),
            }
        answer = self._api.send(
            "POST",
            "v2/deploy.createDeployment",
            json=body,
            write=True,
            idempotent=False,
            accept=(200, 201),
        ).json()
        deployment_id = ((answer or {}).get("data") or {}).get("deploymentId")
        if not deployment_id:
            raise TargetFailed(f"{self.name}: createDeployment answered without an id")
        return str(deployment_id)

    def _await(self, deployment_id: str) -> Remote:
        """Poll getDeployment with backoff until a final status or the poll timeout."""
        deadline = time.monotonic() + self._poll_timeout
        delay = 0.2
        while True:
            answer = self._api.send(
                "POST",
                "v2/deploy.getDeployment",
                json={"deploymentId": deployment_id},
                accept=(200,),
            ).json()
            data = (answer or {}).get("data") or {}
            status = str(data.get("status") or "UNSPECIFIED")
            detail = {
                "status": status,
                "steps": data.get("steps") or [],
                "error": data.get("errorMessage"),
                "hostnames": data.get("hostnames") or [],
            }
            if status == READY:
                return Remote(deployment_id, RemoteState.ACTIVE, detail=detail)
            if status in FAILED:
                raise TargetFailed(
                    f"{self.name}: deployment {deployment_id} ended {status}"
                    + (f": {data['errorMessage']}" if data.get("errorMessage") else ""),
                    remote_id=deployment_id,
                    detail=detail,
                )
            if status == AWAITING or time.monotonic() >= deadline:
                raise TemporaryTargetError(
                    f"{self.name}: deployment {deployment_id} is {status}; checked again next "
                    "reconcile",
                    remote_id=deployment_id,
                    detail=detail,
                )
            self._sleep(delay)
            delay = min(delay * 1.5, 5.0)
