"""The GitHub adapter at the trust boundary: pagination, who owns a key or a deployment (the
base URL it was made through), adoption after a lost answer or a 422, and GitHub's 202 that
creates nothing (issue 15: the mutants these tests kill). Against the fake GitHub on loopback,
or at the adapter's seam (httpx's MockTransport) where an answer must be made up."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stamina

from slotkeeper.errors import BudgetDeferred, PermanentTargetError, UnknownOutcome
from slotkeeper.keys import generate_key
from slotkeeper.model import Artifact, Record, RecordStatus, RemoteState, SyncStatus, TargetSync
from slotkeeper.targets.base import EnvironmentInfo, RecordSubject
from slotkeeper.targets.github import (
    GitHubSettings,
    GitHubTarget,
    credential_digest,
    key_body,
    token_target,
)
from slotkeeper.targets.pacing import Window, WriteBudget
from tests.fakes.github import FakeGitHub
from tests.helpers import image, synced_record
from tests.test_github_adapter import MemoryCache, key_subject
from tests.test_github_target import TOKEN

NOW = datetime(2026, 11, 23, tzinfo=UTC)
ELSEWHERE = "https://ghe.example.com/api/v3"


@pytest.fixture(autouse=True)
def no_sleeping() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class LoseAnswer(httpx.BaseTransport):
    """Forwards to the fake, but loses the first answer to ``method`` (after or before the
    server saw the request)."""

    def __init__(self, method: str, *, delivered: bool) -> None:
        self.inner = httpx.HTTPTransport()
        self.method = method
        self.delivered = delivered
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == self.method and not self.lost:
            self.lost += 1
            if self.delivered:
                self.inner.handle_request(request).close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def record_subject(
    *, ref: str | None = "main", revision: str | None = None, lineage: str = "l"
) -> RecordSubject:
    record = Record(
        id=7,
        environment="production",
        slot="api",
        artifact=Artifact.model_validate(image()),
        ref=ref,
        revision=revision,
        status=RecordStatus.DEPLOYED,
        created_at=NOW,
        updated_at=NOW,
        last_seen_at=NOW,
        action_id="a",
    )
    return RecordSubject(
        record=record,
        environment=EnvironmentInfo("production", "acme/web", True, False),
        lineage=lineage,
    )


def retrying(**extra: Any) -> TargetSync:
    """The sync of a record whose first attempt's answer was lost: no remote id yet."""
    values: dict[str, Any] = {
        "remote_id": None,
        "at": NOW,
        "wanted": RemoteState.ACTIVE,
        "status": SyncStatus.PENDING,
        "attempts": 1,
    }
    return synced_record("github", 7, **(values | extra))


def github_adapter(
    base_url: str, *, transport: httpx.BaseTransport | None = None, cache: MemoryCache | None = None
) -> GitHubTarget:
    """An adapter with a budget roomy enough for a hundred deployments."""
    return token_target(
        name="github",
        settings=GitHubSettings(base_url=base_url),
        token=TOKEN,
        budget=WriteBudget(
            target="github",
            windows=[Window(1000, timedelta(minutes=1))],
            max_wait=0,
            clock=lambda: datetime.now(UTC),
        ),
        cache=cache or MemoryCache(),
        transport=transport,
    )


def mocked(answer: Callable[[httpx.Request], httpx.Response]) -> GitHubTarget:
    return github_adapter("https://api.github.com", transport=httpx.MockTransport(answer))


def test_the_credential_digest_and_the_key_body() -> None:
    """Cache keys name a credential by 16 hex digits of its sha256; keys compare without
    their comment."""
    assert credential_digest("tok") == hashlib.sha256(b"tok").hexdigest()[:16]
    assert key_body("ssh-ed25519 AAAAC3 me@host extra") == "ssh-ed25519 AAAAC3"


def test_a_key_already_registered_is_found_on_a_later_page(github: FakeGitHub) -> None:
    """Adoption after a 422 reads every page of the repository's keys (100 a page), fresh."""
    publics = [generate_key(f"k{n}").public_key for n in range(101)]
    for n, public in enumerate(publics):
        github.add_key("acme", "web", public, f"someone:{n}")
    adapter = github_adapter(github.base_url)
    remote = adapter.add_key(key_subject(publics[-1]))
    adapter.close()
    [wanted] = [k for k in github.keys("acme", "web") if k["key"] == key_body(publics[-1])]
    assert remote.remote_id == str(wanted["id"]) and remote.state is RemoteState.PRESENT
    assert remote.location == {"base_url": github.base_url, "repository": "acme/web"}
    assert len(github.keys("acme", "web")) == 101
    pages = [r for r in github.requests if r.method == "GET" and r.path == "/repos/acme/web/keys"]
    assert len(pages) == 2 and all("if-none-match" not in r.headers for r in pages)


