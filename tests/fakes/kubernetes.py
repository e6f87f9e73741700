"""A stateful fake of the Kubernetes API server's core/v1 Secrets, for lightkube and raw HTTP.

``FakeKubernetes`` serves the Secrets endpoints over real HTTP on loopback (see ``server.py``)
as ``tests/fakes/specs/API-REFERENCE.md`` section 6 describes them; where that is silent it
follows the API server itself (k8s.io/apiserver handlers and generic registry, the Secret
registry strategy and ``pkg/apis/core/validation``), and it is written to be driven by
``lightkube`` 1.0.1 (``KubeConfig.from_file(fake.kubeconfig(path))`` → ``lightkube.Client``).

What is served (``{ns}`` a namespace, ``{name}`` a Secret):

- ``GET /api/v1/namespaces/{ns}/secrets``: a ``SecretList`` (items without ``kind`` and
  ``apiVersion``, as the server lists them; ``metadata.resourceVersion`` is the store's
  current revision), sorted by name; ``labelSelector`` (``k=v``, ``k==v``, ``k!=v``, ``k``,
  ``!k``, ``k in (a,b)``, ``k notin (a,b)``), ``fieldSelector`` (``metadata.name``,
  ``metadata.namespace``, ``type``; ``=``, ``==``, ``!=``) and ``limit``/``continue``
  pagination. ``GET /api/v1/secrets`` lists every namespace (lightkube's ``namespace="*"``).
- ``POST /api/v1/namespaces/{ns}/secrets``: 201 and the object; 409 ``AlreadyExists`` when the
  name is taken; ``metadata.generateName`` draws a 5-character suffix as the server does;
  ``metadata.namespace`` must match the path or be absent (400, the server's wording); a
  ``metadata.resourceVersion`` on create is refused with the server's 500 ("resourceVersion
  should not be set on objects to be created").
- ``GET/PUT/PATCH/DELETE /api/v1/namespaces/{ns}/secrets/{name}``: 404 ``NotFound`` when absent
  (Secrets are not created by PUT: the strategy does not allow create-on-update). A PUT whose
  ``metadata.resourceVersion`` is not the current one is 409 ``Conflict`` with the server's
  message; a PUT without one is an unconditional update (the Secret strategy allows it); a
  PUT whose body names another object is 400. DELETE answers 200 with a ``Status`` ``Success``
  whose ``details`` carry ``name``, ``kind: secrets`` and ``uid``: the generic registry returns
  that, not the object, for kinds that do not set ``ReturnDeletedObject`` (lightkube ignores
  the body of a delete). A DELETE body (``DeleteOptions``) may carry ``preconditions``
  (``uid``, ``resourceVersion``): a mismatch is 409 with the storage layer's "Precondition
  failed: ..." message. ``DELETE /api/v1/namespaces/{ns}/secrets`` (deletecollection) takes
  the same selectors as a list and answers the deleted items as a ``SecretList``.
- PATCH content types: ``application/merge-patch+json`` (RFC 7386) and
  ``application/strategic-merge-patch+json`` — lightkube's ``client.patch`` sends the latter
  by default (``PatchType.STRATEGIC``); every field of a Secret that a patch can reach is a map
  or a scalar, so both are applied as a JSON merge patch (strategic-merge directives such as
  ``$patch`` and the merge keys of ``metadata.ownerReferences``/``finalizers`` are not
  modelled: lists are replaced whole). ``application/json-patch+json`` (RFC 6902; add, remove,
  replace, move, copy, test) is served too. ``application/apply-patch+yaml`` is server-side
  apply, what lightkube's ``client.apply`` sends (the body is JSON, which is YAML, with
  ``?fieldManager=...``; ``force=true`` when asked): **simplified to create-or-merge**, the
  applied object merged into the stored one as a merge patch, or created (201) when absent.
  Field ownership (``managedFields``), apply conflicts between managers and the removal of
  fields a manager stops applying are not modelled; ``fieldManager`` is still required, as the
  server requires it (422 on ``PatchOptions``). Any other content type is 415. A patch whose
  result carries a ``metadata.resourceVersion`` other than the current one is 409, as the
  patched object's version is the update's precondition. An apply that would create the
  object also needs the ``create`` verb, as the server checks it.
- ``?dryRun=All`` on a write: everything is checked and answered, nothing is stored.
- Not served: watch (``?watch=true`` is a 400), ``resourceVersion`` semantics on reads (every
  read sees the latest state), finalizers and graceful deletion (an object with finalizers is
  deleted at once), garbage collection, ``managedFields`` (never returned), other resources.

State: every write (create, update, patch, delete, and the test hooks below) bumps one global
revision counter, which is the written object's ``metadata.resourceVersion`` (a string, as on
the wire). Create sets ``metadata.uid`` (from a seeded generator) and ``creationTimestamp``
(UTC, seconds); an update keeps both, as ``rest.BeforeUpdate`` does (a different ``uid`` in
the body is 422, ``field is immutable``). ``stringData`` is merged into ``data`` (base64 of
the UTF-8 text), overriding keys of the same name, and is never stored or returned. ``type``
defaults to ``Opaque`` and is immutable (422 ``type: Invalid value: ...: field is immutable``,
so a PUT that leaves ``type`` out of a non-Opaque Secret is refused, as in Kubernetes). A
Secret with ``immutable: true`` refuses changes to ``data`` and to ``immutable`` itself.

Errors are ``Status`` objects as the server writes them (``kind: Status``, ``apiVersion: v1``,
``metadata: {}``, ``status: Failure``, ``message``, ``reason``, ``details{name, kind}``,
``code``); ``details.kind`` is the resource, ``secrets``, except for ``Invalid`` where it is the
kind, ``Secret``, with one ``causes`` entry per problem. lightkube turns them into
``lightkube.ApiError`` only when the response's content type is exactly ``application/json``,
which is what the fake sends.

Authentication: ``Authorization: Bearer <token>``; a wrong or missing token is 401
``Unauthorized`` (a Status without details). Authorization (RBAC): ``permissions`` maps a
namespace to the verbs the user has on secrets there (``get``, ``list``, ``create``,
``update``, ``patch``, ``delete``, ``deletecollection``, or ``*``); a namespace not in the map
grants nothing, the key ``*`` is a cluster-wide grant (a ClusterRoleBinding: every namespace,
and the cluster-scope list); ``None`` (the default) allows everything. A missing verb is 403
``Forbidden`` with the server's wording (``secrets "x" is forbidden: User "..." cannot update
resource "secrets" in API group "" in the namespace "ns"``; ``secrets is forbidden: ...`` when
the URL names no object; ``... at the cluster scope`` for the all-namespaces list). As on the
server, authentication comes first, then authorization, then everything else (so a 403 hides
whether the object exists). ``namespaces`` (default ``None``: every namespace exists) lists
the namespaces that exist: a create in another is 404 ``namespaces "x" not found``.

Body checks. Every Secret a client sends (POST, PUT) and every object a PATCH or apply would
store is checked against the Secret schema ``kubernetes-validate`` ships for Kubernetes
``KUBERNETES_VERSION`` (its strict variant, which refuses unknown fields; loaded from the
package, offline), then with the semantic validation of the API server, which no schema
carries (``kubernetes-validate`` does not check names, label syntax or data keys, so this
module does, with the server's rules and messages: ``metadata.name`` a lowercase RFC 1123
subdomain of at most 253 characters; label keys and annotation keys qualified names (an
optional DNS-subdomain prefix and ``/``, a name part of at most 63 characters), label values
at most 63 characters of the same alphabet or empty, annotations at most 256 KiB in all;
``data`` keys of ``[-._a-zA-Z0-9]+``, not ``.``/``..``/``..*``; at most 1 MiB of data; the keys
the typed Secrets require, ``ssh-privatekey`` for ``kubernetes.io/ssh-auth``, ``tls.crt`` and
``tls.key`` for ``kubernetes.io/tls``, ``username`` or ``password`` for
``kubernetes.io/basic-auth``, ``.dockerconfigjson`` for ``kubernetes.io/dockerconfigjson``).
How the server answers each kind of problem, which the fake follows:

- a body that does not decode as a Secret (not a JSON object, a value of the wrong type,
  ``data`` that is not valid base64, another ``kind``): 400 ``BadRequest``, ``Secret in version
  "v1" cannot be handled as a Secret: ...`` for POST and PUT; for PATCH the server reports the
  patched object as 422 ``Invalid`` on the field ``patch``. The wording after the prefix is
  the schema checker's, not Go's decoder's;
- unknown fields: dropped, with a ``Warning: 299 - "unknown field \\"x\\""`` header (the
  server's default, ``fieldValidation=Warn``); ``?fieldValidation=Strict`` makes them a 400
  ``strict decoding error: unknown field "x"``, ``Ignore`` drops them silently;
- the semantic problems above: 422 ``Invalid``, ``Secret "x" is invalid: <field>: <problem>``
  (several: ``[a, b]``) with ``details.causes``.

Each of these is also appended to ``violations`` (``"<METHOD> <path>: <message>"``), unknown
fields included even when the server would only warn: a test asserts ``violations == []`` to
prove the client under test never sent a body the API server would refuse or silently alter.

Test hooks, usable while the server runs (all take the lock): ``secret(ns, name)`` (the stored
object as a GET would answer it, or None), ``decoded(ns, name)`` (its ``data`` decoded to
``str``; ``KeyError`` when absent), ``put_secret(ns, name, data=..., labels=...,
annotations=..., type=...)`` (an out-of-band create or replace, as kubectl or another team
would do it: not checked, bumps the revision, keeps the uid unless the type changes),
``delete_secret(ns, name)``, ``conflict_next(n)`` (the next n PUT or PATCH of an existing
Secret first bump its resourceVersion, as if another writer had updated it in between, and
answer 409; unlike the real server this hits unconditional writes too, which the server would
retry internally), ``fail_next(n, status=500)`` (the next n requests, whatever they are,
answer that status with a Status body, before authentication; a 429 carries ``Retry-After:
1``). ``on_request`` (``Callable[[FakeKubernetes], None] | None``) is called under the fake's
lock after each request has been answered and recorded, refused ones included, so a test can
check an invariant at every step; an exception it raises is kept in ``internal_errors`` (the
``with`` block then fails) and does not change the answer.

Every request is recorded by the base class; here each record is a ``StampedRequest`` (a
``RecordedRequest``) that also carries ``arrived`` (``time.monotonic()`` once its request line
and headers were read, before its body), ``answered`` (when it was decided, under the lock) and
``revision`` (the store's revision right after that decision), so a test can rebuild what a
consumer saw at each moment; ``timeline()`` lists them in order of arrival, ``revision`` is
the current one and ``secrets(ns)`` every stored object.

``kubeconfig(path)`` writes a kubeconfig (YAML, mode 0600) with one cluster (``server:
http://127.0.0.1:PORT``: lightkube accepts plain HTTP, so no TLS is served), one user with
``token:`` and one context (``current-context`` set, a default namespace). In a pod, lightkube
builds its configuration itself from ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the files under
``/var/run/secrets/kubernetes.io/serviceaccount/`` (``KubeConfig.from_service_account``, always
``https``): that path is lightkube's own and is not emulated here.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import jsonschema
import yaml
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource

from tests.fakes.server import (
    Decision,
    FakeServer,
    Incoming,
    JsonObject,
    RecordedRequest,
    Refusal,
    Reply,
    random_uuid,
)

#: the Kubernetes version whose Secret schema (as shipped by kubernetes-validate) is enforced
KUBERNETES_VERSION = "1.37"
#: the user the default service account token authenticates as
DEFAULT_USER = "system:serviceaccount:slotkeeper:slotkeeper"
DEFAULT_TOKEN = "fake-kubernetes-token-0123456789"
VERBS = frozenset({"get", "list", "create", "update", "patch", "delete", "deletecollection"})
RESOURCE = "secrets"
KIND = "Secret"

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)

MAX_SECRET_SIZE = 1024 * 1024  # core.MaxSecretSize
TOTAL_ANNOTATION_SIZE = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

# The regular expressions and messages of k8s.io/apimachinery/pkg/util/validation.
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
# What a generated name's suffix is drawn from (k8s.io/apimachinery/pkg/util/rand).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# Required data keys of the typed Secrets (pkg/apis/core/validation ValidateSecret).
_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
}

_NAMESPACED_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?/?$")
_ALL_NAMESPACES_PATH = re.compile(r"^/api/v1/secrets/?$")

# The reason and message of a Status the server answers with each status code.
_FAILURES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", "the server reported a conflict"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: failure injected by the test"),
    502: ("InternalError", "an error on the server has prevented the request from succeeding"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: (
        "Timeout",
        "the server was unable to return a response in the time allotted, but may still be "
        "processing the request",
    ),
}


# -- the recorded requests, with their times ---------------------------------------------------


@dataclass(frozen=True)
class StampedRequest(RecordedRequest):
    """A recorded request with when it arrived and was decided (``time.monotonic()``) and the
    store's revision right after it."""

    arrived: float = 0.0
    answered: float = 0.0
    revision: int = 0


