"""iftrue's deployment-tracking contract as JSON Schema, and a checker for recorded exchanges.

iftrue publishes no machine-readable description. These schemas are derived only from
``tests/fakes/specs/API-REFERENCE.md`` section 4 (itself a paraphrase of the docs page
docs.iftrue.co/.../deployment-tracking-with-http-request):

- ``REQUEST_SCHEMA``: the body of ``POST /v1/organization/deployment``. Required strings
  ``title``, ``branch``, ``commit_id``, ``repository_url``, ``member_id`` and the number
  ``pull_request_number`` (JSON null is not a number); optional ``changelog``, ``url``,
  ``deployment_node_id`` (strings), ``deployment_duration`` (number, minutes), ``is_fix``,
  ``is_hotfix``, ``is_forced`` (booleans), ``commits_count`` (integer) and ``status``, which is
  literally one of ``succes`` (sic), ``in_progress``, ``fail``. ``deployment_node_id`` is
  "documented as required when the provider is GitHub: the provider's deployment id" (the
  docs' table: "No (Required for GitHub)"); the provider is read from ``repository_url``, so a
  repository on github.com (``GITHUB_REPOSITORY``) requires it. The reference lists the accepted
  fields; ``additionalProperties: false`` is the fake's own strictness, so a misspelt field
  fails loudly instead of being dropped.
- ``RESPONSE_SCHEMA``: the created record. The reference names its fields only; their types
  here are the fake's choice, consistent with the request (ids are UUID strings, absent
  optional values are null).
- ``ERROR_SCHEMA``: ``{"message": "..."}``, the fake's error body (the reference documents no
  status codes; the fake answers 400, 401 and 5xx).

``JsonSchemaChecker`` has ``OpenApiChecker``'s two methods, so ``spec.check_recorded`` can walk
an iftrue fake's log the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator

SERVER = "https://api.iftrue.co"
PATH = "/v1/organization/deployment"
STATUSES = ("succes", "in_progress", "fail")
#: a ``repository_url`` whose git provider is GitHub (https, http or the ssh form)
GITHUB_REPOSITORY = r"^(https?://(www\.)?github\.com/|git@github\.com:)"

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_BOOLEAN = {"type": "boolean"}

REQUEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "iftrue create-deployment request",
    "type": "object",
    "required": [
        "title",
        "branch",
        "commit_id",
        "repository_url",
        "member_id",
        "pull_request_number",
    ],
    "properties": {
        "title": _STRING,
        "changelog": _STRING,
        "url": _STRING,
        "branch": _STRING,
        "commit_id": _STRING,
        "deployment_duration": {"type": "number"},
        "is_fix": _BOOLEAN,
        "is_hotfix": _BOOLEAN,
        "is_forced": _BOOLEAN,
        "commits_count": {"type": "integer"},
        "repository_url": _STRING,
        "member_id": _STRING,
        "pull_request_number": {"type": "number"},
        "deployment_node_id": _STRING,
        "status": {"enum": list(STATUSES)},
    },
    "additionalProperties": False,
    # "deployment_node_id ... No (Required for GitHub)"
    "if": {
        "type": "object",
        "required": ["repository_url"],
        "properties": {"repository_url": {"type": "string", "pattern": GITHUB_REPOSITORY}},
    },
    "then": {"required": ["deployment_node_id"]},
}

RESPONSE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "iftrue deployment record",
    "type": "object",
    "required": [
        "id",
        "triggered_by",
        "title",
        "changelog",
        "is_hotfix",
        "is_forced",
        "is_fix",
        "commits_count",
        "organization_id",
        "repository_id",
        "pusher_id",
        "url",
        "branch",
        "commit_id",
        "deployment_duration",
        "node_id",
        "status",
    ],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "triggered_by": _STRING,
        "title": _STRING,
        "changelog": _NULLABLE_STRING,
        "is_hotfix": _BOOLEAN,
        "is_forced": _BOOLEAN,
        "is_fix": _BOOLEAN,
        "commits_count": {"type": "integer"},
        "organization_id": _STRING,
        "repository_id": _STRING,
        "pusher_id": _STRING,
        "url": _NULLABLE_STRING,
        "branch": _STRING,
        "commit_id": _STRING,
        "deployment_duration": {"type": ["number", "null"]},
        "node_id": _NULLABLE_STRING,
        "status": {"enum": list(STATUSES)},
    },
    "additionalProperties": False,
}

ERROR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "iftrue error",
    "type": "object",
    "required": ["message"],
    "properties": {"message": _STRING},
}

_REQUEST = Draft202012Validator(REQUEST_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
_RESPONSE = Draft202012Validator(
    RESPONSE_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)
_ERROR = Draft202012Validator(ERROR_SCHEMA)


def request_errors(body: Any) -> list[str]:
    """Why ``body`` is not a valid create-deployment request, one line per fault, by field."""
    found = sorted(_REQUEST.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or 'body'}: {error.message}"
        for error in found
    ]


def _errors(validator: Draft202012Validator, value: Any) -> str:
    return "".join(f"\n  - {error.message}" for error in validator.iter_errors(value))


def _parse(where: str, body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except ValueError as exc:
        raise AssertionError(f"{where}: body is not JSON: {(body or b'')[:200]!r}") from exc


class JsonSchemaChecker:
    """Assert that recorded exchanges match iftrue's contract as written down above."""

    def check_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body_bytes: bytes | None,
    ) -> None:
        """Raise ``AssertionError`` unless this is a well-formed, authenticated create."""
        where = f"{method.upper()} {url}"
        self._check_operation(where, method, url)
        lowered = {name.lower(): value for name, value in headers.items()}
        scheme, _, credential = lowered.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AssertionError(f"{where}: no 'Authorization: Bearer <JWT>' header")
        if not lowered.get("content-type", "").lower().startswith("application/json"):
            raise AssertionError(f"{where}: content-type is not application/json")
        problems = _errors(_REQUEST, _parse(where, body_bytes))
        if problems:
            raise AssertionError(f"{where}: request body does not match the contract{problems}")

    def check_response(
        self,
        method: str,
        url: str,
        request_headers: Mapping[str, str],
        status: int,
        response_headers: Mapping[str, str],
        body_bytes: bytes | None,
    ) -> None:
        """Raise ``AssertionError`` unless this is a 201 record or a 400/401/5xx message."""
        where = f"{method.upper()} {url} -> {status}"
        self._check_operation(where, method, url)
        if status != 201 and status not in (400, 401) and not 500 <= status <= 599:
            raise AssertionError(f"{where}: status not documented")
        content_type = {k.lower(): v for k, v in response_headers.items()}.get("content-type", "")
        if not content_type.lower().startswith("application/json"):
            raise AssertionError(f"{where}: body is {content_type!r}, not JSON")
        validator = _RESPONSE if status == 201 else _ERROR
        problems = _errors(validator, _parse(where, body_bytes))
        if problems:
            raise AssertionError(f"{where}: response does not match the contract{problems}")

    @staticmethod
    def _check_operation(where: str, method: str, url: str) -> None:
        if method.upper() != "POST" or urlsplit(url).path != PATH:
            raise AssertionError(f"{where}: no such operation (only POST {SERVER}{PATH})")
