"""Chainloop: deployment records mirrored into Chainloop's environments.

Mapping (tests/fakes/specs/API-REFERENCE.md, section 2): a DEPLOYED record is recorded as
``DEPLOYED`` with ``environment_name``, ``deployment_name`` = the slot and the artifact's kind,
name, version and digest; a DECOMMISSIONED record as ``DECOMMISSIONED``. Chainloop supersedes the
previous record of a slot by itself when a new artifact is recorded there (its spec says so:
``supersedes_itself``), so slotkeeper never posts ``SUPERSEDED``: the syncer settles a
superseded record's retirement here without a call. The POST is an upsert: recording the same
artifact again only refreshes ``last_seen_at``, which is how the heartbeat works and why
retrying it is safe. After each write the adapter reads the slot back with the list endpoint to
confirm, and keeps the remote id and the base URL it was recorded through. Chainloop's records
have no delete and documents no 404 for a record: a DECOMMISSIONED is an upsert like any other,
so there is no "already gone".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from slotkeeper.errors import TargetFailed
from slotkeeper.model import (
    ChainloopTargetSpec,
    Drift,
    RemoteState,
    SyncSubject,
    TargetSync,
)
from slotkeeper.targets.base import KeySubject, RecordsOnly, RecordSubject, Remote, read_all
from slotkeeper.targets.http import bearer_api
from slotkeeper.targets.pacing import WriteBudget

PAGE_SIZE = 100


class ChainloopTarget(RecordsOnly):
    """The ``chainloop`` target."""

    spec_class = ChainloopTargetSpec

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        max_rate_wait: float = 60.0,
        budget: WriteBudget | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._api = bearer_api(
            name,
            base_url,
            token,
            timeout=timeout,
            max_rate_wait=max_rate_wait,
            clock=clock,
            budget=budget,
            may_write=may_write,
        )

    def close(self) -> None:
        self._api.close()

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote:
        record = subject.record
        status = "DEPLOYED" if want is RemoteState.ACTIVE else "DECOMMISSIONED"
        answer = self._api.send(
            "POST",
            "v1/deployments",
            json={
                "environment_name": record.environment,
                "deployment_name": record.slot,
                "kind": record.artifact.kind.value,
                "artifact_name": record.artifact.name,
                "artifact_version": record.artifact.version or "",
                "artifact_digest": record.artifact.digest or "",
                "status": status,
            },
            write=True,
            idempotent=True,  # an upsert: a repeat refreshes the timestamp, nothing more
            accept=(200, 201),
        ).json()
        remote = (answer or {}).get("deployment_record") or {}
        remote_id = str(remote.get("id") or "") or (current.remote_id if current else None)
        confirmed = self._confirm(subject, remote_id, status)
        return Remote(
            remote_id,
            want,
            updated_at=str(confirmed.get("last_seen_at") or confirmed.get("updated_at") or ""),
            detail={
                "status": confirmed.get("status"),
                "last_seen_at": confirmed.get("last_seen_at"),
            },
            location={"base_url": self._api.base_url},
        )

    def _confirm(
        self, subject: RecordSubject, remote_id: str | None, status: str
    ) -> dict[str, Any]:
        """Read the slot back and find the record just written, in the status asked for."""
        record = subject.record
        for item in self._list(
            {"environment_name": record.environment, "deployment_name": record.slot}
        ):
            same = str(item.get("id")) == remote_id if remote_id else _same_artifact(item, subject)
            if same and item.get("status") == status:
                return item
        raise TargetFailed(
            f"{self.name}: {record.environment}/{record.slot} was recorded {status} but the "
            "list endpoint does not show it so"
        )

    def _list(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self._api.send(
                "GET",
                self._api.url(
                    "v1/deployments",
                    {
                        **filters,
                        "pagination.page": str(page),
                        "pagination.page_size": str(PAGE_SIZE),
                    },
                ),
            ).json()
            items.extend(answer.get("deployment_records") or [])
            pages = int((answer.get("pagination") or {}).get("total_pages") or 0)
            if page >= pages:
                return items
            page += 1

    def refresh(
        self,
        *,
        records: Sequence[tuple[RecordSubject, TargetSync]],
        keys: Sequence[tuple[KeySubject, TargetSync]],
        managed_titles: dict[str, set[str]],
    ) -> list[Drift]:
        """A DEPLOYED record that Chainloop no longer shows as DEPLOYED is drift."""
        drift: list[Drift] = []
        by_environment: dict[str, list[tuple[RecordSubject, TargetSync]]] = {}
        for subject, sync in records:
            by_environment.setdefault(subject.record.environment, []).append((subject, sync))
        environments = sorted(by_environment)
        lists = read_all(
            lambda name: self._list({"environment_name": name, "status": "DEPLOYED"}),
            environments,
        )
        for environment, listed in zip(environments, lists, strict=True):
            active = {str(item.get("deployment_name")): item for item in listed}
            for subject, sync in by_environment[environment]:
                item = active.get(subject.record.slot)
                if item is None or not _same_artifact(item, subject):
                    drift.append(
                        Drift(
                            target=self.name,
                            subject=SyncSubject.RECORD,
                            subject_id=subject.record.id,
                            observed="missing",
                            remote_id=sync.remote_id,
                            detail="not DEPLOYED on Chainloop",
                        )
                    )
        return drift


def _same_artifact(item: dict[str, Any], subject: RecordSubject) -> bool:
    artifact = subject.record.artifact
    remote = item.get("artifact") or {}
    if artifact.digest:
        return bool(remote.get("digest") == artifact.digest)
    return bool(remote.get("name") == artifact.name and remote.get("version") == artifact.version)
