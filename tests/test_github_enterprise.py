"""GitHub Enterprise Server (and GHE.com): the API lives under ``https://HOST/api/v3``. The
fake GitHub serves it under that prefix, as such a server does (a path outside it is not the
API: 404), and a whole apply, a key rotation and a decommission go through it (issue 18)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import GITHUB_REPOSITORY, GITHUB_TOKEN_VALUE
from tests.fakes.github import FakeGitHub
from tests.fakes.server import OUTSIDE_PREFIX
from tests.fakes.spec import OpenApiChecker
from tests.helpers import Run, deploy_key, image
from tests.test_github_target import apply, declare, repo  # noqa: F401  (repo: a fixture)


@pytest.fixture
def gh(github_spec: OpenApiChecker, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The fake GitHub under ``/api/v3``, with GITHUB_TOKEN set; every request is inside the
    prefix and, once the prefix is taken off, one the API description knows."""
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN_VALUE)
    with FakeGitHub(
        token=GITHUB_TOKEN_VALUE, repositories=[GITHUB_REPOSITORY], prefix="/api/v3"
    ) as fake:
        yield fake
        for recorded in fake.requests:
            assert recorded.url.startswith(f"{fake.origin}/api/v3/"), recorded.url
            github_spec.check_request(
                recorded.method, fake.origin + recorded.path, recorded.headers, recorded.body
            )


def test_the_fake_serves_the_api_only_under_its_prefix(gh: FakeGitHub) -> None:
    """The prefix is the API: the same path without it is a 404, as on GHES."""
    headers = {"Authorization": f"Bearer {GITHUB_TOKEN_VALUE}"}
    inside = httpx.get(f"{gh.base_url}/repos/acme/web/deployments", headers=headers)
    outside = httpx.get(f"{gh.origin}/repos/acme/web/deployments", headers=headers)
    assert (inside.status_code, outside.status_code) == (200, 404)
    assert gh.base_url.endswith("/api/v3")
    gh.reset_log()  # the deliberate request outside the prefix is not slotkeeper's


def test_an_apply_rotation_and_decommission_through_an_api_v3_base_url(
    sk: Callable[..., Run],
    workdir: Path,
    gh: FakeGitHub,
    repo: str,  # noqa: F811
) -> None:
    """`baseUrl: https://HOST/api/v3`: deployments, their statuses and a deploy key are made
    under the prefix; a rotation and a decommission later too; nothing is asked outside it."""
    key = deploy_key("deployer", rotateAfter="30d")
    declare(workdir, gh, {"api": image(), "web": image("web", "2.0.0")}, keys=[key])
    apply(sk)
    deployments = gh.deployments("acme", "web")
    assert len(deployments) == 2 and {d["ref"] for d in deployments} == {repo}
    assert {gh.latest_state(d["id"]) for d in deployments} == {"success"}
    [first_key] = gh.keys("acme", "web")
    assert sk("keys", "rotate", "acme/web/deployer", "-m", "m", "--yes").code == 0
    [second_key] = gh.keys("acme", "web")
    assert second_key["id"] != first_key["id"]
    declare(workdir, gh, {"api": image()}, keys=[key])
    apply(sk, "--allow-decommission")
    by_slot = {
        d["payload"]["slot"]: gh.latest_state(d["id"]) for d in gh.deployments("acme", "web")
    }
    assert by_slot == {"api": "success", "web": "inactive"}
    assert gh.requests and not any(r.path.startswith(OUTSIDE_PREFIX) for r in gh.requests)
