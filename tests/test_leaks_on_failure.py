"""No secret leaks on the paths where things fail.

Every target (GitHub, Chainloop, Unkey, iftrue) fails at once in one way — connections dropped
after the request, answers stalled past the target's timeout, 5xx, 401, 403 — while the CLI and
the daemon work against it; a git source over https is fetched with a token from a git host that
answers 401 or 500, drops, stalls, quotes the credential in an error page, or is not there.
Every output is then searched for each secret: stdout and stderr (JSON logs at debug level), the
saved plan, the ledger's bytes, the daemon's ``/status``, ``/metrics`` and dashboard pages. A
secret is found in any of these forms: whole, any 8 characters of it in a row, base64 (standard
and URL-safe, at any alignment: inside a longer encoded text too, such as git's
``Authorization: Basic`` of ``x-access-token:TOKEN``) and URL-encoded. Each test also shows that
the secret was in play (the fake or the git host received it) and that the failure was reported,
so that finding nothing means something.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import stamina
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.daemon_support import Running, Ui, free_port, wait_for
from tests.fakes.chainloop import FakeChainloop
from tests.fakes.github import FakeGitHub
from tests.fakes.iftrue import FakeIftrue
from tests.fakes.server import ALL_METHODS, WRITE_METHODS, FakeServer
from tests.fakes.unkey import FakeUnkey
from tests.helpers import (
    Run,
    deploy_key,
    environment,
    git,
    image,
    target_document,
    write_manifests,
    write_manifests_and_targets,
)

Sk = Callable[..., Run]

#: the targets' credentials: random-looking, so that no 8 characters of one occur by chance,
#: with characters that URL-encoding and base64 alignment change
SECRETS = {
    "GITHUB_TOKEN": "ghp_R4nD0mLeAkQ7xZ2vW9kP3mB8tY5cJ1hF",
    "CHAINLOOP_TOKEN": "cl+Hx7Qe2Wr9Ty4Ui1Op6As3Df8Gh5Jk/Lz=",
    "UNKEY_ROOT_KEY": "unkey_Mn3Bv8Cx1Za6Sd9Fg4Hj7Kl2Qw5Er0T",
    "IFTRUE_JWT": "eyQ9.Vb2Nm7Xc4Zl1Ka8Sj5Dh0Fg3Hp6Jq9W.Ee4Rt-Yu_Io",
}
WEBHOOK_SECRET = "whk/Tq3Lp8Zr1Mv6Nc9Xb4Kd7Hf2Js5Ga+"
GIT_TOKEN = "ghp_GiT5Tk9Lm2Nq7Rs4Uv1Wx8Yz3Ab6Cd0E"
#: a credential in the source URL itself (``https://user:password@host/``)
URL_PASSWORD = "p@ss/W0rd+Zq8Xm3Kv6Jn1Hb4Gt7Fy"
DEBUG = ("--log-format", "json", "--log-level", "debug")


# -- the scan ----------------------------------------------------------------------------------


def forms(secret: str) -> dict[str, str]:
    """Every form of ``secret`` a leak could take, by a name for the message."""
    found = {
        "whole": secret,
        "URL-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
    }
    for start in range(len(secret) - 7):
        found[f"characters {start}-{start + 7}"] = secret[start : start + 8]
    raw = secret.encode()
    for name, encode in (
        ("base64", base64.b64encode),
        ("URL-safe base64", base64.urlsafe_b64encode),
    ):
        # Inside a longer base64 text, the bytes from ``skip`` on start a 3-byte group for one of
        # skip = 0, 1, 2: their complete groups are encoded alike whatever comes around them.
        for skip in range(3):
            whole_groups = (len(raw) - skip) // 3 * 4
            found[f"{name} from byte {skip}"] = encode(raw[skip:]).decode()[:whole_groups]
        found[f"{name} of x-access-token:…"] = encode(b"x-access-token:" + raw).decode()
    return found


def leaks(outputs: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """Where each secret shows up in ``outputs`` (by name), in which form."""
    found = []
    for where, text in outputs.items():
        for name, secret in secrets.items():
            for form, needle in forms(secret).items():
                if needle in text:
                    found.append(f"{name} ({form}) in {where}")
    return found


class Outputs:
    """Everything slotkeeper said, by where it said it."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str) -> None:
        self.texts[f"{len(self.texts):02d} {where}"] = text

    def run(self, sk: Sk, *args: str) -> Run:
        result = sk(*DEBUG, *args)
        self.add(f"`{' '.join(args)}` stdout", result.out)
        self.add(f"`{' '.join(args)}` stderr", result.err)
        return result

    def files(self, *paths: Path) -> None:
        for path in paths:
            if path.is_file():
                self.add(str(path), path.read_bytes().decode("latin-1"))

    def ledger(self, workdir: Path) -> None:
        self.files(*sorted((workdir / ".slotkeeper").glob("state.db*")))

    def pages(self, get: Callable[[str], httpx.Response], label: str) -> None:
        """The dashboard's pages and their JSON twins (and the daemon's metrics)."""
        for path in (
            "/status",
            "/",
            "/keys",
            "/slots/production/api",
            "/status/slots/production/api",
            "/metrics",
        ):
            self.add(f"{label} GET {path}", get(path).text)

    def daemon_pages(self, daemon: Running, label: str) -> None:
        self.pages(daemon.get, label)

    def text(self) -> str:
        return "\n".join(self.texts.values())

    def assert_no_leak(self, secrets: Mapping[str, str]) -> None:
        found = leaks(self.texts, secrets)
        assert not found, "secrets leaked:\n" + "\n".join(found)


