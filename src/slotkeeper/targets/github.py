"""GitHub: deployments and their statuses mirror the ledger's records; deploy keys are managed.

Mapping (see tests/fakes/specs/API-REFERENCE.md, section 1):

- a DEPLOYED record is one deployment (``ref`` = the slot's ref or the revision that declared it,
  ``environment`` = the environment name, ``auto_merge: false``, ``required_contexts: []``,
  the record's identity in ``payload``) whose latest status is ``success`` (posted with
  ``auto_inactive: false``: slotkeeper retires old deployments itself, production ones included);
- a SUPERSEDED or DECOMMISSIONED record's deployment gets an ``inactive`` status;
- a deploy key is added with the title ``slotkeeper:<title>:<date>`` and confirmed listed; keys
  whose title lacks that prefix are never touched.

Location: every call that creates or changes something reports where it lives (this target's base
URL and the repository), and the ledger keeps it with the sync. A deployment is afterwards only
ever touched there: its retirement, a status repair and the refresh read go to the repository it
was created in, even when the environment's ``repository`` has changed since. A record whose
artifact did not change is not redone when the repository changes: its deployment stays where it
is until the record is superseded or decommissioned, and is retired there; the new repository
gets the deployments of records created after the change. A deployment created on another base
URL (the target was repointed) is not read, and is never retired through this one: its id means
nothing there, so such a sync fails, saying where it was made and where the target points now;
the same holds for deleting a deploy key registered through another base URL.
Retiring a deployment (or deleting a key) that is already gone settles it: a 404 on the
``inactive`` status, once the repository itself answers, means there is nothing left to retire.

Economy: a new record costs one create and one status; retiring one costs one status; nothing
else writes. Reads are conditional (ETag / If-None-Match, cached in the ledger), so a steady
state is answered with 304s, which cost no rate limit. Writes go through the write budget.
Retries: idempotent calls are retried with exponential backoff and jitter on 5xx, timeouts and
connection errors, and after a short ``retry-after``; a deployment or key creation whose answer
was lost is never blindly repeated: the adapter looks for what it may have created first.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import httpx

from slotkeeper.errors import PermanentTargetError, TargetError, UnknownOutcome
from slotkeeper.model import (
    TARGET_FAILURES,
    CommitInfo,
    Drift,
    GithubTargetSpec,
    RecordStatus,
    RemoteState,
    SyncSubject,
    TargetSync,
)
from slotkeeper.targets.base import KeySubject, PullRequest, RecordSubject, Remote, read_all
from slotkeeper.targets.http import ApiClient, HttpSettings, default_message
from slotkeeper.targets.pacing import WriteBudget

API_VERSION = "2022-11-28"
USER_AGENT = "slotkeeper"
KEY_TITLE_PREFIX = "slotkeeper:"
PER_PAGE = 100


class HttpCache(Protocol):
    """Where conditional-request bodies and ETags are kept between runs."""

    def get(self, url: str) -> tuple[str, str] | None: ...

    def put(self, url: str, etag: str, body: str) -> None: ...


@dataclass(frozen=True)
class GitHubSettings:
    base_url: str
    timeout: float = 10.0
    #: Longest wait for a rate limit's retry-after before leaving the work pending.
    max_rate_wait: float = 60.0
    attempts: int = 5


def credential_digest(token: str) -> str:
    """A one-way digest naming a credential for cache keys (ETags are per credential)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def key_body(public_key: str) -> str:
    """The part of an OpenSSH public key GitHub compares: type and base64, no comment."""
    return " ".join(public_key.split()[:2])