class _StampedLog(list[RecordedRequest]):
    """The base class's request log: each record is stamped as it is appended, then ``after``
    runs (the base class appends under the fake's lock, once the request was decided)."""

    def __init__(
        self, stamp: Callable[[RecordedRequest], RecordedRequest], after: Callable[[], None]
    ) -> None:
        super().__init__()
        self._stamp = stamp
        self._after = after

    def append(self, record: RecordedRequest) -> None:
        super().append(self._stamp(record))
        self._after()


# -- Status bodies -------------------------------------------------------------------------------


def status_body(
    code: int,
    reason: str,
    message: str,
    *,
    name: str | None = None,
    kind: str | None = RESOURCE,
    causes: list[JsonObject] | None = None,
    details: bool = True,
) -> JsonObject:
    """A failure ``Status`` as the API server writes it (field order included)."""
    body: JsonObject = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        detail: JsonObject = {}
        if name:
            detail["name"] = name
        if kind:
            detail["kind"] = kind
        if causes:
            detail["causes"] = causes
        body["details"] = detail
    body["code"] = code
    return body


def _refuse(code: int, reason: str, message: str, **details: Any) -> Refusal:
    return Refusal(Reply(code, status_body(code, reason, message, **details)))


def _not_found(name: str, resource: str = RESOURCE) -> Refusal:
    return _refuse(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)