def test_the_scan_finds_every_form() -> None:
    """The scan itself: a secret is found whole, cut to 8 characters, base64-encoded inside a
    longer text at each alignment, in git's Basic credential, and URL-encoded; a text without
    it is clean."""
    secret = SECRETS["CHAINLOOP_TOKEN"]
    for prefix in (b"", b"a", b"ab"):
        inside = base64.b64encode(prefix + b"Bearer " + secret.encode() + b"\r\n").decode()
        assert leaks({"header": inside}, {"token": secret})
        urlsafe = base64.urlsafe_b64encode(prefix + secret.encode()).decode()
        assert leaks({"cookie": urlsafe}, {"token": secret})
    basic = base64.b64encode(f"x-access-token:{GIT_TOKEN}".encode()).decode()
    assert leaks({"trace": f"Authorization: Basic {basic}"}, {"git": GIT_TOKEN})
    assert leaks({"url": f"https://u:{quote(URL_PASSWORD, safe='')}@h/"}, {"p": URL_PASSWORD})
    assert leaks({"log": f"token={secret[5:13]}…"}, {"token": secret}) == [
        "token (characters 5-12) in log"
    ]
    assert leaks({"log": "ghp_R4nD0mL"[:7] + "…", "x": secret[:7]}, SECRETS) == []


# -- the targets -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping in this process (stamina's test mode); the daemon sleeps."""
    with stamina.set_testing(True, attempts=5):
        yield


