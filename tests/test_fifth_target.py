"""A fifth target type, added by a test alone: its spec, its adapter, its fake, the registry.

``logbook`` is an invented API that keeps one entry per record. It deploys container images only
and, like Chainloop, marks a slot's previous entry superseded by itself when a new one is
recorded. It is registered with ``registry.registered`` (and unregistered after the test), then
the real CLI validates, plans, applies and reports with a targets file naming it: nothing in
slotkeeper's pipeline, planner, manifests or command line knows it, yet its capabilities are
honoured (no chart is sent to it; no retirement is sent for a superseded record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from slotkeeper.model import ArtifactKind, HttpTargetSpec, RemoteState, SecretRef, TargetSync
from slotkeeper.targets.base import RecordsOnly, RecordSubject, Remote
from slotkeeper.targets.http import bearer_api
from slotkeeper.targets.registry import TargetContext, register, registered
from tests.fakes.server import FakeServer, Incoming, JsonObject, Refusal, Reply
from tests.helpers import Run, environment, image, target_document, write_manifests, write_targets

Sk = Callable[..., Run]
TOKEN = "lb_testtoken0123456789"
CHART = {"kind": "HELM_CHART", "name": "oci://ghcr.io/acme/charts/web", "version": "2.3.0"}


# -- the spec: what the operator configures, and what the type can do ------------------------


class LogbookTargetSpec(HttpTargetSpec):
    """A logbook of deployments: container images only; it supersedes by itself."""

    artifact_kinds: ClassVar[frozenset[ArtifactKind]] = frozenset({ArtifactKind.CONTAINER_IMAGE})
    supersedes_itself: ClassVar[bool] = True

    type: Literal["logbook"]
    base_url: str
    token: SecretRef


# -- the fake: the API, stateful, on loopback --------------------------------------------------


class FakeLogbook(FakeServer):
    """``PUT /v1/entries/{id}`` records an entry (an upsert); ``GET /v1/entries/{id}`` reads
    one. Recording an active entry supersedes the slot's other active one."""

    def __init__(self) -> None:
        super().__init__(TOKEN)
        self.entries: dict[str, JsonObject] = {}

    def _route(self, incoming: Incoming) -> Reply:
        prefix = "/v1/entries/"
        if not incoming.path.startswith(prefix) or incoming.method not in ("GET", "PUT"):
            raise Refusal(Reply(404, {"message": "not found"}))
        entry_id = incoming.path.removeprefix(prefix)
        if incoming.method == "GET":
            if entry_id not in self.entries:
                raise Refusal(Reply(404, {"message": "no such entry"}))
            return Reply(200, self.entries[entry_id])
        body = incoming.json()
        if body.get("state") not in ("active", "inactive") or body.get("kind") != "CONTAINER_IMAGE":
            raise Refusal(Reply(422, {"message": "state must be active or inactive, images only"}))
        if body["state"] == "active":
            for other_id, other in self.entries.items():
                same_slot = _slot(other) == _slot(body)
                if other_id != entry_id and same_slot and other["state"] == "active":
                    other["state"] = "superseded"
        self.entries[entry_id] = {"id": entry_id, **body}
        return Reply(200, self.entries[entry_id])

    def _unauthorized(self, incoming: Incoming) -> Reply:
        return Reply(401, {"message": "unauthorized"})

    def _server_error(self) -> Reply:
        return Reply(503, {"message": "unavailable"})

    def _internal_error(self, exc: Exception) -> Reply:
        return Reply(500, {"message": f"fake internal error: {exc!r}"})

    def states(self) -> dict[str, str]:
        """``environment/slot artifact`` -> state, of every entry."""
        return {
            f"{e['environment']}/{e['slot']} {e['artifact']}": str(e["state"])
            for e in self.entries.values()
        }


def _slot(entry: JsonObject) -> tuple[str, str]:
    return (str(entry["environment"]), str(entry["slot"]))


# -- the adapter: one module's worth ----------------------------------------------------------


class LogbookTarget(RecordsOnly):
    """The ``logbook`` target: one entry per record, recorded active or inactive."""

    spec_class = LogbookTargetSpec

    def __init__(self, *, name: str, base_url: str, token: str, clock: Callable[[], datetime]):
        self.name = name
        self._api = bearer_api(name, base_url, token, timeout=5, max_rate_wait=0, clock=clock)

    def close(self) -> None:
        self._api.close()

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote:
        record = subject.record
        entry_id = f"{subject.lineage[:8]}-{record.id}"
        state = "active" if want is RemoteState.ACTIVE else "inactive"
        answer: dict[str, Any] = self._api.send(
            "PUT",
            f"v1/entries/{entry_id}",
            json={
                "environment": record.environment,
                "slot": record.slot,
                "kind": record.artifact.kind.value,
                "artifact": record.artifact.describe(),
                "state": state,
            },
            write=True,
            accept=(200,),
        ).json()
        return Remote(str(answer["id"]), want, location={"base_url": self._api.base_url})


