"""The Chainloop fake, exercised over real HTTP with httpx and checked against Chainloop's OpenAPI.

Every exchange a test causes is checked at teardown (``_every_exchange_matches_the_spec``) with
``spec.check_recorded``: a request the spec forbids on purpose carries ``x-test-invalid``, one
that leaves the spec's operations ``x-test-off-spec``, and the check then demands that the
checker rejects it, which also proves the checks can fail.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.chainloop import FakeChainloop
from tests.fakes.spec import OpenApiChecker, check_recorded

TOKEN = "cl_testtoken0123456789"
PATH = "/v1/deployments"
INVALID = {"x-test-invalid": "1"}
OFF_SPEC = {"x-test-off-spec": "1"}
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def _every_exchange_matches_the_spec(
    chainloop: FakeChainloop, chainloop_spec: OpenApiChecker
) -> Iterator[None]:
    """After each test, check every exchange with the fake against Chainloop's description."""
    yield
    check_recorded(chainloop.requests, chainloop_spec)


@pytest.fixture
def cl(chainloop: FakeChainloop) -> Iterator[httpx.Client]:
    """An httpx client for the fake with the API token."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    with httpx.Client(base_url=chainloop.base_url, headers=headers, timeout=5) as client:
        yield client


def body(**fields: Any) -> dict[str, Any]:
    """All seven RecordDeployment fields, as the reference asks clients to send them."""
    return {
        "environment_name": "production",
        "deployment_name": "api",
        "kind": "CONTAINER_IMAGE",
        "artifact_name": "ghcr.io/acme/api",
        "artifact_version": "v1",
        "artifact_digest": DIGEST_A,
        "status": "DEPLOYED",
        **fields,
    }


def record(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Record a deployment and return the answered record."""
    response = client.post(PATH, json=body(**fields))
    assert response.status_code == 200, response.text
    answered: dict[str, Any] = response.json()["deployment_record"]
    return answered


def listing(client: httpx.Client, **params: Any) -> dict[str, Any]:
    """List records with the given query parameters and return the answer."""
    response = client.get(PATH, params=params)
    assert response.status_code == 200, response.text
    answered: dict[str, Any] = response.json()
    return answered


# -- recording --------------------------------------------------------------------------------


