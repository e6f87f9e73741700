"""The fake GitHub's pull requests, exercised over real HTTP with httpx.

The tests use the ``gh`` fixture (tests/conftest.py), whose teardown checks every request
against GitHub's descriptions; ``_every_exchange_matches_the_spec`` checks every answer too,
against ``specs/github-pulls-checks.openapi.json`` for these paths. Branches are seeded with
``add_branch``, or live in a real bare git repository that ``link_git`` backs the repository by.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import GITHUB_REPOSITORY, GITHUB_TOKEN_VALUE
from tests.fakes.github import ALL_PERMISSIONS, INSTALLATION_PERMISSIONS, FakeGitHub, sha_of
from tests.fakes.github_pulls import CLOSED_BASE
from tests.fakes.spec import OpenApiChecker, check_recorded
from tests.helpers import git

PULLS = f"/repos/{GITHUB_REPOSITORY}/pulls"
HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "slotkeeper-tests",
}


@pytest.fixture(autouse=True)
def _every_exchange_matches_the_spec(
    github: FakeGitHub, github_spec: OpenApiChecker
) -> Iterator[None]:
    """Requests and the answers the fake gave, each checked against GitHub's descriptions."""
    yield
    check_recorded(github.requests, github_spec)


def client(fake: FakeGitHub, token: str = GITHUB_TOKEN_VALUE) -> httpx.Client:
    """An httpx client for the fake with GitHub's headers and ``token`` as the bearer."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=fake.base_url, headers=headers, timeout=5)


@pytest.fixture
def api(gh: FakeGitHub) -> Iterator[httpx.Client]:
    """A client of the fake (the ``gh`` fixture's) holding every permission, with the branches
    ``feature-a``, ``feature-b`` and ``release`` seeded in acme/web beside ``main``."""
    for branch in ("feature-a", "feature-b", "release"):
        gh.add_branch(GITHUB_REPOSITORY, branch)
    with client(gh) as http:
        yield http


def open_pull(http: httpx.Client, head: str, base: str = "main", **fields: Any) -> Any:
    """Open a pull request in acme/web and return it (201 expected)."""
    body = {"title": f"Promote {head}", "head": head, "base": base, **fields}
    response = http.post(PULLS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def refusal(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``errors`` of a 422 "Validation Failed"."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"] == "Validation Failed"
    errors: list[dict[str, Any]] = body["errors"]
    return errors


def numbers(response: httpx.Response) -> list[int]:
    """The numbers of the pull requests a list answered, in its order."""
    assert response.status_code == 200, response.text
    return [pull["number"] for pull in response.json()]


# -- create, get, list ----------------------------------------------------------------------


def test_create_answers_201_with_a_full_pull_request(api: httpx.Client, gh: FakeGitHub) -> None:
    """A create answers the whole pull request (head and base with their commits and
    repository, links, author) with a Location; mergeability comes later, as on GitHub."""
    response = api.post(
        PULLS,
        json={
            "title": "Promote api to production",
            "head": "acme:feature-a",
            "base": "main",
            "body": "api v2",
            "draft": False,
            "maintainer_can_modify": False,
        },
    )

    assert response.status_code == 201, response.text
    pull = response.json()
    assert response.headers["location"] == pull["url"]
    assert pull["url"] == f"{gh.base_url}{PULLS}/1"
    assert pull["html_url"] == "https://github.com/acme/web/pull/1"
    assert (pull["number"], pull["state"], pull["title"], pull["body"]) == (
        1,
        "open",
        "Promote api to production",
        "api v2",
    )
    assert pull["head"]["ref"] == "feature-a"
    assert pull["head"]["label"] == "acme:feature-a"
    assert pull["head"]["sha"] == sha_of(GITHUB_REPOSITORY, "feature-a")
    assert pull["head"]["repo"]["full_name"] == "acme/web"
    assert (pull["base"]["ref"], pull["base"]["label"]) == ("main", "acme:main")
    assert pull["base"]["sha"] == sha_of(GITHUB_REPOSITORY, "main")
    assert pull["user"]["login"] == "octocat"
    assert pull["created_at"] == pull["updated_at"]
    assert (pull["closed_at"], pull["merged"], pull["draft"]) == (None, False, False)
    assert (pull["mergeable"], pull["mergeable_state"]) == (None, "unknown")
    assert pull["node_id"].startswith("PR_kwDO")

    got = api.get(f"{PULLS}/1").json()
    assert (got["mergeable"], got["mergeable_state"]) == (True, "clean")
    assert {k: v for k, v in got.items() if "mergeable" not in k and k != "rebaseable"} == {
        k: v for k, v in pull.items() if "mergeable" not in k and k != "rebaseable"
    }
    assert gh.pulls("acme", "web") == [got]


def test_numbers_count_from_one_per_repository_and_drafts_say_so(
    api: httpx.Client, gh: FakeGitHub
) -> None:
    """Each repository numbers its own pull requests; a draft's state is ``draft``; the
    inspection lists them oldest first."""
    gh.add_repository("acme/api", branches=("main", "next"))

    first = open_pull(api, "feature-a")
    second = open_pull(api, "feature-b", draft=True)
    other = api.post(
        "/repos/acme/api/pulls", json={"title": "next", "head": "next", "base": "main"}
    ).json()

    assert (first["number"], second["number"], other["number"]) == (1, 2, 1)
    assert first["id"] != other["id"]
    assert api.get(f"{PULLS}/2").json()["mergeable_state"] == "draft"
    assert [p["number"] for p in gh.pulls("acme", "web")] == [1, 2]
    assert [p["head"]["ref"] for p in gh.pulls("ACME", "Web")] == ["feature-a", "feature-b"]
    assert gh.pulls("acme", "nothing") == []


def test_list_filters_by_state_head_and_base(api: httpx.Client) -> None:
    """``state`` (open by default, closed, all), ``head`` as owner:branch, ``base``; a head
    without its owner filters nothing, as GitHub ignores it; items are the simple shape."""
    open_pull(api, "feature-a")  # 1
    open_pull(api, "feature-b")  # 2
    open_pull(api, "feature-a", base="release")  # 3
    assert api.patch(f"{PULLS}/2", json={"state": "closed"}).status_code == 200

    assert numbers(api.get(PULLS)) == [3, 1]
    assert numbers(api.get(PULLS, params={"state": "open"})) == [3, 1]
    assert numbers(api.get(PULLS, params={"state": "closed"})) == [2]
    assert numbers(api.get(PULLS, params={"state": "all"})) == [3, 2, 1]
    assert numbers(api.get(PULLS, params={"head": "acme:feature-a"})) == [3, 1]
    assert numbers(api.get(PULLS, params={"head": "ACME:feature-a", "base": "main"})) == [1]
    assert numbers(api.get(PULLS, params={"head": "acme:feature-b"})) == []
    assert numbers(api.get(PULLS, params={"head": "acme:feature-b", "state": "all"})) == [2]
    assert numbers(api.get(PULLS, params={"head": "other:feature-a"})) == []
    assert numbers(api.get(PULLS, params={"head": "feature-b"})) == [3, 1]  # ignored
    assert numbers(api.get(PULLS, params={"base": "release"})) == [3]
    listed = api.get(PULLS).json()[0]
    assert "mergeable" not in listed and "commits" not in listed
    assert listed["head"]["label"] == "acme:feature-a"


def test_list_sorts_newest_first_unless_asked(api: httpx.Client) -> None:
    """Created, newest first by default; ``direction=asc``; ``sort=updated`` (oldest first
    by default, as GitHub's default direction is ``asc`` for it)."""
    for head in ("feature-a", "feature-b", "release"):
        open_pull(api, head)
    api.patch(f"{PULLS}/1", json={"title": "touched"})

    assert numbers(api.get(PULLS)) == [3, 2, 1]
    assert numbers(api.get(PULLS, params={"direction": "asc"})) == [1, 2, 3]
    assert numbers(api.get(PULLS, params={"sort": "updated"})) == [2, 3, 1]
    assert numbers(api.get(PULLS, params={"sort": "updated", "direction": "desc"})) == [1, 3, 2]


def test_list_pages_with_link_headers(api: httpx.Client, gh: FakeGitHub) -> None:
    """Seven pull requests two a page: four pages, each with GitHub's ``Link``; following
    ``next`` reads every one once, newest first."""
    for index in range(7):
        gh.add_branch(GITHUB_REPOSITORY, f"promote/{index}")
        open_pull(api, f"promote/{index}")

    first = api.get(PULLS, params={"per_page": 2})
    links = first.headers["link"]
    assert 'rel="next"' in links and 'rel="last"' in links and "page=4" in links
    seen: list[int] = []
    url: str | None = f"{PULLS}?per_page=2"
    pages = 0
    while url is not None:
        response = api.get(url)
        seen += numbers(response)
        pages += 1
        url = response.links.get("next", {}).get("url")
    assert pages == 4
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    last = api.get(PULLS, params={"per_page": 2, "page": 4})
    assert numbers(last) == [1]
    assert 'rel="prev"' in last.headers["link"] and 'rel="next"' not in last.headers["link"]


def test_get_answers_etags_and_304(api: httpx.Client) -> None:
    """A GET carries an ETag; the same request with ``If-None-Match`` is a 304 until the pull
    request changes."""
    open_pull(api, "feature-a")
    first = api.get(f"{PULLS}/1")
    etag = first.headers["etag"]

    assert api.get(f"{PULLS}/1", headers={"If-None-Match": etag}).status_code == 304
    api.patch(f"{PULLS}/1", json={"body": "changed"})
    assert api.get(f"{PULLS}/1", headers={"If-None-Match": etag}).status_code == 200


# -- update ---------------------------------------------------------------------------------


def test_patch_changes_title_and_body_then_closes_and_reopens(api: httpx.Client) -> None:
    """Title, body and maintainer_can_modify change; closing stamps ``closed_at``, reopening
    clears it; every write moves ``updated_at``."""
    created = open_pull(api, "feature-a", body="first")

    edited = api.patch(
        f"{PULLS}/1",
        json={"title": "Promote api v3", "body": "second", "maintainer_can_modify": True},
    )
    assert edited.status_code == 200, edited.text
    edited_pull = edited.json()
    assert (edited_pull["title"], edited_pull["body"]) == ("Promote api v3", "second")
    assert edited_pull["maintainer_can_modify"] is True
    assert edited_pull["updated_at"] > created["updated_at"]
    assert edited_pull["created_at"] == created["created_at"]

    closed = api.patch(f"{PULLS}/1", json={"state": "closed"}).json()
    assert closed["state"] == "closed"
    assert closed["closed_at"] == closed["updated_at"]
    assert closed["merged"] is False and closed["merged_at"] is None

    reopened = api.patch(f"{PULLS}/1", json={"state": "open"}).json()
    assert (reopened["state"], reopened["closed_at"]) == ("open", None)
    assert api.patch(f"{PULLS}/1").json()["title"] == "Promote api v3"  # no body: no change


def test_patch_moves_the_base_of_an_open_pull_request_only(api: httpx.Client) -> None:
    """A new base must be a branch; a base in a PATCH that finds or leaves the pull request
    closed is GitHub's 422, even the same base."""
    open_pull(api, "feature-a")

    moved = api.patch(f"{PULLS}/1", json={"base": "release"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["base"]["ref"] == "release"
    assert refusal(api.patch(f"{PULLS}/1", json={"base": "nowhere"})) == [
        {"resource": "PullRequest", "field": "base", "code": "invalid"}
    ]
    assert refusal(api.patch(f"{PULLS}/1", json={"base": "feature-a"})) == [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "No commits between feature-a and feature-a",
        }
    ]
    closing = api.patch(f"{PULLS}/1", json={"state": "closed", "base": "release"})
    expected = [
        {"resource": "PullRequest", "field": "base", "code": "invalid", "message": CLOSED_BASE}
    ]
    assert refusal(closing) == expected
    assert api.patch(f"{PULLS}/1", json={"state": "closed"}).status_code == 200
    assert refusal(api.patch(f"{PULLS}/1", json={"state": "open", "base": "main"})) == expected
    assert api.get(f"{PULLS}/1").json()["base"]["ref"] == "release"


def test_reopening_beside_an_open_duplicate_is_422(api: httpx.Client) -> None:
    """Once closed, a new pull request may take the same head and base; the closed one cannot
    be reopened beside it, nor another moved onto them."""
    open_pull(api, "feature-a")
    api.patch(f"{PULLS}/1", json={"state": "closed"})
    open_pull(api, "feature-a")  # 2
    open_pull(api, "feature-a", base="release")  # 3
    already = [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "A pull request already exists for acme:feature-a.",
        }
    ]

    assert refusal(api.patch(f"{PULLS}/1", json={"state": "open"})) == already
    assert refusal(api.patch(f"{PULLS}/3", json={"base": "main"})) == already
    assert api.get(f"{PULLS}/1").json()["state"] == "closed"


# -- refusals -------------------------------------------------------------------------------


def test_create_refusals_are_githubs_422s(api: httpx.Client, gh: FakeGitHub) -> None:
    """A head or base that is no branch, a head equal to the base (or at its commit), an open
    pull request for the same head and base, another owner's head and a missing title are
    refused as GitHub words it; nothing is created."""
    open_pull(api, "feature-a")
    gh.add_branch(GITHUB_REPOSITORY, "same-as-main", gh.add_branch(GITHUB_REPOSITORY, "main"))

    def create(**body: Any) -> httpx.Response:
        return api.post(PULLS, json={"title": "t", "base": "main", **body})

    invalid_head = [{"resource": "PullRequest", "field": "head", "code": "invalid"}]
    assert refusal(create(head="missing")) == invalid_head
    assert refusal(create(head="acme:missing")) == invalid_head
    assert refusal(create(head="other:feature-b")) == invalid_head
    assert refusal(create(head="feature-b", head_repo="other/web")) == invalid_head
    assert refusal(create(head="feature-b", base="gone")) == [
        {"resource": "PullRequest", "field": "base", "code": "invalid"}
    ]
    assert refusal(create(head="main")) == [
        {"resource": "PullRequest", "code": "custom", "message": "No commits between main and main"}
    ]
    assert refusal(create(head="same-as-main"))[0]["message"] == (
        "No commits between main and same-as-main"
    )
    assert refusal(create(head="feature-a")) == [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "A pull request already exists for acme:feature-a.",
        }
    ]
    untitled = api.post(PULLS, json={"head": "feature-b", "base": "main"})
    assert refusal(untitled) == [
        {"resource": "PullRequest", "field": "title", "code": "missing_field"}
    ]
    assert len(gh.pulls("acme", "web")) == 1
    writes = [(w.method, w.status) for w in gh.writes()]
    assert writes == [("POST", 201)] + [("POST", 422)] * 9


def test_unknown_numbers_and_repositories_are_404(api: httpx.Client, gh: FakeGitHub) -> None:
    """A number the repository does not have (another repository's included) and a repository
    nobody created are 404 Not Found, on every operation."""
    gh.add_repository("acme/api", branches=("main", "next"))
    api.post("/repos/acme/api/pulls", json={"title": "t", "head": "next", "base": "main"})

    for response in (
        api.get(f"{PULLS}/1"),
        api.patch(f"{PULLS}/1", json={"title": "x"}),
        api.get(f"{PULLS}/999"),
        api.get("/repos/acme/nothing/pulls"),
        api.post("/repos/acme/nothing/pulls", json={"title": "t", "head": "a", "base": "b"}),
        api.get("/repos/acme/nothing/pulls/1"),
    ):
        assert response.status_code == 404, response.request.url
        assert response.json()["message"] == "Not Found"


def test_an_unknown_list_parameter_value_is_422(github: FakeGitHub) -> None:
    """A ``state``, ``sort`` or ``direction`` outside the description's values is refused
    (the requests are marked: the description refuses them too)."""
    with client(github) as http:
        for query in ({"state": "merged"}, {"sort": "name"}, {"direction": "up"}):
            response = http.get(PULLS, params=query, headers={"x-test-invalid": "1"})
            assert response.status_code == 422, query
            assert response.json()["message"].startswith("Invalid request.")


# -- permissions ----------------------------------------------------------------------------


def test_the_pull_requests_permission_is_read_for_gets_and_write_for_writes(
    api: httpx.Client, gh: FakeGitHub
) -> None:
    """The default token holds pull requests write; a token with read lists and gets but
    cannot create or update, one without it cannot even list: 403 naming what was needed."""
    assert ALL_PERMISSIONS["pull_requests"] == "write"
    open_pull(api, "feature-a")
    gh.tokens["ghp_reader"] = {**ALL_PERMISSIONS, "pull_requests": "read"}
    gh.tokens["ghp_deployer"] = {"deployments": "write"}

    with client(gh, "ghp_reader") as reader:
        assert reader.get(PULLS).status_code == 200
        assert reader.get(f"{PULLS}/1").status_code == 200
        for refused in (
            reader.post(PULLS, json={"title": "t", "head": "feature-b", "base": "main"}),
            reader.patch(f"{PULLS}/1", json={"state": "closed"}),
        ):
            assert refused.status_code == 403
            assert refused.json()["message"] == "Resource not accessible by personal access token"
            assert refused.headers["x-accepted-github-permissions"] == "pull_requests=write"
    with client(gh, "ghp_deployer") as deployer:
        refused = deployer.get(PULLS)
        assert refused.status_code == 403
        assert refused.headers["x-accepted-github-permissions"] == "pull_requests=read"
    assert [p["state"] for p in gh.pulls("acme", "web")] == ["open"]


def test_an_app_installation_holds_pull_requests_write_by_default(
    api: httpx.Client, gh: FakeGitHub
) -> None:
    """An installation made without permissions may open pull requests; a token narrowed to
    pull requests read is refused "by integration"."""
    assert INSTALLATION_PERMISSIONS["pull_requests"] == "write"
    app = gh.add_app()
    installation = gh.add_installation(app, "acme")
    now = int(time.time())
    claims = {"iat": now - 60, "exp": now + 540, "iss": app.client_id}
    app_jwt = jwt.encode(claims, app.private_key_pem, algorithm="RS256")

    def token(**body: Any) -> str:
        with client(gh, app_jwt) as as_app:
            issued = as_app.post(f"/app/installations/{installation}/access_tokens", json=body)
        assert issued.status_code == 201, issued.text
        value: str = issued.json()["token"]
        return value

    with client(gh, token()) as bot:
        opened = bot.post(PULLS, json={"title": "t", "head": "feature-a", "base": "main"})
        assert opened.status_code == 201, opened.text
    with client(gh, token(permissions={"pull_requests": "read"})) as narrowed:
        assert narrowed.get(PULLS).status_code == 200
        refused = narrowed.patch(f"{PULLS}/1", json={"state": "closed"})
        assert refused.status_code == 403
        assert refused.json()["message"] == "Resource not accessible by integration"


# -- branches in a real git repository ------------------------------------------------------


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with ``main`` (one commit), pushed from a work tree beside it."""
    bare = tmp_path / "manifests.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "envs.yaml").write_text("api: v1\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "api v1")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    return bare


def push_branch(bare: Path, branch: str, lines: str, *, start: str = "main") -> str:
    """Commit ``lines`` to ``envs.yaml`` on ``branch`` (from ``start``) and push it; the new
    commit."""
    work = bare.parent / "work"
    git(work, "checkout", "-q", "-B", branch, start)
    (work / "envs.yaml").write_text(lines)
    git(work, "commit", "-q", "-am", f"{branch}: {lines.strip()}")
    git(work, "push", "-q", "-f", "origin", branch)
    return git(work, "rev-parse", "HEAD")


def test_link_git_finds_branches_pushed_to_a_bare_repository(
    api: httpx.Client, gh: FakeGitHub, remote: Path
) -> None:
    """Once linked, a branch exists when it was pushed: the pull request's head is its commit,
    and the counts are git's; a branch only seeded, or only in the work tree, is no branch."""
    gh.link_git(GITHUB_REPOSITORY, remote)
    pushed = push_branch(remote, "promote/api-v2", "api: v2\nweb: v1\n")
    git(remote.parent / "work", "branch", "local-only")

    pull = open_pull(api, "acme:promote/api-v2")

    assert pull["head"]["sha"] == pushed
    assert pull["base"]["sha"] == git(remote, "rev-parse", "main")
    assert (pull["commits"], pull["changed_files"]) == (1, 1)
    assert (pull["additions"], pull["deletions"]) == (2, 1)
    invalid_head = [{"resource": "PullRequest", "field": "head", "code": "invalid"}]
    for head in ("feature-a", "local-only", "promote/api-v2..main", "-h"):  # seeded, not pushed
        refused = api.post(PULLS, json={"title": "t", "head": head, "base": "main"})
        assert refusal(refused) == invalid_head, head


def test_an_open_pull_request_follows_its_pushed_branch(
    api: httpx.Client, gh: FakeGitHub, remote: Path
) -> None:
    """A later push shows in the next answer (head sha, commits); a closed pull request keeps
    the commit it was closed at."""
    gh.link_git(GITHUB_REPOSITORY, remote)
    first = push_branch(remote, "promote/api", "api: v2\n")
    open_pull(api, "promote/api")

    work = remote.parent / "work"
    (work / "envs.yaml").write_text("api: v3\n")
    git(work, "commit", "-q", "-am", "api v3")
    git(work, "push", "-q", "origin", "promote/api")
    second = git(work, "rev-parse", "HEAD")
    followed = api.get(f"{PULLS}/1").json()
    assert followed["head"]["sha"] == second != first
    assert followed["commits"] == 2
    assert api.get(PULLS).json()[0]["head"]["sha"] == second

    api.patch(f"{PULLS}/1", json={"state": "closed"})
    push_branch(remote, "promote/api", "api: v4\n")
    assert api.get(f"{PULLS}/1").json()["head"]["sha"] == second


def test_a_pushed_branch_with_nothing_to_pull_is_no_commits_between(
    api: httpx.Client, gh: FakeGitHub, remote: Path
) -> None:
    """A branch at main's commit, or behind main, has no commits main lacks: git says so."""
    gh.link_git(GITHUB_REPOSITORY, remote)
    work = remote.parent / "work"
    old_main = git(work, "rev-parse", "main")
    push_branch(remote, "main", "api: v2\n")
    git(work, "push", "-q", "origin", "main:refs/heads/promote/same")
    git(work, "push", "-q", "origin", f"{old_main}:refs/heads/promote/behind")

    for head in ("promote/same", "promote/behind"):
        refused = api.post(PULLS, json={"title": "t", "head": head, "base": "main"})
        assert refusal(refused) == [
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": f"No commits between main and {head}",
            }
        ]


