"""A stateful fake of Chainloop's Platform API for deployment records.

``FakeChainloop`` serves ``POST /v1/deployments`` (record a deployment) and
``GET /v1/deployments`` (list records) over real HTTP on loopback (see ``server.py``). It models
what ``tests/fakes/specs/API-REFERENCE.md`` section 2 says a schema cannot:

- A slot is ``(environment_name, deployment_name, kind)``. Recording DEPLOYED with the artifact
  the slot already runs (same digest when the request has one, else same name and version) is a
  heartbeat: ``updated_at`` and ``last_seen_at`` move, no record is added; the POST is an upsert
  and safe to retry. With another artifact, the active record becomes SUPERSEDED and a new
  DEPLOYED record is created. DECOMMISSIONED and SUPERSEDED mark the slot's newest record with
  that artifact (or create one already in that status). Records are never deleted by the API.
- Listing is newest first with offset pagination, and pages are numbered from 1. The published
  parameter description says "The (zero-based) offset of the first item returned in the
  collection" (``specs/chainloop-deployments.openapi.json``), but that sentence is the comment
  of ``OffsetPaginationRequest.page`` in chainloop-dev/chainloop's ``pagination.proto``, whose
  own validation rule is ``page >= 1`` and ``0 < page_size <= 100`` (the spec's
  ``x-transcription-note`` on both parameters, ``specs/API-REFERENCE.md`` section 2), and the
  open-source control plane's offset is ``(page - 1) * page_size``
  (``app/controlplane/pkg/pagination/offset.go``). So page 0 is a 400, as is a ``pagination``
  that gives only one of its two fields: the other is then 0, which the rules refuse. Without
  any ``pagination.*`` parameter the server's defaults apply (page 1; the fake's page size is
  10).
- Errors are grpc-gateway ``rpcStatus`` bodies ``{"code", "message", "details": []}`` with the
  gRPC code's HTTP status: 3 InvalidArgument (400), 16 Unauthenticated (401), 7
  PermissionDenied (403), 5 NotFound (404), 8 ResourceExhausted (429), 13 Internal (500), 12
  Unimplemented (501, a known path with another method), 14 Unavailable (503).
- As in grpc-gateway, the route and the JSON body are checked before the credential (which the
  gRPC server checks); unknown body fields are ignored, JSON ``null`` reads as the field's
  empty value, enums are their short names.

Knobs beyond ``server.py``'s: ``rate_limit`` (N requests per W seconds, else 429) and
``forbidden`` (403 on everything). Simplifications: one organisation, no projects
(``project_name`` and ``project_version_name`` are accepted and ignored), no logical
environments; timestamps have milliseconds and strictly increase from write to write.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from tests.fakes.server import (
    FakeServer,
    Incoming,
    JsonObject,
    Refusal,
    Reply,
    SlidingWindow,
    iso_millis,
    random_uuid,
)

PATH = "/v1/deployments"
KINDS = ("CONTAINER_IMAGE", "HELM_CHART")
STATUSES = ("DEPLOYED", "DECOMMISSIONED", "SUPERSEDED")
KIND_UNSPECIFIED = "ARTIFACT_KIND_UNSPECIFIED"
STATUS_UNSPECIFIED = "DEPLOYMENT_STATUS_UNSPECIFIED"
STRING_FIELDS = (
    "environment_name",
    "artifact_digest",
    "kind",
    "artifact_name",
    "artifact_version",
    "status",
    "deployment_name",
)
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100

# gRPC codes used here and the HTTP statuses grpc-gateway maps them to.
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 3, 5, 7, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16
HTTP_STATUS = {3: 400, 5: 404, 7: 403, 8: 429, 12: 501, 13: 500, 14: 503, 16: 401}


def rpc_status(code: int, message: str) -> Reply:
    """grpc-gateway's error body with the HTTP status of the gRPC ``code``."""
    return Reply(HTTP_STATUS[code], {"code": code, "message": message, "details": []})


def _invalid(message: str) -> Refusal:
    return Refusal(rpc_status(INVALID_ARGUMENT, message))


