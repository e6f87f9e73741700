"""No manifest can send a credential anywhere: the operator binds each credential to its target.

Whoever can push (or open a pull request) writes the manifests; the operator's flags,
environment and files are trusted. A capture server on loopback plays the attacker's endpoint:
manifests that redefine a target to point at it, or name another environment variable or file
as a credential, are refused before anything is read or sent — through validate, plan, apply,
``run --once`` and the daemon — and every credential the process holds is tried: target
tokens, the git token, the webhook secret, the ledger URL (with its password).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import postgres_schema_url
from tests.daemon_support import SECRET as DAEMON_WEBHOOK_SECRET
from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import (
    Run,
    environment,
    image,
    target_document,
    write_manifests,
    write_targets,
)

Sk = Callable[..., Run]

GIT_TOKEN = "ghp_gitT0ken-never-to-leave-0123456789"
WEBHOOK_SECRET = "webhook-s3cret-never-to-leave-0123456789"
LEDGER_PASSWORD = "ledger-pa55word-never-to-leave"


@dataclass
class Capture:
    """What reached the attacker's endpoint: connections and requests (with their headers)."""

    connections: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def capture() -> Iterator[Capture]:
    seen = Capture()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length).decode("latin-1"),
                }
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _record

        def log_message(self, *_: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def verify_request(self, request: Any, client_address: Any) -> bool:
            seen.connections += 1
            return True

    server = Server(("127.0.0.1", 0), Handler)
    seen.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def secrets(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Every credential the process holds, as the operator gives them: the target token (the
    ``gh`` fixture sets GITHUB_TOKEN), the git token, the webhook secret (variable and file)
    and a ledger URL with a password (the local server trusts, so any password connects), in
    a variable and in a file."""
    for url in postgres_schema_url():
        ledger = url.replace("postgresql://postgres@", f"postgresql://postgres:{LEDGER_PASSWORD}@")
        yield _operator_secrets(workdir, monkeypatch, ledger)


def _operator_secrets(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, ledger: str
) -> dict[str, str]:
    secret_dir = workdir.parent / f"{workdir.name}-secrets"
    secret_dir.mkdir()
    (secret_dir / "webhook").write_text(WEBHOOK_SECRET + "\n")
    (secret_dir / "state-url").write_text(ledger + "\n")
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN", GIT_TOKEN)
    monkeypatch.setenv("SLOTKEEPER_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("SLOTKEEPER_STATE", ledger)
    return {
        "webhook_file": str(secret_dir / "webhook"),
        "state_file": str(secret_dir / "state-url"),
    }


#: what a hostile manifest names as the credential its target carries
REFERENCES = [
    pytest.param({"env": "GITHUB_TOKEN"}, id="target-token"),
    pytest.param({"env": "SLOTKEEPER_GIT_TOKEN"}, id="git-token"),
    pytest.param({"env": "SLOTKEEPER_WEBHOOK_SECRET"}, id="webhook-secret"),
    pytest.param({"file": "webhook_file"}, id="webhook-secret-file"),
    pytest.param({"env": "SLOTKEEPER_STATE"}, id="ledger-url"),
    pytest.param({"file": "state_file"}, id="ledger-url-file"),
]


def hostile_target(capture: Capture, reference: dict[str, str], secrets: dict[str, str]) -> Any:
    """The attacker's Target: the operator's ``github`` redefined to point at the capture
    server, carrying ``reference`` (a file reference names one of the operator's files)."""
    if "file" in reference:
        reference = {"file": secrets[reference["file"]]}
    return target_document("github", type="github", baseUrl=capture.url, token=reference)


def operator_github(gh: FakeGitHub) -> None:
    """The operator's binding: target ``github`` is the fake GitHub, with GITHUB_TOKEN."""
    write_targets(
        target_document("github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"})
    )


def production() -> dict[str, Any]:
    env = environment("production", {"api": image()}, repository="acme/web", targets=["github"])
    env["spec"]["slots"]["api"]["ref"] = "main"
    return env


def held_values(gh: FakeGitHub) -> list[str]:
    """Every secret value the process holds (the ledger URL's password stands for the URL)."""
    return [gh.token, GIT_TOKEN, WEBHOOK_SECRET, LEDGER_PASSWORD]


def write_hostile(root: Path, hostile: Any) -> None:
    """A valid manifest beside the attacker's file (a Target document is not a manifest, so it
    is written as plain YAML)."""
    import yaml

    write_manifests(root, production())
    (root / "zz-hostile.yaml").write_text(yaml.safe_dump(hostile, sort_keys=False))


@pytest.mark.parametrize("reference", REFERENCES)
def test_a_manifest_pointing_a_target_elsewhere_sends_nothing_from_the_cli(
    sk: Sk,
    workdir: Path,
    gh: FakeGitHub,
    capture: Capture,
    secrets: dict[str, str],
    reference: dict[str, str],
) -> None:
    """validate, plan (which refreshes), apply and `run --once` all refuse a manifest that
    redefines the operator's target: exit 1, the file and line named, and nothing sent to the
    attacker; `run --once` holds the hostile file as broken and deploys the valid one to the
    operator's GitHub, with the operator's token only."""
    operator_github(gh)
    write_hostile(workdir / "m", hostile_target(capture, reference, secrets))
    for command in (
        ("validate", "-m", "m"),
        ("plan", "-m", "m"),
        ("apply", "--yes", "-m", "m"),
        ("run", "--once", "-m", "m", "--listen", "127.0.0.1:0"),
    ):
        result = sk(*command)
        assert result.code == 1, (command, result.out, result.err)
        assert "m/zz-hostile.yaml:2: kind: Target documents belong to the operator" in result.err
        for value in held_values(gh):
            assert value not in result.out + result.err
    assert capture.connections == 0 and capture.requests == []
    assert {r.headers.get("authorization") for r in gh.requests} <= {f"Bearer {gh.token}"}


def test_a_manifest_naming_a_target_the_operator_did_not_bind_is_refused(
    sk: Sk, workdir: Path, gh: FakeGitHub, capture: Capture
) -> None:
    """An environment may only name the operator's targets: naming any other is an error
    that names the environment, the file, the line and what the operator configured."""
    operator_github(gh)
    env = production()
    env["spec"]["targets"] = ["github", "exfil"]
    write_manifests(workdir / "m", env)
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "spec.targets[1]: environment 'production' names target 'exfil'" in result.err
    assert "which the operator has not configured" in result.err
    assert gh.deployments("acme", "web") == [] and capture.connections == 0


def test_a_manifest_cannot_learn_whether_a_file_exists(
    sk: Sk, workdir: Path, gh: FakeGitHub, capture: Capture, secrets: dict[str, str]
) -> None:
    """A credential file named by a manifest is never opened: an existing file, an unreadable
    one and a missing one give the same error, word for word."""
    operator_github(gh)
    unreadable = workdir.parent / f"{workdir.name}-unreadable"
    unreadable.write_text("x")
    unreadable.chmod(0)
    errors = set()
    for path in (secrets["webhook_file"], str(unreadable), "/nonexistent/credential"):
        hostile = target_document("github", type="github", token={"file": path})
        write_hostile(workdir / "m", hostile)
        result = sk("plan", "-m", "m")
        assert result.code == 1
        errors.add(result.err)
        assert "No such file" not in result.err and "Permission denied" not in result.err
    assert len(errors) == 1
    assert capture.connections == 0


@pytest.mark.parametrize("reference", REFERENCES[:3])
def test_the_daemon_keeps_the_operators_binding_and_sends_the_attacker_nothing(
    workdir: Path,
    gh: FakeGitHub,
    capture: Capture,
    secrets: dict[str, str],
    running: Callable[..., Running],
    reference: dict[str, str],
) -> None:
    """A daemon watching manifests with a hostile file beside a valid one: the hostile file is
    held as broken (named on /status), the valid environment is deployed to the operator's
    GitHub with the operator's token, and the capture server sees no connection at all."""
    operator_github(gh)
    write_hostile(workdir / "m", hostile_target(capture, reference, secrets))
    daemon = running(
        "-m",
        "m",
        "--state",
        "sqlite:///.slotkeeper/state.db",
        "--webhook-secret-file",
        secrets["webhook_file"],
        "--resync-interval",
        "1h",
    )
    wait_for(lambda: len(gh.deployments("acme", "web")) == 1, what="the operator's deployment")
    status = daemon.status()
    [broken] = status["manifests"]["invalid_files"]
    assert broken["file"].endswith("zz-hostile.yaml")
    assert "Target documents belong to the operator" in " ".join(broken["errors"])
    code, err = daemon.terminate()
    assert code == 0
    assert capture.connections == 0 and capture.requests == []
    authorizations = {r.headers.get("authorization") for r in gh.requests}
    assert authorizations == {f"Bearer {gh.token}"}  # only the operator's token, only here
    for value in (GIT_TOKEN, WEBHOOK_SECRET, LEDGER_PASSWORD, DAEMON_WEBHOOK_SECRET):
        assert value not in err


def test_the_operators_own_target_on_a_private_address_is_refused_unless_allowed(
    sk: Sk,
    workdir: Path,
    capture: Capture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Egress: a target at an address the operator has not allowed (here loopback, by name)
    is never connected to — the failure is recorded with the target's name, retried at the
    next apply, and shown to the operator; allowing the network lets it through."""
    monkeypatch.delenv("SLOTKEEPER_EGRESS_ALLOW")
    monkeypatch.setenv("CHAINLOOP_TOKEN", "cl-token")
    port = capture.url.rsplit(":", 1)[1]
    write_targets(
        target_document(
            "chainloop",
            type="chainloop",
            baseUrl=f"http://localhost:{port}",
            token={"env": "CHAINLOOP_TOKEN"},
        )
    )
    write_manifests(
        workdir / "m", environment("production", {"api": image()}, targets=["chainloop"])
    )
    refused = sk("apply", "--yes", "-m", "m")
    assert refused.code == 1
    assert capture.connections == 0
    status = sk("status")
    assert "refused to connect to localhost: it resolves to" in status.out
    assert "(loopback)" in status.out and "SLOTKEEPER_EGRESS_ALLOW=" in status.out

    monkeypatch.setenv("SLOTKEEPER_EGRESS_ALLOW", "127.0.0.0/8,::1")
    sk("apply", "--yes", "-m", "m")  # the capture server is no Chainloop: only the call counts
    assert capture.connections >= 1
    assert all(r["headers"]["Authorization"] == "Bearer cl-token" for r in capture.requests)


def test_a_bad_egress_allow_list_is_one_clear_error(
    sk: Sk, workdir: Path, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad SLOTKEEPER_EGRESS_ALLOW is one clear error naming the entry, before any request."""
    operator_github(gh)
    write_manifests(workdir / "m", production())
    monkeypatch.setenv("SLOTKEEPER_EGRESS_ALLOW", "10.0.0.0/8, intranet")
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert result.err.startswith("Error: ") and "SLOTKEEPER_EGRESS_ALLOW" in result.err
    assert "'intranet'" in result.err and "Traceback" not in result.err
    assert gh.requests == []


def test_the_ledger_url_can_come_from_a_file(
    sk: Sk, workdir: Path, secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLOTKEEPER_STATE_FILE (a mounted secret) is the ledger URL: it wins over the image's
    SLOTKEEPER_STATE default, loses to --state, and its password is never printed."""
    monkeypatch.setenv("SLOTKEEPER_STATE", f"sqlite:///{workdir}/default.db")
    monkeypatch.setenv("SLOTKEEPER_STATE_FILE", secrets["state_file"])
    write_manifests(workdir / "m", environment("production", {"api": image()}))
    applied = sk("apply", "--yes", "-m", "m")
    assert applied.code == 0, applied.err
    assert not (workdir / "default.db").exists()
    shown = sk("status")
    assert "production" in shown.out and LEDGER_PASSWORD not in shown.out + shown.err
    assert sk("status", "--state", f"sqlite:///{workdir}/other.db").code == 1  # the flag wins
    (Path(secrets["state_file"])).write_text("")
    empty = sk("status")
    assert empty.code == 1 and "SLOTKEEPER_STATE_FILE" in empty.err and "is empty" in empty.err