def github_api(
    name: str,
    settings: GitHubSettings,
    *,
    token: str | None = None,
    auth: httpx.Auth | None = None,
    budget: WriteBudget | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    transport: httpx.BaseTransport | None = None,
    may_write: Callable[[], bool] | None = None,
) -> ApiClient:
    """A client of GitHub's REST API: its headers, and a ``token`` or an ``auth`` flow."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return ApiClient(
        name=name,
        settings=HttpSettings(
            base_url=settings.base_url,
            headers=headers,
            timeout=settings.timeout,
            attempts=settings.attempts,
            max_rate_wait=settings.max_rate_wait,
        ),
        budget=budget,
        clock=clock,
        transport=transport,
        may_write=may_write,
        auth=auth,
    )


@dataclass(frozen=True)
class Lane:
    """One rate-limit budget at GitHub: the client (with its write budget) and its
    conditional-request cache. A token is one lane; a GitHub App has one per installation."""

    api: ApiClient
    cache: HttpCache


class Lanes(Protocol):
    """Which lane serves a repository."""

    @property
    def base_url(self) -> str: ...

    def lane(self, repository: str) -> Lane: ...

    def close(self) -> None: ...


class OneLane:
    """Every repository through one credential (a token)."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane

    @property
    def base_url(self) -> str:
        return self._lane.api.base_url

    def lane(self, repository: str) -> Lane:
        return self._lane

    def close(self) -> None:
        self._lane.api.close()


def token_target(
    *,
    name: str,
    settings: GitHubSettings,
    token: str,
    budget: WriteBudget,
    cache: HttpCache,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    transport: httpx.BaseTransport | None = None,
    may_write: Callable[[], bool] | None = None,
) -> GitHubTarget:
    """The adapter of a target authenticated with a token: one lane."""
    api = github_api(
        name,
        settings,
        token=token,
        budget=budget,
        clock=clock,
        transport=transport,
        may_write=may_write,
    )
    return GitHubTarget(name=name, lanes=OneLane(Lane(api, cache)), clock=clock)


