"""A target's own words stay with the operator: the ledger and the CLI (`status`, `history`)
keep the full error, which may quote the target's answer; what anyone who reaches the daemon or
`slotkeeper ui` can read (`/status`, the dashboard pages and their JSON) says what happened in
fixed words only: the status code and a short phrase (`errors.public_reason`).

The target here is a loopback server of the test's own that answers every request with one
status code and a JSON body whose message is a marker: text a hostile target (or whatever an
SSRF-able base URL reaches) would choose.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stamina

from slotkeeper.dashboard.pages import Dashboard
from slotkeeper.errors import (
    BudgetDeferred,
    ConfigError,
    LedgerError,
    ManifestErrors,
    PermanentTargetError,
    PlanFileError,
    SecretError,
    SlotkeeperError,
    TargetError,
    TargetFailed,
    TargetUnreachable,
    TargetUnusable,
    TemporaryTargetError,
    UnknownOutcome,
    public_reason,
)
from slotkeeper.ledger import open_ledger
from slotkeeper.model import UNEXPLAINED_ERROR, Artifact, SyncStatus, SyncSubject, TargetSync
from slotkeeper.targets.http import ApiClient, HttpSettings
from tests.daemon_support import Running, Ui, free_port, wait_for
from tests.helpers import (
    Run,
    environment,
    image,
    operator_targets,
    synced_record,
    write_manifests,
    write_targets,
)
from tests.test_github_target import TOKEN
from tests.test_ledger import run_sql

Sk = Callable[..., Run]
NOW = datetime(2026, 11, 23, tzinfo=UTC)

#: what the target says: it must never reach a public page
MARKER = "MARKER-q7Zx-words-of-the-target"
REJECTED = "HTTP 422: rejected by the target"
#: every public answer of the daemon and of `slotkeeper ui` that shows the slot
PUBLIC_PATHS = ("/", "/keys", "/slots/production/api", "/status", "/status/slots/production/api")


class Answering:
    """A loopback HTTP server answering every request with ``status``, ``headers`` and a JSON
    error body quoting :data:`MARKER` (GitHub's envelope: ``message`` and ``errors``)."""

    def __init__(self, status: int = 422, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.requests: list[str] = []
        answering = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                answering.requests.append(f"{self.command} {self.path}")
                body = json.dumps(
                    {
                        "message": f"Validation Failed: {MARKER}",
                        "errors": [{"message": f"{MARKER} (field)"}],
                        "documentation_url": f"https://docs.example/{MARKER}",
                    }
                ).encode()
                self.send_response(answering.status)
                for name, value in answering.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Answering:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def target() -> Iterator[Answering]:
    """A target that answers 422 with its own words to everything."""
    with Answering(422) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


def declare(root: Path, base_url: str) -> None:
    """The manifests: production/api (at ref main) told to one GitHub target, which the
    operator's targets file puts at ``base_url``."""
    env = environment("production", {"api": image()}, repository="acme/web", targets=["github"])
    env["spec"]["slots"]["api"]["ref"] = "main"
    github = {
        "apiVersion": "slotkeeper/v1",
        "kind": "Target",
        "metadata": {"name": "github"},
        "spec": {"type": "github", "baseUrl": base_url, "token": {"env": "GITHUB_TOKEN"}},
    }
    write_manifests(root, env)
    write_targets(github)


def assert_public(body: str, where: str) -> None:
    """A public answer: none of the target's words, no operator-only field."""
    assert MARKER not in body, where
    assert "last_error" not in body, where
    assert "Validation Failed" not in body, where


# -- what happened, in fixed words -----------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermanentTargetError(MARKER, http_status=422), REJECTED),
        (PermanentTargetError(MARKER, http_status=400), "HTTP 400: rejected by the target"),
        (PermanentTargetError(MARKER, http_status=401), "HTTP 401: permission denied"),
        (PermanentTargetError(MARKER, http_status=403), "HTTP 403: permission denied"),
        (PermanentTargetError(MARKER, http_status=404), "HTTP 404: not found"),
        (PermanentTargetError(MARKER, http_status=410), "HTTP 410: not found"),
        (PermanentTargetError(MARKER, http_status=409), "HTTP 409: conflict"),
        (PermanentTargetError(MARKER, http_status=202), "HTTP 202: unexpected answer"),
        (TemporaryTargetError(MARKER, http_status=429), "HTTP 429: rate limited"),
        (TemporaryTargetError(MARKER, http_status=403), "HTTP 403: rate limited"),
        (TemporaryTargetError(MARKER, http_status=503), "HTTP 503: target unavailable"),
        (
            UnknownOutcome(MARKER, http_status=502),
            "HTTP 502: target unavailable; the write may have happened",
        ),
        (UnknownOutcome(MARKER), "no answer (the write may have happened)"),
        (TargetUnreachable(MARKER), "unreachable"),
        (BudgetDeferred(MARKER), "write budget spent: left for the next reconcile"),
        (TargetFailed(MARKER), "failed on the target"),
        (TargetUnusable(MARKER), "target not usable: configuration error"),
        (TemporaryTargetError(MARKER), "not done yet: tried again at the next reconcile"),
        (PermanentTargetError(MARKER), "refused by slotkeeper"),
        (TargetError(MARKER), "target call failed"),
        (ConfigError(MARKER), "configuration error"),
        (ManifestErrors([]), "manifest error"),
        (PlanFileError(MARKER), "plan file error"),
        (SecretError(MARKER), "secret not stored"),
        (LedgerError(MARKER), "ledger error"),
        (SlotkeeperError(MARKER), "failed"),
        (ValueError(MARKER), "internal error"),
    ],
)
def test_public_reason_is_a_fixed_text_for_each_kind_of_failure(
    error: BaseException, reason: str
) -> None:
    """Each failure maps to its code and a fixed phrase; the message never shows through."""
    assert public_reason(error) == reason