def test_record_deployed_answers_200_with_a_full_record(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """A DEPLOYED recording creates a record with every field of v1DeploymentRecord."""
    response = cl.post(PATH, json=body())

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    created = response.json()["deployment_record"]
    assert set(created) == {
        "id",
        "environment_id",
        "environment_name",
        "deployment_name",
        "artifact",
        "artifact_id",
        "status",
        "created_at",
        "updated_at",
        "last_seen_at",
    }
    assert UUID.fullmatch(created["id"])
    assert UUID.fullmatch(created["environment_id"])
    assert UUID.fullmatch(created["artifact_id"])
    assert (created["environment_name"], created["deployment_name"]) == ("production", "api")
    assert created["artifact"] == {
        "kind": "CONTAINER_IMAGE",
        "name": "ghcr.io/acme/api",
        "digest": DIGEST_A,
        "version": "v1",
    }
    assert created["status"] == "DEPLOYED"
    assert STAMP.fullmatch(created["created_at"])
    assert created["created_at"] == created["updated_at"] == created["last_seen_at"]
    assert chainloop.records() == [created]
    assert chainloop.active("production", "api") == created


def test_recording_the_same_artifact_again_is_a_heartbeat(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """Same slot, same digest: the same record with updated_at and last_seen_at moved."""
    first = record(cl)
    again = record(cl, artifact_version="v1-retagged", artifact_name="mirror.io/acme/api")

    assert again["id"] == first["id"]
    assert again["created_at"] == first["created_at"]
    assert again["updated_at"] > first["updated_at"]
    assert again["last_seen_at"] == again["updated_at"]
    assert again["artifact"] == first["artifact"]
    assert [r["id"] for r in chainloop.records()] == [first["id"]]


def test_without_a_digest_the_artifact_is_its_name_and_version(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """With no digest, same name and version is a heartbeat; another version supersedes."""
    chart = {"kind": "HELM_CHART", "artifact_name": "charts/api", "artifact_digest": ""}
    first = record(cl, **chart, artifact_version="1.0.0")
    beat = record(cl, **chart, artifact_version="1.0.0")
    newer = record(cl, **chart, artifact_version="1.1.0")

    assert beat["id"] == first["id"] and beat["artifact"]["digest"] == ""
    assert newer["id"] != first["id"]
    assert [r["status"] for r in chainloop.records()] == ["DEPLOYED", "SUPERSEDED"]


def test_a_new_artifact_supersedes_the_active_record(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """Another digest in the slot: the old record turns SUPERSEDED, a new one is DEPLOYED."""
    old = record(cl)
    new = record(cl, artifact_digest=DIGEST_B, artifact_version="v2")

    newest, previous = chainloop.records("production", "api")
    assert newest == new and new["status"] == "DEPLOYED"
    assert previous["id"] == old["id"]
    assert previous["status"] == "SUPERSEDED"
    assert previous["updated_at"] > old["updated_at"]
    assert previous["last_seen_at"] == old["last_seen_at"]
    assert new["environment_id"] == old["environment_id"]
    assert new["artifact_id"] != old["artifact_id"]
    assert chainloop.active("production", "api") == new


def test_a_slot_is_environment_deployment_name_and_kind(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """Other kind or other environment means another slot; ids are stable per env and artifact."""
    image = record(cl)
    chart = record(cl, kind="HELM_CHART", artifact_digest=DIGEST_B)
    staging = record(cl, environment_name="staging")

    assert {r["status"] for r in chainloop.records()} == {"DEPLOYED"}
    assert chainloop.active("production", "api", kind="HELM_CHART") == chart
    assert chainloop.active("production", "api", kind="CONTAINER_IMAGE") == image
    assert staging["environment_id"] != image["environment_id"]
    assert staging["artifact_id"] == image["artifact_id"]
    assert chart["environment_id"] == image["environment_id"]


def test_decommission_marks_the_latest_record_with_that_artifact(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """DECOMMISSIONED updates the slot's record of that artifact; repeating it changes nothing."""
    deployed = record(cl)
    gone = record(cl, status="DECOMMISSIONED")
    again = record(cl, status="DECOMMISSIONED")

    assert gone["id"] == deployed["id"] == again["id"]
    assert gone["status"] == "DECOMMISSIONED"
    assert gone["updated_at"] > deployed["updated_at"]
    assert gone["last_seen_at"] == deployed["last_seen_at"]
    assert chainloop.active("production", "api") is None
    assert len(chainloop.records()) == 1


def test_decommissioning_an_unknown_artifact_creates_a_decommissioned_record(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """No record of that artifact in the slot: one is created already DECOMMISSIONED."""
    deployed = record(cl)
    other = record(cl, artifact_digest=DIGEST_B, status="DECOMMISSIONED")

    assert other["id"] != deployed["id"]
    assert other["status"] == "DECOMMISSIONED"
    assert chainloop.active("production", "api") == chainloop.records()[1]


def test_explicit_superseded_marks_the_matching_record(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """SUPERSEDED, rarely needed, marks the slot's record with that artifact."""
    deployed = record(cl)
    superseded = record(cl, status="SUPERSEDED")

    assert superseded["id"] == deployed["id"]
    assert superseded["status"] == "SUPERSEDED"
    assert chainloop.active("production", "api") is None


def test_concurrent_heartbeats_leave_one_record(chainloop: FakeChainloop) -> None:
    """Parallel clients recording the same artifact never create duplicates."""
    ids: set[str] = set()
    lock = threading.Lock()

    def beat() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=chainloop.base_url, headers=headers, timeout=5) as client:
            for _ in range(5):
                created = record(client)
                with lock:
                    ids.add(created["id"])

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(ids) == 1
    assert len(chainloop.records()) == 1


@pytest.mark.parametrize(
    ("payload", "spec_rejects", "message"),
    [
        (body(environment_name=""), False, "environment_name"),
        ({k: v for k, v in body().items() if k != "deployment_name"}, False, "deployment_name"),
        (body(artifact_name=""), False, "artifact_name"),
        (body(kind="ARTIFACT_KIND_UNSPECIFIED"), False, "kind"),
        (body(status="DEPLOYMENT_STATUS_UNSPECIFIED"), False, "status"),
        ({k: v for k, v in body().items() if k != "status"}, False, "status"),
        (body(kind="DOCKER_IMAGE"), True, "enum field kind"),
        (body(status="DEPLOYMENT_STATUS_SUPERSEDED"), True, "enum field status"),
        (body(environment_name=5), True, "string field environment_name"),
        (body(artifact_version=["v1"]), True, "string field artifact_version"),
        ([body()], True, "syntax error"),
    ],
)
def test_invalid_recordings_are_invalid_argument(
    cl: httpx.Client,
    chainloop: FakeChainloop,
    payload: Any,
    spec_rejects: bool,
    message: str,
) -> None:
    """Missing names, UNSPECIFIED or unknown enums and wrong JSON types answer 400 code 3."""
    response = cl.post(PATH, json=payload, headers=INVALID if spec_rejects else {})

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert message in response.json()["message"]
    assert response.json()["details"] == []
    assert chainloop.records() == []


def test_malformed_json_is_invalid_argument(cl: httpx.Client, chainloop: FakeChainloop) -> None:
    """A body that is not JSON answers 400 code 3."""
    headers = {**INVALID, "content-type": "application/json"}
    response = cl.post(PATH, content=b'{"environment_name": ', headers=headers)

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert chainloop.records() == []


def test_unknown_fields_are_ignored_and_null_reads_as_empty(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """As protojson in grpc-gateway: unknown fields are dropped, null is the empty value."""
    extra = cl.post(PATH, json=body(project_name="acme", note="x"))
    nulled = cl.post(PATH, json=body(deployment_name="web", artifact_digest=None), headers=INVALID)

    assert extra.status_code == 200
    assert nulled.status_code == 200
    assert nulled.json()["deployment_record"]["artifact"]["digest"] == ""


# -- listing -------------------------------------------------------------------------------


def test_list_is_newest_first_with_one_based_pages(cl: httpx.Client) -> None:
    """25 records in pages of 10: pages 1-3 in order, page 4 empty, totals on every page."""
    created = [record(cl, deployment_name=f"svc-{i:02d}")["id"] for i in range(25)]

    pages = [listing(cl, **{"pagination.page": n, "pagination.page_size": 10}) for n in (1, 2, 3)]
    beyond = listing(cl, **{"pagination.page": 4, "pagination.page_size": 10})

    seen = [r["id"] for page in pages for r in page["deployment_records"]]
    assert seen == created[::-1]
    assert [len(page["deployment_records"]) for page in pages] == [10, 10, 5]
    assert pages[2]["pagination"] == {
        "page": 3,
        "page_size": 10,
        "total_count": 25,
        "total_pages": 3,
    }
    assert beyond["deployment_records"] == []
    assert beyond["pagination"]["total_count"] == 25


def test_pages_are_numbered_from_one_and_page_zero_is_refused(cl: httpx.Client) -> None:
    """Page 1 is the newest records (the offset is (page - 1) * page_size); page 0, which a
    reader of "zero-based" in the parameter's description would send, is InvalidArgument."""
    created = [record(cl, deployment_name=f"svc-{i}") for i in range(3)]
    first = listing(cl, **{"pagination.page": 1, "pagination.page_size": 2})
    zero = cl.get(PATH, params={"pagination.page": 0, "pagination.page_size": 2})

    assert [r["id"] for r in first["deployment_records"]] == [created[2]["id"], created[1]["id"]]
    assert first["pagination"]["page"] == 1
    assert zero.status_code == 400
    assert zero.json()["code"] == 3
    assert "pagination.page: value must be greater than or equal to 1" in zero.json()["message"]


def test_list_defaults_to_page_1_of_10(cl: httpx.Client) -> None:
    """Without pagination parameters the first 10 records come back; empty lists have 0 pages."""
    assert listing(cl)["pagination"] == {
        "page": 1,
        "page_size": 10,
        "total_count": 0,
        "total_pages": 0,
    }
    for i in range(12):
        record(cl, deployment_name=f"svc-{i}")
    answered = listing(cl)

    assert len(answered["deployment_records"]) == 10
    assert answered["pagination"]["total_pages"] == 2


def test_list_filters_by_environment_deployment_status_and_kind(cl: httpx.Client) -> None:
    """Each filter narrows the list; UNSPECIFIED means no filter; project names are ignored."""
    old = record(cl)
    new = record(cl, artifact_digest=DIGEST_B)
    chart = record(cl, kind="HELM_CHART", artifact_name="charts/api")
    staging = record(cl, environment_name="staging", deployment_name="web")

    def ids(**params: Any) -> list[str]:
        return [r["id"] for r in listing(cl, **params)["deployment_records"]]

    assert ids(environment_name="production") == [chart["id"], new["id"], old["id"]]
    assert ids(deployment_name="web") == [staging["id"]]
    assert ids(status="SUPERSEDED") == [old["id"]]
    assert ids(status="DEPLOYMENT_STATUS_UNSPECIFIED") == ids()
    assert ids(kind="HELM_CHART") == [chart["id"]]
    assert ids(environment_name="production", status="DEPLOYED", kind="CONTAINER_IMAGE") == [
        new["id"]
    ]
    assert ids(project_name="anything", project_version_name="1.0") == ids()


@pytest.mark.parametrize(
    ("params", "spec_rejects"),
    [
        ({"pagination.page": 0}, False),
        ({"pagination.page": -1}, False),
        ({"pagination.page_size": 0}, False),
        ({"pagination.page_size": 101}, False),
        ({"pagination.page": 2}, False),
        ({"pagination.page_size": 5}, False),
        ({"pagination.page": "two"}, True),
        ({"status": "ACTIVE"}, True),
        ({"kind": "IMAGE"}, True),
        ({"project_version_name": "1.0"}, False),
    ],
)
def test_bad_list_parameters_are_invalid_argument(
    cl: httpx.Client, params: dict[str, Any], spec_rejects: bool
) -> None:
    """Page < 1, page size outside 1-100 (either one left out counts as 0), non-numbers and
    unknown enums answer 400 code 3."""
    response = cl.get(PATH, params=params, headers=INVALID if spec_rejects else {})

    assert response.status_code == 400
    assert response.json()["code"] == 3


# -- auth, routes, knobs -------------------------------------------------------------------


def test_bad_or_missing_token_is_unauthenticated(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """A wrong or absent bearer token answers 401 code 16 and records nothing."""
    wrong = cl.post(PATH, json=body(), headers={"Authorization": "Bearer nope"})
    absent = httpx.get(f"{chainloop.base_url}{PATH}", headers=INVALID)

    assert wrong.status_code == absent.status_code == 401
    assert wrong.json()["code"] == absent.json()["code"] == 16
    assert chainloop.records() == []
    assert chainloop.writes() == []


def test_the_body_is_decoded_before_the_token_is_checked(cl: httpx.Client) -> None:
    """As in grpc-gateway, a malformed body with a wrong token is a 400, not a 401."""
    headers = {**INVALID, "Authorization": "Bearer nope"}
    response = cl.post(PATH, json=body(kind="NOPE"), headers=headers)

    assert response.status_code == 400


def test_unknown_routes_and_methods(cl: httpx.Client) -> None:
    """Other paths are 404 code 5; another method on the path is 501 code 12."""
    missing = cl.get("/v1/deployments/abc", headers=OFF_SPEC)
    method = cl.delete(PATH, headers=OFF_SPEC)

    assert (missing.status_code, missing.json()["code"]) == (404, 5)
    assert (method.status_code, method.json()["code"]) == (501, 12)


def test_error_rate_answers_unavailable_or_internal(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """error_rate 1.0 answers 503 code 14 or 500 code 13 and changes nothing."""
    chainloop.error_rate = 1.0
    answers: set[tuple[int, int]] = set()
    for _ in range(12):
        response = cl.post(PATH, json=body())
        answers.add((response.status_code, response.json()["code"]))

    assert answers == {(503, 14), (500, 13)}
    assert chainloop.records() == []
    assert chainloop.writes() == []


def test_knob_methods_limit_which_requests_the_knobs_hit(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """With knob_methods={"POST"}, GETs pass while POSTs fail."""
    chainloop.error_rate = 1.0
    chainloop.knob_methods = {"POST"}

    assert cl.get(PATH).status_code == 200
    assert cl.post(PATH, json=body()).status_code >= 500


def test_drop_rate_processes_then_hangs_up_and_a_retry_is_safe(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """drop_rate 1.0: the record is stored, the client sees a transport error; a retry upserts."""
    chainloop.drop_rate = 1.0
    with pytest.raises(httpx.TransportError):
        cl.post(PATH, json=body())
    chainloop.drop_rate = 0.0
    [stored] = chainloop.records()
    [write] = chainloop.writes()

    assert write.dropped and write.status is None
    assert record(cl)["id"] == stored["id"]
    assert len(chainloop.records()) == 1


def test_stall_lets_the_client_time_out_after_the_change(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """stall_rate 1.0: the record is stored, then the answer comes too late for the client."""
    chainloop.stall_rate, chainloop.stall_seconds = 1.0, 0.5
    with pytest.raises(httpx.ReadTimeout):
        cl.post(PATH, json=body(), timeout=0.2)

    assert chainloop.active("production", "api") is not None


def test_latency_delays_every_answer(cl: httpx.Client, chainloop: FakeChainloop) -> None:
    """latency is slept before answering."""
    chainloop.latency = 0.2
    started = time.monotonic()
    cl.get(PATH)

    assert time.monotonic() - started >= 0.2


def test_rate_limit_answers_resource_exhausted(cl: httpx.Client, chainloop: FakeChainloop) -> None:
    """Over N requests per window: 429 code 8 and nothing recorded, until the window passes."""
    chainloop.rate_limit = (2, 1.0)
    record(cl)
    listing(cl)
    refused = cl.post(PATH, json=body(artifact_digest=DIGEST_B))

    assert refused.status_code == 429
    assert refused.json()["code"] == 8
    assert len(chainloop.records()) == 1

    time.sleep(1.05)
    assert record(cl, artifact_digest=DIGEST_B)["status"] == "DEPLOYED"


def test_forbidden_is_permission_denied(cl: httpx.Client, chainloop: FakeChainloop) -> None:
    """forbidden: every authenticated call answers 403 code 7."""
    chainloop.forbidden = True
    response = cl.post(PATH, json=body())

    assert (response.status_code, response.json()["code"]) == (403, 7)
    assert chainloop.records() == []


# -- observation and drift helpers --------------------------------------------------------


def test_recorded_requests_describe_the_exchange(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """requests records method, path, query, bodies and status; reset_log clears it."""
    record(cl)
    cl.get(PATH, params={"environment_name": "production"})

    post, get = chainloop.requests
    assert (post.method, post.path, post.status) == ("POST", PATH, 200)
    assert post.json == body()
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.response_json()["deployment_record"]["status"] == "DEPLOYED"
    assert get.query == {"environment_name": "production"}
    assert chainloop.writes() == [post]

    chainloop.reset_log()
    assert chainloop.requests == []
    assert len(chainloop.records()) == 1


def test_drift_helpers_change_state_without_requests(
    cl: httpx.Client, chainloop: FakeChainloop
) -> None:
    """set_status and delete_record act as someone else would; unknown ids are KeyError."""
    created = record(cl)
    changed = chainloop.set_status(created["id"], "DECOMMISSIONED")

    assert changed["updated_at"] > created["updated_at"]
    assert listing(cl, status="DEPLOYED")["deployment_records"] == []
    with pytest.raises(ValueError):
        chainloop.set_status(created["id"], "GONE")

    chainloop.delete_record(created["id"])
    assert listing(cl)["deployment_records"] == []
    with pytest.raises(KeyError):
        chainloop.delete_record(created["id"])
    with pytest.raises(KeyError):
        chainloop.set_status(created["id"], "DEPLOYED")
    assert len(chainloop.requests) == 3  # the record and two listings: no drift went over HTTP


def test_ids_repeat_for_the_same_seed(chainloop: FakeChainloop) -> None:
    """Two fakes with the same seed hand out the same ids for the same calls."""
    ids = []
    for _ in range(2):
        with FakeChainloop(seed=7) as fake:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=fake.base_url, headers=headers) as client:
                ids.append(record(client)["id"])
    assert ids[0] == ids[1]


# -- the checker itself --------------------------------------------------------------------


def test_checker_rejects_responses_the_spec_does_not_allow(
    cl: httpx.Client, chainloop: FakeChainloop, chainloop_spec: OpenApiChecker
) -> None:
    """A bad status value or timestamp, a non-rpcStatus error or an unknown path fail."""
    created = record(cl)
    url = f"{chainloop.base_url}{PATH}"
    json_headers = {"content-type": "application/json"}

    def answer(value: Any) -> bytes:
        return json.dumps(value).encode()

    bad_status = {**created, "status": "DEPLOYMENT_STATUS_DEPLOYED"}
    bad_stamp = {**created, "last_seen_at": "yesterday"}
    with pytest.raises(AssertionError, match="DEPLOYMENT_STATUS_DEPLOYED"):
        chainloop_spec.check_response(
            "POST", url, {}, 200, json_headers, answer({"deployment_record": bad_status})
        )
    with pytest.raises(AssertionError, match="date-time"):
        chainloop_spec.check_response(
            "POST", url, {}, 200, json_headers, answer({"deployment_record": bad_stamp})
        )
    with pytest.raises(AssertionError, match="rpcStatus"):
        chainloop_spec.check_response("GET", url, {}, 503, json_headers, b'{"error": "down"}')
    with pytest.raises(AssertionError, match="integer"):
        chainloop_spec.check_response(
            "GET", url, {}, 400, json_headers, answer({"code": "3", "message": "x"})
        )
    with pytest.raises(AssertionError, match="no such operation"):
        chainloop_spec.check_response("GET", f"{url}/1", {}, 200, json_headers, b"{}")
    chainloop_spec.check_response(
        "POST", url, {}, 200, json_headers, answer({"deployment_record": created})
    )


def test_checker_rejects_requests_the_spec_does_not_allow(
    chainloop: FakeChainloop, chainloop_spec: OpenApiChecker
) -> None:
    """An unknown enum, a non-integer page or a missing token fail the request check."""
    url = f"{chainloop.base_url}{PATH}"
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}

    with pytest.raises(AssertionError, match="kind"):
        chainloop_spec.check_request("POST", url, headers, json.dumps(body(kind="OCI")).encode())
    with pytest.raises(AssertionError, match=r"pagination\.page"):
        chainloop_spec.check_request("GET", f"{url}?pagination.page=x", headers, None)
    with pytest.raises(AssertionError, match="Security"):
        chainloop_spec.check_request("GET", url, {}, None)
    chainloop_spec.check_request("POST", url, headers, json.dumps(body()).encode())
