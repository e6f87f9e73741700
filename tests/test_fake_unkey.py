"""The Unkey fake, exercised over real HTTP with httpx and checked against Unkey's OpenAPI.

Every exchange a test causes is checked at teardown (``_every_exchange_matches_the_spec``) with
``spec.check_recorded``: a request the spec forbids on purpose carries ``x-test-invalid``, one
that leaves the spec's operations ``x-test-off-spec``, and the check then demands that the
checker rejects it, which also proves the checks can fail.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.spec import UNKEY_SPEC, OpenApiChecker, check_recorded
from tests.fakes.unkey import SPEC_PATH, FakeUnkey

ROOT_KEY = "unkey_testroot0123456789"
CREATE = "/v2/deploy.createDeployment"
GET = "/v2/deploy.getDeployment"
INVALID = {"x-test-invalid": "1"}
OFF_SPEC = {"x-test-off-spec": "1"}
IMAGE = "ghcr.io/acme/api:v1@sha256:" + "a" * 64
DEPLOYMENT_ID = re.compile(r"d_[a-zA-Z0-9]+")
REQUEST_ID = re.compile(r"req_[a-zA-Z0-9]+")


@pytest.fixture(autouse=True)
def _every_exchange_matches_the_spec(
    unkey: FakeUnkey, unkey_spec: OpenApiChecker
) -> Iterator[None]:
    """After each test, check every exchange with the fake against Unkey's description."""
    yield
    check_recorded(unkey.requests, unkey_spec)


@pytest.fixture
def uk(unkey: FakeUnkey) -> Iterator[httpx.Client]:
    """An httpx client for the fake with the root key."""
    headers = {"Authorization": f"Bearer {ROOT_KEY}", "Accept": "application/json"}
    with httpx.Client(base_url=unkey.base_url, headers=headers, timeout=5) as client:
        yield client


def body(**fields: Any) -> dict[str, Any]:
    """A createDeployment body with the five required fields."""
    return {
        "project": "acme",
        "app": "api",
        "branch": "main",
        "environmentSlug": "production",
        "dockerImage": IMAGE,
        **fields,
    }


def create(client: httpx.Client, **fields: Any) -> str:
    """Create a deployment and return its id."""
    response = client.post(CREATE, json=body(**fields))
    assert response.status_code == 201, response.text
    deployment_id: str = response.json()["data"]["deploymentId"]
    return deployment_id


def get(client: httpx.Client, deployment_id: str) -> dict[str, Any]:
    """One getDeployment call; returns ``data``."""
    response = client.post(GET, json={"deploymentId": deployment_id})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def statuses(client: httpx.Client, deployment_id: str, polls: int) -> list[str]:
    """The status answered by each of ``polls`` getDeployment calls."""
    return [get(client, deployment_id)["status"] for _ in range(polls)]


# -- createDeployment ----------------------------------------------------------------------


def test_create_answers_201_with_a_deployment_id(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """A valid create answers 201 with meta.requestId and data.deploymentId; it starts PENDING."""
    commit = {
        "commitSha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
        "commitMessage": "feat: api v1",
        "authorHandle": "octocat",
        "authorAvatarUrl": "https://avatars.githubusercontent.com/u/1",
        "timestamp": 1704067200000,
    }
    response = uk.post(CREATE, json=body(gitCommit=commit))

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"meta", "data"}
    assert REQUEST_ID.fullmatch(answer["meta"]["requestId"])
    deployment_id = answer["data"]["deploymentId"]
    assert DEPLOYMENT_ID.fullmatch(deployment_id)
    assert unkey.deployments() == [
        {
            **body(gitCommit=commit),
            "id": deployment_id,
            "status": "PENDING",
            "hostnames": [],
            "polls": 0,
        }
    ]


