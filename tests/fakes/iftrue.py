"""A stateful fake of iftrue's deployment tracking endpoint, ``POST /v1/organization/deployment``.

``FakeIftrue`` serves the one operation over real HTTP on loopback (see ``server.py``), after
``tests/fakes/specs/API-REFERENCE.md`` section 4. Requests are validated against the JSON Schema in
``iftrue_schema.py`` (400 ``{"message": ...}`` naming every fault), which requires what the
reference does: the six fields always, and ``deployment_node_id`` too when the repository is on
GitHub ("documented as required when the provider is GitHub"; the fake reads the provider from
``repository_url``); a missing or wrong Bearer JWT is 401. There is no idempotency, update or
list: every valid POST creates a new record and answers 201 with it. Unknown paths are 404 and
other methods on the path 405.

Simplifications: one organisation for the token; ``repository_id`` and ``pusher_id`` are stable
UUIDs per ``repository_url`` and ``member_id``; ``triggered_by`` is always ``"webhook"`` (as in
the docs' example); optional values left out are rendered with their documented defaults
(false, 0, ``succes``) or null. The error knob answers 500, 502 or 503.
"""

from __future__ import annotations

import copy
import random
from typing import Any, ClassVar

from tests.fakes.iftrue_schema import PATH, request_errors
from tests.fakes.server import FakeServer, Incoming, JsonObject, Refusal, Reply, random_uuid


def _message(status: int, message: str) -> Reply:
    return Reply(status, {"message": message})


class FakeIftrue(FakeServer):
    """iftrue's deployment tracking for one JWT, in memory, over HTTP on loopback."""

    server_software: ClassVar[str] = "FakeIftrue"

    def __init__(self, token: str = "iftrue.jwt.testtoken", *, seed: int = 0) -> None:
        super().__init__(token, seed=seed)
        self._ids_rng = random.Random(f"iftrue-ids:{seed}")
        self.organization_id = random_uuid(self._ids_rng)
        self._records: list[tuple[JsonObject, JsonObject]] = []  # (request body, answer)
        self._repository_ids: dict[str, str] = {}
        self._pusher_ids: dict[str, str] = {}

    # -- observation -------------------------------------------------------------------------

    def records(self) -> list[JsonObject]:
        """Every created record, newest first: the API's answer plus the request fields it
        does not echo (``repository_url``, ``member_id``, ``pull_request_number``,
        ``deployment_node_id``)."""
        with self._lock:
            return [copy.deepcopy({**sent, **answer}) for sent, answer in self._records[::-1]]

    # -- admission and errors ----------------------------------------------------------------

    def _admit(self, incoming: Incoming) -> Reply | None:
        if incoming.path.rstrip("/") != PATH:
            return _message(404, "Not Found")
        if incoming.method != "POST":
            return _message(405, "Method Not Allowed")
        return super()._admit(incoming)

    def _unauthorized(self, incoming: Incoming) -> Reply:
        return _message(401, "Unauthorized")

    def _server_error(self) -> Reply:
        status = self._rng.choice((500, 502, 503))
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return _message(status, text[status])

    def _internal_error(self, exc: Exception) -> Reply:
        return _message(500, f"fake internal error: {exc!r}")

    # -- the route ---------------------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        try:
            body: Any = incoming.json()
        except ValueError:
            raise Refusal(_message(400, "Request body is not valid JSON")) from None
        problems = request_errors(body)
        if problems:
            raise Refusal(_message(400, "Validation failed: " + "; ".join(problems)))
        record: JsonObject = {
            "id": random_uuid(self._ids_rng),
            "triggered_by": "webhook",
            "title": body["title"],
            "changelog": body.get("changelog"),
            "is_hotfix": body.get("is_hotfix", False),
            "is_forced": body.get("is_forced", False),
            "is_fix": body.get("is_fix", False),
            "commits_count": body.get("commits_count", 0),
            "organization_id": self.organization_id,
            "repository_id": self._stable(self._repository_ids, body["repository_url"]),
            "pusher_id": self._stable(self._pusher_ids, body["member_id"]),
            "url": body.get("url"),
            "branch": body["branch"],
            "commit_id": body["commit_id"],
            "deployment_duration": body.get("deployment_duration"),
            "node_id": body.get("deployment_node_id"),
            "status": body.get("status", "succes"),
        }
        self._records.append((copy.deepcopy(body), record))
        return Reply(201, copy.deepcopy(record))

    def _stable(self, ids: dict[str, str], key: str) -> str:
        if key not in ids:
            ids[key] = random_uuid(self._ids_rng)
        return ids[key]