def _conflict(name: str, why: str) -> Refusal:
    message = f'Operation cannot be fulfilled on {RESOURCE} "{name}": {why}'
    return _refuse(409, "Conflict", message, name=name)


_MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def _bad_request(message: str) -> Refusal:
    return _refuse(400, "BadRequest", message, details=False)


# -- field errors (k8s.io/apimachinery/pkg/util/validation/field) -------------------------------


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, worded as ``field.Error`` words it."""

    field: str
    kind: str  # Invalid, Required, Forbidden, TooLong
    value: Any = None
    detail: str = ""

    _REASONS: ClassVar[dict[str, str]] = {
        "Invalid": "FieldValueInvalid",
        "Required": "FieldValueRequired",
        "Forbidden": "FieldValueForbidden",
        "TooLong": "FieldValueTooLong",
    }
    _TITLES: ClassVar[dict[str, str]] = {
        "Invalid": "Invalid value",
        "Required": "Required value",
        "Forbidden": "Forbidden",
        "TooLong": "Too long",
    }

    def body(self) -> str:
        """The message without the field: ``Invalid value: "x": detail``."""
        title = self._TITLES[self.kind]
        if self.kind == "Invalid":
            shown = json.dumps(self.value) if isinstance(self.value, str) else repr(self.value)
            return f"{title}: {shown}: {self.detail}" if self.detail else f"{title}: {shown}"
        return f"{title}: {self.detail}" if self.detail else title

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> JsonObject:
        return {"reason": self._REASONS[self.kind], "message": self.body(), "field": self.field}


def _invalid(name: str, errors: list[FieldError], kind: str = KIND) -> Refusal:
    shown = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    message = f'{kind} "{name}" is invalid: {shown}'
    causes = [e.cause() for e in errors]
    return _refuse(422, "Invalid", message, name=name, kind=kind, causes=causes)


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    """``validation.RegexError``: the message, examples and the regular expression."""
    if not examples:
        return f"{message} (regex used for validation is '{pattern}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{pattern}')"


def _max_len(most: int) -> str:
    return f"must be no more than {most} characters"


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``validation.IsDNS1123Subdomain``: what is wrong with ``value`` as a subdomain."""
    errors: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN, "example.com"))
    return errors


def qualified_name_errors(value: str) -> list[str]:
    """``validation.IsQualifiedName``: label keys and (lower-cased) annotation keys."""
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + m for m in dns1123_subdomain_errors(prefix)]
    else:
        shown = _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME, "MyName", "my.name", "123-abc")
        return [
            f"a qualified name {shown} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errors.append("name part " + _max_len(QUALIFIED_NAME_MAX))
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME, "MyName", "my.name", "123-abc")
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """``validation.IsValidLabelValue``."""
    errors: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errors.append(_max_len(LABEL_VALUE_MAX))
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE, "MyValue", "my_value", "12345"))
    return errors


def config_key_errors(key: str) -> list[str]:
    """``validation.IsConfigMapKey``: a key of a Secret's ``data``."""
    errors: list[str] = []
    if len(key) > DNS1123_SUBDOMAIN_MAX:
        errors.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not re.fullmatch(_CONFIG_KEY, key):
        errors.append(
            _regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY, "key.name", "KEY_NAME", "key-name")
        )
    if key == ".":
        errors.append("must not be '.'")
    elif key == "..":
        errors.append("must not be '..'")
    elif key.startswith(".."):
        errors.append("must not start with '..'")
    return errors


# -- the schema kubernetes-validate ships ------------------------------------------------------


@cache
def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    """The strict schema ``name`` (``secret-v1``, ``secretlist-v1``, ``status-meta-v1``) of
    ``KUBERNETES_VERSION`` from kubernetes-validate's own files, resolved as its ``validate``
    resolves them, but reporting every error rather than the first."""
    versions = [v for v in all_versions() if major_minor(v) == KUBERNETES_VERSION]
    if not versions:
        raise RuntimeError(f"kubernetes-validate ships no schemas for {KUBERNETES_VERSION}")
    schema_dir = f"kubernetes-json-schema/v{versions[-1]}-local-strict"
    schema = schema_contents(f"{schema_dir}/{name}.json", KUBERNETES_VERSION)
    definitions = schema_contents(f"{schema_dir}/_definitions.json", KUBERNETES_VERSION)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def secret_schema_validator() -> jsonschema.Draft202012Validator:
    """The strict Secret schema every body is checked against."""
    return schema_validator("secret-v1")


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path)


@dataclass
class _Decoded:
    """A body checked against the schema: what decoding refused, the unknown fields dropped."""

    obj: JsonObject
    errors: list[str]
    unknown: list[str]


def _decode(body: Any) -> _Decoded:
    """Check a Secret body against the schema; unknown fields are removed from the copy."""
    if not isinstance(body, dict):
        kind = type(body).__name__
        return _Decoded({}, [f"the body is a JSON {kind}, not an object"], [])
    obj = copy.deepcopy(body)
    errors: list[str] = []
    unknown: list[str] = []
    validator = secret_schema_validator()
    found = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    for error in found:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            for key in sorted(k for k in error.instance if k not in known):
                unknown.append(_dotted([*error.absolute_path, key]))
        else:
            where = _dotted(error.absolute_path) or "(the object)"
            errors.append(f"{where}: {error.message}")
    for field_path in sorted(unknown, key=lambda p: -p.count(".")):
        *parents, last = field_path.split(".")
        container: Any = obj
        for part in parents:
            container = container[int(part)] if isinstance(container, list) else container[part]
        container.pop(last, None)
    return _Decoded(obj, errors, unknown)