class GitHubTarget:
    """The ``github`` target: one client per configured Target document."""

    spec_class = GithubTargetSpec

    def __init__(
        self,
        *,
        name: str,
        lanes: Lanes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self._lanes = lanes
        self._clock = clock

    def close(self) -> None:
        self._lanes.close()

    @property
    def base_url(self) -> str:
        return self._lanes.base_url

    def api_for(self, repository: str) -> ApiClient:
        """The client (and so the credential and write budget) that serves ``repository``."""
        return self._lanes.lane(repository).api

    # -- pull requests (auto-promotion) -----------------------------------------------------

    def propose(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """Open a pull request of branch ``head`` into ``base`` on ``repository``, or update
        the title and body of the one open from that branch into that base (when they differ):
        one pull request per branch, never two."""
        api = self.api_for(repository)
        owner = repository.split("/")[0]
        query = urlencode({"state": "open", "head": f"{owner}:{head}", "base": base})
        found = api.send("GET", f"repos/{repository}/pulls?{query}", accept=(200,)).json()
        if found:
            number = int(found[0]["number"])
            if (found[0].get("title"), found[0].get("body")) == (title, body):
                return PullRequest(number=number, url=str(found[0]["html_url"]), created=False)
            updated = api.send(
                "PATCH",
                f"repos/{repository}/pulls/{number}",
                json={"title": title, "body": body},
                write=True,
                accept=(200,),
            ).json()
            return PullRequest(number=number, url=str(updated["html_url"]), created=False)
        created = api.send(
            "POST",
            f"repos/{repository}/pulls",
            json={"title": title, "head": head, "base": base, "body": body},
            write=True,
            idempotent=False,
            accept=(201,),
        ).json()
        return PullRequest(
            number=int(created["number"]), url=str(created["html_url"]), created=True
        )

    # -- the commits a deployment brings (delivery metrics) ----------------------------------

    def commits_between(
        self, repository: str, base: str | None, head: str
    ) -> tuple[CommitInfo, ...] | None:
        """The commits after ``base`` up to ``head`` in ``repository``, oldest first (``head``
        alone without a base), from the compare API (``commits/{ref}``); None when GitHub
        cannot tell (an unknown ref, no ``contents`` read permission, more than
        ``MAX_COMPARED`` commits, an error)."""
        api = self.api_for(repository)
        try:
            if base is None:
                body = api.send("GET", f"repos/{repository}/commits/{quote(head, safe='')}")
                return (_commit_info(body.json()),)
            found: list[CommitInfo] = []
            basehead = f"{quote(base, safe='')}...{quote(head, safe='')}"
            for page in range(1, MAX_COMPARED // 100 + 1):
                body = api.send(
                    "GET", f"repos/{repository}/compare/{basehead}?per_page=100&page={page}"
                ).json()
                found.extend(_commit_info(c) for c in body.get("commits", []))
                total = int(body.get("total_commits", len(found)))
                if len(found) >= total or not body.get("commits"):
                    return tuple(found) if len(found) >= total else None
            return None
        except (TargetError, ValueError, KeyError, TypeError):
            return None

    # -- records ----------------------------------------------------------------------------

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote:
        remote_id = current.remote_id if current else None
        node_id = current.remote_detail.get("node_id") if current else None
        if remote_id is not None:
            assert current is not None
            repository = self._created_in(subject, current)
        else:
            repository = self._repository(subject)
            if current is not None and current.attempts > 0:
                # An earlier attempt may have created it before its answer was lost.
                found = self._find_deployment(repository, subject)
                if found is not None:
                    remote_id, node_id = str(found["id"]), found.get("node_id")
        detail = {"node_id": node_id} if node_id else {}
        here = {"base_url": self.base_url, "repository": repository}
        if want is RemoteState.INACTIVE:
            if remote_id is None:
                return Remote(None, RemoteState.INACTIVE)
            status = self._retire(repository, remote_id, _retired(subject))
            if status is None:
                gone = {**detail, "status": "already gone"}
                return Remote(remote_id, RemoteState.INACTIVE, None, gone, location=here)
            stamp = status.get("created_at")
            return Remote(remote_id, RemoteState.INACTIVE, stamp, detail, location=here)
        if remote_id is None:
            created = self._create_deployment(repository, subject)
            remote_id, detail = str(created["id"]), {"node_id": created.get("node_id")}
        status = self._post_status(
            repository, remote_id, "success", f"{subject.record.artifact.describe()}"[:139]
        ).json()
        return Remote(
            remote_id, RemoteState.ACTIVE, status.get("created_at"), detail, location=here
        )

    def _created_in(self, subject: RecordSubject, current: TargetSync) -> str:
        """The repository a record's deployment was created in; refused when it was created
        through another base URL (its id means nothing here, and the credential stays here)."""
        created_at = current.location.get("base_url")
        if created_at and created_at != self.base_url:
            record = subject.record
            repository = current.location.get("repository") or "its repository"
            raise PermanentTargetError(
                f"{self.name}: deployment {current.remote_id} of {record.environment}/"
                f"{record.slot} was created at {created_at} ({repository}), but this target now "
                f"points at {self.base_url}: its ids mean nothing there, so nothing is sent. "
                f"Point the target back at {created_at} until it is retired"
            )
        return current.location.get("repository") or self._repository(subject)

    def _repository(self, subject: RecordSubject) -> str:
        if not subject.environment.repository:
            raise PermanentTargetError(
                f"{self.name}: environment {subject.environment.name!r} declares no repository"
            )
        return subject.environment.repository

    def _payload(self, subject: RecordSubject) -> dict[str, Any]:
        record = subject.record
        return {
            "slotkeeper": {
                "lineage": subject.lineage,
                "record_id": record.id,
                "action_id": record.action_id,
            },
            "slot": record.slot,
            "artifact": record.artifact.model_dump(mode="json"),
            "revision": record.revision,
        }

    def _create_deployment(self, repository: str, subject: RecordSubject) -> dict[str, Any]:
        record = subject.record
        # The planner decided the ref (see model.decide_ref); records made before it did fall
        # back to their revision.
        ref = record.ref or record.revision
        if not ref:
            raise PermanentTargetError(
                f"{self.name}: {record.environment}/{record.slot} has no git ref: declare "
                "refFrom: version or ref on the slot"
            )
        body = {
            "ref": ref,
            "task": "deploy",
            "auto_merge": False,
            "required_contexts": [],
            "payload": self._payload(subject),
            "environment": record.environment,
            "description": f"{record.slot}: {record.artifact.describe()}"[:139],
            "production_environment": subject.environment.production,
            "transient_environment": subject.environment.transient,
        }
        path = f"repos/{repository}/deployments"
        try:
            response = self.api_for(repository).send(
                "POST", path, json=body, write=True, idempotent=False
            )
        except UnknownOutcome:
            found = self._find_deployment(repository, subject)
            if found is not None:
                return found
            raise
        if response.status_code == 202:
            raise PermanentTargetError(
                f"{self.name}: GitHub answered 202 ({default_message(response)}): no "
                f"deployment was created for {record.environment}/{record.slot}",
                http_status=202,
            )
        created: dict[str, Any] = response.json()
        return created

    def _find_deployment(self, repository: str, subject: RecordSubject) -> dict[str, Any] | None:
        """The deployment an earlier attempt created for this record, found by its payload."""
        for deployment in self._list(
            repository,
            f"repos/{repository}/deployments",
            {"environment": subject.record.environment},
        ):
            payload = deployment.get("payload")
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError:
                    continue
            mark = payload.get("slotkeeper") if isinstance(payload, dict) else None
            if (
                isinstance(mark, dict)
                and mark.get("record_id") == subject.record.id
                and mark.get("lineage") == subject.lineage
            ):
                return deployment
        return None

    def _post_status(
        self,
        repository: str,
        deployment_id: str,
        state: str,
        description: str,
        *,
        accept: tuple[int, ...] = (201,),
    ) -> httpx.Response:
        return self.api_for(repository).send(
            "POST",
            f"repos/{repository}/deployments/{deployment_id}/statuses",
            json={"state": state, "description": description[:139], "auto_inactive": False},
            write=True,
            idempotent=True,  # a repeated status changes nothing that matters
            accept=accept,
        )

    def _retire(self, repository: str, deployment_id: str, why: str) -> dict[str, Any] | None:
        """Post ``inactive``; None when the deployment is already gone.

        GitHub also answers 404 for a repository the credential cannot see: the deployment is
        called gone only when the repository's deployments can be listed."""
        response = self._post_status(repository, deployment_id, "inactive", why, accept=(201, 404))
        if response.status_code == 201:
            result: dict[str, Any] = response.json()
            return result
        listed = self.api_for(repository).send(
            "GET", f"repos/{repository}/deployments?per_page=1", accept=(200, 404)
        )
        if listed.status_code == 404:
            raise PermanentTargetError(
                f"{self.name}: repository {repository} is not visible with this target's "
                f"credential (deleted, renamed, or no access): deployment {deployment_id} "
                "was not retired",
                http_status=404,
            )
        return None

    # -- deploy keys ------------------------------------------------------------------------

    def add_key(self, subject: KeySubject) -> Remote:
        key = subject.key
        title = f"{KEY_TITLE_PREFIX}{key.title}:{self._clock().strftime('%Y-%m-%d')}"
        path = f"repos/{key.repository}/keys"
        try:
            response = self.api_for(key.repository).send(
                "POST",
                path,
                json={"title": title, "key": key_body(key.public_key), "read_only": key.read_only},
                write=True,
                idempotent=False,
                accept=(201, 422),
            )
        except UnknownOutcome:
            adopted = self._find_key(key.repository, key.public_key)
            if adopted is None:
                raise
            remote_id = adopted
        else:
            if response.status_code == 422:
                adopted = self._find_key(key.repository, key.public_key)
                if adopted is None:
                    raise PermanentTargetError(
                        f"{self.name}: GitHub refused key {key.repository}/{key.title}: "
                        f"{default_message(response)} "
                        "(a key may be registered only once on GitHub)",
                        http_status=422,
                    )
                remote_id = adopted
            else:
                remote_id = str(response.json()["id"])
        # Confirm it is listed before anyone deletes the key it replaces.
        self.api_for(key.repository).send("GET", f"{path}/{remote_id}")
        return Remote(remote_id, RemoteState.PRESENT, location=self._key_location(key.repository))

    def _key_location(self, repository: str) -> dict[str, str]:
        return {"base_url": self.base_url, "repository": repository}

    def _find_key(self, repository: str, public_key: str) -> str | None:
        wanted = key_body(public_key)
        for item in self._list(repository, f"repos/{repository}/keys", {}, cached=False):
            if key_body(str(item.get("key", ""))) == wanted:
                return str(item["id"])
        return None

    def delete_key(
        self, repository: str, remote_id: str, location: dict[str, str] | None = None
    ) -> Remote:
        registered_at = (location or {}).get("base_url")
        if registered_at and registered_at != self.base_url:
            raise PermanentTargetError(
                f"{self.name}: deploy key {remote_id} of {repository} was registered at "
                f"{registered_at}, but this target now points at {self.base_url}: its ids "
                f"mean nothing there, so nothing is sent. Point the target back at "
                f"{registered_at} until the key is deleted"
            )
        response = self.api_for(repository).send(
            "DELETE",
            f"repos/{repository}/keys/{remote_id}",
            write=True,
            idempotent=True,
            accept=(204, 404),  # already gone is gone
        )
        detail = {"status": "already gone"} if response.status_code == 404 else {}
        where = self._key_location(repository)
        return Remote(remote_id, RemoteState.ABSENT, detail=detail, location=where)

    # -- refresh ----------------------------------------------------------------------------

    def refresh(
        self,
        *,
        records: Sequence[tuple[RecordSubject, TargetSync]],
        keys: Sequence[tuple[KeySubject, TargetSync]],
        managed_titles: dict[str, set[str]],
    ) -> list[Drift]:
        """Compare what GitHub holds with what the ledger recorded, with conditional reads."""
        drift: list[Drift] = []
        by_environment: dict[tuple[str, str], list[tuple[RecordSubject, TargetSync]]] = defaultdict(
            list
        )
        for subject, sync in records:
            if sync.remote_id is None or not self._here(sync):
                continue  # nothing made, or made through another base URL: nothing to read here
            repository = sync.location.get("repository") or subject.environment.repository
            if repository:
                by_environment[repository, subject.record.environment].append((subject, sync))
        pairs = sorted(by_environment)
        lists = read_all(
            lambda pair: self._list(
                pair[0], f"repos/{pair[0]}/deployments", {"environment": pair[1]}
            ),
            pairs,
        )
        for (repository, environment), deployments in zip(pairs, lists, strict=True):
            listed = {str(d["id"]): d for d in deployments}
            for subject, sync in by_environment[repository, environment]:
                drift.extend(self._record_drift(repository, listed, subject, sync))

        key_rows: dict[str, list[tuple[KeySubject, TargetSync]]] = defaultdict(list)
        for key_subject, sync in keys:
            if self._here(sync):
                key_rows[key_subject.key.repository].append((key_subject, sync))
        repositories = sorted(set(key_rows) | set(managed_titles))
        key_lists = read_all(lambda r: self._list(r, f"repos/{r}/keys", {}), repositories)
        for repository, listed_keys in zip(repositories, key_lists, strict=True):
            remote = {str(k["id"]): k for k in listed_keys}
            known = {sync.remote_id for _, sync in key_rows.get(repository, [])}
            for key_subject, sync in key_rows.get(repository, []):
                gone = sync.remote_id is not None and sync.remote_id not in remote
                if gone and sync.wanted is RemoteState.PRESENT:
                    drift.append(
                        Drift(
                            target=self.name,
                            subject=SyncSubject.KEY,
                            subject_id=key_subject.key.id,
                            observed="missing",
                            remote_id=sync.remote_id,
                            repository=repository,
                            detail="deploy key deleted on GitHub",
                        )
                    )
            titles = managed_titles.get(repository, set())
            for remote_id, item in sorted(remote.items()):
                title = str(item.get("title") or "")
                if remote_id in known or not title.startswith(KEY_TITLE_PREFIX):
                    continue
                if title.removeprefix(KEY_TITLE_PREFIX).rsplit(":", 1)[0] in titles:
                    drift.append(
                        Drift(
                            target=self.name,
                            subject=SyncSubject.KEY,
                            subject_id=None,
                            observed="orphan",
                            remote_id=remote_id,
                            repository=repository,
                            detail=f"managed key {title!r} is not in the ledger",
                        )
                    )
        return drift

    def _here(self, sync: TargetSync) -> bool:
        """Whether what the sync made was made through this target's base URL (as far as the
        ledger knows: syncs stored before locations were kept say nothing)."""
        created_at = sync.location.get("base_url")
        return created_at is None or created_at == self.base_url

    def _record_drift(
        self,
        repository: str,
        listed: dict[str, dict[str, Any]],
        subject: RecordSubject,
        sync: TargetSync,
    ) -> Iterator[Drift]:
        assert sync.remote_id is not None
        deployment = listed.get(sync.remote_id)
        record_id = subject.record.id
        if deployment is None:
            if sync.wanted is RemoteState.ACTIVE:
                yield Drift(
                    target=self.name,
                    subject=SyncSubject.RECORD,
                    subject_id=record_id,
                    observed="missing",
                    remote_id=sync.remote_id,
                    detail="deployment deleted on GitHub",
                )
            return
        updated = str(deployment.get("updated_at") or "")
        if sync.remote_updated_at is not None and updated <= sync.remote_updated_at:
            return  # nothing happened to it since our last status
        statuses = self._list(
            repository, f"repos/{repository}/deployments/{sync.remote_id}/statuses", {}, pages=1
        )
        latest = str(statuses[0]["state"]) if statuses else "none"
        # A failure someone else (the workflow that rolled it out) reports is a fact for the
        # ledger (a failed deployment), never overwritten with our success.
        failure = latest in TARGET_FAILURES
        seen = {"success": RemoteState.ACTIVE, "inactive": RemoteState.INACTIVE}.get(latest)
        if failure or seen is not sync.wanted:
            yield Drift(
                target=self.name,
                subject=SyncSubject.RECORD,
                subject_id=record_id,
                observed=latest,
                remote_id=sync.remote_id,
                detail=f"GitHub reports the deployment {latest}"
                if failure
                else f"deployment is {latest} on GitHub",
                failure=failure,
                updated_at=updated or None,
            )

    # -- HTTP -------------------------------------------------------------------------------

    def _list(
        self,
        repository: str,
        path: str,
        params: dict[str, str],
        *,
        cached: bool = True,
        pages: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every item of a paginated list, following ``Link: rel="next"``."""
        lane = self._lanes.lane(repository)
        items: list[dict[str, Any]] = []
        url: str | None = lane.api.url(path, {**params, "per_page": str(PER_PAGE)})
        fetched = 0
        while url is not None and (pages is None or fetched < pages):
            data, url = self._get_page(lane, url, cached=cached)
            items.extend(data)
            fetched += 1
        return items

    def _get_page(
        self, lane: Lane, url: str, *, cached: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        hit = lane.cache.get(url) if cached else None
        headers = {"If-None-Match": hit[0]} if hit else {}
        response = lane.api.send("GET", url, headers=headers, accept=(200, 304))
        if response.status_code == 304 and hit is not None:
            page = json.loads(hit[1])
            return page["data"], page["next"]
        data = response.json()
        following = response.links.get("next", {}).get("url")
        etag = response.headers.get("etag")
        if cached and etag:
            lane.cache.put(url, etag, json.dumps({"data": data, "next": following}))
        return data, following


#: the most commits one deployment is looked up with (ten pages of the compare API)
MAX_COMPARED = 1000


def _commit_info(body: dict[str, Any]) -> CommitInfo:
    """A commit of the commits or compare API: its sha, author and committer times, subject."""
    commit = body["commit"]
    return CommitInfo(
        sha=body["sha"],
        authored_at=datetime.fromisoformat(commit["author"]["date"].replace("Z", "+00:00")),
        committed_at=datetime.fromisoformat(commit["committer"]["date"].replace("Z", "+00:00")),
        subject=str(commit.get("message", "")).splitlines()[0] if commit.get("message") else "",
    )


def _retired(subject: RecordSubject) -> str:
    record = subject.record
    if record.status is RecordStatus.SUPERSEDED and record.superseded_by:
        return f"superseded by record #{record.superseded_by}"
    return "decommissioned"
