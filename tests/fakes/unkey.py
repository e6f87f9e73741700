"""A stateful fake of Unkey's internal deploy API (``deploy.createDeployment``, ``getDeployment``).

``FakeUnkey`` serves both RPC-style operations (POST with JSON bodies, camelCase wire names)
over real HTTP on loopback (see ``server.py``). It models ``tests/fakes/specs/API-REFERENCE.md``
section 3 and the behaviour of Unkey's server (svc/api) where the description is silent:

- Request bodies are validated, as the server does, against the request schemas of
  ``specs/unkey-deploy.openapi.json`` (JSON Schema 2020-12; our own description of the two
  operations, see ``specs/README.md``): 400 with
  ``error.errors[] = {location: "body.<field>", message, fix}``.
- A missing or non-Bearer ``Authorization`` header is a 400 (the server's security check), an
  unknown root key a 401. Unknown project, app, environment or keyspace and unknown
  deployments are 404.
- A deployment starts PENDING and advances one status per ``getDeployment`` call, reaching
  READY on call number ``steps_to_ready`` (default 3: BUILDING, DEPLOYING, READY); READY
  deployments have ``hostnames``. Images containing a string from ``fail_images`` end FAILED
  instead; images containing one from ``await_approval_images`` are AWAITING_APPROVAL from the
  start and never move.
- ``getDeployment`` answers ``id``, ``status`` and (once READY) ``hostnames``, nothing else:
  "The current handler ... never fills ``steps`` or ``errorMessage``; only ``id``, ``status``,
  ``hostnames`` are populated. Do not depend on steps." (``specs/API-REFERENCE.md`` section 3).
  The description allows both fields, so a scenario that wants a server which fills them sets
  ``fill_details``: then ``steps`` grow one per status and a FAILED deployment has an
  ``errorMessage``.
- Every authenticated response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and
  ``RateLimit-Reset`` (seconds). ``rate_limit = (N, W)`` allows N requests per W seconds, then
  answers 429 with ``Retry-After`` as ``application/problem+json``; when None, a workspace
  limit of 10000 per minute applies. Other errors are ``application/json``, as the description
  says (the live server sends ``application/problem+json`` for every error).

Knobs beyond ``server.py``'s: ``rate_limit``, ``forbidden`` (403 Insufficient Permissions),
``steps_to_ready``, ``fail_images``, ``await_approval_images``, ``fill_details``; the known
``projects`` (slug to app slugs), ``environments`` (slugs) and ``keyspaces`` (ids) may be
changed too. The error knob answers 500, the only 5xx the description lists.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakes.server import (
    Decision,
    FakeServer,
    Incoming,
    JsonObject,
    RecordedRequest,
    Refusal,
    Reply,
    SlidingWindow,
    bearer_token,
)

# The same file as ``spec.UNKEY_SPEC``; not imported from there to keep openapi-core out.
SPEC_PATH = Path(__file__).resolve().parent / "specs" / "unkey-deploy.openapi.json"
CREATE = "/v2/deploy.createDeployment"
GET = "/v2/deploy.getDeployment"
_REQUEST_SCHEMAS = {
    CREATE: "CreateDeploymentRequest",
    GET: "GetDeploymentRequest",
}
STATUSES = (
    "UNSPECIFIED",
    "PENDING",
    "STARTING",
    "BUILDING",
    "DEPLOYING",
    "NETWORK",
    "FINALIZING",
    "READY",
    "FAILED",
    "SKIPPED",
    "AWAITING_APPROVAL",
    "STOPPED",
    "SUPERSEDED",
    "CANCELLED",
)
# What a deployment shows on successive polls before its final status.
PROGRESSION = ("PENDING", "BUILDING", "DEPLOYING", "NETWORK", "FINALIZING")
_STEP_MESSAGES = {
    "PENDING": "Deployment queued",
    "BUILDING": "Image pulled",
    "DEPLOYING": "Instances started",
    "NETWORK": "Domains assigned",
    "FINALIZING": "Routing traffic",
    "READY": "Deployment is ready",
    "AWAITING_APPROVAL": "Waiting for approval",
}
NOMINAL_RATE_LIMIT = (10_000, 60.0)
DOCS = "https://unkey.com/docs/errors"
_ALNUM = string.ascii_letters + string.digits


@cache
def _validators() -> dict[str, Draft202012Validator]:
    """Validators for the request bodies, resolving ``$ref`` inside the description."""
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    uri = "urn:unkey-deploy-openapi"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return {
        path: Draft202012Validator({"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry)
        for path, name in _REQUEST_SCHEMAS.items()
    }


def _location(error: ValidationError) -> str:
    """Unkey's location: ``body.<field>``, ``body.gitCommit.timestamp``, ``body.items[0]``."""
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.message, str):
        parts.append(error.message.split("'")[1])
    location = "body"
    for part in parts:
        location += f"[{part}]" if part.isdigit() else f".{part}"
    return location