@pytest.mark.parametrize("delivered", [True, False])
def test_a_key_whose_answer_was_lost_is_adopted_or_the_loss_reported(
    github: FakeGitHub, delivered: bool
) -> None:
    """Created but unanswered: found by its body and adopted, never added twice. Never
    created: the UnknownOutcome stands (nothing to adopt)."""
    public = generate_key("k").public_key
    transport = LoseAnswer("POST", delivered=delivered)
    adapter = github_adapter(github.base_url, transport=transport)
    if delivered:
        remote = adapter.add_key(key_subject(public))
        [created] = github.keys("acme", "web")
        assert remote.remote_id == str(created["id"])
    else:
        with pytest.raises(UnknownOutcome):
            adapter.add_key(key_subject(public))
        assert github.keys("acme", "web") == []
    adapter.close()


def test_a_new_key_is_added_and_confirmed(github: FakeGitHub) -> None:
    """A 201 gives the id, which is read back before anyone deletes the key it replaces."""
    public = generate_key("k").public_key
    adapter = github_adapter(github.base_url)
    remote = adapter.add_key(key_subject(public))
    adapter.close()
    [created] = github.keys("acme", "web")
    assert remote.remote_id == str(created["id"])
    assert [(r.method, r.path) for r in github.requests] == [
        ("POST", "/repos/acme/web/keys"),
        ("GET", f"/repos/acme/web/keys/{created['id']}"),
    ]


def test_a_key_is_deleted_only_through_the_base_url_it_was_registered_at() -> None:
    """Another base URL: refused, naming both, nothing sent; this one (or unknown): deleted."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        return httpx.Response(204)

    adapter = mocked(answer)
    with pytest.raises(PermanentTargetError, match=f"registered at {ELSEWHERE}, but this"):
        adapter.delete_key("acme/web", "5", {"base_url": ELSEWHERE})
    assert sent == []
    here = adapter.delete_key("acme/web", "5", {"base_url": "https://api.github.com"})
    unknown = adapter.delete_key("acme/web", "6", None)
    adapter.close()
    assert sent == ["DELETE /repos/acme/web/keys/5", "DELETE /repos/acme/web/keys/6"]
    assert (here.state, here.detail, unknown.detail) == (RemoteState.ABSENT, {}, {})
    assert here.location == {"base_url": "https://api.github.com", "repository": "acme/web"}


def test_a_deployment_created_before_its_answer_was_lost_is_adopted(github: FakeGitHub) -> None:
    """A retried record sync looks for the deployment its payload names (every page, this
    lineage only) before creating one; on a first attempt it does not look."""
    github.add_repository("acme/web")
    adapter = github_adapter(github.base_url)
    first = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=None)
    for _ in range(100):  # another lineage's deployments of the same record id, newer
        adapter.sync_record(record_subject(lineage="other"), want=RemoteState.ACTIVE, current=None)
    github.reset_log()
    again = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=retrying())
    assert again.remote_id == first.remote_id and again.state is RemoteState.ACTIVE
    assert not [r for r in github.requests if r.method == "POST" and r.path.endswith("ments")]
    # the listing was cached: the same search again is conditional (the first page, unchanged
    # since, is answered 304) and still finds it
    github.reset_log()
    third = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=retrying())
    assert third.remote_id == first.remote_id
    gets = [r for r in github.requests if r.method == "GET"]
    assert all("if-none-match" in r.headers for r in gets) and gets[0].status == 304
    fresh = adapter.sync_record(
        record_subject(), want=RemoteState.ACTIVE, current=retrying(attempts=0)
    )
    adapter.close()
    assert fresh.remote_id != first.remote_id


def test_only_a_payload_naming_this_record_and_lineage_is_adopted() -> None:
    """Payloads GitHub returns as strings are read; unreadable ones and other records or
    lineages are passed over."""
    mark = {"slotkeeper": {"record_id": 7, "lineage": "l"}}
    listed = [
        {"id": 1, "payload": "{not json"},
        {"id": 2, "payload": json.dumps({"slotkeeper": {"record_id": 8, "lineage": "l"}})},
        {"id": 3, "payload": {"slotkeeper": {"record_id": 7, "lineage": "m"}}},
        {"id": 4, "payload": {"slotkeeper": "7"}},
        {"id": 5, "payload": ["slotkeeper"]},
        {"id": 6, "payload": json.dumps(mark), "node_id": "DE_6"},
        {"id": 9, "payload": mark},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            assert request.url.params["environment"] == "production"
            return httpx.Response(200, json=listed)
        return httpx.Response(201, json={"id": 1, "state": "success", "created_at": "t"})

    adapter = mocked(answer)
    remote = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=retrying())
    adapter.close()
    assert (remote.remote_id, remote.detail) == ("6", {"node_id": "DE_6"})


@pytest.mark.parametrize("found", [True, False])
def test_a_deployment_whose_answer_was_lost_is_adopted_or_the_loss_reported(found: bool) -> None:
    """A 500 to the create may have created it: found by its payload it is adopted; not found,
    the UnknownOutcome stands and nothing more is sent."""
    sent: list[str] = []
    mark = {"slotkeeper": {"record_id": 7, "lineage": "l"}}

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path.endswith("/deployments"):
            return httpx.Response(500, json={"message": "Server Error"})
        if request.method == "GET":
            return httpx.Response(200, json=[{"id": 41, "payload": mark}] if found else [])
        return httpx.Response(201, json={"id": 1, "state": "success", "created_at": "t"})

    adapter = mocked(answer)
    if found:
        remote = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=None)
        assert remote.remote_id == "41"
        assert sent[-1] == "POST /repos/acme/web/deployments/41/statuses"
    else:
        with pytest.raises(UnknownOutcome):
            adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=None)
        assert sent == ["POST /repos/acme/web/deployments", "GET /repos/acme/web/deployments"]
    adapter.close()


def test_a_202_created_nothing_and_is_a_permanent_error() -> None:
    """GitHub's 202 (it merged the default branch instead) is no deployment: refused, no status
    is posted."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(202, json={"message": "Auto-merged main into topic"})

    adapter = mocked(answer)
    with pytest.raises(PermanentTargetError) as caught:
        adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=None)
    adapter.close()
    assert caught.value.http_status == 202 and sent == ["POST"]
    assert str(caught.value) == (
        "github: GitHub answered 202 (Auto-merged main into topic): no deployment was created "
        "for production/api"
    )


