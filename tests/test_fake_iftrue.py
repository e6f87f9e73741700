"""The iftrue fake, exercised over real HTTP with httpx and checked against its JSON Schema.

iftrue publishes no OpenAPI description; ``tests/fakes/iftrue_schema.py`` writes its contract
down from API-REFERENCE.md section 4. Every exchange a test causes is checked against it at
teardown (``_every_exchange_matches_the_contract``) with ``spec.check_recorded``: a request the
contract forbids on purpose carries ``x-test-invalid``, one that leaves the one operation
``x-test-off-spec``, and the check then demands that the checker rejects it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.iftrue import FakeIftrue
from tests.fakes.iftrue_schema import JsonSchemaChecker
from tests.fakes.server import Incoming, Reply
from tests.fakes.spec import check_recorded

TOKEN = "iftrue.jwt.testtoken"
PATH = "/v1/organization/deployment"
INVALID = {"x-test-invalid": "1"}
OFF_SPEC = {"x-test-off-spec": "1"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def contract() -> JsonSchemaChecker:
    """The JSON Schema checker for iftrue's written-down contract."""
    return JsonSchemaChecker()


@pytest.fixture(autouse=True)
def _every_exchange_matches_the_contract(
    iftrue: FakeIftrue, contract: JsonSchemaChecker
) -> Iterator[None]:
    """After each test, check every exchange with the fake against the contract."""
    yield
    check_recorded(iftrue.requests, contract)


@pytest.fixture
def it(iftrue: FakeIftrue) -> Iterator[httpx.Client]:
    """An httpx client for the fake with the JWT."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=iftrue.base_url, headers=headers, timeout=5) as client:
        yield client


NODE_ID = "DE_kwDOAAAAAAAAA-k"


def body(**fields: Any) -> dict[str, Any]:
    """The fields a record of a GitHub repository requires: the six, and the GitHub
    deployment's node id."""
    return {
        "title": "api v1 to production",
        "branch": "main",
        "commit_id": "fa9bce58bac99d1186f00d90881dd7b1e7a3acfd",
        "repository_url": "https://github.com/acme/api",
        "member_id": "aef23f76-9e33-679d-a92c-ff7321f61bb8",
        "pull_request_number": 241,
        "deployment_node_id": NODE_ID,
        **fields,
    }