@dataclass
class Fakes:
    github: FakeGitHub
    chainloop: FakeChainloop
    unkey: FakeUnkey
    iftrue: FakeIftrue

    def all(self) -> dict[str, FakeServer]:
        return {
            "GITHUB_TOKEN": self.github,
            "CHAINLOOP_TOKEN": self.chainloop,
            "UNKEY_ROOT_KEY": self.unkey,
            "IFTRUE_JWT": self.iftrue,
        }

    def received_their_secrets(self) -> bool:
        """Whether each fake was sent its secret (so there was something to leak)."""
        return all(
            any(secret in r.headers.get("authorization", "") for r in fake.requests)
            for name, fake in self.all().items()
            for secret in [SECRETS[name]]
        )


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    """The four fakes, each accepting its secret, which the environment holds."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    with (
        FakeGitHub(token=SECRETS["GITHUB_TOKEN"]) as github,
        FakeChainloop(token=SECRETS["CHAINLOOP_TOKEN"]) as chainloop,
        FakeUnkey(root_key=SECRETS["UNKEY_ROOT_KEY"]) as unkey,
        FakeIftrue(token=SECRETS["IFTRUE_JWT"]) as iftrue,
    ):
        yield Fakes(github, chainloop, unkey, iftrue)


def fail(fakes: Fakes, how: str, *, calls: str) -> None:
    """Make every target fail by ``how`` (a key of FAILURES), on every call or on writes only
    (then the refresh reads what they hold, and the writes are tried and fail)."""
    for fake in fakes.all().values():
        fake.knob_methods = set(WRITE_METHODS if calls == "writes" else ALL_METHODS)
        if how == "dropped":
            fake.drop_rate = 1.0
        elif how == "stalled":  # past the targets' timeoutSeconds (1)
            fake.stall_rate, fake.stall_seconds = 1.0, 3.0
        elif how == "5xx":
            fake.error_rate = 1.0
        elif how == "401" or isinstance(fake, FakeIftrue):
            fake.token = "someone-else"  # iftrue's API has no 403 of its own: a 401 there
        else:
            fake.forbidden = True  # type: ignore[attr-defined]


#: how every target fails, and words the failure is reported with (one of them)
FAILURES = {
    "dropped": ("RemoteProtocolError",),
    "stalled": ("ReadTimeout",),
    "5xx": (": 500 ", ": 502 ", ": 503 "),  # whichever a fake drew
    "401": ("permission denied",),
    "403": ("permission denied",),
}
#: (how, calls): the knobs fail every call or only writes; a credential refused is refused on
#: every call
CASES = [
    *((how, calls) for how in ("dropped", "stalled", "5xx") for calls in ("every", "writes")),
    ("401", "every"),
    ("403", "every"),
]
#: the stalls wait out every target's timeout on every try (15-18 s each): `make slow` runs
#: them; a stall is also scanned, quickly, by the git-source test below
SLOW = pytest.mark.slow
CLI_CASES = [
    pytest.param(how, calls, id=f"{how}-{calls}", marks=[SLOW] if how == "stalled" else [])
    for how, calls in CASES
]


def declare(root: Path, fakes: Fakes, *, version: str, read_only: bool) -> None:
    """One environment on all four targets (timeout 1 s), with a deploy key; the manifests are
    committed in ``root``, a git work tree of acme/web, whose commit GitHub knows."""
    targets = {
        "github": {
            "type": "github",
            "baseUrl": fakes.github.base_url,
            "token": {"env": "GITHUB_TOKEN"},
        },
        "chainloop": {
            "type": "chainloop",
            "baseUrl": fakes.chainloop.base_url,
            "token": {"env": "CHAINLOOP_TOKEN"},
        },
        "unkey": {
            "type": "unkey",
            "baseUrl": fakes.unkey.base_url,
            "rootKey": {"env": "UNKEY_ROOT_KEY"},
            "project": "acme",
            "app": "api",
            "pollTimeoutSeconds": 2,
        },
        "iftrue": {
            "type": "iftrue",
            "baseUrl": fakes.iftrue.base_url,
            "token": {"env": "IFTRUE_JWT"},
            "memberId": "7",
            "repositoryUrl": "https://github.com/acme/web",
        },
    }
    write_manifests_and_targets(
        root / "m",
        environment(
            "production",
            {"api": image(version=version)},
            repository="acme/web",
            targets=list(targets),
            deployKeys=[deploy_key("deployer", readOnly=read_only)],
        ),
        *(target_document(name, timeoutSeconds=1, **spec) for name, spec in targets.items()),
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", f"release {version}")
    fakes.github.add_commit("acme/web", git(root, "rev-parse", "HEAD"))


def work_tree(workdir: Path) -> None:
    """``workdir`` as a clone of acme/web, its ledger and private keys ignored."""
    (workdir / ".gitignore").write_text(".slotkeeper/\n")
    git(workdir, "init", "-q", "-b", "main")
    git(workdir, "remote", "add", "origin", "https://github.com/acme/web.git")


@pytest.mark.parametrize(("how", "calls"), CLI_CASES)
def test_failing_targets_leak_no_secret_through_the_cli(
    sk: Sk, workdir: Path, fakes: Fakes, ui: Callable[..., Ui], how: str, calls: str
) -> None:
    """Every target failing by `how` (on every call, or on writes only) while a new version is
    applied and a key rotated: no output of apply, plan, status, history or keys list, no plan
    file, no ledger byte and no page of the dashboard (`slotkeeper ui`) holds any form of any
    credential."""
    work_tree(workdir)
    outputs = Outputs()
    declare(workdir, fakes, version="v1", read_only=True)
    assert outputs.run(sk, "apply", "--yes", "-m", "m").code == 0
    declare(workdir, fakes, version="v2", read_only=False)  # a new version and a new key
    fail(fakes, how, calls=calls)
    assert outputs.run(sk, "apply", "--yes", "-m", "m").code == 1
    outputs.run(sk, "plan", "-m", "m", "--out", "retry.plan")
    outputs.files(workdir / "retry.plan")
    outputs.run(sk, "plan", "-m", "m", "--format", "markdown")
    for command in (
        ("status",),
        ("status", "--json"),
        ("history", "production"),
        ("history", "production", "--json"),
        ("keys", "list", "--all"),
        ("keys", "list", "--all", "--json"),
    ):
        assert outputs.run(sk, *command).code == 0
    outputs.ledger(workdir)
    dashboard = ui()
    outputs.pages(dashboard.get, "ui")
    outputs.add("ui stderr", dashboard.stop()[1])

    assert fakes.received_their_secrets()
    said = outputs.text()
    assert any(words in said for words in FAILURES[how]), "the failure was not reported"
    assert '"event": "target.request' in said  # debug: every request logged
    outputs.assert_no_leak(SECRETS)


#: the daemon sleeps between retries, so the slowest ways to fail (stalls, 5xx) are left to the
#: CLI test (whose pages `slotkeeper ui` serves from the same ledger), and drops (30 s of
#: back-off) to `make slow`
@pytest.mark.parametrize("how", [pytest.param("dropped", marks=SLOW), "401", "403"])
def test_failing_targets_leak_no_secret_through_the_daemon(
    workdir: Path, fakes: Fakes, running: Callable[..., Running], how: str
) -> None:
    """The daemon reconciling a new version while every target fails by `how`: its debug log,
    /status, /metrics and dashboard pages hold no form of any credential or of the webhook
    secret."""
    work_tree(workdir)
    declare(workdir, fakes, version="v1", read_only=True)
    daemon = running(
        "-m",
        "m",
        "--resync-interval",
        "1h",
        log_level="debug",
        environ={
            "GITHUB_TOKEN": SECRETS["GITHUB_TOKEN"],
            "SLOTKEEPER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    outputs = Outputs()
    outputs.daemon_pages(daemon, "before")
    first = daemon.status()["last_reconcile"]
    assert first["result"] == "success", first
    fail(fakes, how, calls="every")
    declare(workdir, fakes, version="v2", read_only=False)
    daemon.process.send_signal(signal.SIGHUP)

    def failed_on_v2() -> bool:
        # the reconcile of v2 failed: it is the last one, or a later one (the watcher also
        # saw the edit) holds its work back because of that failure
        last = daemon.status()["last_reconcile"]
        backing_off = any(
            b["reason"].startswith("backing off after failures") for b in last["blocked"]
        )
        failed = last["result"] == "failure" or backing_off
        return bool(last["id"] != first["id"] and failed and last["finished_at"])

    wait_for(failed_on_v2, timeout=100, what="a reconcile of v2 against failing targets")
    outputs.daemon_pages(daemon, "after")
    outputs.add("unsigned webhook", daemon.hook(b'{"ref": "refs/heads/main"}', sign=False).text)
    code, err = daemon.terminate()
    assert code == 0
    outputs.add("daemon stderr", err)
    outputs.ledger(workdir)

    assert fakes.received_their_secrets()
    said = outputs.text()
    assert any(words in said for words in FAILURES[how]), "the failure was not reported"
    assert '"event": "target.request' in said  # debug: every request logged
    outputs.assert_no_leak({**SECRETS, "SLOTKEEPER_WEBHOOK_SECRET": WEBHOOK_SECRET})


# -- a git source over https -------------------------------------------------------------------


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"x-access-token:{password}".encode()).decode()


class GitHost:
    """A git host on loopback: git's smart HTTP protocol (``git http-backend``) over TLS for the
    bare repositories under ``root``, to whoever sends the Basic credential of ``password``.
    ``mode`` makes every request fail instead: ``401`` (the credential refused), ``500``,
    ``drop`` (the connection closed unanswered), ``stall`` (no answer for ``stall_seconds``),
    ``echo`` (a 502 whose body quotes the credential it was sent, once there is one)."""

    def __init__(self, root: Path, password: str, certificate: Path, key: Path) -> None:
        self.root = root
        self.password = password
        self.mode = "ok"
        self.stall_seconds = 8.0
        self.authorizations: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self._server = _TlsServer(self, context)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GitHost:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: GitHost, context: ssl.SSLContext) -> None:
        self.host = host
        self.context = context
        super().__init__(("127.0.0.1", 0), _GitHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        return self.context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (git giving up on a stall) is no error of the host."""