def open_logbook(name: str, spec: LogbookTargetSpec, context: TargetContext) -> LogbookTarget:
    """The registry's opener: the credential from the operator's reference."""
    token = context.credential(spec.token, owner=f"target {name!r} token")
    return LogbookTarget(name=name, base_url=spec.base_url, token=token, clock=context.clock)


# -- the tests --------------------------------------------------------------------------------


@pytest.fixture
def logbook(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLogbook]:
    """The fake logbook running, its type registered for this test only, its token set."""
    monkeypatch.setenv("LOGBOOK_TOKEN", TOKEN)
    with registered(LogbookTargetSpec, open_logbook), FakeLogbook() as fake:
        yield fake


def declare(workdir: Path, fake: FakeLogbook, slots: dict[str, Any]) -> None:
    write_targets(
        target_document(
            "book", type="logbook", baseUrl=fake.base_url, token={"env": "LOGBOOK_TOKEN"}
        )
    )
    write_manifests(workdir / "m", environment("production", slots, targets=["book"]))


def test_a_fifth_target_type_is_validated_planned_applied_and_reported(
    sk: Sk, workdir: Path, logbook: FakeLogbook
) -> None:
    """A registered type works through the real CLI: its records reach its fake, a Helm chart
    is not sent to it (the plan says so), and a superseded record is not sent again."""
    declare(workdir, logbook, {"api": image(version="v1"), "web": CHART})
    assert sk("validate", "-m", "m").code == 0
    planned = sk("plan", "-m", "m")
    assert planned.code == 0
    assert "book: a HELM_CHART is not deployable on logbook, not sent" in planned.out

    assert sk("apply", "--yes", "-m", "m").code == 0
    assert logbook.states() == {"production/api ghcr.io/acme/api v1": "active"}
    assert not any(b"HELM_CHART" in r.body for r in logbook.requests)
    rows = {row["slot"]: row for row in sk("status", "--json").json()["slots"]}
    assert rows["api"]["targets"]["book"]["status"] == "synced"
    assert rows["web"]["status"] == "DEPLOYED" and rows["web"]["targets"] == {}

    declare(workdir, logbook, {"api": image(version="v2"), "web": CHART})
    logbook.reset_log()
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert [(r.method, r.json["state"]) for r in logbook.writes()] == [("PUT", "active")]
    assert logbook.states() == {
        "production/api ghcr.io/acme/api v1": "superseded",  # by the logbook itself
        "production/api ghcr.io/acme/api v2": "active",
    }
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0  # converged

    declare(workdir, logbook, {"web": CHART})
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert logbook.states()["production/api ghcr.io/acme/api v2"] == "inactive"
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0


def test_a_registered_type_is_gone_once_unregistered(sk: Sk, workdir: Path) -> None:
    """Registration is undone with its block: the type is known inside it, and afterwards a
    targets file naming it is refused with the built-in types as the choices."""
    with FakeLogbook() as fake:
        declare(workdir, fake, {"api": image()})
        with registered(LogbookTargetSpec, open_logbook):
            assert sk("validate", "-m", "m").code == 0
        refused = sk("validate", "-m", "m")
    assert refused.code == 1
    assert "spec.type: must be one of 'github', 'chainloop', 'unkey', 'iftrue'" in refused.err


def test_a_type_is_registered_once(logbook: FakeLogbook) -> None:
    """A second registration of the same type is refused rather than silently replacing it."""
    with pytest.raises(ValueError, match="'logbook' is already registered"):
        register(LogbookTargetSpec, open_logbook)


def test_the_logbook_fake_keeps_one_entry_per_record(logbook: FakeLogbook) -> None:
    """The fake itself: an upsert per id, superseding the slot's active entry, images only."""
    api = bearer_api("book", logbook.base_url, TOKEN, timeout=5, max_rate_wait=0, clock=lambda: NOW)
    entry = {"environment": "e", "slot": "s", "kind": "CONTAINER_IMAGE", "artifact": "a"}
    api.send("PUT", "v1/entries/1", json={**entry, "state": "active"}, write=True)
    api.send("PUT", "v1/entries/2", json={**entry, "artifact": "b", "state": "active"}, write=True)
    assert logbook.states() == {"e/s a": "superseded", "e/s b": "active"}
    assert api.send("GET", "v1/entries/2").json()["state"] == "active"
    assert api.send("GET", "v1/entries/3", accept=(404,)).status_code == 404
    chart = {**entry, "kind": "HELM_CHART", "state": "active"}
    assert api.send("PUT", "v1/entries/4", json=chart, accept=(422,)).status_code == 422
    api.close()


NOW = datetime(2026, 1, 1, tzinfo=UTC)