def _fix(error: ValidationError) -> str | None:
    name = _location(error).rsplit(".", 1)[-1]
    fixes = {
        "required": f"Add the '{name}' field to your request body",
        "type": f"The '{name}' field has an incorrect data type",
        "minLength": f"The '{name}' field value is too short",
        "pattern": f"The '{name}' field does not match the required format",
    }
    return fixes.get(str(error.validator))


def _problem(status: int, title: str, detail: str, kind: str, request_id: str) -> JsonObject:
    return {
        "meta": {"requestId": request_id},
        "error": {"title": title, "detail": detail, "status": status, "type": f"{DOCS}/{kind}"},
    }


@dataclass
class _Deployment:
    id: str
    request: JsonObject
    status: str
    plan: list[str]  # statuses shown on the next polls, in order
    created_at: int  # epoch ms
    steps: list[JsonObject] = field(default_factory=list)
    hostnames: list[str] = field(default_factory=list)
    error_message: str | None = None
    polls: int = 0
    pinned: bool = False  # set by a drift helper: no more progress


class FakeUnkey(FakeServer):
    """Unkey's deploy operations for one root key, in memory, over HTTP on loopback."""

    server_software: ClassVar[str] = "FakeUnkey"

    def __init__(
        self,
        root_key: str = "unkey_testroot0123456789",
        *,
        projects: dict[str, set[str]] | None = None,
        environments: set[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(root_key, seed=seed)
        self.projects: dict[str, set[str]] = (
            {slug: set(apps) for slug, apps in projects.items()}
            if projects is not None
            else {"acme": {"default", "api"}}
        )
        self.environments: set[str] = (
            set(environments) if environments is not None else {"production", "staging", "preview"}
        )
        self.keyspaces: set[str] = set()
        # Knobs beyond the generic ones.
        self.rate_limit: tuple[int, float] | None = None
        self.forbidden: bool = False
        self.steps_to_ready: int = 3
        self.fail_images: set[str] = set()
        self.await_approval_images: set[str] = set()
        # Answer getDeployment with ``steps`` and (when FAILED) ``errorMessage``, which Unkey's
        # server never fills.
        self.fill_details: bool = False

        self._ids_rng = random.Random(f"unkey-ids:{seed}")
        self._window = SlidingWindow()
        self._deployments: dict[str, _Deployment] = {}
        self._request_id = ""  # of the request being answered (set and read under the lock)

    @property
    def root_key(self) -> str:
        return self.token

    # -- observation -------------------------------------------------------------------------

    def writes(self) -> list[RecordedRequest]:
        """createDeployment calls that were processed (dropped ones included)."""
        return [r for r in super().writes() if r.path == CREATE]

    def deployments(self) -> list[JsonObject]:
        """Every deployment, newest first: the create request's fields plus ``id``,
        ``status``, ``hostnames``, ``polls`` (getDeployment calls) and, for a FAILED one,
        ``errorMessage`` (kept here whether or not ``fill_details`` lets the API send it)."""
        with self._lock:
            return [self._describe(d) for d in reversed(self._deployments.values())]

    # -- drift -------------------------------------------------------------------------------

    def set_status(self, deployment_id: str, status: str) -> None:
        """Pin a deployment's status (no further progress); ``KeyError`` if it is unknown."""
        if status not in STATUSES:
            raise ValueError(f"unknown deployment status {status!r}")
        with self._lock:
            deployment = self._deployments[deployment_id]
            deployment.status = status
            deployment.pinned = True
            if status == "READY" and not deployment.hostnames:
                deployment.hostnames = self._hostnames(deployment)

    # -- admission and errors ----------------------------------------------------------------

    def _decide(self, incoming: Incoming) -> Decision:
        self._request_id = self._new_id("req")
        return super()._decide(incoming)

    def _admit(self, incoming: Incoming) -> Reply | None:
        """Route, security header (400), root key (401), rate limit (429), body (400), 403."""
        request_id = self._request_id
        if incoming.path not in _REQUEST_SCHEMAS:
            detail = "The requested route does not exist."
            return Reply(404, _problem(404, "Not Found", detail, "user/not_found", request_id))
        if incoming.method != "POST":
            detail = "The requested method is not allowed for this route."
            body = _problem(
                405, "Method Not Allowed", detail, "user/method_not_allowed", request_id
            )
            return Reply(405, body)
        authorization = incoming.headers.get("authorization", "")
        if bearer_token(authorization) is None:
            detail = (
                "Authorization header is required but was not provided"
                if not authorization
                else "Authorization header must use Bearer scheme"
            )
            kind = "missing" if not authorization else "malformed"
            return self._bad_request(request_id, detail, [], f"unkey/authentication/{kind}")
        if not self._authorized(authorization):
            return self._unauthorized(incoming)
        limit = self.rate_limit or NOMINAL_RATE_LIMIT
        if not self._window.admit(limit, time.monotonic()):
            most, window = limit
            detail = (
                f"This workspace has exceeded its API rate limit of {most}/{window:g}s. "
                "Please try again later."
            )
            body = _problem(
                429,
                "Too Many Requests",
                detail,
                "user/too_many_requests/workspace_rate_limited",
                request_id,
            )
            headers = {"content-type": "application/problem+json"}
            return Reply(429, body, headers)
        invalid = self._invalid_body(incoming, request_id)
        if invalid is not None:
            return invalid
        if self.forbidden:
            action = "create_deployment" if incoming.path == CREATE else "read_deployment"
            detail = f"Missing one of these permissions: ['project.*.{action}']"
            body = _problem(
                403,
                "Insufficient Permissions",
                detail,
                "unkey/authorization/insufficient_permissions",
                request_id,
            )
            return Reply(403, body)
        return None

    def _invalid_body(self, incoming: Incoming, request_id: str) -> Reply | None:
        try:
            body = incoming.json()
        except ValueError:
            error = {"location": "body", "message": "The request body was not valid JSON."}
            return self._bad_request(request_id, error["message"], [error])
        validator = _validators()[incoming.path]
        found = sorted(validator.iter_errors(body), key=lambda e: _location(e))
        if not found:
            return None
        errors: list[JsonObject] = []
        for error in found:
            item: JsonObject = {"location": _location(error), "message": error.message}
            fix = _fix(error)
            if fix is not None:
                item["fix"] = fix
            errors.append(item)
        detail = (
            errors[0]["message"] if len(errors) == 1 else "One or more fields failed validation"
        )
        return self._bad_request(request_id, detail, errors)

    def _bad_request(
        self,
        request_id: str,
        detail: str,
        errors: list[JsonObject],
        kind: str = "unkey/application/invalid_input",
    ) -> Reply:
        body = _problem(400, "Bad Request", detail, kind, request_id)
        body["error"]["errors"] = errors
        return Reply(400, body)

    def _unauthorized(self, incoming: Incoming) -> Reply:
        detail = "The provided root key is invalid. The requested key was not found."
        kind = "unkey/authentication/key_not_found"
        return Reply(401, _problem(401, "Unauthorized", detail, kind, self._request_id))

    def _server_error(self) -> Reply:
        detail = "An unexpected error occurred. Please try again later."
        kind = "unkey/application/unexpected_error"
        return Reply(500, _problem(500, "Internal Server Error", detail, kind, self._request_id))

    def _internal_error(self, exc: Exception) -> Reply:
        detail = f"fake internal error: {exc!r}"
        kind = "unkey/application/unexpected_error"
        return Reply(500, _problem(500, "Internal Server Error", detail, kind, self._request_id))

    def _headers(self, reply: Reply, body: bytes, incoming: Incoming) -> dict[str, str]:
        headers = super()._headers(reply, body, incoming)
        authorization = incoming.headers.get("authorization", "")
        counted = incoming.method == "POST" and incoming.path in _REQUEST_SCHEMAS
        if counted and self._authorized(authorization):
            limit = self.rate_limit or NOMINAL_RATE_LIMIT
            now = time.monotonic()
            reset = self._window.reset_after(limit, now)
            headers["RateLimit-Limit"] = str(limit[0])
            headers["RateLimit-Remaining"] = str(self._window.remaining(limit, now))
            headers["RateLimit-Reset"] = str(reset)
            if reply.status == 429:
                headers["Retry-After"] = str(max(reset, 1))
        return headers

    # -- routes ------------------------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        request_id = self._request_id
        body = incoming.json()
        if incoming.path == CREATE:
            created = self._create(body, request_id)
            data: JsonObject = {"deploymentId": created.id}
            return Reply(201, {"meta": {"requestId": request_id}, "data": data})
        found = self._deployments.get(body["deploymentId"])
        if found is None:
            raise self._not_found(request_id, "deployment", "The deployment was not found.")
        self._advance(found)
        return Reply(200, {"meta": {"requestId": request_id}, "data": self._render(found)})

    def _create(self, body: JsonObject, request_id: str) -> _Deployment:
        project = body["project"]
        if project not in self.projects:
            raise self._not_found(request_id, "project", f"Project '{project}' not found.")
        if body["app"] not in self.projects[project]:
            detail = f"App '{body['app']}' not found in project '{project}'."
            raise self._not_found(request_id, "app", detail)
        if body["environmentSlug"] not in self.environments:
            detail = f"Environment '{body['environmentSlug']}' not found."
            raise self._not_found(request_id, "environment", detail)
        keyspace = body.get("keyspaceId")
        if keyspace is not None and keyspace not in self.keyspaces:
            raise self._not_found(request_id, "key_space", "The keyspace was not found.")

        image: str = body["dockerImage"]
        now = int(time.time() * 1000)
        deployment = _Deployment(
            id=self._new_id("d"),
            request=copy.deepcopy(body),
            status="PENDING",
            plan=[],
            created_at=now,
        )
        deployment.steps.append(self._step("PENDING", now))
        if any(marker in image for marker in self.await_approval_images):
            deployment.status = "AWAITING_APPROVAL"
            deployment.steps.append(self._step("AWAITING_APPROVAL", now))
        else:
            final = "FAILED" if any(marker in image for marker in self.fail_images) else "READY"
            calls = max(self.steps_to_ready, 0)
            deployment.plan = [
                PROGRESSION[min(call, len(PROGRESSION) - 1)] for call in range(1, calls)
            ] + [final]
            if calls == 0:  # ready (or failed) before anyone asks
                self._advance(deployment, poll=False)
        self._deployments[deployment.id] = deployment
        return deployment

    def _advance(self, deployment: _Deployment, *, poll: bool = True) -> None:
        """Move to the next planned status, unless pinned or done; ``poll`` counts a get."""
        deployment.polls += poll
        if deployment.pinned or not deployment.plan:
            return
        deployment.status = deployment.plan.pop(0)
        now = int(time.time() * 1000)
        if deployment.status == "FAILED":
            image = deployment.request["dockerImage"]
            deployment.error_message = f"Failed to pull image {image}: manifest unknown"
            deployment.steps.append(
                {
                    "status": "failed",
                    "message": "Image pull failed",
                    "errorMessage": deployment.error_message,
                    "createdAt": now,
                }
            )
            return
        deployment.steps.append(self._step(deployment.status, now))
        if deployment.status == "READY":
            deployment.hostnames = self._hostnames(deployment)

    def _render(self, deployment: _Deployment) -> JsonObject:
        data: JsonObject = {"id": deployment.id, "status": deployment.status}
        if deployment.hostnames:
            data["hostnames"] = list(deployment.hostnames)
        if self.fill_details and deployment.steps:
            data["steps"] = copy.deepcopy(deployment.steps)
        if self.fill_details and deployment.error_message is not None:
            data["errorMessage"] = deployment.error_message
        return data

    def _describe(self, deployment: _Deployment) -> JsonObject:
        described = copy.deepcopy(deployment.request)
        described.update(
            id=deployment.id,
            status=deployment.status,
            hostnames=list(deployment.hostnames),
            polls=deployment.polls,
        )
        if deployment.error_message is not None:
            described["errorMessage"] = deployment.error_message
        return described

    # -- helpers (callers hold the lock) ------------------------------------------------------

    def _not_found(self, request_id: str, what: str, detail: str) -> Refusal:
        body = _problem(404, "Not Found", detail, f"unkey/data/{what}_not_found", request_id)
        return Refusal(Reply(404, body))

    @staticmethod
    def _step(status: str, now: int) -> JsonObject:
        return {"status": "completed", "message": _STEP_MESSAGES[status], "createdAt": now}

    @staticmethod
    def _hostnames(deployment: _Deployment) -> list[str]:
        request = deployment.request
        prefix = f"{request['project']}-{request['app']}".lower()
        branch = re.sub(r"[^a-z0-9]+", "-", str(request["branch"]).lower()).strip("-")
        return [
            f"{prefix}-{deployment.id[2:12].lower()}.unkey.app",
            f"{prefix}-git-{branch}.unkey.app",
            f"{prefix}-{request['environmentSlug']}.unkey.app",
        ]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_" + "".join(self._ids_rng.choices(_ALNUM, k=16))
