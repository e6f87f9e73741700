"""The GitHub fake, exercised over real HTTP with httpx and checked against GitHub's OpenAPI.

Every exchange a test causes is checked at teardown (``_every_exchange_matches_the_spec``):
requests with ``check_request`` and served responses with ``check_response``. A test that sends
a request the spec forbids on purpose marks it with the ``x-test-invalid`` header, and one that
leaves the spec's routes entirely marks it ``x-test-off-spec``; the check then demands that the
checker rejects them, which also proves the checks can fail.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes.github import ALL_PERMISSIONS, NO_USER_AGENT, FakeGitHub, RecordedRequest
from tests.fakes.spec import OpenApiChecker

TOKEN = "ghp_testtoken0123456789"
REPO = "/repos/acme/app"
INVALID = {"x-test-invalid": "1"}
OFF_SPEC = {"x-test-off-spec": "1"}


def check_exchanges(fake: FakeGitHub, spec: OpenApiChecker) -> None:
    """Check every recorded request and every answered response against the spec."""
    for recorded in fake.requests:
        _check_one(recorded, spec)


def _check_one(recorded: RecordedRequest, spec: OpenApiChecker) -> None:
    """Marked requests must be rejected; everything else must pass."""
    off_spec = "x-test-off-spec" in recorded.headers
    if off_spec or "x-test-invalid" in recorded.headers:
        with pytest.raises(AssertionError):
            spec.check_request(recorded.method, recorded.url, recorded.headers, recorded.body)
    else:
        spec.check_request(recorded.method, recorded.url, recorded.headers, recorded.body)
    if recorded.status is None:
        return
    args = (recorded.method, recorded.url, recorded.headers, recorded.status)
    if off_spec:
        with pytest.raises(AssertionError):
            spec.check_response(*args, recorded.response_headers, recorded.response_body)
    else:
        spec.check_response(*args, recorded.response_headers, recorded.response_body)


@pytest.fixture(autouse=True)
def _every_exchange_matches_the_spec(
    github: FakeGitHub, github_spec: OpenApiChecker
) -> Iterator[None]:
    yield
    check_exchanges(github, github_spec)


@pytest.fixture(autouse=True)
def _app_repository(github: FakeGitHub) -> None:
    """The repository these tests work in, ``REPO``, exists (a repository nobody created is a
    404, see ``test_an_unknown_repository_is_404_on_every_operation``)."""
    github.add_repository("acme/app")


@pytest.fixture
def gh(github: FakeGitHub) -> Iterator[httpx.Client]:
    """An httpx client for the fake, with the headers GitHub's docs ask for."""
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "slotkeeper-tests",
    }
    with httpx.Client(base_url=github.base_url, headers=headers, timeout=5) as client:
        yield client