def test_every_create_is_a_new_deployment(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """createDeployment is not idempotent: the same body twice makes two deployments."""
    first, second = create(uk), create(uk)

    assert first != second
    assert [d["id"] for d in unkey.deployments()] == [second, first]
    assert len(unkey.writes()) == 2


@pytest.mark.parametrize(
    ("payload", "locations"),
    [
        ({k: v for k, v in body().items() if k != "project"}, ["body.project"]),
        (body(app=""), ["body.app"]),
        (body(dockerImage=42), ["body.dockerImage"]),
        (body(gitCommit={"timestamp": "2024-01-01"}), ["body.gitCommit.timestamp"]),
        (body(gitCommit={"timestamp": 1704067200.5}), ["body.gitCommit.timestamp"]),
        ({"projectId": "proj_123", "environment_slug": "production"}, None),
        ([], ["body"]),
    ],
)
def test_invalid_creates_answer_400_with_locations(
    uk: httpx.Client, unkey: FakeUnkey, payload: Any, locations: list[str] | None
) -> None:
    """Bodies that break the request schema answer 400 with errors[] pointing at the fields."""
    response = uk.post(CREATE, json=payload, headers=INVALID)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["title"], error["status"]) == ("Bad Request", 400)
    found = [e["location"] for e in error["errors"]]
    if locations is None:  # the old snake_case / projectId names: every required field missing
        assert found == [f"body.{f}" for f in sorted(body())]
    else:
        assert found == locations
    assert all(e["message"] for e in error["errors"])
    assert unkey.deployments() == []


def test_a_body_that_is_not_json_answers_400(uk: httpx.Client) -> None:
    """Malformed JSON is a 400 whose one error sits at ``body``."""
    headers = {**INVALID, "content-type": "application/json"}
    response = uk.post(CREATE, content=b"{project: acme}", headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["location"] == "body"


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"project": "umbrella"}, "Project 'umbrella' not found."),
        ({"app": "worker"}, "App 'worker' not found in project 'acme'."),
        ({"environmentSlug": "qa"}, "Environment 'qa' not found."),
        ({"keyspaceId": "ks_123"}, "The keyspace was not found."),
    ],
)
def test_unknown_project_app_environment_or_keyspace_is_404(
    uk: httpx.Client, unkey: FakeUnkey, fields: dict[str, str], detail: str
) -> None:
    """Slugs and ids the workspace does not have answer 404 and create nothing."""
    response = uk.post(CREATE, json=body(**fields))

    assert response.status_code == 404
    assert response.json()["error"]["detail"] == detail
    assert unkey.deployments() == []


def test_known_keyspaces_projects_and_environments_are_knobs(unkey: FakeUnkey) -> None:
    """keyspaces, projects and environments may be set up front or changed while running."""
    headers = {"Authorization": f"Bearer {ROOT_KEY}"}
    with httpx.Client(base_url=unkey.base_url, headers=headers) as client:
        unkey.keyspaces.add("ks_123")
        assert client.post(CREATE, json=body(keyspaceId="ks_123")).status_code == 201
        unkey.environments.discard("production")
        assert client.post(CREATE, json=body()).status_code == 404

    with FakeUnkey(projects={"shop": {"web"}}, environments={"qa"}) as fake:
        with httpx.Client(base_url=fake.base_url, headers=headers) as client:
            other = body(project="shop", app="web", environmentSlug="qa")
            assert client.post(CREATE, json=other).status_code == 201
            assert client.post(CREATE, json=body()).status_code == 404
        check_recorded(fake.requests, OpenApiChecker(UNKEY_SPEC))


# -- getDeployment and progress -------------------------------------------------------------


def test_status_advances_one_step_per_get_until_ready(uk: httpx.Client) -> None:
    """By default: BUILDING, DEPLOYING, READY on three calls, then READY with hostnames."""
    deployment_id = create(uk)
    seen = [get(uk, deployment_id) for _ in range(4)]

    assert [d["status"] for d in seen] == ["BUILDING", "DEPLOYING", "READY", "READY"]
    assert all(d["id"] == deployment_id for d in seen)
    assert ["hostnames" in d for d in seen] == [False, False, True, True]
    assert all(h.endswith(".unkey.app") for h in seen[2]["hostnames"])
    assert "acme-api-production.unkey.app" in seen[2]["hostnames"]
    assert all(set(d) <= {"id", "status", "hostnames"} for d in seen)


