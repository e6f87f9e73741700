"""The manifests are untrusted input: credential files that are not files, and webhooks that
are forged, replayed or built to crash, are refused cleanly (through the CLI and the daemon)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.daemon_support import SECRET, Running, Ui
from tests.helpers import Run, environment, image, write_manifests_and_targets

Sk = Callable[..., Run]


def declare_with_token(workdir: Path, token: dict[str, str]) -> None:
    """One environment mirrored to a Chainloop target whose token is ``token``."""
    write_manifests_and_targets(
        workdir / "m",
        environment("production", {"api": image()}, targets=["chainloop"]),
        {
            "apiVersion": "slotkeeper/v1",
            "kind": "Target",
            "metadata": {"name": "chainloop"},
            "spec": {"type": "chainloop", "baseUrl": "http://127.0.0.1:9", "token": token},
        },
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: Path("/dev/zero"), "is not a regular file"),
        (lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "is not a regular file"),
        (lambda d: d, "is not a regular file"),
        (
            lambda d: (
                ((d / "real").write_text("tok\n"), (d / "link").symlink_to(d / "real"))
                and d / "link"
            ),
            "is a symlink",
        ),
        (lambda d: ((d / "big").write_bytes(b"x" * 70_000), d / "big")[1], "over the limit"),
        (lambda d: ((d / "two").write_text("a\nb\n"), d / "two")[1], "one line of printable"),
        (lambda d: ((d / "ctl").write_text("a\x1bb"), d / "ctl")[1], "one line of printable"),
        (lambda d: ((d / "bin").write_bytes(b"\xff\xfe"), d / "bin")[1], "not UTF-8"),
    ],
    ids=["dev-zero", "fifo", "directory", "symlink", "oversized", "two-lines", "control", "binary"],
)
def test_a_credential_file_that_is_not_one_is_one_clear_error(
    sk: Sk, workdir: Path, make: Callable[[Path], Path], message: str
) -> None:
    """`{file: /dev/zero}`, a FIFO, a directory, a symlink, a huge or multi-line file: `apply`
    fails at once with one clear error naming the reference, nothing written, no traceback."""
    scratch = workdir / "creds"
    scratch.mkdir()
    declare_with_token(workdir, {"file": str(make(scratch))})
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert message in result.err and "target 'chainloop' token" in result.err
    assert "Traceback" not in result.err + result.out
    assert not (workdir / ".slotkeeper" / "state.db").exists() or "0 applied" not in result.out


def test_a_token_with_a_line_break_is_refused(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token from the environment that holds a line break could add a header: refused."""
    monkeypatch.setenv("CHAINLOOP_TOKEN", "abc\r\nX-Injected: 1")
    declare_with_token(workdir, {"env": "CHAINLOOP_TOKEN"})
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1 and "environment variable CHAINLOOP_TOKEN must hold one line" in (
        result.err
    )
    assert "X-Injected" not in result.err


