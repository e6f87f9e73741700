"""Check recorded HTTP exchanges against an OpenAPI description with ``openapi-core``.

The fakes in this package must not drift from the real APIs: every request a test sends and
every response a fake serves can be checked against the published spec in ``../shared/specs``.
``openapi-core`` does the schema work; this module adapts plain recorded values (method, URL,
headers, bytes) to its ``Request``/``Response`` protocols and turns its errors into
``AssertionError`` with a readable message.

Statuses GitHub may send on any endpoint whether or not the spec lists them (304 Not
Modified, 400 for malformed JSON, 401, 403, 404, 429, 5xx) are allowed everywhere; for them
only GitHub's error shape is required. Every other status must be documented for the operation
and its body must match the schema. On top of the spec: any 4xx/5xx body must be GitHub's error
shape (a JSON object with a string ``message``), and 204 and 304 must have no body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

# The repository is checked out with ``shared/`` beside it, locally and in CI.
SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
GITHUB_SPEC = SPECS / "github-deployments.openapi.json"

# Statuses GitHub may answer on any endpoint, documented or not.
_ANYWHERE = frozenset({304, 400, 401, 403, 404, 429})


def _sent_anywhere(status: int) -> bool:
    return status in _ANYWHERE or 500 <= status <= 599


@cache
def _load(spec_path: Path) -> tuple[OpenAPI, str]:
    """Parse (and validate) a spec once per process; returns it with its first server URL."""
    raw = json.loads(spec_path.read_text(encoding="utf-8"))
    servers = raw.get("servers") or [{"url": "http://localhost"}]
    return OpenAPI.from_dict(raw), str(servers[0]["url"]).rstrip("/")


@dataclass
class _Request:
    """A recorded request in the shape of ``openapi_core.protocols.Request``."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class _Response:
    """A recorded response in the shape of ``openapi_core.protocols.Response``."""

    status_code: int
    headers: Headers
    content_type: str
    data: bytes | None


def _describe(errors: Iterable[BaseException]) -> str:
    lines: list[str] = []
    for error in errors:
        line = f"{type(error).__name__}: {error}"
        cause = error.__cause__
        if cause is not None and str(cause) not in line:
            line += f" (caused by {type(cause).__name__}: {cause})"
        lines.append(line)
    return "\n  - ".join(["", *lines])


class OpenApiChecker:
    """Assert that requests and responses match one OpenAPI description."""

    def __init__(self, spec_path: Path) -> None:
        self.spec_path = spec_path
        self._app, self._server = _load(spec_path.resolve())

    def check_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body_bytes: bytes | None,
    ) -> None:
        """Raise ``AssertionError`` unless the request matches a documented operation."""
        request = self._request(method, url, headers, body_bytes)
        errors = list(self._app.iter_request_errors(request))
        if errors:
            raise AssertionError(
                f"{method.upper()} {url} does not match {self.spec_path.name}:{_describe(errors)}"
            )

    def check_response(
        self,
        method: str,
        url: str,
        request_headers: Mapping[str, str],
        status: int,
        response_headers: Mapping[str, str],
        body_bytes: bytes | None,
    ) -> None:
        """Raise ``AssertionError`` unless the response is one the operation may give."""
        where = f"{method.upper()} {url} -> {status}"
        request = self._request(method, url, request_headers, None)
        headers = Headers(list(response_headers.items()))
        content_type = (headers.get("content-type") or "").lower()
        response = _Response(status, headers, content_type, body_bytes or None)
        errors = list(self._app.iter_response_errors(request, response))

        path_errors = [error for error in errors if isinstance(error, PathError)]
        if path_errors:
            raise AssertionError(f"{where}: no such operation{_describe(path_errors)}")
        undocumented = any(isinstance(error, ResponseNotFound) for error in errors)
        if undocumented and not _sent_anywhere(status):
            raise AssertionError(f"{where}: status not documented{_describe(errors)}")
        if not undocumented and errors:
            raise AssertionError(f"{where}: response does not match the spec{_describe(errors)}")

        if status in (204, 304) and body_bytes:
            raise AssertionError(f"{where}: a {status} response must have no body")
        if status >= 400 and body_bytes:
            self._check_error_body(where, content_type, body_bytes)

    @staticmethod
    def _check_error_body(where: str, content_type: str, body: bytes) -> None:
        """GitHub's error shape: a JSON object with a string ``message``."""
        if not content_type.startswith("application/json"):
            raise AssertionError(f"{where}: error body is {content_type!r}, not JSON")
        try:
            parsed: Any = json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{where}: error body is not JSON: {body[:200]!r}") from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("message"), str):
            raise AssertionError(f"{where}: error body has no string 'message': {parsed!r}")

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> _Request:
        # The fake listens on loopback; the spec names api.github.com. Match on path only.
        parts = urlsplit(url)
        header_values = Headers(list(headers.items()))
        content_type = (header_values.get("content-type") or "").lower()
        if body and not content_type:
            content_type = "application/json"
        return _Request(
            host_url=self._server,
            path=parts.path,
            method=method.lower(),
            body=body or None,
            content_type=content_type,
            parameters=RequestParameters(
                query=ImmutableMultiDict(parse_qsl(parts.query, keep_blank_values=True)),
                header=header_values,
            ),
        )