def test_steps_and_error_message_are_sent_only_when_the_scenario_asks(
    uk: httpx.Client, unkey: FakeUnkey
) -> None:
    """Unkey's handler fills only id, status and hostnames (API-REFERENCE section 3): no
    ``steps`` and no ``errorMessage``, even for a FAILED deployment, unless ``fill_details``."""
    unkey.fail_images = {"broken"}
    failing = create(uk, dockerImage="ghcr.io/acme/broken:v1")
    fine = create(uk)
    plain = [get(uk, deployment_id) for deployment_id in (failing, fine) for _ in range(3)]
    expected = ["BUILDING", "DEPLOYING", "FAILED", "BUILDING", "DEPLOYING", "READY"]
    assert [d["status"] for d in plain] == expected
    assert all("steps" not in d and "errorMessage" not in d for d in plain)

    unkey.fill_details = True
    failed, ready = get(uk, failing), get(uk, fine)
    assert "ghcr.io/acme/broken:v1" in failed["errorMessage"]
    assert failed["steps"][-1]["errorMessage"] == failed["errorMessage"]
    assert [len(d["steps"]) for d in (failed, ready)] == [4, 4]
    assert all(isinstance(s["createdAt"], int) for s in ready["steps"])
    assert "errorMessage" not in ready


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (0, ["READY"]),
        (1, ["READY", "READY"]),
        (5, ["BUILDING", "DEPLOYING", "NETWORK", "FINALIZING", "READY"]),
        (
            7,
            ["BUILDING", "DEPLOYING", "NETWORK", "FINALIZING", "FINALIZING", "FINALIZING", "READY"],
        ),
    ],
)
def test_steps_to_ready_sets_the_number_of_polls(
    uk: httpx.Client, unkey: FakeUnkey, steps: int, expected: list[str]
) -> None:
    """steps_to_ready N: READY on the Nth getDeployment (0: ready before the first)."""
    unkey.steps_to_ready = steps
    deployment_id = create(uk)

    assert statuses(uk, deployment_id, len(expected)) == expected
    assert unkey.deployments()[0]["polls"] == len(expected)