def deploy(client: httpx.Client, repo: str = REPO, **fields: Any) -> dict[str, Any]:
    """Create a deployment the way a careful client does (no auto-merge, no status checks)."""
    body = {"ref": "main", "auto_merge": False, "required_contexts": [], **fields}
    response = client.post(f"{repo}/deployments", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def post_status(client: httpx.Client, deployment_id: int, state: str, **fields: Any) -> Any:
    """Post a status on a deployment of ``REPO`` and return the created status."""
    response = client.post(
        f"{REPO}/deployments/{deployment_id}/statuses", json={"state": state, **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


def public_key(comment: str = "slotkeeper") -> str:
    """A fresh OpenSSH public key line: ``ssh-ed25519 <base64> <comment>``."""
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return f"{raw.decode()} {comment}"


# -- deployments -----------------------------------------------------------------------------


def test_create_deployment_answers_201_with_a_full_deployment(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """A create with auto_merge false and required_contexts [] records a complete deployment."""
    response = gh.post(
        f"{REPO}/deployments",
        json={
            "ref": "main",
            "auto_merge": False,
            "required_contexts": [],
            "environment": "staging",
            "payload": {"slot": "api", "digest": "sha256:abc"},
            "description": "api v1",
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == body["url"]
    assert body["url"] == f"{github.base_url}{REPO}/deployments/{body['id']}"
    assert body["node_id"].startswith("DE_kwDO")
    assert len(body["sha"]) == 40
    assert (body["ref"], body["task"], body["environment"]) == ("main", "deploy", "staging")
    assert body["original_environment"] == "staging"
    assert body["payload"] == {"slot": "api", "digest": "sha256:abc"}
    assert body["description"] == "api v1"
    assert body["transient_environment"] is False
    assert body["production_environment"] is False
    assert body["creator"]["login"] == "octocat"
    assert body["created_at"] == body["updated_at"]
    assert body["created_at"].endswith("Z")
    assert body["statuses_url"] == f"{body['url']}/statuses"
    assert body["performed_via_github_app"] is None
    assert github.deployments("acme", "app") == [body]
    assert github.latest_state(body["id"]) is None


def test_create_deployment_defaults_to_production_and_keeps_string_payloads(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Omitted environment means production; a SHA ref is the sha; a tag deploys the commit it
    points at; a string payload stays one."""
    sha = github.add_commit("acme/app", "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d")
    tagged = github.add_tag("acme/app", "v1.2.0")
    first = deploy(gh, ref=sha, payload='{"slot": "api"}')
    second = deploy(gh, ref="v1.2.0", task="deploy:migrations")

    assert first["environment"] == "production"
    assert first["production_environment"] is True
    assert first["sha"] == sha
    assert first["payload"] == '{"slot": "api"}'
    assert second["id"] > first["id"]
    assert second["task"] == "deploy:migrations"
    assert second["sha"] == tagged != sha
    assert deploy(gh, ref="v1.2.0")["sha"] == second["sha"]


def test_create_deployment_with_default_auto_merge_answers_202_and_creates_nothing(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Leaving auto_merge at its default makes GitHub merge instead of deploy: 202, no record."""
    github.add_branch("acme/app", "topic")
    response = gh.post(f"{REPO}/deployments", json={"ref": "topic", "required_contexts": []})

    assert response.status_code == 202
    assert response.json()["message"].startswith("Auto-merged main into topic")
    assert github.deployments("acme", "app") == []


def test_create_deployment_without_required_contexts_answers_409(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Omitting required_contexts checks every commit status; the fake fails them: 409."""
    response = gh.post(f"{REPO}/deployments", json={"ref": "main", "auto_merge": False})
    named = gh.post(
        f"{REPO}/deployments",
        json={"ref": "main", "auto_merge": False, "required_contexts": ["ci/build"]},
    )
    github.passing_contexts.add("ci/build")
    passing = gh.post(
        f"{REPO}/deployments",
        json={"ref": "main", "auto_merge": False, "required_contexts": ["ci/build"]},
    )

    assert response.status_code == 409
    assert response.json()["message"] == "Conflict: Commit status checks failed for main."
    assert named.status_code == 409
    assert passing.status_code == 201
    assert len(github.deployments("acme", "app")) == 1


def test_create_deployment_validates_its_body(gh: httpx.Client, github: FakeGitHub) -> None:
    """A missing ref or a mistyped field answers 422 and creates nothing."""
    missing = gh.post(f"{REPO}/deployments", json={"auto_merge": False}, headers=INVALID)
    mistyped = gh.post(
        f"{REPO}/deployments",
        json={"ref": "main", "auto_merge": False, "required_contexts": [], "task": 3},
        headers=INVALID,
    )
    garbage = gh.post(
        f"{REPO}/deployments",
        content=b"{not json",
        headers={**INVALID, "content-type": "application/json"},
    )

    assert missing.status_code == 422
    assert "ref" in missing.json()["message"]
    assert missing.json()["documentation_url"]
    assert mistyped.status_code == 422
    assert garbage.status_code == 400
    assert github.deployments("acme", "app") == []


def test_a_payload_is_a_json_object_or_a_string_of_json_text(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """``payload`` is an object or JSON text (the spec: "It is a JSON text field"); a string
    that is not JSON, or a value of another type, is 422 and creates nothing; "" is the
    documented default."""
    for payload in ("slot=api", "{'slot': 'api'}", '{"slot": ', ["slot", "api"], 7, None):
        refused = gh.post(
            f"{REPO}/deployments",
            json={"ref": "main", "auto_merge": False, "required_contexts": [], "payload": payload},
            headers=INVALID if not isinstance(payload, str) else {},
        )
        assert refused.status_code == 422, payload
        assert "payload" in refused.json()["message"]
    assert github.deployments("acme", "app") == []

    accepted = [
        deploy(gh, payload=payload)["payload"]
        for payload in ("", "[1, 2]", '"text"', '{"slot": "api"}', {"slot": {"n": [1]}})
    ]
    assert accepted == ["", "[1, 2]", '"text"', '{"slot": "api"}', {"slot": {"n": [1]}}]


def test_a_ref_that_is_not_of_that_repository_is_422_no_ref_found(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """A branch, tag or commit the repository does not have (another repository's included)
    answers 422 "No ref found for: X" and creates nothing."""
    other = github.add_commit("acme/deployments", "d" * 40)
    github.add_tag("acme/deployments", "v9")
    refused = {}
    for ref in (other, other[:12], "v9", "release", "refs/tags/main", "", "main..x"):
        response = gh.post(
            f"{REPO}/deployments", json={"ref": ref, "auto_merge": False, "required_contexts": []}
        )
        refused[ref] = (response.status_code, response.json()["message"])

    assert refused == {ref: (422, f"No ref found for: {ref}") for ref in refused}
    assert github.deployments("acme", "app") == []
    assert deploy(gh, repo="/repos/acme/deployments", ref=other)["sha"] == other


def test_refs_resolve_as_git_does(gh: httpx.Client, github: FakeGitHub) -> None:
    """Seeded branches, tags (full refs too) and commits, a unique abbreviated sha, and a tag
    winning over a branch of the same name; add_repository replaces the default main."""
    github.add_repository(
        "acme/app",
        branches={"develop": "1" * 40, "v1": "2" * 40},
        tags={"v1": "3" * 40},
        commits=["4" * 40, "4" * 39 + "5"],
    )

    def sha(ref: str) -> str:
        return str(deploy(gh, ref=ref)["sha"])

    assert sha("develop") == sha("refs/heads/develop") == "1" * 40
    assert sha("v1") == sha("refs/tags/v1") == "3" * 40
    assert sha("refs/heads/v1") == "2" * 40
    assert sha("1111111") == "1" * 40
    assert sha("4" * 40) == "4" * 40
    ambiguous = gh.post(
        f"{REPO}/deployments", json={"ref": "4" * 8, "auto_merge": False, "required_contexts": []}
    )
    gone = gh.post(
        f"{REPO}/deployments", json={"ref": "main", "auto_merge": False, "required_contexts": []}
    )
    assert (ambiguous.status_code, gone.status_code) == (422, 422)
    github.add_repository("acme/unseeded")
    assert deploy(gh, repo="/repos/acme/unseeded")["ref"] == "main"


def test_an_environment_name_github_rejects_is_422(gh: httpx.Client, github: FakeGitHub) -> None:
    """An environment name over 255 characters, or with a control character, is refused on a
    deployment, on a status and on PUT; 255 characters are accepted."""
    body = {"ref": "main", "auto_merge": False, "required_contexts": []}
    too_long = gh.post(f"{REPO}/deployments", json={**body, "environment": "e" * 256})
    control = gh.post(f"{REPO}/deployments", json={**body, "environment": "qa\nprod"})
    longest = deploy(gh, environment="e" * 255)
    on_status = gh.post(
        f"{REPO}/deployments/{longest['id']}/statuses",
        json={"state": "success", "environment": "x" * 256},
    )
    on_put = gh.put(f"{REPO}/environments/{'p' * 256}", json=None)

    assert [r.status_code for r in (too_long, control, on_status, on_put)] == [422] * 4
    assert too_long.json()["errors"][0]["field"] == "environment"
    assert "255" in too_long.json()["errors"][0]["message"]
    assert on_status.json()["errors"][0]["field"] == "environment"
    assert [d["id"] for d in github.deployments("acme", "app")] == [longest["id"]]
    assert github.statuses(longest["id"]) == []


def test_get_deployment_and_404s(gh: httpx.Client, github: FakeGitHub) -> None:
    """GET returns the deployment; unknown ids and other repos' ids are 404 Not Found."""
    created = deploy(gh)

    assert gh.get(f"{REPO}/deployments/{created['id']}").json() == created
    missing = gh.get(f"{REPO}/deployments/999999")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    assert gh.get(f"/repos/acme/other/deployments/{created['id']}").status_code == 404
    assert gh.get(f"/repos/ACME/App/deployments/{created['id']}").status_code == 200


def test_list_deployments_filters_newest_first(gh: httpx.Client, github: FakeGitHub) -> None:
    """The list is newest first and filters on sha, ref, task and environment."""
    github.add_tag("acme/app", "v2")
    github.add_repository("acme/other")
    staging = deploy(gh, environment="staging")
    prod = deploy(gh, environment="production", ref="v2")
    migration = deploy(gh, environment="staging", task="deploy:migrations")
    deploy(gh, repo="/repos/acme/other", environment="staging")

    def ids(**params: str) -> list[int]:
        response = gh.get(f"{REPO}/deployments", params=params)
        assert response.status_code == 200
        assert "link" not in response.headers
        return [d["id"] for d in response.json()]

    assert ids() == [migration["id"], prod["id"], staging["id"]]
    assert ids(environment="staging") == [migration["id"], staging["id"]]
    assert ids(ref="v2") == [prod["id"]]
    assert ids(sha=prod["sha"]) == [prod["id"]]
    assert ids(task="deploy:migrations") == [migration["id"]]
    assert ids(environment="qa") == []


def test_delete_deployment_follows_githubs_rules(gh: httpx.Client, github: FakeGitHub) -> None:
    """The only deployment goes whatever its state; otherwise only inactive ones go (else 422)."""
    only = deploy(gh)
    post_status(gh, only["id"], "success")
    assert gh.delete(f"{REPO}/deployments/{only['id']}").status_code == 204

    old = deploy(gh)
    new = deploy(gh)
    post_status(gh, old["id"], "success")
    refused = gh.delete(f"{REPO}/deployments/{old['id']}")
    assert refused.status_code == 422
    assert "inactive" in refused.json()["message"]
    assert gh.delete(f"{REPO}/deployments/{new['id']}").status_code == 422  # no status at all

    post_status(gh, old["id"], "inactive")
    assert gh.delete(f"{REPO}/deployments/{old['id']}").status_code == 204
    assert gh.delete(f"{REPO}/deployments/{old['id']}").status_code == 404
    assert [d["id"] for d in github.deployments("acme", "app")] == [new["id"]]


# -- statuses --------------------------------------------------------------------------------


def test_status_create_list_and_get(gh: httpx.Client, github: FakeGitHub) -> None:
    """A status answers 201 + Location, bumps updated_at, and is listed newest first."""
    deployment = deploy(gh, environment="staging")
    first = post_status(gh, deployment["id"], "in_progress")
    response = gh.post(
        f"{REPO}/deployments/{deployment['id']}/statuses",
        json={
            "state": "success",
            "log_url": "https://ci.example.com/run/1",
            "environment_url": "https://staging.example.com/",
            "description": "deployed",
        },
    )

    assert response.status_code == 201
    second = response.json()
    assert response.headers["location"] == second["url"]
    assert second["url"] == f"{deployment['url']}/statuses/{second['id']}"
    assert second["target_url"] == second["log_url"] == "https://ci.example.com/run/1"
    assert second["environment"] == "staging"
    assert first["target_url"] == ""
    listed = gh.get(f"{REPO}/deployments/{deployment['id']}/statuses").json()
    assert [s["id"] for s in listed] == [second["id"], first["id"]]
    assert github.statuses(deployment["id"]) == listed
    assert github.latest_state(deployment["id"]) == "success"
    single = gh.get(f"{REPO}/deployments/{deployment['id']}/statuses/{first['id']}")
    assert single.json() == first
    refreshed = gh.get(f"{REPO}/deployments/{deployment['id']}").json()
    assert refreshed["updated_at"] == second["created_at"] > deployment["updated_at"]


def test_status_environment_moves_the_deployment(gh: httpx.Client) -> None:
    """A status naming another environment moves the deployment; later ones inherit it."""
    deployment = deploy(gh, environment="staging")
    post_status(gh, deployment["id"], "in_progress", environment="qa")
    inherited = post_status(gh, deployment["id"], "success")

    assert inherited["environment"] == "qa"
    moved = gh.get(f"{REPO}/deployments/{deployment['id']}").json()
    assert (moved["environment"], moved["original_environment"]) == ("qa", "staging")


def test_status_validation_and_404s(gh: httpx.Client, github: FakeGitHub) -> None:
    """Unknown states, missing states and long descriptions are 422; unknown ids are 404."""
    deployment = deploy(gh)
    url = f"{REPO}/deployments/{deployment['id']}/statuses"

    bad_state = gh.post(url, json={"state": "done"}, headers=INVALID)
    no_state = gh.post(url, json={"description": "x"}, headers=INVALID)
    too_long = gh.post(url, json={"state": "success", "description": "x" * 141})

    assert bad_state.status_code == no_state.status_code == too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "description"
    assert github.statuses(deployment["id"]) == []
    unknown = gh.post(f"{REPO}/deployments/999999/statuses", json={"state": "success"})
    assert unknown.status_code == 404
    assert gh.get(f"{REPO}/deployments/999999/statuses").status_code == 404
    assert gh.get(f"{url}/424242").status_code == 404


def test_auto_inactive_spares_production_and_transient_deployments(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """success + auto_inactive retires only non-production, non-transient successful siblings."""
    plain = deploy(gh, environment="staging")
    transient = deploy(gh, environment="staging", transient_environment=True)
    production = deploy(gh, environment="staging", production_environment=True)
    failed = deploy(gh, environment="staging")
    elsewhere = deploy(gh, environment="qa")
    for d in (plain, transient, production, elsewhere):
        post_status(gh, d["id"], "success")
    post_status(gh, failed["id"], "failure")

    newest = deploy(gh, environment="staging")
    post_status(gh, newest["id"], "success")

    assert github.latest_state(plain["id"]) == "inactive"
    assert github.latest_state(transient["id"]) == "success"
    assert github.latest_state(production["id"]) == "success"
    assert github.latest_state(failed["id"]) == "failure"
    assert github.latest_state(elsewhere["id"]) == "success"
    assert github.latest_state(newest["id"]) == "success"


def test_production_environment_is_never_auto_inactivated(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """In "production" both stay successful: the reconciler must retire the old one itself."""
    old = deploy(gh)
    post_status(gh, old["id"], "success")
    new = deploy(gh)
    post_status(gh, new["id"], "success")

    assert github.latest_state(old["id"]) == "success"


def test_auto_inactive_false_leaves_siblings_alone(gh: httpx.Client, github: FakeGitHub) -> None:
    """auto_inactive: false adds no inactive statuses anywhere."""
    old = deploy(gh, environment="staging")
    post_status(gh, old["id"], "success")
    new = deploy(gh, environment="staging")
    post_status(gh, new["id"], "success", auto_inactive=False)

    assert github.latest_state(old["id"]) == "success"
    assert len(github.statuses(old["id"])) == 1


# -- pagination and conditional requests ------------------------------------------------------


def test_pagination_follows_link_next_over_three_pages(gh: httpx.Client) -> None:
    """per_page=3 over 7 deployments gives three pages joined by absolute Link URLs."""
    created = [deploy(gh, environment="staging")["id"] for _ in range(7)]
    deploy(gh, environment="qa")

    seen: list[int] = []
    pages: list[httpx.Response] = []
    url: str | None = f"{REPO}/deployments?environment=staging&per_page=3"
    while url is not None:
        response = gh.get(url)
        assert response.status_code == 200
        pages.append(response)
        seen += [d["id"] for d in response.json()]
        url = response.links.get("next", {}).get("url")

    assert seen == created[::-1]
    assert len(pages) == 3
    middle = pages[1].links
    assert set(middle) == {"next", "prev", "first", "last"}
    assert middle["last"]["url"].startswith(f"{gh.base_url}{REPO}/deployments?")
    assert "environment=staging" in middle["next"]["url"]
    assert set(pages[0].links) == {"next", "last"}
    assert set(pages[2].links) == {"prev", "first"}


def test_per_page_is_capped_at_100(gh: httpx.Client, github: FakeGitHub) -> None:
    """per_page above 100 is served as 100 and pages on statuses and keys work the same way."""
    deployment = deploy(gh)
    for _ in range(3):
        github.add_status("acme", "app", deployment["id"], "queued")
    statuses = gh.get(f"{REPO}/deployments/{deployment['id']}/statuses?per_page=2")
    assert len(statuses.json()) == 2
    assert "next" in statuses.links
    assert len(gh.get(f"{REPO}/deployments/{deployment['id']}/statuses?per_page=500").json()) == 3


def test_etag_answers_304_without_spending_the_rate_limit(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """If-None-Match with the current ETag gives an empty 304 that costs nothing."""
    deployment = deploy(gh)
    first = gh.get(f"{REPO}/deployments")
    etag = first.headers["etag"]
    remaining = int(first.headers["x-ratelimit-remaining"])

    cached = gh.get(f"{REPO}/deployments", headers={"If-None-Match": etag})

    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert int(cached.headers["x-ratelimit-remaining"]) == remaining
    assert github.rate_limit_remaining == remaining

    single = gh.get(f"{REPO}/deployments/{deployment['id']}")
    again = gh.get(
        f"{REPO}/deployments/{deployment['id']}", headers={"If-None-Match": single.headers["etag"]}
    )
    assert again.status_code == 304
    assert gh.get(f"{REPO}/keys", headers={"If-None-Match": 'W/"stale"'}).status_code == 200


def test_etag_changes_when_a_status_is_added(gh: httpx.Client, github: FakeGitHub) -> None:
    """A new status bumps updated_at, so the cached list no longer matches."""
    deployment = deploy(gh)
    etag = gh.get(f"{REPO}/deployments").headers["etag"]
    post_status(gh, deployment["id"], "in_progress")

    refreshed = gh.get(f"{REPO}/deployments", headers={"If-None-Match": etag})

    assert refreshed.status_code == 200
    assert refreshed.headers["etag"] != etag


def test_etags_are_token_specific(gh: httpx.Client, github: FakeGitHub) -> None:
    """After a token change the old ETag stops matching, as on GitHub."""
    etag = gh.get(f"{REPO}/keys").headers["etag"]
    github.tokens["ghs_rotated"] = github.tokens.pop(TOKEN)
    response = gh.get(
        f"{REPO}/keys", headers={"Authorization": "token ghs_rotated", "If-None-Match": etag}
    )

    assert response.status_code == 200
    assert response.headers["etag"] != etag


# -- deploy keys -----------------------------------------------------------------------------


def test_deploy_key_create_list_get_delete(gh: httpx.Client, github: FakeGitHub) -> None:
    """A key is created (201 + Location), listed, fetched, deleted (204), then 404."""
    text = public_key("ci@acme")
    response = gh.post(f"{REPO}/keys", json={"key": text, "title": "ci", "read_only": True})

    assert response.status_code == 201
    key = response.json()
    assert response.headers["location"] == key["url"]
    assert key["key"] == text.rsplit(" ", 1)[0]  # GitHub drops the comment
    assert (key["title"], key["read_only"], key["verified"]) == ("ci", True, True)
    assert gh.get(f"{REPO}/keys").json() == [key]
    assert gh.get(f"{REPO}/keys/{key['id']}").json() == key
    assert github.keys("acme", "app") == [key]

    assert gh.delete(f"{REPO}/keys/{key['id']}").status_code == 204
    assert gh.get(f"{REPO}/keys/{key['id']}").status_code == 404
    assert gh.delete(f"{REPO}/keys/{key['id']}").status_code == 404
    assert github.keys("acme", "app") == []


def test_deploy_key_in_use_anywhere_is_422(gh: httpx.Client, github: FakeGitHub) -> None:
    """The same key body (whatever its comment) cannot be added twice, even on another repo."""
    github.add_repository("acme/other")
    text = public_key("first")
    assert gh.post(f"{REPO}/keys", json={"key": text, "title": "a"}).status_code == 201

    again = gh.post(f"{REPO}/keys", json={"key": text, "title": "b"})
    elsewhere = gh.post(
        "/repos/acme/other/keys",
        json={"key": text.replace("first", "second"), "title": "c", "read_only": True},
    )

    expected = {
        "message": "Validation Failed",
        "errors": [
            {
                "resource": "PublicKey",
                "code": "custom",
                "field": "key",
                "message": "key is already in use",
            }
        ],
        "documentation_url": "https://docs.github.com/rest",
        "status": "422",
    }
    assert again.status_code == elsewhere.status_code == 422
    assert again.json() == elsewhere.json() == expected
    assert github.keys("acme", "other") == []


def test_malformed_deploy_key_is_422(gh: httpx.Client, github: FakeGitHub) -> None:
    """Text that is not an OpenSSH public key, or no key at all, is refused."""
    for body in ({"key": "ssh-ed25519 not-base64!"}, {"key": "hello"}):
        response = gh.post(f"{REPO}/keys", json=body)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "key"
    assert gh.post(f"{REPO}/keys", json={"title": "t"}, headers=INVALID).status_code == 422
    assert github.keys("acme", "app") == []


def _openssh(kind: str, *fields: bytes) -> str:
    """An OpenSSH public key line of type ``kind`` made of ``fields`` (no real key needed)."""
    raw = b"".join(struct.pack(">I", len(f)) + f for f in (kind.encode(), *fields))
    return f"{kind} {base64.b64encode(raw).decode()} made-up"


def _generated(kind: str) -> str:
    """A fresh public key of an accepted type, made by ``cryptography``."""
    private: Any = {
        "ssh-ed25519": lambda: Ed25519PrivateKey.generate(),
        "ssh-rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ecdsa-sha2-nistp256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-sha2-nistp384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ecdsa-sha2-nistp521": lambda: ec.generate_private_key(ec.SECP521R1()),
    }[kind]()
    raw = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{raw.decode()} {kind}"


@pytest.mark.parametrize(
    "kind",
    [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    ],
)
def test_the_key_types_github_takes_are_accepted(gh: httpx.Client, kind: str) -> None:
    """Ed25519, RSA and ECDSA public keys are registered."""
    response = gh.post(f"{REPO}/keys", json={"key": _generated(kind), "title": kind})
    assert response.status_code == 201, response.text
    assert response.json()["key"].startswith(f"{kind} ")


def test_a_dsa_key_is_refused_as_github_does_since_2022(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """An ssh-dss key, well formed, is a 422 naming the accepted types; nothing is added,
    neither through the API nor through the add_key helper."""
    dsa = _openssh(
        "ssh-dss", b"\x00\xb1" * 64, b"\x00\xc2" * 10, b"\x00\xd3" * 64, b"\x00\xe4" * 64
    )
    response = gh.post(f"{REPO}/keys", json={"key": dsa, "title": "old", "read_only": True})

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["resource"], error["field"], error["code"]) == ("PublicKey", "key", "custom")
    assert error["message"].startswith("key is invalid. It must begin with 'ecdsa-sha2-nistp256'")
    assert "'ssh-ed25519'" in error["message"] and "ssh-dss" not in error["message"]
    with pytest.raises(ValueError):
        github.add_key("acme", "app", dsa, "old")
    assert github.keys("acme", "app") == []


# -- environments ----------------------------------------------------------------------------


def test_environments_put_get_list(gh: httpx.Client, github: FakeGitHub) -> None:
    """PUT creates then updates; GET and the list show it; deployments create none."""
    deploy(gh, environment="staging")
    assert gh.get(f"{REPO}/environments/staging").status_code == 404
    assert gh.get(f"{REPO}/environments").json() == {"total_count": 0, "environments": []}

    created = gh.put(f"{REPO}/environments/staging")
    updated = gh.put(
        f"{REPO}/environments/staging",
        json={
            "wait_timer": 5,
            "reviewers": [{"type": "User", "id": 7}, {"type": "Team", "id": 9}],
            "deployment_branch_policy": {
                "protected_branches": True,
                "custom_branch_policies": False,
            },
        },
    )

    assert created.status_code == updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["created_at"] == created.json()["created_at"]
    rules = [rule["type"] for rule in updated.json()["protection_rules"]]
    assert rules == ["wait_timer", "required_reviewers", "branch_policy"]
    assert gh.get(f"{REPO}/environments/staging").json() == updated.json()
    listed = gh.get(f"{REPO}/environments").json()
    assert listed == {"total_count": 1, "environments": [updated.json()]}
    assert github.environments("acme", "app") == [updated.json()]


def test_environment_names_are_url_decoded_and_validated(gh: httpx.Client) -> None:
    """A name with an encoded slash works; a contradictory branch policy is 422."""
    created = gh.put(f"{REPO}/environments/review%2Fpr-1", json=None)
    bad_policy = gh.put(
        f"{REPO}/environments/qa",
        json={
            "deployment_branch_policy": {"protected_branches": True, "custom_branch_policies": True}
        },
    )

    assert created.status_code == 200
    assert created.json()["name"] == "review/pr-1"
    assert gh.get(f"{REPO}/environments/review%2Fpr-1").status_code == 200
    assert bad_policy.status_code == 422


# -- auth, routes, knobs ---------------------------------------------------------------------


def test_a_request_without_a_user_agent_is_refused_with_githubs_html_403(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """No User-Agent (or an empty one): 403 in HTML with Connection: close, before the
    credential or the rate limit is looked at; nothing is created."""
    body = {"ref": "main", "auto_merge": False, "required_contexts": []}
    before = int(gh.get(f"{REPO}/deployments").headers["x-ratelimit-remaining"])
    answers = []
    for agent in (None, ""):
        request = gh.build_request(
            "POST", f"{REPO}/deployments", json=body, headers={**OFF_SPEC, "Authorization": "x"}
        )
        if agent is None:
            del request.headers["User-Agent"]
        else:
            request.headers["User-Agent"] = agent
        answers.append(gh.send(request))

    for answer in answers:
        assert answer.status_code == 403
        assert answer.headers["content-type"] == "text/html"
        assert answer.headers["connection"] == "close"
        assert answer.content == NO_USER_AGENT
        assert b"User-Agent header" in answer.content
        assert "x-ratelimit-remaining" not in answer.headers
    assert int(gh.get(f"{REPO}/deployments").headers["x-ratelimit-remaining"]) == before - 1
    assert github.deployments("acme", "app") == []
    assert deploy(gh)["ref"] == "main"  # the client's own User-Agent is enough


def test_bad_or_missing_credentials_are_401(gh: httpx.Client, github: FakeGitHub) -> None:
    """Wrong or absent tokens are 401 Bad credentials; "token <t>" works like "Bearer <t>"."""
    wrong = gh.get(f"{REPO}/deployments", headers={"Authorization": "Bearer nope"})
    absent = httpx.get(f"{github.base_url}{REPO}/deployments")
    legacy = gh.get(f"{REPO}/deployments", headers={"Authorization": f"token {TOKEN}"})

    assert wrong.status_code == absent.status_code == 401
    assert wrong.json()["message"] == "Bad credentials"
    assert "x-ratelimit-remaining" in wrong.headers
    assert legacy.status_code == 200


def test_an_unknown_repository_is_404_on_every_operation(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Every operation on a repository nobody created answers GitHub's 404 Not Found and
    changes nothing; creating it (any spelling: names are case-insensitive) makes it answer."""
    key = {"key": public_key(), "title": "k"}
    calls = [
        ("GET", "/deployments", None),
        ("POST", "/deployments", {"ref": "main", "auto_merge": False, "required_contexts": []}),
        ("GET", "/deployments/1001", None),
        ("DELETE", "/deployments/1001", None),
        ("GET", "/deployments/1001/statuses", None),
        ("POST", "/deployments/1001/statuses", {"state": "success"}),
        ("GET", "/deployments/1001/statuses/50001", None),
        ("GET", "/keys", None),
        ("POST", "/keys", key),
        ("GET", "/keys/700001", None),
        ("DELETE", "/keys/700001", None),
        ("GET", "/environments", None),
        ("GET", "/environments/staging", None),
        ("PUT", "/environments/staging", {}),
    ]
    for method, path, body in calls:
        response = gh.request(method, f"/repos/acme/ghost{path}", json=body)
        assert response.status_code == 404, (method, path)
        assert response.json() == {
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest",
            "status": "404",
        }
    assert github.writes() == []
    assert github.deployments("acme", "ghost") == github.keys("acme", "ghost") == []

    github.add_repository("Acme/Ghost")
    created = deploy(gh, repo="/repos/acme/ghost")
    assert created["repository_url"] == f"{github.base_url}/repos/Acme/Ghost"
    assert gh.post("/repos/ACME/GHOST/keys", json=key).status_code == 201


def test_seeding_a_ref_creates_its_repository(gh: httpx.Client, github: FakeGitHub) -> None:
    """add_branch, add_tag and add_commit create a repository that did not exist (with its
    main branch); add_repository alone gives it main; the fixture's repository is acme/web."""
    github.add_tag("acme/tagged", "v1")
    github.add_branch("acme/branched", "develop")
    sha = github.add_commit("acme/committed", "c" * 40)
    github.add_repository("acme/bare")

    assert deploy(gh, repo="/repos/acme/tagged", ref="v1")["ref"] == "v1"
    assert deploy(gh, repo="/repos/acme/branched", ref="develop")["ref"] == "develop"
    assert deploy(gh, repo="/repos/acme/committed", ref=sha)["sha"] == sha
    for repository in ("tagged", "branched", "committed", "bare", "web"):
        assert deploy(gh, repo=f"/repos/acme/{repository}")["ref"] == "main"


def test_the_default_token_holds_deployments_and_administration_write(
    github: FakeGitHub,
) -> None:
    """A fake made without ``tokens`` accepts its one token with every permission its
    operations need (contents read for compare, pull requests write); ``tokens`` adds others
    (or narrows that one)."""
    assert github.tokens == {
        TOKEN: {
            "deployments": "write",
            "administration": "write",
            "contents": "read",
            "pull_requests": "write",
        }
    }
    assert github.tokens[TOKEN] == ALL_PERMISSIONS
    narrowed = FakeGitHub(TOKEN, tokens={TOKEN: {"deployments": "read"}, "ghp_b": {}})
    assert narrowed.tokens == {TOKEN: {"deployments": "read"}, "ghp_b": {}}


def test_a_token_without_the_deployments_permission_gets_403(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Deployments and statuses need "Deployments" read (GET) or write (POST, DELETE): without
    it GitHub answers 403 "Resource not accessible by personal access token", naming the
    permission in X-Accepted-GitHub-Permissions, and nothing changes."""
    deployment = deploy(gh)
    github.tokens["ghp_keys_only"] = {"administration": "write"}
    github.tokens["ghp_read_only"] = {"deployments": "read"}
    base = f"{REPO}/deployments"
    calls = [
        ("GET", base, None, "read"),
        ("POST", base, {"ref": "main", "auto_merge": False, "required_contexts": []}, "write"),
        ("GET", f"{base}/{deployment['id']}", None, "read"),
        ("DELETE", f"{base}/{deployment['id']}", None, "write"),
        ("GET", f"{base}/{deployment['id']}/statuses", None, "read"),
        ("POST", f"{base}/{deployment['id']}/statuses", {"state": "inactive"}, "write"),
    ]
    for token in ("ghp_keys_only", "ghp_read_only"):
        for method, path, body, level in calls:
            answer = gh.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
            if token == "ghp_read_only" and level == "read":
                assert answer.status_code == 200, (token, method, path)
                continue
            assert answer.status_code == 403, (token, method, path)
            assert answer.json()["message"] == "Resource not accessible by personal access token"
            assert answer.headers["x-accepted-github-permissions"] == f"deployments={level}"
            assert int(answer.headers["x-ratelimit-remaining"]) > 0
            assert "retry-after" not in answer.headers
    assert github.deployments("acme", "app") == [gh.get(f"{base}/{deployment['id']}").json()]
    assert github.statuses(deployment["id"]) == []
    keys_only = {"Authorization": "Bearer ghp_keys_only"}
    assert gh.get(f"{REPO}/keys", headers=keys_only).status_code == 200


def test_a_token_without_the_administration_permission_gets_403_on_keys(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Deploy keys need "Administration" read (GET) or write (POST, DELETE), and so does
    creating or updating an environment (write); reading environments needs neither."""
    key = gh.post(f"{REPO}/keys", json={"key": public_key(), "title": "k"}).json()
    github.tokens["ghp_deployer"] = {"deployments": "write"}
    github.tokens["ghp_auditor"] = {"deployments": "read", "administration": "read"}
    calls = [
        ("GET", f"{REPO}/keys", None, "read"),
        ("POST", f"{REPO}/keys", {"key": public_key(), "title": "k2"}, "write"),
        ("GET", f"{REPO}/keys/{key['id']}", None, "read"),
        ("DELETE", f"{REPO}/keys/{key['id']}", None, "write"),
        ("PUT", f"{REPO}/environments/staging", {}, "write"),
    ]
    for token in ("ghp_deployer", "ghp_auditor"):
        headers = {"Authorization": f"Bearer {token}"}
        for method, path, body, level in calls:
            answer = gh.request(method, path, json=body, headers=headers)
            if token == "ghp_auditor" and level == "read":
                assert answer.status_code == 200, (token, method, path)
                continue
            assert answer.status_code == 403, (token, method, path)
            assert answer.json()["message"] == "Resource not accessible by personal access token"
            assert answer.headers["x-accepted-github-permissions"] == f"administration={level}"
        assert gh.get(f"{REPO}/environments", headers=headers).status_code == 200
    assert github.keys("acme", "app") == [key]
    assert github.environments("acme", "app") == []
    deployer = {"Authorization": "Bearer ghp_deployer"}
    body = {"ref": "main", "auto_merge": False, "required_contexts": []}
    assert gh.post(f"{REPO}/deployments", json=body, headers=deployer).status_code == 201


def test_an_unknown_repository_is_404_and_an_unknown_token_401_whatever_they_hold(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """Existence comes before permissions (404 for a repository nobody created, even to a
    token that could not write there), and a token the fake does not know is 401."""
    github.tokens["ghp_nothing"] = {}
    nothing = {"Authorization": "Bearer ghp_nothing"}
    assert gh.get("/repos/acme/ghost/keys", headers=nothing).status_code == 404
    assert gh.get(f"{REPO}/keys", headers=nothing).status_code == 403
    github.tokens.pop("ghp_nothing")
    assert gh.get(f"{REPO}/keys", headers=nothing).status_code == 401


def test_unknown_routes_are_404(gh: httpx.Client) -> None:
    """Paths the fake does not serve answer 404 Not Found (and are not in the spec)."""
    for method, path in (("GET", "/repos/acme/app/hooks"), ("PATCH", f"{REPO}/deployments/1")):
        response = gh.request(method, path, headers=OFF_SPEC)
        assert response.status_code == 404
        assert response.json()["message"] == "Not Found"


def test_every_response_carries_rate_limit_and_request_id_headers(gh: httpx.Client) -> None:
    """Rate-limit headers, a request id and JSON content-type come with each answer."""
    listed = gh.get(f"{REPO}/deployments")
    responses = [listed, gh.get(f"{REPO}/nope", headers=OFF_SPEC)]
    for response in responses:
        for name in (
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-used",
            "x-ratelimit-reset",
            "x-github-request-id",
        ):
            assert name in response.headers
        assert response.headers["x-ratelimit-resource"] == "core"
        assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert int(listed.headers["x-ratelimit-reset"]) > time.time()
    first, second = (int(r.headers["x-ratelimit-remaining"]) for r in responses)
    assert first - second == 1


def test_error_rate_answers_5xx_without_processing(gh: httpx.Client, github: FakeGitHub) -> None:
    """error_rate 1.0 answers 502/503 with a JSON message and changes nothing."""
    github.error_rate = 1.0
    response = gh.post(
        f"{REPO}/deployments", json={"ref": "main", "auto_merge": False, "required_contexts": []}
    )

    assert response.status_code in (502, 503)
    assert response.json()["message"]
    assert github.deployments("acme", "app") == []
    assert github.writes() == []


def test_knob_methods_limit_which_requests_the_knobs_hit(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """With knob_methods={"POST"}, GETs pass while POSTs fail."""
    github.error_rate = 1.0
    github.knob_methods = {"POST"}

    assert gh.get(f"{REPO}/deployments").status_code == 200
    assert gh.post(f"{REPO}/keys", json={"key": public_key()}).status_code >= 500


def test_drop_rate_processes_then_hangs_up(gh: httpx.Client, github: FakeGitHub) -> None:
    """drop_rate 1.0: the deployment is created but the client sees a transport error."""
    github.drop_rate = 1.0
    with pytest.raises(httpx.TransportError):
        gh.post(
            f"{REPO}/deployments",
            json={"ref": "main", "auto_merge": False, "required_contexts": []},
        )
    github.drop_rate = 0.0

    assert len(github.deployments("acme", "app")) == 1
    [write] = github.writes()
    assert write.dropped and write.status is None
    assert gh.get(f"{REPO}/deployments").status_code == 200


def test_stall_lets_the_client_time_out_after_the_change(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """stall_rate 1.0: the status is stored, then the answer comes too late for the client."""
    deployment = deploy(gh)
    github.stall_rate, github.stall_seconds = 1.0, 0.6
    with pytest.raises(httpx.ReadTimeout):
        gh.post(
            f"{REPO}/deployments/{deployment['id']}/statuses",
            json={"state": "success"},
            timeout=0.2,
        )

    assert github.latest_state(deployment["id"]) == "success"


def test_latency_delays_every_answer(gh: httpx.Client, github: FakeGitHub) -> None:
    """latency is slept before answering."""
    github.latency = 0.2
    started = time.monotonic()
    gh.get(f"{REPO}/deployments")

    assert time.monotonic() - started >= 0.2


def test_round_trip_handles_at_once_and_answers_that_long_after_arrival(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """round_trip (the benchmarks' latency): a write is done as soon as it arrives, and its
    answer leaves round_trip seconds after it arrived."""
    github.round_trip = 0.6
    answered: list[float] = []

    def create() -> None:
        started = time.monotonic()
        gh.post(
            f"{REPO}/deployments",
            json={"ref": "main", "auto_merge": False, "required_contexts": []},
        )
        answered.append(time.monotonic() - started)

    writer = threading.Thread(target=create)
    writer.start()
    deadline = time.monotonic() + 0.5
    while not github.deployments("acme", "app") and time.monotonic() < deadline:
        time.sleep(0.01)
    done_while_held = len(github.deployments("acme", "app"))
    writer.join()

    assert done_while_held == 1
    assert answered[0] >= 0.6


def test_primary_rate_limit_exhaustion_is_403_with_remaining_0(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """At zero budget every request is 403 with remaining 0 until the reset time passes."""
    github.rate_limit_remaining = 1
    last = gh.get(f"{REPO}/deployments")
    refused = gh.post(
        f"{REPO}/deployments", json={"ref": "main", "auto_merge": False, "required_contexts": []}
    )

    assert last.headers["x-ratelimit-remaining"] == "0"
    assert refused.status_code == 403
    assert refused.json()["message"] == "API rate limit exceeded for user ID 1."
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-used"] == refused.headers["x-ratelimit-limit"]
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    assert github.deployments("acme", "app") == []

    github.rate_limit_reset = int(time.time()) - 1
    assert gh.get(f"{REPO}/deployments").status_code == 200


def test_secondary_limit_is_403_with_retry_after(gh: httpx.Client, github: FakeGitHub) -> None:
    """Over N writes per window: 403 + retry-after, nothing created; reads are not limited."""
    github.secondary_limit = (2, 1.0)
    deploy(gh)
    deploy(gh)
    body = {"ref": "main", "auto_merge": False, "required_contexts": []}
    refused = gh.post(f"{REPO}/deployments", json=body)

    assert refused.status_code == 403
    assert "secondary rate limit" in refused.json()["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert int(refused.headers["x-ratelimit-remaining"]) > 0
    assert gh.get(f"{REPO}/deployments").status_code == 200
    assert len(github.deployments("acme", "app")) == 2
    assert len(github.writes()) == 2

    time.sleep(1.05)
    assert gh.post(f"{REPO}/deployments", json=body).status_code == 201


def test_forbidden_is_403_without_rate_limit_signals(gh: httpx.Client, github: FakeGitHub) -> None:
    """forbidden: 403 with remaining > 0 and no retry-after, i.e. a permission error."""
    github.forbidden = True
    response = gh.put(f"{REPO}/environments/staging")

    assert response.status_code == 403
    assert response.json()["message"] == "Resource not accessible by personal access token"
    assert int(response.headers["x-ratelimit-remaining"]) > 0
    assert "retry-after" not in response.headers
    assert github.environments("acme", "app") == []


def test_concurrent_creates_get_distinct_ids(github: FakeGitHub) -> None:
    """Parallel clients never get the same deployment id."""
    ids: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        with httpx.Client(
            base_url=github.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            for _ in range(5):
                created = deploy(client, environment="staging")
                with lock:
                    ids.append(created["id"])

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 20
    assert len(github.deployments("acme", "app")) == 20


# -- observation and drift helpers ------------------------------------------------------------


def test_recorded_requests_describe_the_exchange(gh: httpx.Client, github: FakeGitHub) -> None:
    """requests records method, path, query, headers, bodies and status; reset_log clears it."""
    deploy(gh, environment="staging")
    gh.get(f"{REPO}/deployments", params={"environment": "staging"})

    post, get = github.requests
    assert (post.method, post.path, post.status) == ("POST", f"{REPO}/deployments", 201)
    assert post.json["environment"] == "staging"
    assert json.loads(post.body) == post.json
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.response_json()["environment"] == "staging"
    assert get.query == {"environment": "staging"}
    assert not get.dropped and get.processed
    assert github.writes() == [post]

    github.reset_log()
    assert github.requests == []


def test_drift_helpers_change_state_without_requests(gh: httpx.Client, github: FakeGitHub) -> None:
    """add_status, delete_deployment, add_key and delete_key act as someone else would."""
    deployment = deploy(gh, environment="staging")
    github.add_status("acme", "app", deployment["id"], "failure")
    assert gh.get(f"{REPO}/deployments/{deployment['id']}/statuses").json()[0]["state"] == "failure"

    key = github.add_key("acme", "app", public_key(), "drifted")
    assert gh.get(f"{REPO}/keys/{key['id']}").json() == key
    github.add_repository("acme/other")
    with pytest.raises(ValueError):
        github.add_key("acme", "other", f"{key['key']} copy", "dup")
    with pytest.raises(KeyError):
        github.add_key("acme", "nowhere", public_key(), "no such repository")
    github.delete_key("acme", "app", key["id"])
    assert gh.get(f"{REPO}/keys").json() == []

    github.delete_deployment("acme", "app", deployment["id"])
    assert gh.get(f"{REPO}/deployments/{deployment['id']}").status_code == 404
    with pytest.raises(KeyError):
        github.delete_deployment("acme", "app", deployment["id"])


# -- the checker itself ----------------------------------------------------------------------


def test_checker_rejects_responses_the_spec_does_not_allow(
    gh: httpx.Client, github: FakeGitHub, github_spec: OpenApiChecker
) -> None:
    """A deployment missing a field, an undocumented status or a bodyful 304 fail the check."""
    created = deploy(gh)
    url = f"{github.base_url}{REPO}/deployments"
    json_headers = {"content-type": "application/json; charset=utf-8"}
    broken = {key: value for key, value in created.items() if key != "sha"}

    with pytest.raises(AssertionError, match="sha"):
        github_spec.check_response("POST", url, {}, 201, json_headers, json.dumps(broken).encode())
    with pytest.raises(AssertionError, match="not documented"):
        github_spec.check_response("POST", url, {}, 418, json_headers, b'{"message": "teapot"}')
    with pytest.raises(AssertionError, match="no body"):
        github_spec.check_response("GET", url, {}, 304, json_headers, b"[]")
    with pytest.raises(AssertionError, match="message"):
        github_spec.check_response("GET", url, {}, 404, json_headers, b'{"error": "gone"}')
    with pytest.raises(AssertionError, match="no such operation"):
        github_spec.check_response("GET", f"{url}/1/reviews", {}, 200, json_headers, b"{}")
    github_spec.check_response("POST", url, {}, 201, json_headers, json.dumps(created).encode())


def test_checker_rejects_requests_the_spec_does_not_allow(
    github: FakeGitHub, github_spec: OpenApiChecker
) -> None:
    """A bad state, a non-integer id, a mistyped query parameter or no User-Agent fail the
    request check."""
    base = f"{github.base_url}{REPO}/deployments"
    headers = {"content-type": "application/json"}

    with pytest.raises(AssertionError, match="state"):
        github_spec.check_request("POST", f"{base}/1/statuses", headers, b'{"state": "done"}')
    with pytest.raises(AssertionError, match="deployment_id"):
        github_spec.check_request("GET", f"{base}/abc", {}, None)
    with pytest.raises(AssertionError, match="per_page"):
        github_spec.check_request("GET", f"{base}?per_page=lots", {}, None)
    with pytest.raises(AssertionError, match="no user-agent header"):
        github_spec.check_request("POST", f"{base}/1/statuses", headers, b'{"state": "success"}')
    with_agent = {**headers, "User-Agent": "slotkeeper-tests"}
    github_spec.check_request("POST", f"{base}/1/statuses", with_agent, b'{"state": "success"}')


def test_compare_and_commits_answer_from_the_seeded_history(
    gh: httpx.Client, github: FakeGitHub
) -> None:
    """``compare/BASE...HEAD`` lists the commits after BASE up to HEAD, oldest first, paged
    with ``total_commits``; ``commits/{ref}`` one commit; an unknown ref is 404."""
    shas = [f"{n:040x}" for n in range(1, 5)]
    github.add_history(
        "acme/web",
        [(sha, f"2026-10-0{n}T12:00:00Z", f"feat: {n}") for n, sha in enumerate(shas, 1)],
    )
    github.add_tag("acme/web", "v1", shas[0])
    github.add_tag("acme/web", "v4", shas[3])
    compared = gh.get("/repos/acme/web/compare/v1...v4", params={"per_page": 2})
    assert compared.status_code == 200
    body = compared.json()
    assert body["total_commits"] == 3 and body["status"] == "ahead"
    assert [c["sha"] for c in body["commits"]] == shas[1:3]
    page_two = gh.get("/repos/acme/web/compare/v1...v4", params={"per_page": 2, "page": 2})
    assert [c["sha"] for c in page_two.json()["commits"]] == shas[3:]
    one = gh.get("/repos/acme/web/commits/v4").json()
    assert one["sha"] == shas[3] and one["commit"]["committer"]["date"] == "2026-10-04T12:00:00Z"
    assert gh.get("/repos/acme/web/compare/v1...nope").status_code == 404
