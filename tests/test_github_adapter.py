"""The GitHub adapter called directly against the fake: key adoption and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from slotkeeper.errors import PermanentTargetError
from slotkeeper.keys import generate_key
from slotkeeper.model import KeyRecord, KeyStatus, RemoteState
from slotkeeper.targets.base import KeySubject
from slotkeeper.targets.github import GitHubSettings, GitHubTarget, token_target
from slotkeeper.targets.pacing import Window, WriteBudget
from tests.fakes.github import FakeGitHub
from tests.test_github_target import TOKEN

NOW = datetime(2026, 11, 23, tzinfo=UTC)


class MemoryCache:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}

    def get(self, url: str) -> tuple[str, str] | None:
        return self.entries.get(url)

    def put(self, url: str, etag: str, body: str) -> None:
        self.entries[url] = (etag, body)


def github_adapter(
    base_url: str, *, transport: httpx.BaseTransport | None = None, attempts: int = 5
) -> GitHubTarget:
    """A GitHub adapter at ``base_url`` with an in-memory cache and a roomy write budget."""
    return token_target(
        name="github",
        settings=GitHubSettings(base_url=base_url, attempts=attempts),
        token=TOKEN,
        budget=WriteBudget(
            target="github",
            windows=[Window(80, timedelta(minutes=1))],
            max_wait=0,
            clock=lambda: datetime.now(UTC),
        ),
        cache=MemoryCache(),
        transport=transport,
    )


@pytest.fixture
def adapter(github: FakeGitHub) -> Iterator[GitHubTarget]:
    target = github_adapter(github.base_url)
    yield target
    target.close()


def key_subject(public_key: str, repository: str = "acme/web") -> KeySubject:
    return KeySubject(
        key=KeyRecord(
            id=1,
            environment="production",
            repository=repository,
            title="deployer",
            fingerprint="SHA256:x",
            public_key=public_key,
            read_only=True,
            secret_file="deployer",
            rotate_after=None,
            status=KeyStatus.ACTIVE,
            created_at=NOW,
            updated_at=NOW,
        )
    )


def test_a_key_already_on_the_repository_is_adopted(
    adapter: GitHubTarget, github: FakeGitHub
) -> None:
    """A 422 'already in use' for a key already on this repository adopts its id."""
    public = generate_key("c").public_key
    existing = github.add_key("acme", "web", public, "slotkeeper:deployer:2026-11-23")
    remote = adapter.add_key(key_subject(public))
    assert remote.remote_id == str(existing["id"])
    assert remote.state is RemoteState.PRESENT
    assert len(github.keys("acme", "web")) == 1


def test_a_key_in_use_elsewhere_is_a_clear_permanent_error(
    adapter: GitHubTarget, github: FakeGitHub
) -> None:
    """A key body registered on another repository cannot be added: a clear error, no token."""
    public = generate_key("c").public_key
    github.add_repository("acme/other")
    github.add_key("acme", "other", public, "someone-else")
    with pytest.raises(PermanentTargetError) as caught:
        adapter.add_key(key_subject(public))
    assert "key is already in use" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert github.keys("acme", "web") == []


def test_deleting_a_key_that_is_already_gone_is_fine(
    adapter: GitHubTarget, github: FakeGitHub
) -> None:
    """Deleting an absent key succeeds: the wanted state (absent) holds."""
    assert adapter.delete_key("acme/web", "999999").state is RemoteState.ABSENT


def test_a_token_without_the_administration_permission_cannot_add_a_key(
    adapter: GitHubTarget, github: FakeGitHub
) -> None:
    """GitHub's 403 for a token lacking "Administration" write is a permanent permission
    error, sent once, quoting GitHub's words and never the token."""
    github.tokens[TOKEN] = {"deployments": "write"}
    with pytest.raises(PermanentTargetError) as caught:
        adapter.add_key(key_subject(generate_key("d").public_key))
    assert caught.value.http_status == 403
    assert "permission denied" in str(caught.value)
    assert "Resource not accessible by personal access token" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert [(r.method, r.status) for r in github.requests] == [("POST", 403)]
    assert github.keys("acme", "web") == []