def test_fail_images_end_failed(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """An image matching fail_images goes through the statuses and ends FAILED, without
    hostnames; the fake keeps why for observation."""
    unkey.fail_images = {"broken"}
    failing = create(uk, dockerImage="ghcr.io/acme/broken:v1")
    fine = create(uk)
    seen = [get(uk, failing) for _ in range(4)]

    assert [d["status"] for d in seen] == ["BUILDING", "DEPLOYING", "FAILED", "FAILED"]
    assert "hostnames" not in seen[-1]
    assert "ghcr.io/acme/broken:v1" in unkey.deployments()[-1]["errorMessage"]
    assert statuses(uk, fine, 3)[-1] == "READY"


def test_await_approval_images_never_progress(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """An image matching await_approval_images is AWAITING_APPROVAL on every call."""
    unkey.await_approval_images = {"from-fork"}
    deployment_id = create(uk, dockerImage="ghcr.io/someone/from-fork:pr-12")

    assert statuses(uk, deployment_id, 5) == ["AWAITING_APPROVAL"] * 5
    assert unkey.deployments()[0]["status"] == "AWAITING_APPROVAL"


def test_get_validates_the_id_and_404s_unknown_ones(uk: httpx.Client) -> None:
    """An id not matching ^d_[a-zA-Z0-9]+$ is 400; a well-formed unknown id is 404."""
    malformed = uk.post(GET, json={"deploymentId": "dep_123"}, headers=INVALID)
    missing = uk.post(GET, json={}, headers=INVALID)
    unknown = uk.post(GET, json={"deploymentId": "d_doesnotexist"})

    assert malformed.status_code == missing.status_code == 400
    assert malformed.json()["error"]["errors"][0]["location"] == "body.deploymentId"
    assert missing.json()["error"]["errors"][0]["location"] == "body.deploymentId"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"].endswith("/deployment_not_found")


# -- auth, routes, rate limits, knobs --------------------------------------------------------


def test_a_wrong_root_key_is_401_and_a_missing_one_400(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """As Unkey's server: unknown key 401; no or non-Bearer Authorization header 400."""
    wrong = uk.post(CREATE, json=body(), headers={"Authorization": "Bearer unkey_nope"})
    absent = httpx.post(f"{unkey.base_url}{CREATE}", json=body(), headers=INVALID)
    basic = uk.post(CREATE, json=body(), headers={**INVALID, "Authorization": "Basic abc"})

    assert wrong.status_code == 401
    assert wrong.json()["error"]["title"] == "Unauthorized"
    assert absent.status_code == basic.status_code == 400
    assert absent.json()["error"]["type"].endswith("/authentication/missing")
    assert basic.json()["error"]["type"].endswith("/authentication/malformed")
    for response in (wrong, absent, basic):
        assert "ratelimit-limit" not in response.headers
    assert unkey.deployments() == []


def test_unknown_routes_and_methods(uk: httpx.Client) -> None:
    """Other paths are 404; other methods on the two paths are 405."""
    missing = uk.post("/v2/deploy.listDeployments", json={}, headers=OFF_SPEC)
    method = uk.get(GET, headers=OFF_SPEC)

    assert missing.status_code == 404
    assert method.status_code == 405


def test_every_authenticated_response_carries_rate_limit_headers(uk: httpx.Client) -> None:
    """RateLimit-Limit, -Remaining and -Reset (seconds) come with successes and errors alike."""
    created = uk.post(CREATE, json=body())
    missing = uk.post(GET, json={"deploymentId": "d_unknown"})
    invalid = uk.post(GET, json={"deploymentId": "nope"}, headers=INVALID)

    for response in (created, missing, invalid):
        assert response.headers["ratelimit-limit"] == "10000"
        assert 0 < int(response.headers["ratelimit-reset"]) <= 60
    remaining = [int(r.headers["ratelimit-remaining"]) for r in (created, missing, invalid)]
    assert remaining == [9999, 9998, 9997]


def test_rate_limit_answers_429_with_retry_after(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """Over N calls per window: 429 problem+json with Retry-After, nothing created, then fine."""
    unkey.rate_limit = (2, 1.0)
    first = uk.post(CREATE, json=body())
    uk.post(GET, json={"deploymentId": first.json()["data"]["deploymentId"]})
    refused = uk.post(CREATE, json=body())

    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"] == "1"
    assert refused.json()["error"]["status"] == 429
    assert len(unkey.deployments()) == 1
    assert len(unkey.writes()) == 1

    time.sleep(1.05)
    assert uk.post(CREATE, json=body()).status_code == 201


def test_forbidden_is_403_insufficient_permissions(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """forbidden: authenticated calls answer 403 naming the missing permission."""
    unkey.forbidden = True
    response = uk.post(CREATE, json=body())

    assert response.status_code == 403
    assert "project.*.create_deployment" in response.json()["error"]["detail"]
    assert unkey.deployments() == []


def test_error_rate_answers_500_without_processing(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """error_rate 1.0 answers 500 (the only 5xx the spec lists) and creates nothing."""
    unkey.error_rate = 1.0
    response = uk.post(CREATE, json=body())

    assert response.status_code == 500
    assert response.json()["error"]["title"] == "Internal Server Error"
    assert REQUEST_ID.fullmatch(response.json()["meta"]["requestId"])
    assert unkey.deployments() == []
    assert unkey.writes() == []


def test_knob_methods_limit_which_requests_the_knobs_hit(
    uk: httpx.Client, unkey: FakeUnkey
) -> None:
    """Every call is a POST here: knob_methods={"GET"} leaves them all alone."""
    unkey.error_rate = 1.0
    unkey.knob_methods = {"GET"}

    assert uk.post(CREATE, json=body()).status_code == 201


def test_drop_rate_creates_then_hangs_up(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """drop_rate 1.0: the deployment exists but the client never learns its id."""
    unkey.drop_rate = 1.0
    with pytest.raises(httpx.TransportError):
        uk.post(CREATE, json=body())
    unkey.drop_rate = 0.0
    [write] = unkey.writes()

    assert write.dropped and write.status is None
    assert len(unkey.deployments()) == 1


def test_stall_lets_the_client_time_out_after_the_change(
    uk: httpx.Client, unkey: FakeUnkey
) -> None:
    """stall_rate 1.0: the deployment is created, then the answer comes too late."""
    unkey.stall_rate, unkey.stall_seconds = 1.0, 0.5
    with pytest.raises(httpx.ReadTimeout):
        uk.post(CREATE, json=body(), timeout=0.2)

    assert len(unkey.deployments()) == 1


def test_latency_delays_every_answer(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """latency is slept before answering."""
    unkey.latency = 0.2
    started = time.monotonic()
    uk.post(GET, json={"deploymentId": "d_x"})

    assert time.monotonic() - started >= 0.2


# -- observation and drift helpers --------------------------------------------------------


def test_writes_are_creates_only_and_requests_record_everything(
    uk: httpx.Client, unkey: FakeUnkey
) -> None:
    """writes() holds processed createDeployment calls; requests holds every call."""
    deployment_id = create(uk)
    get(uk, deployment_id)

    post, poll = unkey.requests
    assert unkey.writes() == [post]
    assert post.json == body()
    assert poll.response_json()["data"]["id"] == deployment_id
    assert post.response_json()["meta"]["requestId"] != poll.response_json()["meta"]["requestId"]

    unkey.reset_log()
    assert unkey.requests == []
    assert len(unkey.deployments()) == 1


def test_set_status_pins_a_deployment(uk: httpx.Client, unkey: FakeUnkey) -> None:
    """set_status changes the status as someone else would and stops further progress."""
    deployment_id = create(uk)
    unkey.set_status(deployment_id, "CANCELLED")

    assert statuses(uk, deployment_id, 4) == ["CANCELLED"] * 4
    unkey.set_status(deployment_id, "READY")
    assert get(uk, deployment_id)["hostnames"]
    with pytest.raises(ValueError):
        unkey.set_status(deployment_id, "DONE")
    with pytest.raises(KeyError):
        unkey.set_status("d_unknown", "READY")


def test_the_fake_validates_against_the_checkers_spec() -> None:
    """The fake reads its request schemas from the same file the checker uses."""
    assert SPEC_PATH.resolve() == UNKEY_SPEC.resolve()


# -- the checker itself --------------------------------------------------------------------


def test_checker_rejects_responses_the_spec_does_not_allow(
    unkey: FakeUnkey, unkey_spec: OpenApiChecker
) -> None:
    """Unknown statuses, extra meta fields, JSON 429s, 503s and mismatched error statuses fail."""
    url = f"{unkey.base_url}{GET}"
    plain = {"content-type": "application/json"}
    problem = {"content-type": "application/problem+json"}
    meta = {"requestId": "req_1"}

    def answer(value: Any) -> bytes:
        return json.dumps(value).encode()

    def error(status: int) -> dict[str, Any]:
        return {"title": "x", "detail": "y", "status": status, "type": "https://unkey.com/docs"}

    check = unkey_spec.check_response
    with pytest.raises(AssertionError, match="DONE"):
        check(
            "POST",
            url,
            {},
            200,
            plain,
            answer({"meta": meta, "data": {"id": "d_1", "status": "DONE"}}),
        )
    with pytest.raises(AssertionError, match="extra"):
        check(
            "POST",
            url,
            {},
            200,
            plain,
            answer({"meta": {**meta, "extra": 1}, "data": {"id": "d_1", "status": "READY"}}),
        )
    with pytest.raises(AssertionError, match="mimetype"):
        check("POST", url, {}, 429, plain, answer({"meta": meta, "error": error(429)}))
    with pytest.raises(AssertionError, match="not documented"):
        check("POST", url, {}, 503, plain, answer({"meta": meta, "error": error(503)}))
    with pytest.raises(AssertionError, match=r"error\.status"):
        check("POST", url, {}, 404, plain, answer({"meta": meta, "error": error(400)}))
    with pytest.raises(AssertionError, match="errors"):
        check("POST", url, {}, 400, plain, answer({"meta": meta, "error": error(400)}))
    check(
        "POST", url, {}, 400, plain, answer({"meta": meta, "error": {**error(400), "errors": []}})
    )
    check("POST", url, {}, 429, problem, answer({"meta": meta, "error": error(429)}))


def test_checker_rejects_requests_the_spec_does_not_allow(
    unkey: FakeUnkey, unkey_spec: OpenApiChecker
) -> None:
    """Snake_case names, a bad deployment id or a missing root key fail the request check."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {ROOT_KEY}"}
    create_url, get_url = f"{unkey.base_url}{CREATE}", f"{unkey.base_url}{GET}"
    snake = {"project_id": "p", "environment_slug": "production", "docker_image": IMAGE}

    with pytest.raises(AssertionError, match="required"):
        unkey_spec.check_request("POST", create_url, headers, json.dumps(snake).encode())
    with pytest.raises(AssertionError, match="does not match"):
        unkey_spec.check_request("POST", get_url, headers, b'{"deploymentId": "dep_1"}')
    with pytest.raises(AssertionError, match="Security"):
        unkey_spec.check_request("POST", get_url, {}, b'{"deploymentId": "d_1"}')
    unkey_spec.check_request("POST", create_url, headers, json.dumps(body()).encode())