@dataclass(frozen=True)
class _Recording:
    """A validated RecordDeployment request."""

    environment_name: str
    deployment_name: str
    kind: str
    artifact_name: str
    artifact_version: str
    artifact_digest: str
    status: str

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.environment_name, self.deployment_name, self.kind)

    def same_artifact(self, record: JsonObject) -> bool:
        """Same digest when the request names one, else same name and version."""
        artifact = record["artifact"]
        if self.artifact_digest:
            return bool(artifact["digest"] == self.artifact_digest)
        return bool(
            artifact["name"] == self.artifact_name and artifact["version"] == self.artifact_version
        )


def _parse_recording(body: JsonObject) -> _Recording:
    """Validate a decoded body as protovalidate would: 400 InvalidArgument on the first fault."""
    values = {name: body.get(name) or "" for name in STRING_FIELDS}
    for name in ("environment_name", "deployment_name", "artifact_name"):
        if not values[name]:
            raise _invalid(
                f"validation error:\n - {name}: value length must be at least 1 characters "
                "[string.min_len]"
            )
    if values["kind"] in ("", KIND_UNSPECIFIED):
        raise _invalid("validation error:\n - kind: value is required [required]")
    if values["status"] in ("", STATUS_UNSPECIFIED):
        raise _invalid("validation error:\n - status: value is required [required]")
    return _Recording(**values)


def _decode_recording(raw: bytes) -> JsonObject:
    """protojson's decoding of the body: types and enum names, unknown fields ignored."""
    try:
        body: Any = json.loads(raw) if raw else {}
    except ValueError:
        raise _invalid("unexpected token in JSON body") from None
    if not isinstance(body, dict):
        raise _invalid(f"proto: syntax error: unexpected token {str(body)[:40]}")
    for name in STRING_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise _invalid(f"proto: invalid value for string field {name}: {value!r}")
    if body.get("kind") not in (None, KIND_UNSPECIFIED, *KINDS):
        raise _invalid(f"proto: invalid value for enum field kind: {body['kind']!r}")
    if body.get("status") not in (None, STATUS_UNSPECIFIED, *STATUSES):
        raise _invalid(f"proto: invalid value for enum field status: {body['status']!r}")
    return body


