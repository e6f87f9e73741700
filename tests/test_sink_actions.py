"""Deploy keys written to GitHub Actions secrets (``slotkeeper.targets.githubsecrets``) through a
GitHub target, against the fake GitHub, which decrypts each sealed box with the private half of
the key it published: the value arrives, the write is confirmed by ``updated_at``, environment
secrets go under their environment, and ``/meta`` gives known_hosts lines for the right host."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from slotkeeper.errors import PermanentTargetError
from slotkeeper.keys import generate_key
from slotkeeper.targets.github import GitHubTarget
from slotkeeper.targets.githubsecrets import ActionsPlace, ActionsSecrets, git_host, known_hosts
from tests.fakes.github import ALL_PERMISSIONS, FakeGitHub
from tests.fakes.spec import OpenApiChecker, check_recorded
from tests.test_github_adapter import github_adapter
from tests.test_github_target import TOKEN


@pytest.fixture
def gh(github_spec: OpenApiChecker) -> Iterator[FakeGitHub]:
    """The fake GitHub; the token may write Actions and environment secrets; every exchange
    fits GitHub's descriptions."""
    with FakeGitHub(token=TOKEN, repositories=["acme/web"]) as fake:
        fake.tokens[TOKEN] = {**ALL_PERMISSIONS, "secrets": "write", "environments": "write"}
        yield fake
        check_recorded(fake.requests, github_spec)


@pytest.fixture
def target(gh: FakeGitHub) -> Iterator[GitHubTarget]:
    adapter = github_adapter(gh.base_url)
    yield adapter
    adapter.close()


def test_a_private_key_arrives_sealed_and_the_write_is_confirmed(
    gh: FakeGitHub, target: GitHubTarget
) -> None:
    """The value the fake decrypts is the private key; only the sealed form was on the wire;
    a second write moves updated_at on."""
    place = ActionsPlace("acme/web", "DEPLOY_KEY")
    pair = generate_key("k")
    first = ActionsSecrets(target).write(place, pair.private_key)
    assert gh.actions_secret("acme/web", "DEPLOY_KEY") == pair.private_key.decode()
    assert not any(pair.private_key in r.body for r in gh.requests)
    second_pair = generate_key("k2")
    second = ActionsSecrets(target).write(place, second_pair.private_key)
    assert (second.updated_at or "") > (first.updated_at or "")
    assert gh.actions_secret("acme/web", "DEPLOY_KEY") == second_pair.private_key.decode()


def test_an_environment_secret_goes_under_its_environment(
    gh: FakeGitHub, target: GitHubTarget
) -> None:
    """`environment: production`: the environment's own public key and secrets; the
    repository-wide secret of the same name is untouched."""
    httpx.put(
        f"{gh.base_url}/repos/acme/web/environments/production",
        headers={"Authorization": f"Bearer {TOKEN}", "User-Agent": "test"},
        json={},
    ).raise_for_status()
    gh.reset_log()
    pair = generate_key("env")
    place = ActionsPlace("acme/web", "DEPLOY_KEY", environment="production")
    ActionsSecrets(target).write(place, pair.private_key)
    assert gh.actions_secret("acme/web", "DEPLOY_KEY", "production") == pair.private_key.decode()
    assert gh.actions_secret("acme/web", "DEPLOY_KEY") is None
    assert place.label == "githubActions:acme/web/production/DEPLOY_KEY"


def test_observe_and_remove(gh: FakeGitHub, target: GitHubTarget) -> None:
    """A missing secret is observed as absent; removal deletes it, twice is already gone."""
    secrets = ActionsSecrets(target)
    place = ActionsPlace("acme/web", "DEPLOY_KEY")
    assert not secrets.observe(place).exists
    secrets.write(place, b"value")
    assert secrets.observe(place).exists
    assert secrets.remove(place) == "deleted"
    assert secrets.remove(place) == "already gone"
    assert gh.actions_secret("acme/web", "DEPLOY_KEY") is None


def test_a_token_without_the_secrets_permission_is_refused_with_what_it_needs(
    gh: FakeGitHub, target: GitHubTarget
) -> None:
    """GitHub's 403 is a permanent error, and nothing was stored."""
    gh.tokens[TOKEN] = dict(ALL_PERMISSIONS)
    with pytest.raises(PermanentTargetError, match="permission denied"):
        ActionsSecrets(target).write(ActionsPlace("acme/web", "DEPLOY_KEY"), b"value")
    assert gh.actions_secret("acme/web", "DEPLOY_KEY") is None


def test_known_hosts_are_githubs_published_host_keys_for_the_git_host(
    gh: FakeGitHub, target: GitHubTarget
) -> None:
    """One line per key of /meta, for github.com on api.github.com, for the server's own host
    on GitHub Enterprise Server and api.X.ghe.com's X.ghe.com."""
    lines = known_hosts(target, "acme/web").splitlines()
    assert len(lines) == len(gh.ssh_host_keys)
    assert [line.split(" ", 1)[1] for line in lines] == gh.ssh_host_keys
    assert {line.split()[0] for line in lines} == {"127.0.0.1"}
    assert git_host("https://api.github.com") == "github.com"
    assert git_host("https://github.acme.internal/api/v3") == "github.acme.internal"
    assert git_host("https://api.acme.ghe.com") == "acme.ghe.com"
