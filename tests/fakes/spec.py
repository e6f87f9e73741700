"""Check recorded HTTP exchanges against an OpenAPI description with ``openapi-core``.

The fakes in this package must not drift from the real APIs: every request a test sends and
every response a fake serves can be checked against the API descriptions vendored in
``tests/fakes/specs/`` (their provenance and licences: ``tests/fakes/specs/README.md``).
``openapi-core`` does the schema work; this module adapts plain recorded values (method, URL,
headers, bytes) to its ``Request``/``Response`` protocols and turns its errors into
``AssertionError`` with a readable message. Requests are matched on their path: the host is
replaced by the spec's own ``servers[0].url``.

What an API does beyond its description is a ``Conventions`` value, chosen by the spec file:

- GitHub (``GITHUB``): statuses GitHub may send on any endpoint whether or not the spec lists
  them (304 Not Modified, 400 for malformed JSON, 401, 403, 404, 429, 5xx) are allowed
  everywhere; for them only GitHub's error shape is required. Every request must carry a
  ``User-Agent`` (``specs/API-REFERENCE.md`` section 1, the headers; GitHub refuses a request
  without one).
- Chainloop (``CHAINLOOP``): every operation has a ``default`` response, so every status is
  documented; any 4xx/5xx body must be a grpc-gateway ``rpcStatus`` with an integer ``code``
  and a string ``message``.
- Unkey (``UNKEY``): only the documented statuses; error bodies may be
  ``application/problem+json`` (the spec's 429) and their ``error.status`` must equal the HTTP
  status.

Every other status must be documented for the operation and its body must match the schema. On
top of the spec: any 4xx/5xx body must have the API's error shape, and 204 and 304 must have no
body. ``check_recorded`` walks a fake's request log with the marker headers the fake tests use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.fakes.server import RecordedRequest

# Inside the repository: the tests of a fresh clone need nothing beside it.
SPECS = Path(__file__).resolve().parent / "specs"
GITHUB_SPEC = SPECS / "github-deployments.openapi.json"
CHAINLOOP_SPEC = SPECS / "chainloop-deployments.openapi.json"
UNKEY_SPEC = SPECS / "unkey-deploy.openapi.json"

# Request headers the fake tests put on exchanges that must fail the request check
# (``INVALID``) or that leave the spec's operations entirely (``OFF_SPEC``).
INVALID_MARKER = "x-test-invalid"
OFF_SPEC_MARKER = "x-test-off-spec"

JSON_TYPES = ("application/json",)


def _github_error(status: int, body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return f"error body has no string 'message': {body!r}"
    return None


def _rpc_status(status: int, body: Any) -> str | None:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("code"), int)
        or not isinstance(body.get("message"), str)
    ):
        return f"error body is not an rpcStatus (integer 'code', string 'message'): {body!r}"
    return None


def _unkey_error(status: int, body: Any) -> str | None:
    meta = body.get("meta") if isinstance(body, dict) else None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("requestId"), str):
        return f"error body has no meta.requestId: {body!r}"
    if not isinstance(error, dict) or error.get("status") != status:
        return f"error body's error.status is not {status}: {body!r}"
    return None


@dataclass(frozen=True)
class Conventions:
    """What an API does beyond what its description says, as the checker should accept it."""

    name: str
    # Statuses the API may answer on any operation even where the spec does not list them.
    undocumented: frozenset[int] = frozenset()
    any_5xx: bool = False
    # A complaint about a parsed 4xx/5xx body (given the HTTP status), or None when it is fine.
    error_body: Callable[[int, Any], str | None] = _github_error
    error_media_types: tuple[str, ...] = JSON_TYPES
    # Request headers the API refuses requests without (lower-case names).
    required_headers: tuple[str, ...] = ()

    def sent_anywhere(self, status: int) -> bool:
        return status in self.undocumented or (self.any_5xx and 500 <= status <= 599)


GITHUB = Conventions(
    "GitHub",
    undocumented=frozenset({304, 400, 401, 403, 404, 429}),
    any_5xx=True,
    required_headers=("user-agent",),
)
CHAINLOOP = Conventions("Chainloop", error_body=_rpc_status)
UNKEY = Conventions(
    "Unkey",
    error_body=_unkey_error,
    error_media_types=("application/json", "application/problem+json"),
)
# Exactly what the spec says, with GitHub's error shape required of error bodies.
STRICT = Conventions("strict")
CONVENTIONS: dict[str, Conventions] = {
    GITHUB_SPEC.name: GITHUB,
    CHAINLOOP_SPEC.name: CHAINLOOP,
    UNKEY_SPEC.name: UNKEY,
}


def _problem_json(data: bytes) -> Any:
    return json.loads(data)


@cache
def _load(spec_path: Path) -> tuple[OpenAPI, str]:
    """Parse (and validate) a spec once per process; returns it with its first server URL."""
    raw = json.loads(spec_path.read_text(encoding="utf-8"))
    servers = raw.get("servers") or [{"url": "http://localhost"}]
    # RFC 7807 bodies are JSON; openapi-core only knows the plain JSON media types.
    config = Config(extra_media_type_deserializers={"application/problem+json": _problem_json})
    return OpenAPI.from_dict(raw, config=config), str(servers[0]["url"]).rstrip("/")


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
    """Assert that requests and responses match one OpenAPI description.

    ``conventions`` defaults to the ones registered for the spec's file name (``CONVENTIONS``),
    else ``STRICT``.
    """

    def __init__(self, spec_path: Path, conventions: Conventions | None = None) -> None:
        self.spec_path = spec_path
        self.conventions = conventions or CONVENTIONS.get(spec_path.name, STRICT)
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
        sent = {name.lower(): value for name, value in headers.items()}
        for name in self.conventions.required_headers:
            if not sent.get(name, "").strip():
                raise AssertionError(
                    f"{method.upper()} {url}: no {name} header, which {self.conventions.name} "
                    "requires"
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
        if undocumented and not self.conventions.sent_anywhere(status):
            raise AssertionError(f"{where}: status not documented{_describe(errors)}")
        if not undocumented and errors:
            raise AssertionError(f"{where}: response does not match the spec{_describe(errors)}")

        if status in (204, 304) and body_bytes:
            raise AssertionError(f"{where}: a {status} response must have no body")
        if status >= 400 and body_bytes:
            self._check_error_body(where, status, content_type, body_bytes)

    def _check_error_body(self, where: str, status: int, content_type: str, body: bytes) -> None:
        """The API's error shape (``Conventions.error_body``) in one of its media types."""
        if not content_type.startswith(self.conventions.error_media_types):
            raise AssertionError(f"{where}: error body is {content_type!r}, not JSON")
        try:
            parsed: Any = json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{where}: error body is not JSON: {body[:200]!r}") from exc
        complaint = self.conventions.error_body(status, parsed)
        if complaint is not None:
            raise AssertionError(f"{where}: {complaint}")

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> _Request:
        # The fake listens on loopback; the spec names the real host. Match on path only.
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