def post(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Create a record from the required fields plus ``fields``; return the answer."""
    response = client.post(PATH, json=body(**fields))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# -- creating records ------------------------------------------------------------------------


def test_create_answers_201_with_the_record_and_its_defaults(
    it: httpx.Client, iftrue: FakeIftrue
) -> None:
    """Only the required fields: the record has every documented field, defaults filled in."""
    response = it.post(PATH, json=body())

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    created = response.json()
    assert UUID.fullmatch(created["id"])
    assert created == {
        "id": created["id"],
        "triggered_by": "webhook",
        "title": "api v1 to production",
        "changelog": None,
        "is_hotfix": False,
        "is_forced": False,
        "is_fix": False,
        "commits_count": 0,
        "organization_id": iftrue.organization_id,
        "repository_id": created["repository_id"],
        "pusher_id": created["pusher_id"],
        "url": None,
        "branch": "main",
        "commit_id": "fa9bce58bac99d1186f00d90881dd7b1e7a3acfd",
        "deployment_duration": None,
        "node_id": NODE_ID,
        "status": "succes",
    }
    assert iftrue.records() == [{**created, **body()}]


def test_optional_fields_are_recorded(it: httpx.Client) -> None:
    """Every optional field comes back; deployment_node_id is answered as node_id."""
    created = post(
        it,
        changelog="#241 PR Merged",
        url="https://github.com/acme/api/releases/v1",
        deployment_duration=12.5,
        is_fix=True,
        is_hotfix=True,
        is_forced=True,
        commits_count=5,
        deployment_node_id="DE_kwDOAAAAAAAAB-k",
        status="in_progress",
    )

    assert created["changelog"] == "#241 PR Merged"
    assert created["url"] == "https://github.com/acme/api/releases/v1"
    assert created["deployment_duration"] == 12.5
    assert created["is_fix"] is created["is_hotfix"] is created["is_forced"] is True
    assert created["commits_count"] == 5
    assert created["node_id"] == "DE_kwDOAAAAAAAAB-k"
    assert created["status"] == "in_progress"


@pytest.mark.parametrize("status", ["succes", "in_progress", "fail"])
def test_the_three_literal_statuses_are_accepted(it: httpx.Client, status: str) -> None:
    """status is one of succes (sic), in_progress and fail."""
    assert post(it, status=status)["status"] == status


def test_every_post_creates_a_new_record(it: httpx.Client, iftrue: FakeIftrue) -> None:
    """No idempotency: the same body twice is two records; ids per repository and member hold."""
    first, second = post(it), post(it)
    other = post(it, repository_url="https://github.com/acme/web", member_id="m-2")

    assert first["id"] != second["id"]
    assert [r["id"] for r in iftrue.records()] == [other["id"], second["id"], first["id"]]
    assert first["repository_id"] == second["repository_id"] != other["repository_id"]
    assert first["pusher_id"] == second["pusher_id"] != other["pusher_id"]
    assert first["organization_id"] == other["organization_id"]


@pytest.mark.parametrize(
    "repository_url",
    [
        "https://github.com/acme/api",
        "http://github.com/acme/api",
        "https://www.github.com/acme/api",
        "git@github.com:acme/api.git",
    ],
)
def test_a_github_repository_requires_deployment_node_id(
    it: httpx.Client, iftrue: FakeIftrue, repository_url: str
) -> None:
    """deployment_node_id is "No (Required for GitHub)" in iftrue's table: a record of a
    repository on GitHub without it is 400 naming the field, and nothing is recorded."""
    sent = body(repository_url=repository_url)
    del sent["deployment_node_id"]
    response = it.post(PATH, json=sent, headers=INVALID)

    assert response.status_code == 400
    assert "'deployment_node_id' is a required property" in response.json()["message"]
    assert iftrue.records() == []


@pytest.mark.parametrize(
    "repository_url",
    ["https://gitlab.com/acme/api", "https://bitbucket.org/acme/api", "https://notgithub.com/a/b"],
)
def test_another_providers_repository_needs_no_deployment_node_id(
    it: httpx.Client, repository_url: str
) -> None:
    """Only the six fields are required of a repository that is not on GitHub."""
    sent = body(repository_url=repository_url)
    del sent["deployment_node_id"]
    response = it.post(PATH, json=sent)

    assert response.status_code == 201
    assert response.json()["node_id"] is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({k: v for k, v in body().items() if k != "title"}, "title"),
        ({k: v for k, v in body().items() if k != "member_id"}, "member_id"),
        ({k: v for k, v in body().items() if k != "deployment_node_id"}, "deployment_node_id"),
        (body(pull_request_number=None), "pull_request_number"),
        (body(pull_request_number="241"), "pull_request_number"),
        (body(pull_request_number=True), "pull_request_number"),
        (body(status="success"), "status"),
        (body(status="failed"), "status"),
        (body(commits_count=1.5), "commits_count"),
        (body(is_fix="yes"), "is_fix"),
        (body(deployment_duration="10m"), "deployment_duration"),
        (body(node_id="DE_1"), "node_id"),
        (["not", "an", "object"], "body"),
    ],
)
def test_invalid_bodies_answer_400_and_create_nothing(
    it: httpx.Client, iftrue: FakeIftrue, payload: Any, field: str
) -> None:
    """Missing required fields, wrong types, "success" and unknown fields answer 400."""
    response = it.post(PATH, json=payload, headers=INVALID)

    assert response.status_code == 400
    assert field in response.json()["message"]
    assert iftrue.records() == []


def test_malformed_json_answers_400(it: httpx.Client, iftrue: FakeIftrue) -> None:
    """A body that is not JSON answers 400."""
    headers = {**INVALID, "content-type": "application/json"}
    response = it.post(PATH, content=b"title=x", headers=headers)

    assert response.status_code == 400
    assert response.json() == {"message": "Request body is not valid JSON"}
    assert iftrue.records() == []


# -- auth, routes, knobs -------------------------------------------------------------------


def test_bad_or_missing_token_is_401(it: httpx.Client, iftrue: FakeIftrue) -> None:
    """A wrong or absent JWT answers 401 and records nothing."""
    wrong = it.post(PATH, json=body(), headers={"Authorization": "Bearer other.jwt"})
    absent = httpx.post(f"{iftrue.base_url}{PATH}", json=body(), headers=INVALID)

    assert wrong.status_code == absent.status_code == 401
    assert wrong.json() == {"message": "Unauthorized"}
    assert iftrue.records() == []
    assert iftrue.writes() == []


def test_unknown_routes_and_methods(it: httpx.Client) -> None:
    """Other paths are 404; other methods on the path are 405."""
    missing = it.post("/v1/organization/deployments", json=body(), headers=OFF_SPEC)
    listing = it.get(PATH, headers=OFF_SPEC)

    assert missing.status_code == 404
    assert listing.status_code == 405


def test_error_rate_answers_5xx_without_processing(it: httpx.Client, iftrue: FakeIftrue) -> None:
    """error_rate 1.0 answers 500, 502 or 503 with a message and creates nothing."""
    iftrue.error_rate = 1.0
    answers = {it.post(PATH, json=body()).status_code for _ in range(10)}

    assert answers == {500, 502, 503}
    assert iftrue.records() == []
    assert iftrue.writes() == []


def test_knob_methods_limit_which_requests_the_knobs_hit(
    it: httpx.Client, iftrue: FakeIftrue
) -> None:
    """With knob_methods={"GET"}, the POSTs are not hit."""
    iftrue.error_rate = 1.0
    iftrue.knob_methods = {"GET"}

    assert it.post(PATH, json=body()).status_code == 201


def test_drop_rate_creates_then_hangs_up_so_a_retry_duplicates(
    it: httpx.Client, iftrue: FakeIftrue
) -> None:
    """drop_rate 1.0: the record exists but the client sees a transport error; a retry adds one."""
    iftrue.drop_rate = 1.0
    with pytest.raises(httpx.TransportError):
        it.post(PATH, json=body())
    iftrue.drop_rate = 0.0
    [write] = iftrue.writes()

    assert write.dropped and write.status is None
    post(it)
    assert len(iftrue.records()) == 2


def test_stall_lets_the_client_time_out_after_the_change(
    it: httpx.Client, iftrue: FakeIftrue
) -> None:
    """stall_rate 1.0: the record is created, then the answer comes too late."""
    iftrue.stall_rate, iftrue.stall_seconds = 1.0, 0.5
    with pytest.raises(httpx.ReadTimeout):
        it.post(PATH, json=body(), timeout=0.2)

    assert len(iftrue.records()) == 1


def test_latency_delays_every_answer(it: httpx.Client, iftrue: FakeIftrue) -> None:
    """latency is slept before answering."""
    iftrue.latency = 0.2
    started = time.monotonic()
    post(it)

    assert time.monotonic() - started >= 0.2


# -- observation and the shared plumbing ---------------------------------------------------


def test_recorded_requests_describe_the_exchange(it: httpx.Client, iftrue: FakeIftrue) -> None:
    """requests records the body and the answer; writes() the processed POSTs; reset_log clears."""
    created = post(it, status="fail")
    refused = it.post(PATH, json={"title": "x"}, headers=INVALID)

    done, invalid = iftrue.requests
    assert (done.method, done.path, done.status) == ("POST", PATH, 201)
    assert done.json == body(status="fail")
    assert done.response_json() == created
    assert invalid.status == refused.status_code == 400
    assert iftrue.writes() == [done, invalid]

    iftrue.reset_log()
    assert iftrue.requests == []
    assert len(iftrue.records()) == 1


def test_a_bug_in_the_fake_answers_500_and_fails_on_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside a route is a 500 for the client and an AssertionError at exit."""
    fake = FakeIftrue()

    def broken(incoming: Incoming) -> Reply:
        raise KeyError("oops")

    monkeypatch.setattr(fake, "_route", broken)
    with pytest.raises(AssertionError, match="the fake itself failed"), fake:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = httpx.post(f"{fake.base_url}{PATH}", json=body(), headers=headers)
        assert response.status_code == 500
        assert "KeyError" in response.json()["message"]
    assert isinstance(fake.internal_errors[0], KeyError)
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url


# -- the checker itself --------------------------------------------------------------------


def test_checker_rejects_responses_the_contract_does_not_allow(
    it: httpx.Client, iftrue: FakeIftrue, contract: JsonSchemaChecker
) -> None:
    """A record missing a field, a "success" status, a bare error or a 404 fail the check."""
    created = post(it)
    url = f"{iftrue.base_url}{PATH}"
    json_headers = {"content-type": "application/json"}

    def answer(value: Any) -> bytes:
        return json.dumps(value).encode()

    missing = {k: v for k, v in created.items() if k != "node_id"}
    with pytest.raises(AssertionError, match="node_id"):
        contract.check_response("POST", url, {}, 201, json_headers, answer(missing))
    with pytest.raises(AssertionError, match="success"):
        contract.check_response(
            "POST", url, {}, 201, json_headers, answer({**created, "status": "success"})
        )
    with pytest.raises(AssertionError, match="message"):
        contract.check_response("POST", url, {}, 400, json_headers, answer({"error": "bad"}))
    with pytest.raises(AssertionError, match="not documented"):
        contract.check_response("POST", url, {}, 404, json_headers, answer({"message": "x"}))
    with pytest.raises(AssertionError, match="no such operation"):
        contract.check_response("GET", url, {}, 200, json_headers, answer(created))
    contract.check_response("POST", url, {}, 201, json_headers, answer(created))


def test_checker_rejects_requests_the_contract_does_not_allow(
    iftrue: FakeIftrue, contract: JsonSchemaChecker
) -> None:
    """A null pull request number, a missing JWT or a form body fail the request check."""
    url = f"{iftrue.base_url}{PATH}"
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}

    def sent(value: Any) -> bytes:
        return json.dumps(value).encode()

    with pytest.raises(AssertionError, match="None is not of type 'number'"):
        contract.check_request("POST", url, headers, sent(body(pull_request_number=None)))
    with pytest.raises(AssertionError, match="Bearer"):
        contract.check_request("POST", url, {"content-type": "application/json"}, sent(body()))
    with pytest.raises(AssertionError, match="content-type"):
        form = {**headers, "content-type": "application/x-www-form-urlencoded"}
        contract.check_request("POST", url, form, b"title=x")
    contract.check_request("POST", url, headers, sent(body()))