@pytest.mark.parametrize(
    ("ref", "revision", "sent_ref"),
    [("v1.2.3", "abc123", "v1.2.3"), (None, "abc123", "abc123"), (None, None, None)],
)
def test_the_ref_a_deployment_is_made_for(
    ref: str | None, revision: str | None, sent_ref: str | None
) -> None:
    """The decided ref, else (older records) the revision; with neither, nothing is sent."""
    bodies: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"id": 3, "state": "success", "created_at": "t"})

    adapter = mocked(answer)
    subject = record_subject(ref=ref, revision=revision)
    if sent_ref is None:
        with pytest.raises(PermanentTargetError, match="production/api has no git ref"):
            adapter.sync_record(subject, want=RemoteState.ACTIVE, current=None)
        assert bodies == []
    else:
        adapter.sync_record(subject, want=RemoteState.ACTIVE, current=None)
        assert bodies[0]["ref"] == sent_ref and bodies[0]["auto_merge"] is False
    adapter.close()


def test_a_deployment_made_elsewhere_is_neither_retired_nor_read_here() -> None:
    """A deployment created through another base URL: its retirement is refused unsent, and a
    refresh does not look for it here."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200, json=[])

    adapter = mocked(answer)
    made_elsewhere = synced_record(
        "github",
        7,
        remote_id="1001",
        at=NOW,
        wanted=RemoteState.INACTIVE,
        location={"base_url": ELSEWHERE, "repository": "acme/web"},
    )
    with pytest.raises(PermanentTargetError, match=f"was created at {ELSEWHERE} \\(acme/web\\)"):
        adapter.sync_record(record_subject(), want=RemoteState.INACTIVE, current=made_elsewhere)
    drift = adapter.refresh(
        records=[(record_subject(), made_elsewhere)], keys=[], managed_titles={}
    )
    adapter.close()
    assert drift == [] and sent == []


def test_retiring_what_was_never_made_sends_nothing() -> None:
    """No remote id: already inactive, nothing to tell GitHub."""
    adapter = mocked(lambda request: pytest.fail(f"sent {request.method} {request.url}"))
    remote = adapter.sync_record(record_subject(), want=RemoteState.INACTIVE, current=None)
    adapter.close()
    assert (remote.remote_id, remote.state) == (None, RemoteState.INACTIVE)


def test_a_page_cache_is_used_only_where_asked(github: FakeGitHub) -> None:
    """Listings with an ETag are cached per URL; key searches (cached=False) never are."""
    github.add_repository("acme/web")
    cache = MemoryCache()
    adapter = github_adapter(github.base_url, cache=cache)
    adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=retrying())
    public = generate_key("k").public_key
    github.add_key("acme", "web", public, "someone")
    adapter.add_key(key_subject(public))
    adapter.close()
    assert [url for url in cache.entries if "/deployments" in url] != []
    assert [url for url in cache.entries if "/keys" in url] == []


def test_a_key_in_use_elsewhere_carries_githubs_422(github: FakeGitHub) -> None:
    """The refusal of a key registered on another repository keeps GitHub's status code."""
    public = generate_key("k").public_key
    github.add_repository("acme/other")
    github.add_key("acme", "other", public, "someone-else")
    adapter = github_adapter(github.base_url)
    with pytest.raises(PermanentTargetError) as caught:
        adapter.add_key(key_subject(public))
    adapter.close()
    assert caught.value.http_status == 422