class Checker(Protocol):
    """What ``check_recorded`` needs: ``OpenApiChecker`` and iftrue's ``JsonSchemaChecker``."""

    def check_request(
        self, method: str, url: str, headers: Mapping[str, str], body_bytes: bytes | None
    ) -> None: ...

    def check_response(
        self,
        method: str,
        url: str,
        request_headers: Mapping[str, str],
        status: int,
        response_headers: Mapping[str, str],
        body_bytes: bytes | None,
    ) -> None: ...


def check_recorded(recorded: Sequence[RecordedRequest], checker: Checker) -> None:
    """Check every recorded request and every answered response.

    A request marked ``x-test-invalid`` must fail the request check (its response must still
    pass); one marked ``x-test-off-spec`` must fail both. Everything else must pass.
    """
    for exchange in recorded:
        off_spec = OFF_SPEC_MARKER in exchange.headers
        request_args = (exchange.method, exchange.url, exchange.headers, exchange.body)
        if off_spec or INVALID_MARKER in exchange.headers:
            with pytest.raises(AssertionError):
                checker.check_request(*request_args)
        else:
            checker.check_request(*request_args)
        if exchange.status is None:
            continue
        response_args = (
            exchange.method,
            exchange.url,
            exchange.headers,
            exchange.status,
            exchange.response_headers,
            exchange.response_body,
        )
        if off_spec:
            with pytest.raises(AssertionError):
                checker.check_response(*response_args)
        else:
            checker.check_response(*response_args)