def test_public_reason_of_an_error_raised_from_a_target_error_is_its_causes() -> None:
    """A re-raised error (iftrue's lost answer) or a target left unusable by a failed refresh
    tells what happened by its cause, unless it has a code of its own; a cycle ends."""
    cause = TemporaryTargetError(f"{MARKER} 503", http_status=503)
    unusable = TargetUnusable(f"github: not usable: unreachable: {cause}")
    unusable.__cause__ = cause
    assert public_reason(unusable) == "HTTP 503: target unavailable"
    unreachable = TargetUnusable(MARKER)
    unreachable.__cause__ = TargetUnreachable(MARKER)
    assert public_reason(unreachable) == "unreachable"
    coded = PermanentTargetError(MARKER, http_status=404)
    coded.__cause__ = cause
    assert public_reason(coded) == "HTTP 404: not found"
    first, second = PermanentTargetError("a"), PermanentTargetError("b")
    first.__cause__, second.__cause__ = second, first
    assert public_reason(first) == "refused by slotkeeper"


def _failure(client: ApiClient, method: str, *, idempotent: bool = True) -> TargetError:
    with pytest.raises(TargetError) as raised:
        client.send(method, "repos/acme/web/deployments", write=True, idempotent=idempotent)
    return raised.value


@pytest.mark.parametrize(
    ("status", "headers", "method", "idempotent", "kind", "reason"),
    [
        (422, {}, "POST", False, PermanentTargetError, REJECTED),
        (401, {}, "GET", True, PermanentTargetError, "HTTP 401: permission denied"),
        (403, {}, "GET", True, PermanentTargetError, "HTTP 403: permission denied"),
        (404, {}, "DELETE", True, PermanentTargetError, "HTTP 404: not found"),
        (
            429,
            {"retry-after": "3600"},
            "POST",
            False,
            TemporaryTargetError,
            "HTTP 429: rate limited",
        ),
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"},
            "GET",
            True,
            TemporaryTargetError,
            "HTTP 403: rate limited",
        ),
        (429, {"retry-after": "0"}, "GET", True, TemporaryTargetError, "HTTP 429: rate limited"),
        (503, {}, "GET", True, TemporaryTargetError, "HTTP 503: target unavailable"),
        (
            502,
            {},
            "POST",
            False,
            UnknownOutcome,
            "HTTP 502: target unavailable; the write may have happened",
        ),
    ],
)
def test_the_http_client_gives_every_failing_answer_its_status_code(
    status: int,
    headers: dict[str, str],
    method: str,
    idempotent: bool,
    kind: type[TargetError],
    reason: str,
) -> None:
    """Whatever answer fails a call (refused, rate limited past the wait, 5xx after retries,
    a lost write), the error carries its code: the message quotes the target, the public reason
    does not, nor the host or the path."""
    with Answering(status, headers) as server:
        client = ApiClient(
            name="github",
            settings=HttpSettings(base_url=server.base_url, headers={}, max_rate_wait=60),
        )
        try:
            error = _failure(client, method, idempotent=idempotent)
        finally:
            client.close()
    assert isinstance(error, kind)
    assert error.http_status == status
    assert public_reason(error) == reason
    assert (MARKER in str(error)) is not reason.endswith("rate limited")  # named, not quoted