@pytest.mark.parametrize("how", ["blank file", "empty file", "blank variable"])
def test_an_empty_webhook_secret_is_refused_at_start(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """An empty HMAC key would let anyone sign a webhook: the daemon refuses to start."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    args = ["run", "-m", "m", "--once"]
    if how == "blank variable":
        monkeypatch.setenv("SLOTKEEPER_WEBHOOK_SECRET", "   ")
    else:
        (workdir / "secret").write_text("  \n" if how == "blank file" else "")
        args += ["--webhook-secret-file", "secret"]
    result = sk(*args)
    assert result.code == 1 and "empty" in result.err and "refusing" in result.err
    assert not (workdir / ".slotkeeper" / "state.db").exists()


def signed(body: bytes, key: bytes = SECRET.encode()) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def post(daemon: Running, body: bytes, signature: str | None, delivery: str) -> httpx.Response:
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(daemon.url + "/hooks/github", content=body, headers=headers, timeout=5)


def test_forged_replayed_and_nested_webhooks_are_refused(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """A body signed with another (or an empty) key is 401; a signed body sent again under a
    new or missing delivery id is a duplicate, also after a restart; a deeply nested signed
    body is 400; none of it leaves a traceback."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    daemon = running("-m", "m", "--resync-interval", "1h")
    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
    assert post(daemon, body, signed(body, b""), "d-forged").status_code == 401
    assert post(daemon, body, signed(body, b"guess"), "d-forged-2").status_code == 401
    first = post(daemon, body, signed(body), "d-1")
    assert first.status_code == 202
    for delivery in ("d-2", ""):
        again = post(daemon, body, signed(body), delivery)
        assert again.status_code == 200 and again.json()["accepted"] is False
    nested = b'{"ref": "refs/heads/main", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert post(daemon, nested, signed(nested), "d-deep").status_code == 400
    deep_ok_json = b'{"ref": "refs/heads/main", "x": ' + b"[" * 40 + b"]" * 40 + b"}"
    assert post(daemon, deep_ok_json, signed(deep_ok_json), "d-deep-2").status_code == 400
    code, err = daemon.terminate()
    assert code == 0
    assert "Traceback" not in err and "RecursionError" not in err
    # A restarted daemon (a rollout, a failover) still knows the delivery: the ledger keeps it.
    restarted = running("-m", "m", "--resync-interval", "1h")
    replayed = post(restarted, body, signed(body), "d-after-restart")
    assert replayed.status_code == 200 and replayed.json()["accepted"] is False
    fresh = json.dumps({"ref": "refs/heads/main", "after": "b" * 40}).encode()
    assert post(restarted, fresh, signed(fresh), "d-3").status_code == 202


def test_the_ledger_is_readable_by_its_user_only(sk: Sk, workdir: Path) -> None:
    """The ledger, its WAL, shared memory and lock are 0600, its new directories 0700; an
    older ledger that was 0644 is narrowed when a writer opens it."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    home = workdir / ".slotkeeper"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [p for p in home.iterdir() if p.name.startswith("state.db")]
    assert {p.name for p in files} >= {"state.db", "state.db.lock"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys(
        (p.name for p in files), 0o600
    )
    (home / "state.db").chmod(0o644)
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert stat.S_IMODE((home / "state.db").stat().st_mode) == 0o600


def test_the_dashboard_sends_security_headers_and_answers_only_its_hosts(
    sk: Sk, workdir: Path, ui: Callable[..., Ui]
) -> None:
    """`slotkeeper ui` answers localhost names and those given with --allowed-host, refuses any
    other Host (DNS rebinding), and every answer carries CSP (scripts and connections of this
    origin only: the matrix's own refresh file, no inline script), nosniff, no framing, no
    referrer."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    assert sk("apply", "--yes", "-m", "m").code == 0
    dashboard = ui("--allowed-host", "dash.example.internal")
    for path in ("/", "/keys", "/status", "/nowhere"):
        answer = dashboard.get(path)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
        assert answer.headers["Referrer-Policy"] == "no-referrer"
    for host, status in [
        ("localhost:8080", 200),
        ("127.0.0.1", 200),
        ("[::1]:8080", 200),
        ("dash.example.internal", 200),
        ("attacker.example", 403),
        ("attacker.example:8080", 403),
    ]:
        answer = httpx.get(dashboard.url + "/status", headers={"Host": host}, timeout=5)
        assert answer.status_code == status, host
    scripts = re.findall(r"<script[^>]*>", dashboard.get("/").text)
    assert scripts == ['<script src="/static/refresh.js" defer>']  # no inline script


def test_the_daemon_answers_only_its_configured_hosts(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """With --allowed-host, the daemon's endpoints (the hook included) refuse any other Host;
    its answers carry the security headers."""
    write_manifests_and_targets(workdir / "m", environment("production", {"api": image()}))
    daemon = running("-m", "m", "--allowed-host", "127.0.0.1", "--allowed-host", "slotkeeper.svc")
    ok = httpx.get(daemon.url + "/status", headers={"Host": "slotkeeper.svc"}, timeout=5)
    assert ok.status_code == 200 and ok.headers["X-Frame-Options"] == "DENY"
    for path in ("/status", "/metrics", "/"):
        refused = httpx.get(daemon.url + path, headers={"Host": "evil.example"}, timeout=5)
        assert refused.status_code == 403
    body = b'{"ref": "refs/heads/main"}'
    hook = httpx.post(
        daemon.url + "/hooks/github",
        content=body,
        headers={"Host": "evil.example", "X-Hub-Signature-256": signed(body)},
        timeout=5,
    )
    assert hook.status_code == 403
    assert daemon.terminate()[0] == 0


def test_the_ci_example_gives_pull_request_plans_no_target_credentials() -> None:
    """The example workflow: target credentials only in the apply job (push to main); the
    pull-request plan runs with --no-refresh, which needs none."""
    workflow = yaml.safe_load(
        (Path(__file__).parents[1] / "examples" / "ci" / "github-actions.yml").read_text()
    )
    credentials = {"GITHUB_TOKEN", "CHAINLOOP_TOKEN", "UNKEY_ROOT_KEY", "IFTRUE_JWT"}
    assert credentials.isdisjoint(workflow["env"])
    plan = workflow["jobs"]["plan"]
    assert credentials.isdisjoint(plan.get("env", {}))
    [script] = [step["run"] for step in plan["steps"] if step.get("name") == "Plan"]
    assert "--no-refresh" in script
    apply = workflow["jobs"]["apply"]
    assert credentials <= set(apply["env"])
    assert "refs/heads/main" in apply["if"]
    # the apply job's secrets come from an environment that only main may use
    assert apply["environment"] == "slotkeeper"
    # both jobs take the targets file from the operator's variable, written outside the
    # checkout, never from the repository a pull request changes
    for job in (plan, apply):
        [step] = [s for s in job["steps"] if s.get("name") == "The operator's targets file"]
        assert step["env"]["TARGETS_YAML"] == "${{ vars.SLOTKEEPER_TARGETS_YAML }}"
        assert "$RUNNER_TEMP/targets.yaml" in step["run"]
        assert "SLOTKEEPER_TARGETS=" in step["run"]
