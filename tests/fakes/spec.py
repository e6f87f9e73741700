"""Check recorded HTTP exchanges against an OpenAPI description with ``openapi-core``.

The fakes in this package must not drift from the real APIs: every request a test sends and
every response a fake serves can be checked against the API descriptions vendored in
``tests/fakes/specs/`` (their provenance and licences: ``tests/fakes/specs/README.md``).
``openapi-core`` does the schema work; this module adapts plain recorded values (method, URL,
headers, bytes) to its ``Request``/``Response`` protocols and turns its errors into
``AssertionError`` with a readable message. Requests are matched on their path: the host is
replaced by the spec's own ``servers[0].url``. One checker may hold several descriptions of one
API (GitHub's come in three extracts, ``GITHUB_SPECS``): each exchange is then checked against
the file one of whose paths matches its URL (the first file when none does, which then reports
it).

What an API does beyond its description is a ``Conventions`` value, chosen by the spec file:

- GitHub (``GITHUB``): statuses GitHub may send on any endpoint whether or not the spec lists
  them (304 Not Modified, 400 for malformed JSON, 401, 403, 404, 429, 5xx) are allowed
  everywhere, and 422 on any write (GitHub's validation answer, "Validation failed": the Actions
  secrets operations list only their successes, yet GitHub refuses a secret name or a sealed
  value it cannot take); for them only GitHub's error shape is required. Every request must
  carry a ``User-Agent`` (``specs/API-REFERENCE.md`` section 1, the headers; GitHub refuses a
  request without one).
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
import re
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
GITHUB_APPS_SPEC = SPECS / "github-apps-secrets.openapi.json"
GITHUB_PULLS_SPEC = SPECS / "github-pulls-checks.openapi.json"
#: everything the fake GitHub serves: deployments, statuses, deploy keys, environments and
#: commits; Apps, installation tokens, Actions secrets, ``/meta`` and ``/rate_limit``; pull
#: requests
GITHUB_SPECS = (GITHUB_SPEC, GITHUB_APPS_SPEC, GITHUB_PULLS_SPEC)
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
    # Statuses the API may answer on any write (POST, PUT, PATCH, DELETE).
    undocumented_writes: frozenset[int] = frozenset()
    any_5xx: bool = False
    # A complaint about a parsed 4xx/5xx body (given the HTTP status), or None when it is fine.
    error_body: Callable[[int, Any], str | None] = _github_error
    error_media_types: tuple[str, ...] = JSON_TYPES
    # Request headers the API refuses requests without (lower-case names).
    required_headers: tuple[str, ...] = ()

    def sent_anywhere(self, status: int, method: str = "GET") -> bool:
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE") and (
            status in self.undocumented_writes
        ):
            return True
        return status in self.undocumented or (self.any_5xx and 500 <= status <= 599)


GITHUB = Conventions(
    "GitHub",
    undocumented=frozenset({304, 400, 401, 403, 404, 429}),
    undocumented_writes=frozenset({422}),
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
    GITHUB_APPS_SPEC.name: GITHUB,
    GITHUB_PULLS_SPEC.name: GITHUB,
    CHAINLOOP_SPEC.name: CHAINLOOP,
    UNKEY_SPEC.name: UNKEY,
}


def _problem_json(data: bytes) -> Any:
    return json.loads(data)


@dataclass(frozen=True)
class _Spec:
    """One parsed description: its file name, the ``openapi-core`` app, its first server URL
    and its path templates (as patterns, with the methods each has)."""

    name: str
    app: OpenAPI
    server: str
    paths: tuple[tuple[re.Pattern[str], frozenset[str]], ...]

    def methods_at(self, path: str) -> frozenset[str] | None:
        """The methods of the path item matching ``path`` (None when none matches)."""
        for pattern, methods in self.paths:
            if pattern.fullmatch(path):
                return methods
        return None


_OPERATIONS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _template(path: str) -> re.Pattern[str]:
    """A spec path (``/repos/{owner}/{repo}``) as a pattern: each parameter one segment."""
    parts = re.split(r"(\{[^}/]+\})", path)
    pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(pattern)


@cache
def _load(spec_path: Path) -> _Spec:
    """Parse (and validate) a spec once per process."""
    raw = json.loads(spec_path.read_text(encoding="utf-8"))
    servers = raw.get("servers") or [{"url": "http://localhost"}]
    # RFC 7807 bodies are JSON; openapi-core only knows the plain JSON media types.
    config = Config(extra_media_type_deserializers={"application/problem+json": _problem_json})
    paths = tuple(
        (_template(path), frozenset(item) & _OPERATIONS) for path, item in raw["paths"].items()
    )
    server = str(servers[0]["url"]).rstrip("/")
    return _Spec(spec_path.name, OpenAPI.from_dict(raw, config=config), server, paths)


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
    """Assert that requests and responses match an API's OpenAPI description, in one file or
    in several (each exchange is checked against the file whose paths match it).

    ``conventions`` defaults to the ones registered for the files' names (``CONVENTIONS``; the
    files must agree), else ``STRICT``.
    """

    def __init__(
        self, spec_path: Path | Sequence[Path], conventions: Conventions | None = None
    ) -> None:
        self.spec_paths = (spec_path,) if isinstance(spec_path, Path) else tuple(spec_path)
        if not self.spec_paths:
            raise ValueError("no API description to check against")
        self.spec_path = self.spec_paths[0]
        registered = {CONVENTIONS.get(path.name, STRICT) for path in self.spec_paths}
        if conventions is None and len(registered) > 1:
            raise ValueError(f"{self.spec_paths} are not descriptions of one API")
        self.conventions = conventions or registered.pop()
        self._specs = tuple(_load(path.resolve()) for path in self.spec_paths)

    def _spec_for(self, method: str, url: str) -> _Spec:
        """The description whose paths match the URL's (preferring one with the method), else
        the first one, which then reports that nothing matches."""
        path = urlsplit(url).path
        matching = [
            (spec, methods)
            for spec in self._specs
            if (methods := spec.methods_at(path)) is not None
        ]
        for spec, methods in matching:
            if method.lower() in methods:
                return spec
        return matching[0][0] if matching else self._specs[0]

    def check_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body_bytes: bytes | None,
    ) -> None:
        """Raise ``AssertionError`` unless the request matches a documented operation."""
        spec = self._spec_for(method, url)
        request = self._request(spec, method, url, headers, body_bytes)
        errors = list(spec.app.iter_request_errors(request))
        if errors:
            raise AssertionError(
                f"{method.upper()} {url} does not match {spec.name}:{_describe(errors)}"
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
        spec = self._spec_for(method, url)
        request = self._request(spec, method, url, request_headers, None)
        headers = Headers(list(response_headers.items()))
        content_type = (headers.get("content-type") or "").lower()
        response = _Response(status, headers, content_type, body_bytes or None)
        errors = list(spec.app.iter_response_errors(request, response))

        path_errors = [error for error in errors if isinstance(error, PathError)]
        if path_errors:
            raise AssertionError(f"{where}: no such operation{_describe(path_errors)}")
        undocumented = any(isinstance(error, ResponseNotFound) for error in errors)
        if undocumented and not self.conventions.sent_anywhere(status, method):
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

    @staticmethod
    def _request(
        spec: _Spec,
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
            host_url=spec.server,
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