def test_no_answer_at_all_is_unreachable() -> None:
    """A refused connection, retries spent, is "unreachable": no host, no port."""
    client = ApiClient(
        name="github",
        settings=HttpSettings(base_url=f"http://127.0.0.1:{free_port()}", headers={}),
    )
    try:
        error = _failure(client, "GET")
    finally:
        client.close()
    assert isinstance(error, TargetUnreachable) and error.http_status is None
    assert public_reason(error) == "unreachable"


# -- the operator's surfaces and the public ones ---------------------------------------------


def test_the_cli_and_the_ledger_keep_the_targets_words_the_ui_shows_the_reason(
    sk: Sk,
    workdir: Path,
    target: Answering,
    ui: Callable[..., Ui],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A target answering 422 with its own text: `status`, `status --json` and `history` (the
    operator's terminal) and the ledger's row show that text; every page and JSON answer of
    `slotkeeper ui` shows "HTTP 422: rejected by the target" and none of it."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare(workdir / "m", target.base_url)
    assert sk("apply", "--yes", "-m", "m").code == 1
    assert target.requests, "the target was called"

    # The operator's terminal: the full text.
    assert MARKER in sk("status").out
    [row] = sk("status", "--json").json()["slots"]
    github = row["targets"]["github"]
    assert github["status"] == "failed"
    assert MARKER in github["last_error"]
    assert github["error_reason"] == REJECTED
    assert MARKER in sk("history", "production/api").out
    [record] = sk("history", "production/api", "--json").json()
    assert MARKER in record["targets"]["github"]["last_error"]

    # The ledger keeps both.
    ledger = open_ledger(f"sqlite:///{workdir}/.slotkeeper/state.db", now=NOW, create=False)
    try:
        [sync] = ledger.syncs_for(SyncSubject.RECORD, row["record_id"])
    finally:
        ledger.close()
    assert sync.status is SyncStatus.FAILED
    assert MARKER in (sync.last_error or "")
    assert sync.error_reason == REJECTED

    # The plan gives why a sync is planned again in the fixed words (they are what a held-back
    # action shows on /status, and what a pull-request comment shows); the operator's plan
    # adds the target's words as a note.
    for output in ("text", "json"):
        planned = sk("plan", "-m", "m", "--format", output).out
        assert f"should be active: {REJECTED}" in planned and MARKER in planned, output
    [action] = sk("plan", "-m", "m", "--json").json()["actions"]
    assert action["reason"] == f"failed on github, should be active: {REJECTED}"
    assert MARKER in action["notes"][0]
    comment = sk("plan", "-m", "m", "--format", "markdown").out
    assert REJECTED in comment and MARKER not in comment

    # Anyone who reaches the dashboard: the reason only.
    server = ui()
    for path in PUBLIC_PATHS:
        answer = server.get(path)
        assert answer.status_code == 200, path
        assert_public(answer.text, path)
    status = server.get("/status").json()
    assert status["slots"][0]["targets"]["github"]["error_reason"] == REJECTED
    [cell] = status["matrix"]["rows"][0]["cells"]
    assert cell["errors"] == {"github": REJECTED}
    assert f"github (failed): {REJECTED}" in server.get("/").text
    [shown] = server.get("/status/slots/production/api").json()["records"]
    assert shown["targets"]["github"]["error_reason"] == REJECTED
    assert REJECTED in server.get("/slots/production/api").text


def test_the_daemon_shows_only_the_reason(
    workdir: Path, target: Answering, running: Callable[..., Running]
) -> None:
    """`slotkeeper run`: /status, the dashboard at / and the slot page and its JSON say
    "HTTP 422: rejected by the target", never what the target answered."""
    declare(workdir / "m", target.base_url)
    daemon = running("-m", "m", "--resync-interval", "10m")

    def failed() -> bool:
        slots = daemon.status()["slots"]
        return bool(slots) and slots[0]["targets"].get("github", {}).get("status") == "failed"

    wait_for(failed, what="the target's refusal recorded")
    for path in PUBLIC_PATHS:
        answer = daemon.get(path)
        assert answer.status_code == 200, path
        assert_public(answer.text, path)
    assert daemon.status()["slots"][0]["targets"]["github"]["error_reason"] == REJECTED
    assert f"github (failed): {REJECTED}" in daemon.get("/").text
    assert REJECTED in daemon.get("/slots/production/api").text
    # A reconcile again (SIGHUP): the failed sync is retried or held back by the back-off,
    # and either way its reason stays the fixed one.
    before = daemon.reconciles()
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.reconciles() > before, what="a second reconcile")
    for path in PUBLIC_PATHS:
        assert_public(daemon.get(path).text, path)
    code, err = daemon.terminate()
    assert code == 0
    assert MARKER in err  # the log is the operator's: it has the full text


def test_a_sync_held_back_by_the_back_off_carries_only_the_reason(
    workdir: Path, target: Answering, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second reconcile within the back-off holds the failed sync back: the held-back action
    (``blocked`` of /status, the matrix cell, the slot row) gives its reason in fixed words."""
    from slotkeeper.daemon import Daemon, DaemonSettings
    from slotkeeper.keys import SecretSink
    from slotkeeper.plan import PlanOptions
    from slotkeeper.reconcile import RunOptions
    from slotkeeper.sources import DirectorySource

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare(workdir / "m", target.base_url)
    ledger = open_ledger(f"sqlite:///{workdir}/state.db", now=datetime.now(UTC))
    settings = DaemonSettings(
        source=DirectorySource(workdir / "m"),
        options=PlanOptions(),
        run=RunOptions(strict_targets=False),
        sink=SecretSink(workdir / "secrets"),
        actor="test",
        backoff_base=600.0,
        targets=operator_targets(),
    )
    daemon = Daemon(settings, ledger)
    try:
        assert daemon.reconcile("start") is False
        daemon.reconcile("again")
        document = daemon.status_document()
        [held] = document["blocked"]
        assert held["action"] == "sync" and held["blocked"].startswith("backing off")
        assert held["reason"] == f"failed on github, should be active: {REJECTED}"
        assert MARKER not in json.dumps(document) and "last_error" not in json.dumps(document)
        page = daemon.dashboard.get("/")
        assert page is not None and MARKER not in page.body.decode()
    finally:
        ledger.close()


def test_a_ledger_written_before_the_reason_was_kept(
    sk: Sk,
    workdir: Path,
    target: Answering,
    ui: Callable[..., Ui],
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed sync recorded by the previous slotkeeper (no error_reason column, on SQLite and
    PostgreSQL) opens: the CLI shows its full text, the pages a pointer to it, never the text;
    the next failure records its reason."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    declare(workdir / "m", target.base_url)
    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 1
    # Back to the schema before version 8, with the failure as that version wrote it.
    run_sql(ledger_url, "ALTER TABLE target_syncs DROP COLUMN error_reason")
    run_sql(ledger_url, "DELETE FROM schema_migrations WHERE version = 8")
    [(stored,)] = run_sql(ledger_url, "SELECT last_error FROM target_syncs")
    assert MARKER in str(stored)

    assert MARKER in sk("status", "--state", ledger_url).out  # opens (and upgrades) it
    [(version,)] = run_sql(ledger_url, "SELECT version FROM schema_migrations WHERE version = 8")
    assert version == 8
    [(reason,)] = run_sql(ledger_url, "SELECT error_reason FROM target_syncs")
    assert reason is None

    server = ui("--state", ledger_url)
    for path in PUBLIC_PATHS:
        assert_public(server.get(path).text, path)
    row = server.get("/status").json()["slots"][0]
    assert row["targets"]["github"]["error_reason"] == UNEXPLAINED_ERROR
    assert "details in `slotkeeper status`" in server.get("/slots/production/api").text
    server.stop()

    assert sk("apply", "--yes", "-m", "m", "--state", ledger_url).code == 1
    [(reason,)] = run_sql(ledger_url, "SELECT error_reason FROM target_syncs")
    assert reason == REJECTED


def test_what_a_target_reported_is_public_only_as_a_known_status_word(
    sk: Sk, workdir: Path
) -> None:
    """A sync's remote detail (Unkey's error message, steps, hostnames) is the target's text:
    the slot's JSON on the dashboard keeps only a status word from the known set, `history
    --json` keeps everything."""
    url = f"sqlite:///{workdir}/ledger.db"
    ledger = open_ledger(url, now=NOW)
    try:
        with ledger.transaction() as tx:
            ids = [
                tx.insert_record(
                    environment="p",
                    slot=slot,
                    artifact=Artifact.model_validate(image()),
                    ref=None,
                    at=NOW,
                    revision=None,
                    action_id=slot,
                )
                for slot in ("api", "web")
            ]
            detail = {
                "error": MARKER,
                "steps": [{"message": MARKER}],
                "hostnames": [f"{MARKER}.example"],
            }
            failed: dict[str, Any] = {
                "status": SyncStatus.FAILED,
                "last_error": f"unkey: deployment d1 ended FAILED: {MARKER}",
                "error_reason": "failed on the target",
            }
            tx.upsert_sync(_unkey(ids[0], remote_detail={**detail, "status": "FAILED"}, **failed))
            tx.upsert_sync(_unkey(ids[1], remote_detail={**detail, "status": MARKER}, **failed))
        dashboard = Dashboard(ledger, clock=lambda: NOW)
        for slot, shown in (("api", {"status": "FAILED"}), ("web", {})):
            answer = dashboard.get(f"/status/slots/p/{slot}")
            assert answer is not None and answer.status == 200
            assert_public(answer.body.decode(), slot)
            [record] = json.loads(answer.body)["records"]
            assert record["targets"]["unkey"]["detail"] == shown
            assert record["targets"]["unkey"]["error_reason"] == "failed on the target"
            page = dashboard.get(f"/slots/p/{slot}")
            assert page is not None and MARKER not in page.body.decode()
    finally:
        ledger.close()
    [record] = sk("history", "p/api", "--json", "--state", url).json()
    assert record["targets"]["unkey"]["detail"]["error"] == MARKER
    assert MARKER in record["targets"]["unkey"]["last_error"]


def _unkey(record_id: int, **extra: Any) -> TargetSync:
    return synced_record("unkey", record_id, remote_id="d1", at=NOW, **extra)