def _int_query(query: dict[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    try:
        return int(query[name])
    except ValueError:
        raise _invalid(
            f'parsing field "{name}": strconv.ParseInt: parsing {query[name]!r}: invalid syntax'
        ) from None


class FakeChainloop(FakeServer):
    """Chainloop's deployment-records API for one API token, in memory, over HTTP on loopback."""

    server_software: ClassVar[str] = "FakeChainloop"

    def __init__(self, token: str = "cl_testtoken0123456789", *, seed: int = 0) -> None:
        super().__init__(token, seed=seed)
        # Knobs beyond the generic ones.
        self.rate_limit: tuple[int, float] | None = None
        self.forbidden: bool = False

        self._window = SlidingWindow()
        self._ids_rng = random.Random(f"chainloop-ids:{seed}")
        self._records: dict[str, JsonObject] = {}  # by id, oldest first
        # The same records by environment and by (environment, deployment name), oldest first:
        # a slot's write and a filtered list look only at what they may match (a scan of every
        # record made 1,000 slots cost the fake more than the client).
        self._by_environment: dict[str, list[JsonObject]] = {}
        self._by_name: dict[tuple[str, str], list[JsonObject]] = {}
        self._environment_ids: dict[str, str] = {}
        self._artifact_ids: dict[tuple[str, ...], str] = {}
        self._last_tick = 0

    # -- observation -------------------------------------------------------------------------

    def records(
        self, environment_name: str | None = None, deployment_name: str | None = None
    ) -> list[JsonObject]:
        """Every record (optionally of one environment and/or deployment name), newest first."""
        with self._lock:
            return [
                copy.deepcopy(record)
                for record in self._newest_first()
                if (environment_name is None or record["environment_name"] == environment_name)
                and (deployment_name is None or record["deployment_name"] == deployment_name)
            ]

    def active(
        self, environment_name: str, deployment_name: str, kind: str | None = None
    ) -> JsonObject | None:
        """The newest DEPLOYED record of a slot (of any kind unless ``kind`` is given)."""
        for record in self.records(environment_name, deployment_name):
            if record["status"] == "DEPLOYED" and kind in (None, record["artifact"]["kind"]):
                return record
        return None

    # -- drift: change state as someone else would, without a request --------------------------

    def set_status(self, record_id: str, status: str) -> JsonObject:
        """Set a record's status (``updated_at`` moves); ``KeyError`` if there is no such record."""
        if status not in STATUSES:
            raise ValueError(f"unknown deployment status {status!r}")
        with self._lock:
            record = self._records[record_id]
            record["status"] = status
            record["updated_at"] = self._tick()
            return copy.deepcopy(record)

    def delete_record(self, record_id: str) -> None:
        """Remove a record, which the API never does (``KeyError`` if it is not there)."""
        with self._lock:
            record = self._records.pop(record_id)
            self._by_environment[record["environment_name"]].remove(record)
            self._by_name[record["environment_name"], record["deployment_name"]].remove(record)

    # -- admission and errors ----------------------------------------------------------------

    def _admit(self, incoming: Incoming) -> Reply | None:
        """grpc-gateway's order: route, body, then the gRPC server's auth and limits."""
        if incoming.path.rstrip("/") != PATH:
            return rpc_status(NOT_FOUND, "Not Found")
        if incoming.method not in ("GET", "POST"):
            return rpc_status(UNIMPLEMENTED, "Method Not Allowed")
        if incoming.method == "POST":
            try:
                _decode_recording(incoming.body)
            except Refusal as refusal:
                return refusal.reply
        if not self._authorized(incoming.headers.get("authorization", "")):
            return self._unauthorized(incoming)
        if self.rate_limit is not None and not self._window.admit(
            self.rate_limit, time.monotonic()
        ):
            most, window = self.rate_limit
            return rpc_status(
                RESOURCE_EXHAUSTED, f"rate limit exceeded: {most} requests per {window:g}s"
            )
        if self.forbidden:
            return rpc_status(PERMISSION_DENIED, "operation not allowed")
        return None

    def _unauthorized(self, incoming: Incoming) -> Reply:
        return rpc_status(UNAUTHENTICATED, "unauthorized: invalid or missing token")

    def _server_error(self) -> Reply:
        if self._rng.random() < 0.5:
            return rpc_status(UNAVAILABLE, "upstream connect error or disconnect/reset")
        return rpc_status(INTERNAL, "internal error")

    def _internal_error(self, exc: Exception) -> Reply:
        return rpc_status(INTERNAL, f"fake internal error: {exc!r}")

    # -- routes ------------------------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        if incoming.method == "GET":
            return self._list(incoming.query)
        recording = _parse_recording(_decode_recording(incoming.body))
        record = self._record(recording)
        return Reply(200, {"deployment_record": copy.deepcopy(record)})

    def _record(self, recording: _Recording) -> JsonObject:
        stamp = self._tick()
        named = self._newest_first(recording.environment_name, recording.deployment_name)
        in_slot = [r for r in named if self._slot(r) == recording.slot]
        if recording.status == "DEPLOYED":
            active = [r for r in in_slot if r["status"] == "DEPLOYED"]
            same = next((r for r in active if recording.same_artifact(r)), None)
            for other in active:
                if other is not same:
                    other.update(status="SUPERSEDED", updated_at=stamp)
            if same is not None:  # a heartbeat
                same.update(updated_at=stamp, last_seen_at=stamp)
                return same
            return self._create(recording, stamp)
        match = next((r for r in in_slot if recording.same_artifact(r)), None)
        if match is None:
            return self._create(recording, stamp)
        match.update(status=recording.status, updated_at=stamp)
        return match

    def _create(self, recording: _Recording, stamp: str) -> JsonObject:
        artifact_key = (
            (recording.artifact_digest,)
            if recording.artifact_digest
            else (recording.kind, recording.artifact_name, recording.artifact_version)
        )
        if recording.environment_name not in self._environment_ids:
            self._environment_ids[recording.environment_name] = random_uuid(self._ids_rng)
        if artifact_key not in self._artifact_ids:
            self._artifact_ids[artifact_key] = random_uuid(self._ids_rng)
        record: JsonObject = {
            "id": random_uuid(self._ids_rng),
            "environment_id": self._environment_ids[recording.environment_name],
            "environment_name": recording.environment_name,
            "deployment_name": recording.deployment_name,
            "artifact": {
                "kind": recording.kind,
                "name": recording.artifact_name,
                "digest": recording.artifact_digest,
                "version": recording.artifact_version,
            },
            "artifact_id": self._artifact_ids[artifact_key],
            "status": recording.status,
            "created_at": stamp,
            "updated_at": stamp,
            "last_seen_at": stamp,
        }
        self._records[record["id"]] = record
        self._by_environment.setdefault(recording.environment_name, []).append(record)
        name = (recording.environment_name, recording.deployment_name)
        self._by_name.setdefault(name, []).append(record)
        return record

    def _list(self, query: dict[str, str]) -> Reply:
        # One pagination field makes the message present, and the other one is then 0.
        given = "pagination.page" in query or "pagination.page_size" in query
        page = _int_query(query, "pagination.page", 0 if given else 1)
        page_size = _int_query(query, "pagination.page_size", 0 if given else DEFAULT_PAGE_SIZE)
        if page < 1:
            raise _invalid(
                "validation error:\n - pagination.page: value must be greater than or equal "
                "to 1 [int32.gte]"
            )
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise _invalid(
                "validation error:\n - pagination.page_size: value must be greater than 0 and "
                f"less than or equal to {MAX_PAGE_SIZE} [int32.gt_lte]"
            )
        status = query.get("status") or STATUS_UNSPECIFIED
        kind = query.get("kind") or KIND_UNSPECIFIED
        if status not in (STATUS_UNSPECIFIED, *STATUSES):
            raise _invalid(f'parsing field "status": {status!r} is not a valid value')
        if kind not in (KIND_UNSPECIFIED, *KINDS):
            raise _invalid(f'parsing field "kind": {kind!r} is not a valid value')
        if query.get("project_version_name") and not query.get("project_name"):
            raise _invalid("project_version_name requires project_name")

        found = [
            record
            for record in self._newest_first(
                query.get("environment_name"), query.get("deployment_name")
            )
            if query.get("environment_name") in (None, "", record["environment_name"])
            and query.get("deployment_name") in (None, "", record["deployment_name"])
            and status in (STATUS_UNSPECIFIED, record["status"])
            and kind in (KIND_UNSPECIFIED, record["artifact"]["kind"])
        ]
        chunk = found[(page - 1) * page_size : page * page_size]
        body = {
            "deployment_records": copy.deepcopy(chunk),
            "pagination": {
                "page": page,
                "page_size": page_size,
                "total_count": len(found),
                "total_pages": math.ceil(len(found) / page_size),
            },
        }
        return Reply(200, body)

    # -- state helpers (callers hold the lock) ------------------------------------------------

    def _newest_first(
        self, environment_name: str | None = None, deployment_name: str | None = None
    ) -> list[JsonObject]:
        """Every record, newest first; given names (empty means none), only those of that
        environment (and deployment name): the records a filter on them may keep."""
        if environment_name and deployment_name:
            chosen = self._by_name.get((environment_name, deployment_name), [])
        elif environment_name:
            chosen = self._by_environment.get(environment_name, [])
        else:
            chosen = list(self._records.values())
        return list(reversed(chosen))

    @staticmethod
    def _slot(record: JsonObject) -> tuple[str, str, str]:
        return (record["environment_name"], record["deployment_name"], record["artifact"]["kind"])

    def _tick(self) -> str:
        """A write timestamp: wall-clock milliseconds, strictly later than the previous one."""
        self._last_tick = max(int(time.time() * 1000), self._last_tick + 1)
        return iso_millis(self._last_tick)
