"""What the ledger knows for promotion: an artifact's stints in a slot, and the holds on
artifacts rolled back in a slot (migration 16). SQL written once for both backends, run through
the ledger's own query and statement functions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from slotkeeper.model import (
    Artifact,
    ArtifactKind,
    RecordStatus,
    SyncStatus,
    fix_kind,
    is_fix,
)
from slotkeeper.promotion import Evidence, SlotHold, Stint, identity

Query = Callable[[str, Sequence[Any]], list[Any]]

_HOLD_COLUMNS = (
    "id, environment, slot, artifact_kind, artifact_name, artifact_version, artifact_digest, "
    "record_id, by_record, created_at"
)


def same_artifact(artifact: Artifact) -> tuple[str, list[Any]]:
    """A condition on ``artifact_*`` columns: the same artifact as :func:`identity` says."""
    if artifact.digest:
        return "artifact_name = ? AND artifact_digest = ?", [artifact.name, artifact.digest]
    return (
        "artifact_name = ? AND artifact_digest IS NULL AND artifact_version = ?",
        [artifact.name, artifact.version],
    )


def hold_rollback(
    query: Query, insert: Callable[..., int], record_id: int, superseded: int, at: str
) -> SlotHold | None:
    """When the new record ``record_id`` (which superseded ``superseded``) puts back an artifact
    its slot ran before ``superseded``, hold the artifact of ``superseded`` in that slot."""
    rows = query(
        "SELECT environment, slot, artifact_kind, artifact_name, artifact_version, "
        "artifact_digest FROM records WHERE id IN (?, ?) ORDER BY id",
        (superseded, record_id),
    )
    (environment, slot, *old), (_, _, *new) = rows
    replaced, back = _artifact(old), _artifact(new)
    if identity(replaced) == identity(back):
        return None  # the same artifact again (annotations changed, say): not a rollback
    if not _ran_before(query, environment, slot, superseded, back):
        return None
    hold_id = insert(
        "slot_holds",
        environment=environment,
        slot=slot,
        artifact_kind=replaced.kind.value,
        artifact_name=replaced.name,
        artifact_version=replaced.version,
        artifact_digest=replaced.digest,
        record_id=superseded,
        by_record=record_id,
        created_at=at,
    )
    return SlotHold(
        id=hold_id,
        environment=environment,
        slot=slot,
        artifact=replaced,
        record=superseded,
        by_record=record_id,
        at=datetime.fromisoformat(at),
    )


def _ran_before(query: Query, environment: str, slot: str, before: int, artifact: Artifact) -> bool:
    """Whether a record of the slot older than record ``before`` carried ``artifact``: what
    makes the deploy that puts it back a rollback."""
    condition, params = same_artifact(artifact)
    return bool(
        query(
            f"SELECT 1 FROM records WHERE environment = ? AND slot = ? AND id < ? AND {condition}",
            (environment, slot, before, *params),
        )
    )


def standing_holds(query: Query, environment: str, slot: str) -> list[SlotHold]:
    """The holds of one slot not released, oldest first."""
    rows = query(
        f"SELECT {_HOLD_COLUMNS} FROM slot_holds WHERE released_at IS NULL "
        "AND environment = ? AND slot = ? ORDER BY id",
        (environment, slot),
    )
    return [_hold(row) for row in rows]


def evidence(
    query: Query, candidates: Sequence[tuple[str, str, str, Artifact]]
) -> dict[tuple[str, str, tuple[str, str, str]], Evidence]:
    """For each (environment, slot, upstream environment, artifact): the artifact's stints in
    the upstream slot of the same name, oldest first, and the holds standing on it here."""
    found = {}
    for environment, slot, upstream, artifact in candidates:
        condition, params = same_artifact(artifact)
        holds = [
            _hold(row)
            for row in query(
                f"SELECT {_HOLD_COLUMNS} FROM slot_holds WHERE environment = ? AND slot = ? "
                f"AND released_at IS NULL AND {condition} ORDER BY id",
                (environment, slot, *params),
            )
        ]
        rows = query(
            "SELECT id, status, created_at, updated_at, superseded_by FROM records "
            f"WHERE environment = ? AND slot = ? AND {condition} ORDER BY id",
            (upstream, slot, *params),
        )
        stints = tuple(_stint(query, upstream, slot, artifact, row) for row in rows)
        found[environment, slot, identity(artifact)] = Evidence(upstream=stints, holds=tuple(holds))
    return found


def _stint(
    query: Query, environment: str, slot: str, artifact: Artifact, row: Sequence[Any]
) -> Stint:
    record_id, status, created_at, updated_at, successor = row
    ended_at = None
    failure = None
    if successor is not None:
        failure, ended_at = _successor_verdict(
            query, artifact, (environment, slot), record_id, successor
        )
    elif status == RecordStatus.DECOMMISSIONED.value:
        ended_at = datetime.fromisoformat(updated_at)
    reported = query(
        "SELECT target FROM target_failures WHERE record_id = ? ORDER BY target", (record_id,)
    )
    if failure is None and reported:
        failure = f"was reported failed by {', '.join(target for (target,) in reported)}"
    settled = query(
        "SELECT target FROM target_syncs WHERE subject = 'record' AND subject_id = ? "
        "AND status = ? AND remote_id IS NOT NULL",
        (record_id, SyncStatus.SYNCED.value),
    )
    return Stint(
        record=int(record_id),
        deployed_at=datetime.fromisoformat(created_at),
        ended_at=ended_at,
        replaced_by=int(successor) if successor is not None else None,
        failure=failure,
        settled=frozenset(target for (target,) in settled) - {target for (target,) in reported},
    )


def _successor_verdict(
    query: Query, artifact: Artifact, slot: tuple[str, str], record_id: int, successor: int
) -> tuple[str | None, datetime]:
    """Whether the record that replaced ``record_id`` rolled it back or fixed it, and when it
    came."""
    (kind, name, version, digest, annotations, created_at), *_ = query(
        "SELECT artifact_kind, artifact_name, artifact_version, artifact_digest, annotations, "
        "created_at FROM records WHERE id = ?",
        (successor,),
    )
    came = datetime.fromisoformat(created_at)
    back = _artifact([kind, name, version, digest])
    if identity(back) != identity(artifact) and _ran_before(query, *slot, record_id, back):
        return f"was rolled back (by #{successor})", came
    subjects = query("SELECT subject FROM record_commits WHERE record_id = ?", (successor,))
    marked = any(fix_kind(subject) for (subject,) in subjects)
    if marked or is_fix(json.loads(annotations or "{}")):
        return f"was superseded by a fix (#{successor})", came
    return None, came


def _artifact(columns: Sequence[Any]) -> Artifact:
    kind, name, version, digest = columns
    return Artifact(kind=ArtifactKind(kind), name=name, version=version, digest=digest)


def _hold(row: Sequence[Any]) -> SlotHold:
    hold_id, environment, slot, kind, name, version, digest, record_id, by_record, at = row
    return SlotHold(
        id=int(hold_id),
        environment=environment,
        slot=slot,
        artifact=_artifact([kind, name, version, digest]),
        record=int(record_id),
        by_record=int(by_record),
        at=datetime.fromisoformat(at),
    )
