"""Where secrets come from and where they go, as the model validates them: key secret paths,
credential references, and the URLs a target may be reached at (issue 15: the mutants these
tests kill)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from slotkeeper.model import GithubTargetSpec, KeySecret, SecretRef, normalize_secret_path


@pytest.mark.parametrize(
    ("file", "stored"),
    [
        ("deploy/api", "deploy/api"),
        ("./deploy/./api", "deploy/api"),
        ("api.key", "api.key"),
        ("a/b/c", "a/b/c"),
    ],
)
def test_a_secret_path_inside_the_secrets_directory_is_kept_normalized(
    file: str, stored: str
) -> None:
    """A relative path is stored in its one spelling."""
    assert KeySecret(file=file).file == stored


@pytest.mark.parametrize(
    ("file", "problem"),
    [
        ("/etc/passwd", "must be a relative path inside the secrets directory"),
        ("~/key", "must be a relative path inside the secrets directory"),
        ("keys\\api", "must be a relative path inside the secrets directory"),
        ("../key", "must not contain '..' or empty parts"),
        ("a/../../key", "must not contain '..' or empty parts"),
        ("a//key", "must not contain '..' or empty parts"),
        ("a/key/", "must not contain '..' or empty parts"),
        (".", "must not contain '..' or empty parts"),
        ("./", "must not contain '..' or empty parts"),
        ("./.", "must name a file inside the secrets directory"),
        ("key\x00x", "must not contain a NUL character"),
    ],
)
def test_a_secret_path_that_leaves_the_directory_is_refused(file: str, problem: str) -> None:
    """Absolute, home-relative, backslashed, climbing, empty-part and NUL paths are refused."""
    with pytest.raises(ValidationError, match=problem):
        KeySecret(file=file)


def test_normalizing_drops_only_empty_and_dot_parts() -> None:
    """``..`` is kept (the validator refuses it); ``.`` and empty parts go."""
    assert normalize_secret_path("./a//./b/..") == "a/b/.."
    assert normalize_secret_path("") == ""


@pytest.mark.parametrize("value", ["ghp_inline", 12345, 1.5])
def test_an_inline_credential_is_refused_without_echoing_it(value: Any) -> None:
    """A credential written inline is refused, and the message does not quote it."""
    with pytest.raises(ValidationError) as refused:
        SecretRef.model_validate(value)
    (error,) = refused.value.errors()
    assert "inline secrets are not allowed" in error["msg"] and str(value) not in error["msg"]


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        ({"env": "TOKEN"}, True),
        ({"file": "/run/secrets/token"}, True),
        ({}, False),
        ({"env": "TOKEN", "file": "/run/secrets/token"}, False),
        ({"file": "/run/se\x00crets"}, False),
    ],
)
def test_a_reference_names_exactly_one_plain_source(reference: dict[str, str], valid: bool) -> None:
    """Exactly one of env or file; a file name with a NUL is refused."""
    if valid:
        SecretRef.model_validate(reference)
    else:
        with pytest.raises(ValidationError):
            SecretRef.model_validate(reference)


def github(**spec: Any) -> GithubTargetSpec:
    return GithubTargetSpec.model_validate({"type": "github", "token": {"env": "T"}, **spec})


@pytest.mark.parametrize(
    "url",
    [
        "https://ghe.example.com/api/v3",
        "http://localhost:8080",
        "http://LOCALHOST.:8080",
        "http://127.0.0.1:9000",
        "http://[::1]:9000",
    ],
)
def test_https_anywhere_and_plain_http_to_loopback_are_accepted(url: str) -> None:
    """Plain http:// is fine to loopback, by name or address."""
    assert str(github(baseUrl=url).base_url).startswith(url.lower().split(":")[0])


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://ghe.example.com", "plain http:// is only allowed to loopback hosts"),
        ("http://10.0.0.1", "plain http:// is only allowed to loopback hosts"),
        ("http://localhost.example.com", "plain http:// is only allowed to loopback hosts"),
        ("https://ghe.example.com:99999", "is not a valid URL"),
    ],
)
def test_plain_http_elsewhere_and_bad_urls_are_refused(url: str, problem: str) -> None:
    """Plain http:// to any other host is refused unless allowed; a bad port is refused."""
    with pytest.raises(ValidationError, match=problem):
        github(baseUrl=url)


def test_insecure_http_can_be_allowed_explicitly() -> None:
    """allowInsecureHttp: true lets plain http:// reach any host."""
    spec = github(baseUrl="http://ghe.example.com", allowInsecureHttp=True)
    assert str(spec.base_url) == "http://ghe.example.com"


def test_a_bad_allow_flag_reports_itself_and_not_the_url() -> None:
    """An invalid allowInsecureHttp is the error; the URL is judged once it is fixed."""
    with pytest.raises(ValidationError) as refused:
        github(baseUrl="http://ghe.example.com", allowInsecureHttp="maybe")
    assert [error["loc"] for error in refused.value.errors()] == [("allowInsecureHttp",)]


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("maxWaitSeconds", 0, True),
        ("maxWaitSeconds", -1, False),
        ("maxWaitSeconds", 3600, True),
        ("maxWaitSeconds", 3601, False),
        ("timeoutSeconds", 1, True),
        ("timeoutSeconds", 0, False),
        ("timeoutSeconds", 300, True),
        ("timeoutSeconds", 301, False),
    ],
)
def test_the_wait_and_timeout_bounds(field: str, value: int, valid: bool) -> None:
    """The longest wait for a rate limit and the request timeout stay within their bounds."""
    if valid:
        github(**{field: value})
    else:
        with pytest.raises(ValidationError, match=field):
            github(**{field: value})


def test_the_wait_and_timeout_defaults() -> None:
    """A minute at most for a rate limit, ten seconds per request, https only."""
    spec = github()
    assert (spec.max_wait_seconds, spec.timeout_seconds, spec.allow_insecure_http) == (
        60,
        10,
        False,
    )