def test_a_key_deletion_is_retried_through_5xx() -> None:
    """Deleting a key is idempotent: a 500 is retried."""
    answers = iter([httpx.Response(500, json={"message": "oops"}), httpx.Response(204)])
    adapter = mocked(lambda request: next(answers))
    assert adapter.delete_key("acme/web", "5").state is RemoteState.ABSENT
    adapter.close()


def test_key_writes_take_from_the_write_budget() -> None:
    """Adding and deleting a key are writes: with the budget spent, neither is sent."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(201, json={"id": 1})

    spent = token_target(
        name="github",
        settings=GitHubSettings(base_url="https://api.github.com"),
        token=TOKEN,
        budget=WriteBudget(
            target="github",
            windows=[Window(1, timedelta(hours=1))],
            max_wait=0,
            clock=lambda: NOW,
            history=[NOW],
        ),
        cache=MemoryCache(),
        transport=httpx.MockTransport(answer),
    )
    with pytest.raises(BudgetDeferred):
        spent.add_key(key_subject(generate_key("k").public_key))
    with pytest.raises(BudgetDeferred):
        spent.delete_key("acme/web", "5")
    spent.close()
    assert sent == []


def test_a_repository_the_credential_cannot_see_keeps_githubs_404() -> None:
    """A retirement answered 404 where even the list is 404 fails with that status code."""
    adapter = mocked(lambda request: httpx.Response(404, json={"message": "Not Found"}))
    current = synced_record(
        "github",
        7,
        remote_id="1001",
        at=NOW,
        wanted=RemoteState.INACTIVE,
        location={"base_url": "https://api.github.com", "repository": "acme/web"},
    )
    with pytest.raises(PermanentTargetError) as caught:
        adapter.sync_record(record_subject(), want=RemoteState.INACTIVE, current=current)
    adapter.close()
    assert caught.value.http_status == 404


def test_a_long_description_is_cut_to_githubs_limit() -> None:
    """GitHub takes 140 characters at most: the deployment's description is cut to 139."""
    bodies: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"id": 3, "state": "success", "created_at": "t"})

    adapter = mocked(answer)
    subject = record_subject()
    long = subject.record.model_copy(
        update={"artifact": Artifact.model_validate(image(version="v" + "9" * 200))}
    )
    adapter.sync_record(
        RecordSubject(record=long, environment=subject.environment, lineage="l"),
        want=RemoteState.ACTIVE,
        current=None,
    )
    adapter.close()
    assert [len(body["description"]) for body in bodies] == [139, 139]


def test_retiring_a_live_deployment_reports_githubs_status(github: FakeGitHub) -> None:
    """A 201 to the inactive status is the retirement: its time is kept, nothing is 'gone'."""
    github.add_repository("acme/web")
    adapter = github_adapter(github.base_url)
    made = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=None)
    current = synced_record(
        "github", 7, remote_id=str(made.remote_id), at=NOW, location=made.location
    )
    retired = adapter.sync_record(record_subject(), want=RemoteState.INACTIVE, current=current)
    adapter.close()
    assert retired.state is RemoteState.INACTIVE and retired.updated_at is not None
    assert "status" not in retired.detail
    assert github.latest_state(int(str(made.remote_id))) == "inactive"


def test_drift_reads_one_page_of_statuses(github: FakeGitHub) -> None:
    """A deployment changed on GitHub is judged by its latest status: one page is read, however
    many statuses it has."""
    github.add_repository("acme/web")
    adapter = github_adapter(github.base_url)
    made = adapter.sync_record(record_subject(), want=RemoteState.ACTIVE, current=None)
    deployment = int(str(made.remote_id))
    for _ in range(101):
        github.add_status("acme", "web", deployment, "success")
    github.add_status("acme", "web", deployment, "inactive")
    sync = synced_record(
        "github",
        7,
        remote_id=str(deployment),
        at=NOW,
        location=made.location,
        remote_updated_at="2000-01-01T00:00:00Z",
    )
    github.reset_log()
    drift = adapter.refresh(records=[(record_subject(), sync)], keys=[], managed_titles={})
    adapter.close()
    assert [d.observed for d in drift] == ["inactive"]
    pages = [r for r in github.requests if r.path.endswith(f"/deployments/{deployment}/statuses")]
    assert len(pages) == 1
