"""The credential goes to the target's base URL only: a ``Link: rel="next"`` (or any URL) that
leads to another scheme, host or port, or out of the base path, is refused before it is sent.

The rule at its seam (a table, and httpx's MockTransport), and through the real CLI against the
fake GitHub sending a hostile link.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from slotkeeper.errors import PermanentTargetError
from slotkeeper.targets.github import GitHubTarget
from slotkeeper.targets.http import within
from tests import test_github_target as github_target
from tests.fakes.github import FakeGitHub
from tests.helpers import Run, deploy_key, environment, image, write_manifests_and_targets
from tests.test_github_adapter import github_adapter
from tests.test_github_target import TOKEN, target

Sk = Callable[..., Run]
repo = github_target.repo  # the work directory as a git work tree with one commit


@pytest.fixture
def elsewhere() -> Iterator[FakeGitHub]:
    """A second GitHub (another origin) that accepts the same token: where a link may lead."""
    with FakeGitHub(token=TOKEN) as fake:
        yield fake


def mock_adapter(base_url: str, handler: Callable[[httpx.Request], httpx.Response]) -> GitHubTarget:
    """A GitHub adapter whose requests are answered by ``handler`` (no network)."""
    return github_adapter(base_url, transport=httpx.MockTransport(handler), attempts=1)


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        ("https://ghe.example.com/api/v3/repos/a/b/keys?page=2", True),
        ("https://GHE.example.com:443/api/v3/repos/a/b/keys", True),
        ("https://ghe.example.com/api/v3", True),
        ("http://ghe.example.com/api/v3/repos/a/b/keys", False),  # scheme
        ("https://ghe.example.com:8443/api/v3/repos/a/b/keys", False),  # port
        ("https://ghe.example.com.evil.test/api/v3/repos", False),  # host
        ("https://evil.test/api/v3/repos/a/b/keys", False),
        ("https://ghe.example.com/api/v3x/repos", False),  # not under the base path
        ("https://ghe.example.com/other/repos/a/b/keys", False),
        ("https://ghe.example.com/api/v3/repos/%2e%2e/%2e%2e/admin", False),  # encoded dots
    ],
)
def test_within_the_base_url(url: str, inside: bool) -> None:
    """A URL is within a base URL only on its scheme, host and port and under its path."""
    assert within("https://ghe.example.com/api/v3/", url) is inside


def test_a_next_link_that_leaves_the_base_path_is_refused_at_the_seam() -> None:
    """A next link on the same host but outside the base path (a GHES /api/v3) is not fetched."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        link = '<https://ghe.example.com/admin/keys?page=2>; rel="next"'
        return httpx.Response(200, json=[], headers={"link": link})

    adapter = mock_adapter("https://ghe.example.com/api/v3", answer)
    with pytest.raises(PermanentTargetError) as caught:
        adapter.refresh(records=[], keys=[], managed_titles={"acme/web": {"deployer"}})
    adapter.close()
    assert seen == ["https://ghe.example.com/api/v3/repos/acme/web/keys?per_page=100"]
    assert "https://ghe.example.com/admin/keys" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_next_link_to_another_origin_is_never_followed(
    sk: Sk, workdir: Path, gh: FakeGitHub, elsewhere: FakeGitHub, repo: str, ledger_url: str
) -> None:
    """A next link to another origin is refused, naming it, and nothing reaches that origin;
    the plan goes on without that target's answer and says so."""
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"api": image(version="v1")},
            repository="acme/web",
            targets=["github"],
            deployKeys=[deploy_key("deployer")],
        ),
        target(gh),
    )
    gh.next_link = f"{elsewhere.base_url}/repos/acme/web/keys?page=2"

    result = sk("plan", "-m", "m", "--state", ledger_url)
    output = result.out + result.err
    assert result.code == 0
    assert "github: not refreshed" in result.err
    assert f"refused to send GET to {elsewhere.base_url}" in output
    assert f"base URL {gh.base_url}" in output
    assert TOKEN not in output
    assert [r.path for r in gh.requests] == ["/repos/acme/web/keys"]
    assert elsewhere.requests == []