def test_link_git_takes_a_git_directory_and_creates_the_repository(
    gh: FakeGitHub, remote: Path, tmp_path: Path
) -> None:
    """A path that is no git directory is a ValueError; a work tree stands for its ``.git``;
    linking a repository nobody created creates it."""
    with pytest.raises(ValueError, match="not a git directory"):
        gh.link_git("acme/web", tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a git directory"):
        gh.link_git("acme/web", tmp_path / "plain")

    gh.link_git("acme/manifests", tmp_path / "work")
    push_branch(remote, "promote/x", "x: 1\n")
    git(tmp_path / "work", "checkout", "-q", "main")
    with client(gh) as http:
        opened = http.post(
            "/repos/acme/manifests/pulls",
            json={"title": "t", "head": "promote/x", "base": "main"},
        )
    assert opened.status_code == 201, opened.text
    assert opened.json()["base"]["repo"]["full_name"] == "acme/manifests"


# -- the fake's knobs -----------------------------------------------------------------------


def test_knobs_apply_to_pull_requests(api: httpx.Client, gh: FakeGitHub) -> None:
    """``error_rate`` answers 5xx without creating anything; an exhausted rate limit is a 403;
    every exchange is recorded, and ``writes()`` holds the processed ones."""
    gh.error_rate = 1.0
    failed = api.post(PULLS, json={"title": "t", "head": "feature-a", "base": "main"})
    assert failed.status_code in (502, 503)
    assert gh.pulls("acme", "web") == []
    gh.error_rate = 0.0

    open_pull(api, "feature-a")
    gh.rate_limit_remaining = 0
    limited = api.get(PULLS)
    assert limited.status_code == 403
    assert limited.headers["x-ratelimit-remaining"] == "0"
    gh.rate_limit_remaining = 100

    api.patch(f"{PULLS}/1", json={"title": "again"})
    assert [(w.method, w.path, w.status) for w in gh.writes()] == [
        ("POST", PULLS, 201),
        ("PATCH", f"{PULLS}/1", 200),
    ]
    assert [(r.method, r.status, r.processed) for r in gh.requests] == [
        ("POST", failed.status_code, False),
        ("POST", 201, True),
        ("GET", 403, False),
        ("PATCH", 200, True),
    ]