def _b64_error(value: str) -> str | None:
    """Why ``value`` is not standard padded base64 (Go's ``base64.StdEncoding``), or None."""
    compact = value.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        for index, char in enumerate(compact):
            if char not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=":
                return f"illegal base64 data at input byte {index}"
        return f"illegal base64 data at input byte {len(compact) - len(compact) % 4}"
    return None


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


# -- label and field selectors ------------------------------------------------------------------


def _split_requirements(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET_REQUIREMENT = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY_REQUIREMENT = re.compile(
    r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$"
)
_EXISTS_REQUIREMENT = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _label_test(op: str, key: str, values: frozenset[str]) -> Callable[[Mapping[str, str]], bool]:
    """One requirement of a label selector; ``!=`` and ``notin`` match a missing key too."""

    def test(labels: Mapping[str, str]) -> bool:
        if op in ("=", "==", "in"):
            return labels.get(key) in values
        if op in ("!=", "notin"):
            return labels.get(key) not in values
        return (key in labels) == (op == "exists")

    return test


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate for a ``labelSelector``; ``ValueError`` when it does not parse."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for requirement in _split_requirements(selector):
        if match := _SET_REQUIREMENT.match(requirement):
            key, op = match["key"], match["op"]
            values = frozenset(v.strip() for v in match["values"].split(","))
        elif match := _EQUALITY_REQUIREMENT.match(requirement):
            key, op, values = match["key"], match["op"], frozenset({match["value"]})
        elif match := _EXISTS_REQUIREMENT.match(requirement):
            key, op, values = match["key"], "absent" if match["neg"] else "exists", frozenset()
        else:
            raise ValueError(f"unable to parse requirement: {requirement!r}")
        if qualified_name_errors(key):
            raise ValueError(f"unable to parse requirement: invalid label key {key!r}")
        tests.append(_label_test(op, key, values))
    return lambda labels: all(test(labels) for test in tests)


_FIELDS: dict[str, Callable[[JsonObject], str]] = {
    "metadata.name": lambda obj: str(obj["metadata"]["name"]),
    "metadata.namespace": lambda obj: str(obj["metadata"]["namespace"]),
    "type": lambda obj: str(obj.get("type", "")),
}


def _field_test(
    getter: Callable[[JsonObject], str], value: str, negate: bool
) -> Callable[[JsonObject], bool]:
    def test(obj: JsonObject) -> bool:
        return (getter(obj) == value) != negate

    return test


def field_matcher(selector: str) -> Callable[[JsonObject], bool]:
    """A predicate for a ``fieldSelector`` on the fields a Secret is indexed by."""
    tests: list[Callable[[JsonObject], bool]] = []
    for requirement in _split_requirements(selector):
        match = re.fullmatch(r"(?P<field>[^!=]+?)\s*(?P<op>==|=|!=)\s*(?P<value>.*)", requirement)
        if match is None:
            raise ValueError(f"invalid selector: {requirement!r}; can't understand {requirement!r}")
        getter = _FIELDS.get(match["field"])
        if getter is None:
            raise ValueError(f"field label not supported: {match['field']}")
        tests.append(_field_test(getter, match["value"], match["op"] == "!="))
    return lambda obj: all(test(obj) for test in tests)


# -- patches --------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` removes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class PatchError(ValueError):
    """A JSON patch that cannot be applied."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} does not start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(document: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            raise PatchError(f"path {'/' + '/'.join(parts)!r} does not exist")
    return document


def _put(document: Any, parts: list[str], value: Any, *, replace: bool) -> Any:
    if not parts:
        return value
    parent = _walk(document, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: {last}")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise PatchError(f"index {last!r} is out of range")
    else:
        raise PatchError(f"cannot add {last!r} to a {type(parent).__name__}")
    return document


def _remove(document: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(document, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"remove operation does not apply: doc is missing path: {'/'.join(parts)}")


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; ``PatchError`` when an operation does not apply."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid operation {operation!r}")
        op, parts = operation["op"], _pointer(str(operation["path"]))
        if op == "add":
            result = _put(result, parts, copy.deepcopy(operation.get("value")), replace=False)
        elif op == "replace":
            result = _put(result, parts, copy.deepcopy(operation.get("value")), replace=True)
        elif op == "remove":
            _remove(result, parts)
        elif op in ("move", "copy"):
            source = _pointer(str(operation.get("from", "")))
            value = (
                _remove(result, source) if op == "move" else copy.deepcopy(_walk(result, source))
            )
            result = _put(result, parts, value, replace=False)
        elif op == "test":
            if _walk(result, parts) != operation.get("value"):
                raise PatchError(f"testing value {operation['path']} failed")
        else:
            raise PatchError(f"unexpected kind of operation: {op!r}")
    return result


# -- the fake --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What a request addresses: its RBAC verb, namespace (None: all) and name (None: none)."""

    verb: str
    namespace: str | None
    name: str | None


class FakeKubernetes(FakeServer):
    """The core/v1 Secrets of a Kubernetes API server, in memory, over HTTP on loopback."""

    server_software: ClassVar[str] = "FakeKubernetes"

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        user: str = DEFAULT_USER,
        permissions: Mapping[str, Iterable[str]] | None = None,
        namespaces: Iterable[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(token, seed=seed)
        #: the name the token authenticates as, in 403 messages
        self.user = user
        #: namespace → verbs on secrets there (``*`` key: cluster-wide); None: everything
        self.permissions: dict[str, set[str]] | None = (
            None if permissions is None else {ns: set(v) for ns, v in permissions.items()}
        )
        #: the namespaces that exist; None: every namespace exists
        self.namespaces: set[str] | None = None if namespaces is None else set(namespaces)
        #: every body the server refused as undecodable or invalid, or altered (unknown fields)
        self.violations: list[str] = []
        #: called under the lock after each request has been answered and recorded
        self.on_request: Callable[[FakeKubernetes], None] | None = None

        self._secrets: dict[tuple[str, str], JsonObject] = {}
        self._revision = 0
        self._ids = random.Random(f"kubernetes-ids:{seed}")
        self._conflicts = 0
        self._failures: list[int] = []
        self._stamps = threading.local()
        self._log = _StampedLog(self._stamp, self._recorded)
        self._warnings: list[str] = []  # of the request being answered (under the lock)

    # -- observation -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The store's current revision (the last write's resourceVersion)."""
        with self._lock:
            return self._revision

    def timeline(self) -> list[StampedRequest]:
        """Every request received so far, in order of arrival, with its times."""
        stamped = [r for r in self.requests if isinstance(r, StampedRequest)]
        return sorted(stamped, key=lambda r: r.arrived)

    def secret(self, namespace: str, name: str) -> JsonObject | None:
        """The stored Secret as a GET answers it, or None."""
        with self._lock:
            stored = self._secrets.get((namespace, name))
            return copy.deepcopy(stored) if stored is not None else None

    def decoded(self, namespace: str, name: str) -> dict[str, str]:
        """The stored Secret's ``data``, decoded to text; ``KeyError`` when it does not exist."""
        found = self.secret(namespace, name)
        if found is None:
            raise KeyError(f"{namespace}/{name}")
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}

    def secrets(self, namespace: str | None = None) -> list[JsonObject]:
        """Every stored Secret (of one namespace), sorted by namespace and name."""
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._secrets.items())
                if namespace is None or ns == namespace
            ]

    # -- test hooks --------------------------------------------------------------------------

    def put_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str | bytes] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        type: str = "Opaque",  # the field's name
        immutable: bool | None = None,
    ) -> JsonObject:
        """Create or replace a Secret out of band (``data`` in plain text or bytes), as kubectl
        or another team would; bumps the revision, keeps the uid unless the type changes."""
        with self._lock:
            existing = self._secrets.get((namespace, name))
            metadata: JsonObject = {"name": name, "namespace": namespace}
            if labels:
                metadata["labels"] = dict(labels)
            if annotations:
                metadata["annotations"] = dict(annotations)
            obj: JsonObject = {"kind": KIND, "apiVersion": "v1", "metadata": metadata}
            if immutable is not None:
                obj["immutable"] = immutable
            if data:
                obj["data"] = {key: _b64(value) for key, value in data.items()}
            obj["type"] = type
            keep = existing if existing is not None and existing.get("type") == type else None
            return copy.deepcopy(self._store(namespace, name, obj, existing=keep))

    def delete_secret(self, namespace: str, name: str) -> bool:
        """Delete a Secret out of band; whether it existed. Bumps the revision when it did."""
        with self._lock:
            if self._secrets.pop((namespace, name), None) is None:
                return False
            self._revision += 1
            return True

    def conflict_next(self, n: int = 1) -> None:
        """The next ``n`` PUT/PATCH of an existing Secret answer 409, after bumping its
        resourceVersion as another writer would have."""
        with self._lock:
            self._conflicts = n

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` requests answer ``status`` (a Status body) without being processed."""
        with self._lock:
            self._failures = [status] * n

    # -- kubeconfig --------------------------------------------------------------------------

    def kubeconfig(
        self, path: Path, *, namespace: str = "default", token: str | None = None
    ) -> Path:
        """Write a kubeconfig for this server (``path`` a file, or a directory to write
        ``kubeconfig`` into) with one context, current; ``token`` overrides the right one."""
        target = path / "kubeconfig" if path.is_dir() else path
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake-kubernetes", "cluster": {"server": self.origin}}],
            "users": [{"name": "slotkeeper", "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": "fake-kubernetes",
                    "context": {
                        "cluster": "fake-kubernetes",
                        "user": "slotkeeper",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "fake-kubernetes",
            "preferences": {},
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        target.chmod(0o600)  # it holds the token
        return target

    # -- the pipeline ------------------------------------------------------------------------

    def _serve(self, handler: Any) -> None:
        self._stamps.arrived = time.monotonic()
        super()._serve(handler)

    def _decide(self, incoming: Incoming) -> Decision:
        self._warnings = []
        decision = super()._decide(incoming)
        self._stamps.answered = time.monotonic()
        self._stamps.revision = self._revision
        if self._warnings:
            warning = ", ".join(f'299 - "{w}"' for w in self._warnings)
            decision.reply.headers.setdefault("Warning", warning)
        return decision

    def _stamp(self, record: RecordedRequest) -> RecordedRequest:
        """Called by the log (under the lock) for each new record: its times and revision."""
        values = {f.name: getattr(record, f.name) for f in fields(RecordedRequest)}
        now = time.monotonic()
        return StampedRequest(
            **values,
            arrived=getattr(self._stamps, "arrived", now),
            answered=getattr(self._stamps, "answered", now),
            revision=getattr(self._stamps, "revision", self._revision),
        )

    def _recorded(self) -> None:
        """Called by the log (under the lock) once a request is recorded: the test's hook."""
        hook = self.on_request
        if hook is None:
            return
        try:
            hook(self)
        except Exception as exc:  # an invariant the test checks failed: fail at exit
            self.internal_errors.append(exc)

    def _admit(self, incoming: Incoming) -> Reply | None:
        """Injected failures, then authentication (401), routing (404/405), RBAC (403)."""
        if self._failures:
            return self._failure(self._failures.pop(0))
        refused = super()._admit(incoming)
        if refused is not None:
            return refused
        try:
            target = self._target(incoming)
        except Refusal as refusal:
            return refusal.reply
        return self._authorize(target.verb, target.namespace, target.name)

    def _unauthorized(self, incoming: Incoming) -> Reply:
        return Reply(401, status_body(401, "Unauthorized", "Unauthorized", details=False))

    def _server_error(self) -> Reply:
        return self._failure(500)

    def _internal_error(self, exc: Exception) -> Reply:
        message = f"Internal error occurred: fake internal error: {exc!r}"
        return Reply(500, status_body(500, "InternalError", message, kind=None))

    def _failure(self, status: int) -> Reply:
        reason, message = _FAILURES.get(status, ("InternalError", f"status {status}"))
        body = status_body(status, reason, message, kind=None, details=status == 429)
        headers: dict[str, str] = {}
        if status == 429:
            body["details"] = {"retryAfterSeconds": 1}
            headers["Retry-After"] = "1"
        return Reply(status, body, headers)

    def _target(self, incoming: Incoming) -> _Target:
        """The verb, namespace and name a request addresses; ``Refusal`` when not served."""
        method = incoming.method
        if match := _NAMESPACED_PATH.match(incoming.path):
            namespace, name = unquote(match["ns"]), match["name"]
            if name is not None:
                verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
                if method in verbs:
                    return _Target(verbs[method], namespace, unquote(name))
            else:
                verbs = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
                if method in verbs:
                    verb = "watch" if self._watching(incoming) else verbs[method]
                    return _Target(verb, namespace, None)
            raise self._method_not_allowed()
        if _ALL_NAMESPACES_PATH.match(incoming.path):
            if method == "GET":
                return _Target("watch" if self._watching(incoming) else "list", None, None)
            raise self._method_not_allowed()
        raise _refuse(
            404, "NotFound", "the server could not find the requested resource", kind=None
        )

    @staticmethod
    def _watching(incoming: Incoming) -> bool:
        return incoming.method == "GET" and incoming.query.get("watch") in ("true", "1")

    @staticmethod
    def _method_not_allowed() -> Refusal:
        message = "the server does not allow this method on the requested resource"
        return _refuse(405, "MethodNotAllowed", message, kind=None)

    def _allowed(self, verb: str, namespace: str | None) -> bool:
        if self.permissions is None:
            return True
        granted = set(self.permissions.get("*", set()))
        if namespace is not None:
            granted |= self.permissions.get(namespace, set())
        return verb in granted or "*" in granted

    def _authorize(self, verb: str, namespace: str | None, name: str | None) -> Reply | None:
        """None when allowed, else the 403 the API server answers."""
        if self._allowed(verb, namespace):
            return None
        subject = f'{RESOURCE} "{name}"' if name else RESOURCE
        scope = (
            f'in the namespace "{namespace}"' if namespace is not None else "at the cluster scope"
        )
        message = (
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource "{RESOURCE}" '
            f'in API group "" {scope}'
        )
        return Reply(403, status_body(403, "Forbidden", message, name=name))

    # -- routes (under the lock) -------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        target = self._target(incoming)
        namespace, name = target.namespace, target.name
        if target.verb == "watch":
            raise _bad_request("watch is not served by this fake")
        if target.verb == "list":
            return Reply(200, self._list(incoming, namespace))
        assert namespace is not None
        if target.verb == "create":
            return self._create(incoming, namespace)
        if target.verb == "deletecollection":
            return self._delete_collection(incoming, namespace)
        assert name is not None
        if target.verb == "get":
            return Reply(200, copy.deepcopy(self._existing(namespace, name)))
        if target.verb == "update":
            return self._update(incoming, namespace, name)
        if target.verb == "patch":
            return self._patch(incoming, namespace, name)
        return self._delete(incoming, namespace, name)

    def _existing(self, namespace: str, name: str) -> JsonObject:
        found = self._secrets.get((namespace, name))
        if found is None:
            raise _not_found(name)
        return found

    def _selected(self, incoming: Incoming, namespace: str | None) -> list[JsonObject]:
        try:
            by_label = label_matcher(incoming.query.get("labelSelector", ""))
            by_field = field_matcher(incoming.query.get("fieldSelector", ""))
        except ValueError as exc:
            raise _bad_request(str(exc)) from exc
        return [
            obj
            for (ns, _), obj in sorted(self._secrets.items())
            if (namespace is None or ns == namespace)
            and by_label(obj["metadata"].get("labels") or {})
            and by_field(obj)
        ]

    def _list(self, incoming: Incoming, namespace: str | None) -> JsonObject:
        items = self._selected(incoming, namespace)
        token = incoming.query.get("continue")
        if token:
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token)))
            except (ValueError, TypeError) as exc:
                raise _bad_request(f"continue key is not valid: {exc}") from exc
            items = [o for o in items if self._key(o) > after]
        metadata: JsonObject = {"resourceVersion": str(self._revision)}
        limit = incoming.query.get("limit")
        if limit and limit.isdigit() and 0 < int(limit) < len(items):
            rest = len(items) - int(limit)
            items = items[: int(limit)]
            last = json.dumps(list(self._key(items[-1]))).encode()
            metadata["continue"] = base64.urlsafe_b64encode(last).decode()
            metadata["remainingItemCount"] = rest
        listed = []
        for obj in items:
            item = copy.deepcopy(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            listed.append(item)
        return {"kind": "SecretList", "apiVersion": "v1", "metadata": metadata, "items": listed}

    @staticmethod
    def _key(obj: JsonObject) -> tuple[str, str]:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    def _create(self, incoming: Incoming, namespace: str) -> Reply:
        body = self._body(incoming)
        metadata = body.get("metadata") or {}
        self._check_namespace(metadata, namespace)
        if self.namespaces is not None and namespace not in self.namespaces:
            raise _not_found(namespace, "namespaces")
        name = metadata.get("name") or ""
        if not name and metadata.get("generateName"):
            name = self._generate_name(namespace, str(metadata["generateName"]))
            metadata["name"] = name
        if metadata.get("resourceVersion"):
            message = "resourceVersion should not be set on objects to be created"
            self._violation(incoming, message)
            raise _refuse(500, "InternalError", message, details=False)
        obj = self._admit_object(incoming, body, namespace, name, old=None, patch=False)
        if (namespace, name) in self._secrets:
            message = f'{RESOURCE} "{name}" already exists'
            raise _refuse(409, "AlreadyExists", message, name=name)
        return Reply(201, self._commit(incoming, namespace, name, obj, existing=None))

    def _update(self, incoming: Incoming, namespace: str, name: str) -> Reply:
        body = self._body(incoming)
        metadata = body.get("metadata") or {}
        self._check_namespace(metadata, namespace)
        if metadata.get("name") != name:
            shown = metadata.get("name") or ""
            raise _bad_request(
                f"the name of the object ({shown}) does not match the name on the URL ({name})"
            )
        existing = self._existing(namespace, name)
        self._precondition(name, existing, metadata.get("resourceVersion"))
        obj = self._admit_object(incoming, body, namespace, name, old=existing, patch=False)
        return Reply(200, self._commit(incoming, namespace, name, obj, existing=existing))

    def _patch(self, incoming: Incoming, namespace: str, name: str) -> Reply:
        content_type = incoming.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in PATCH_TYPES:
            message = (
                "the body of the request was in an unknown format - accepted media types "
                "include: " + ", ".join(PATCH_TYPES)
            )
            raise _refuse(415, "UnsupportedMediaType", message, kind=None)
        apply = content_type == APPLY_PATCH
        options: list[FieldError] = []
        if apply and not incoming.query.get("fieldManager"):
            options.append(
                FieldError("fieldManager", "Required", detail="is required for apply patch")
            )
        if not apply and "force" in incoming.query:
            options.append(
                FieldError("force", "Forbidden", detail="may not be specified for non-apply patch")
            )
        if options:
            raise _invalid("", options, kind="PatchOptions.meta.k8s.io")
        try:
            patch = yaml.safe_load(incoming.body) if apply else json.loads(incoming.body)
        except (ValueError, yaml.YAMLError) as exc:
            self._violation(incoming, f"the patch does not parse: {exc}")
            raise _bad_request(f"error decoding patch: {exc}") from exc

        existing = self._secrets.get((namespace, name))
        if existing is None and not apply:
            raise _not_found(name)
        if existing is None:  # an apply that creates: the create verb is needed too
            forbidden = self._authorize("create", namespace, name)
            if forbidden is not None:
                raise Refusal(forbidden)
            if self.namespaces is not None and namespace not in self.namespaces:
                raise _not_found(namespace, "namespaces")
        if apply and (
            not isinstance(patch, dict) or not patch.get("apiVersion") or not patch.get("kind")
        ):
            self._violation(incoming, "an applied configuration needs apiVersion and kind")
            raise _bad_request("invalid object type: apiVersion and kind must be set")

        current = copy.deepcopy(existing) if existing is not None else {}
        if content_type == JSON_PATCH:
            try:
                patched = json_patch(current, patch)
            except PatchError as exc:
                self._violation(incoming, str(exc))
                raise _refuse(422, "Invalid", str(exc), details=False) from exc
        else:
            patched = merge_patch(current, patch)
        if not isinstance(patched, dict):
            problem = f"the patched object is a JSON {type(patched).__name__}, not an object"
            self._violation(incoming, problem)
            raise _invalid(name, [FieldError("patch", "Invalid", "<the patched object>", problem)])
        metadata = patched.get("metadata")
        patched_meta: JsonObject = metadata if isinstance(metadata, dict) else {}
        if patched_meta.get("name", name) != name:
            raise _bad_request(
                f"the name of the object ({patched_meta.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        self._check_namespace(patched_meta, namespace)
        if existing is not None:
            self._precondition(name, existing, patched_meta.get("resourceVersion"))
        else:
            patched_meta.pop("resourceVersion", None)
        obj = self._admit_object(incoming, patched, namespace, name, old=existing, patch=True)
        stored = self._commit(incoming, namespace, name, obj, existing=existing)
        return Reply(201 if existing is None else 200, stored)

    def _delete(self, incoming: Incoming, namespace: str, name: str) -> Reply:
        existing = self._existing(namespace, name)
        options: Any = None
        if incoming.body:
            try:
                options = json.loads(incoming.body)
            except ValueError as exc:
                raise _bad_request(f"DeleteOptions does not decode: {exc}") from exc
        preconditions = (options or {}).get("preconditions") or {}
        uid, version = preconditions.get("uid"), preconditions.get("resourceVersion")
        meta = existing["metadata"]
        if uid is not None and uid != meta["uid"]:
            raise _conflict(
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{meta['uid']}",
            )
        if version is not None and version != meta["resourceVersion"]:
            raise _conflict(
                name,
                f"Precondition failed: ResourceVersion in precondition: {version}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        if not self._dry_run(incoming):
            del self._secrets[(namespace, name)]
            self._revision += 1
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": RESOURCE, "uid": meta["uid"]},
        }
        return Reply(200, body)

    def _delete_collection(self, incoming: Incoming, namespace: str) -> Reply:
        doomed = self._selected(incoming, namespace)
        if not self._dry_run(incoming):
            for obj in doomed:
                del self._secrets[self._key(obj)]
                self._revision += 1
        items = []
        for obj in doomed:
            item = copy.deepcopy(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        metadata = {"resourceVersion": str(self._revision)}
        return Reply(
            200, {"kind": "SecretList", "apiVersion": "v1", "metadata": metadata, "items": items}
        )

    # -- writing -----------------------------------------------------------------------------

    def _body(self, incoming: Incoming) -> JsonObject:
        """The JSON (or YAML) object a POST or PUT sends; 400 when it does not decode."""
        content_type = incoming.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type in ("application/yaml", "application/x-yaml"):
                body = yaml.safe_load(incoming.body)
            else:
                body = json.loads(incoming.body)
        except (ValueError, yaml.YAMLError) as exc:
            self._violation(incoming, f"the body does not parse: {exc}")
            raise _bad_request(f"the body of the request does not decode: {exc}") from exc
        if not isinstance(body, dict):
            message = f"the body is a JSON {type(body).__name__}, not an object"
            self._violation(incoming, message)
            raise _bad_request(f'{KIND} in version "v1" cannot be handled as a {KIND}: {message}')
        return body

    @staticmethod
    def _check_namespace(metadata: Mapping[str, Any], namespace: str) -> None:
        given = metadata.get("namespace")
        if given and given != namespace:
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )

    def _precondition(self, name: str, existing: JsonObject, version: Any) -> None:
        """409 when ``version`` is set and stale; ``conflict_next`` also answers 409 here."""
        if self._conflicts > 0:
            self._conflicts -= 1
            self._revision += 1
            existing["metadata"]["resourceVersion"] = str(self._revision)
            raise _conflict(name, _MODIFIED)
        if version and version != existing["metadata"]["resourceVersion"]:
            raise _conflict(name, _MODIFIED)

    def _admit_object(
        self,
        incoming: Incoming,
        body: JsonObject,
        namespace: str,
        name: str,
        *,
        old: JsonObject | None,
        patch: bool,
    ) -> JsonObject:
        """Decode, default and validate a Secret to store; the refusal the server answers."""
        decoded = _decode(body)
        obj = decoded.obj
        problems = list(decoded.errors)
        if obj.get("kind") not in (None, KIND) or obj.get("apiVersion") not in (None, "v1"):
            problems.append(f"the kind is {obj.get('apiVersion')}/{obj.get('kind')}, not v1/{KIND}")
        raw_data = obj.get("data")
        data: JsonObject = raw_data if isinstance(raw_data, dict) else {}
        for key, value in sorted(data.items()):
            if isinstance(value, str) and (bad := _b64_error(value)):
                problems.append(f"data[{key}]: {bad}")
        if problems:
            for problem in problems:
                self._violation(incoming, problem)
            first = problems[0]
            if patch:
                raise _invalid(
                    name, [FieldError("patch", "Invalid", "<the patched object>", first)]
                )
            raise _bad_request(f'{KIND} in version "v1" cannot be handled as a {KIND}: {first}')
        if decoded.unknown:
            for field_path in decoded.unknown:
                self._violation(incoming, f'unknown field "{field_path}"')
            validation = incoming.query.get("fieldValidation", "Warn")
            if validation == "Strict":
                shown = ", ".join(f'unknown field "{f}"' for f in decoded.unknown)
                if patch:
                    raise _invalid(name, [FieldError("patch", "Invalid", "", shown)])
                raise _bad_request(
                    f'{KIND} in version "v1" cannot be handled as a {KIND}: strict decoding '
                    f"error: {shown}"
                )
            if validation != "Ignore":
                self._warnings += [f'unknown field \\"{f}\\"' for f in decoded.unknown]

        secret = self._normalise(obj, namespace)
        errors = self._validate(secret, old)
        if errors:
            for error in errors:
                self._violation(incoming, str(error))
            raise _invalid(name or str(secret["metadata"].get("generateName", "")), errors)
        return secret

    @staticmethod
    def _normalise(obj: JsonObject, namespace: str) -> JsonObject:
        """The Secret as the server stores it: nulls gone, ``stringData`` merged into ``data``,
        ``type`` defaulted, system metadata left to ``_commit``."""
        metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if v is not None}
        metadata["namespace"] = namespace
        for system in (
            "resourceVersion",
            "creationTimestamp",
            "selfLink",
            "managedFields",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            metadata.pop(system, None)
        for mapping in ("labels", "annotations"):
            if mapping in metadata:
                metadata[mapping] = {k: v or "" for k, v in metadata[mapping].items()}
                if not metadata[mapping]:
                    del metadata[mapping]
        data = {k: v or "" for k, v in (obj.get("data") or {}).items()}
        for key, value in (obj.get("stringData") or {}).items():
            data[key] = _b64(value or "")
        secret: JsonObject = {"kind": KIND, "apiVersion": "v1", "metadata": metadata}
        if obj.get("immutable") is not None:
            secret["immutable"] = obj["immutable"]
        if data:
            secret["data"] = data
        secret["type"] = obj.get("type") or "Opaque"
        return secret

    @staticmethod
    def _validate(secret: JsonObject, old: JsonObject | None) -> list[FieldError]:
        """``ValidateSecret`` and, for an update, ``ValidateSecretUpdate``."""
        errors: list[FieldError] = []
        metadata = secret["metadata"]
        name = metadata.get("name") or ""
        generate = metadata.get("generateName") or ""
        if generate:
            masked = generate[:-1] + "a" if generate.endswith("-") else generate
            errors += [
                FieldError("metadata.generateName", "Invalid", generate, m)
                for m in dns1123_subdomain_errors(masked)
            ]
        if not name:
            errors.append(
                FieldError("metadata.name", "Required", detail="name or generateName is required")
            )
        else:
            errors += [
                FieldError("metadata.name", "Invalid", name, m)
                for m in dns1123_subdomain_errors(name)
            ]
        for key, value in sorted((metadata.get("labels") or {}).items()):
            errors += [
                FieldError("metadata.labels", "Invalid", key, m) for m in qualified_name_errors(key)
            ]
            errors += [
                FieldError("metadata.labels", "Invalid", value, m)
                for m in label_value_errors(value)
            ]
        annotations = metadata.get("annotations") or {}
        for key in sorted(annotations):
            errors += [
                FieldError("metadata.annotations", "Invalid", key, m)
                for m in qualified_name_errors(key.lower())
            ]
        if sum(len(k) + len(v) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE:
            errors.append(
                FieldError(
                    "metadata.annotations",
                    "TooLong",
                    detail=f"may not be more than {TOTAL_ANNOTATION_SIZE} bytes",
                )
            )
        data: dict[str, str] = secret.get("data") or {}
        size = 0
        for key, value in sorted(data.items()):
            errors += [
                FieldError(f"data[{key}]", "Invalid", key, m) for m in config_key_errors(key)
            ]
            size += len(base64.b64decode(value.replace("\n", "").replace("\r", "")))
        if size > MAX_SECRET_SIZE:
            errors.append(
                FieldError(
                    "data", "TooLong", detail=f"may not be more than {MAX_SECRET_SIZE} bytes"
                )
            )
        kind = secret["type"]
        if kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
            errors += [FieldError(f"data[{k}]", "Required") for k in ("username", "password")]
        if kind == "kubernetes.io/ssh-auth":
            if not data.get("ssh-privatekey"):
                errors.append(FieldError("data[ssh-privatekey]", "Required"))
        else:
            errors += [
                FieldError(f"data[{k}]", "Required")
                for k in _REQUIRED_KEYS.get(kind, ())
                if k not in data
            ]
        if old is not None:
            uid = metadata.get("uid")
            if uid and uid != old["metadata"]["uid"]:
                errors.append(FieldError("metadata.uid", "Invalid", uid, "field is immutable"))
            if kind != old["type"]:
                errors.append(FieldError("type", "Invalid", kind, "field is immutable"))
            if old.get("immutable"):
                forbidden = "field is immutable when `immutable` is set"
                if not secret.get("immutable"):
                    errors.append(FieldError("immutable", "Forbidden", detail=forbidden))
                if data != (old.get("data") or {}):
                    errors.append(FieldError("data", "Forbidden", detail=forbidden))
        return errors

    def _commit(
        self,
        incoming: Incoming,
        namespace: str,
        name: str,
        secret: JsonObject,
        *,
        existing: JsonObject | None,
    ) -> JsonObject:
        """Store (unless a dry run) and return the object as a GET would answer it."""
        if self._dry_run(incoming):
            preview = self._with_system_metadata(secret, existing, revision=None)
            return copy.deepcopy(preview)
        return copy.deepcopy(self._store(namespace, name, secret, existing=existing))

    def _store(
        self, namespace: str, name: str, secret: JsonObject, *, existing: JsonObject | None
    ) -> JsonObject:
        self._revision += 1
        stored = self._with_system_metadata(secret, existing, revision=self._revision)
        self._secrets[(namespace, name)] = stored
        return stored

    def _with_system_metadata(
        self, secret: JsonObject, existing: JsonObject | None, *, revision: int | None
    ) -> JsonObject:
        """The object with uid, resourceVersion and creationTimestamp, in the server's order."""
        given = secret["metadata"]
        metadata: JsonObject = {"name": given["name"]}
        if given.get("generateName"):
            metadata["generateName"] = given["generateName"]
        metadata["namespace"] = given["namespace"]
        if existing is not None:
            metadata["uid"] = existing["metadata"]["uid"]
            if revision is None:
                metadata["resourceVersion"] = existing["metadata"]["resourceVersion"]
            metadata["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
        else:
            metadata["uid"] = random_uuid(self._ids)
            metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if revision is not None:
            metadata["resourceVersion"] = str(revision)
        for key, value in given.items():
            if key not in metadata and key != "uid":
                metadata[key] = copy.deepcopy(value)
        ordered = {k: metadata[k] for k in _METADATA_ORDER if k in metadata}
        ordered.update({k: v for k, v in metadata.items() if k not in ordered})
        stored: JsonObject = {"kind": KIND, "apiVersion": "v1", "metadata": ordered}
        for key in ("immutable", "data", "type"):
            if key in secret:
                stored[key] = copy.deepcopy(secret[key])
        return stored

    @staticmethod
    def _dry_run(incoming: Incoming) -> bool:
        return incoming.query.get("dryRun") == "All"

    def _generate_name(self, namespace: str, prefix: str) -> str:
        while True:
            name = prefix + "".join(self._ids.choices(_SUFFIX_ALPHABET, k=5))
            if (namespace, name) not in self._secrets:
                return name

    def _violation(self, incoming: Incoming, message: str) -> None:
        self.violations.append(f"{incoming.method} {incoming.path}: {message}")


_METADATA_ORDER = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
)