class _GitHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def setup(self) -> None:
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        host = self.server.host
        body = self._body()
        authorization = self.headers.get("Authorization", "")
        host.authorizations.append(authorization)
        if host.mode == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if host.mode == "stall":
            time.sleep(host.stall_seconds)
            self.close_connection = True
            return
        if host.mode == "500":
            self._answer(500, {"Content-Type": "text/plain"}, b"internal error\n")
        elif host.mode == "echo" and authorization:  # a proxy's error page quoting the request
            quoted = f"you sent Authorization: {authorization}\n".encode()
            self._answer(502, {"Content-Type": "text/plain"}, quoted)
        elif host.mode == "401" or authorization != basic(host.password):
            self._answer(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"")
        else:
            self._backend(body)

    do_POST = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _backend(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        environ = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.host.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=environ, capture_output=True, check=True
        ).stdout
        separator = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(separator)
        status, headers = 200, {}
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers[name] = value.strip()
        self._answer(status, headers, payload)

    def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own authority, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slotkeeper test git host")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "host.pem", directory / "host.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def git_host(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GitHost]:
    """acme/web.git (one environment under envs/) on a TLS git host that git trusts; git gives
    up on a connection slower than 1 byte a second for 2 seconds."""
    root = tmp_path_factory.mktemp("git-host")
    certificate, key = self_signed(root)
    monkeypatch.setenv("GIT_SSL_CAINFO", str(certificate))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)  # no credential helper of this machine
    monkeypatch.setenv("GIT_HTTP_LOW_SPEED_LIMIT", "1")
    monkeypatch.setenv("GIT_HTTP_LOW_SPEED_TIME", "2")
    work = root / "work"
    write_manifests(work / "envs", environment("production", {"api": image()}))
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "manifests")
    (root / "acme").mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(root / "acme" / "web.git")], check=True
    )
    with GitHost(root, GIT_TOKEN, certificate, key) as host:
        yield host


#: how the git host fails, and words of git's message for it
GIT_FAILURES = {
    "401": "terminal prompts disabled",
    "500": "500",
    "drop": "unable to access",  # how the TLS library puts it varies
    "stall": "Operation too slow",
    "echo": "remote: you sent Authorization: Basic",
}


def git_source(url: str) -> tuple[str, ...]:
    return ("--source", f"git+{url}/acme/web.git", "--path", "envs", "--branch", "main")


def test_a_git_token_leaks_nowhere_when_the_fetch_fails(
    sk: Sk, workdir: Path, git_host: GitHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --once` from an https git source with SLOTKEEPER_GIT_TOKEN (and, another time, a
    password in the URL) succeeds, then fails on a 401, a 500, a dropped or stalled connection
    and an unreachable host: no output, log or ledger byte holds any form of either."""
    outputs = Outputs()
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN", GIT_TOKEN)
    source = git_source(git_host.url)
    assert outputs.run(sk, "run", "--once", *source).code == 0
    assert basic(GIT_TOKEN) in git_host.authorizations  # the token was sent
    for mode, words in GIT_FAILURES.items():
        git_host.mode = mode
        failed = outputs.run(sk, "run", "--once", *source)
        assert failed.code == 1 and words in failed.out + failed.err, mode
    unreachable = outputs.run(sk, "run", "--once", *git_source(f"https://127.0.0.1:{free_port()}"))
    assert unreachable.code == 1 and "Failed to connect" in unreachable.out + unreachable.err

    monkeypatch.delenv("SLOTKEEPER_GIT_TOKEN")
    git_host.password, git_host.mode = URL_PASSWORD, "ok"
    with_password = git_host.url.replace(
        "https://", f"https://x-access-token:{quote(URL_PASSWORD, safe='')}@"
    )
    assert outputs.run(sk, "run", "--once", *git_source(with_password)).code == 0
    assert basic(URL_PASSWORD) in git_host.authorizations  # the password was sent
    # the credential in the URL was sent and refused: git says so rather than asking for one
    for mode, words in {**GIT_FAILURES, "401": "Authentication failed"}.items():
        git_host.mode = mode
        failed = outputs.run(sk, "run", "--once", *git_source(with_password))
        assert failed.code == 1 and words in failed.out + failed.err, mode
    outputs.run(sk, "status", "--json")
    outputs.ledger(workdir)
    outputs.assert_no_leak({"SLOTKEEPER_GIT_TOKEN": GIT_TOKEN, "URL password": URL_PASSWORD})
    assert "git fetch of https://***@127.0.0.1" in outputs.text()  # the URL, its password out


def next_reconcile(daemon: Running, *, after: str) -> dict[str, Any]:
    """The daemon's next finished reconcile after the one with id ``after``."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(daemon.status()["last_reconcile"])
        return found["id"] != after and found["finished_at"] is not None

    wait_for(finished, timeout=60, what=f"a reconcile after {after}")
    return found


def test_a_git_token_leaks_nowhere_from_the_daemon(
    workdir: Path,
    git_host: GitHost,
    running: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon following an https git source with SLOTKEEPER_GIT_TOKEN, the host failing
    one way after another: /status shows each failure, and no page, metric or log line holds
    any form of the token."""
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN", GIT_TOKEN)
    daemon = running(
        *git_source(git_host.url),
        "--poll-interval",
        "1h",
        "--resync-interval",
        "1h",
        log_level="debug",
    )
    outputs = Outputs()
    outputs.daemon_pages(daemon, "fetched")
    last = daemon.status()["last_reconcile"]
    assert last["result"] == "success", last
    for mode, words in GIT_FAILURES.items():
        git_host.mode = mode
        daemon.process.send_signal(signal.SIGHUP)
        last = next_reconcile(daemon, after=last["id"])
        assert last["result"] == "error" and words in last["error"], last
        outputs.daemon_pages(daemon, mode)
    code, err = daemon.terminate()
    assert code == 0
    outputs.add("daemon stderr", err)
    outputs.ledger(workdir)
    assert basic(GIT_TOKEN) in git_host.authorizations
    assert '"event": "reconcile.failed"' in outputs.text()
    outputs.assert_no_leak({"SLOTKEEPER_GIT_TOKEN": GIT_TOKEN})
