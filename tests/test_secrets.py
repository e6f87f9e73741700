"""No secret ever leaves where it belongs: a full run of the CLI and the daemon with
recognisable fake secrets, and every output scanned for them."""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import stamina
from cryptography.hazmat.primitives import serialization

from tests.daemon_support import Running, wait_for
from tests.fakes.chainloop import FakeChainloop
from tests.fakes.github import FakeGitHub
from tests.fakes.iftrue import FakeIftrue
from tests.fakes.unkey import FakeUnkey
from tests.helpers import Run, deploy_key, environment, image, write_manifests_and_targets

Sk = Callable[..., Run]
SECRETS = {
    "GITHUB_TOKEN": "ghp_LEAKCHECKgithub0123456789abcdef",
    "CHAINLOOP_TOKEN": "cl_LEAKCHECKchainloop0123456789",
    "UNKEY_ROOT_KEY": "unkey_LEAKCHECKroot0123456789",
    "IFTRUE_JWT": "eyJLEAKCHECK.iftrue.jwt0123456789",
    "SLOTKEEPER_GIT_TOKEN": "ghp_LEAKCHECKgit0123456789abcdef",
}
WEBHOOK_SECRET = "LEAKCHECK-webhook-secret-0123456789"


@pytest.fixture
def fakes() -> Iterator[tuple[FakeGitHub, FakeChainloop, FakeUnkey, FakeIftrue]]:
    with (
        FakeGitHub(token=SECRETS["GITHUB_TOKEN"]) as github,
        FakeChainloop(token=SECRETS["CHAINLOOP_TOKEN"]) as chainloop,
        FakeUnkey(root_key=SECRETS["UNKEY_ROOT_KEY"]) as unkey,
        FakeIftrue(token=SECRETS["IFTRUE_JWT"]) as iftrue,
    ):
        yield github, chainloop, unkey, iftrue


def declare(root: Path, fakes: tuple[FakeGitHub, FakeChainloop, FakeUnkey, FakeIftrue]) -> None:
    github, chainloop, unkey, iftrue = fakes
    env = environment(
        "production",
        {"api": image(version="v1")},
        repository="acme/web",
        targets=["github", "chainloop", "unkey", "iftrue"],
        deployKeys=[deploy_key("deployer")],
    )
    targets = {
        "github": {"type": "github", "baseUrl": github.base_url, "token": {"env": "GITHUB_TOKEN"}},
        "chainloop": {
            "type": "chainloop",
            "baseUrl": chainloop.base_url,
            "token": {"env": "CHAINLOOP_TOKEN"},
        },
        "unkey": {
            "type": "unkey",
            "baseUrl": unkey.base_url,
            "rootKey": {"env": "UNKEY_ROOT_KEY"},
            "project": "acme",
            "app": "api",
        },
        "iftrue": {
            "type": "iftrue",
            "baseUrl": iftrue.base_url,
            "token": {"env": "IFTRUE_JWT"},
            "memberId": "7",
            "repositoryUrl": "https://github.com/acme/web",
        },
    }
    write_manifests_and_targets(
        root,
        env,
        *(
            {
                "apiVersion": "slotkeeper/v1",
                "kind": "Target",
                "metadata": {"name": name},
                "spec": spec,
            }
            for name, spec in targets.items()
        ),
    )


def private_key_needles(secrets_dir: Path) -> set[str]:
    """Encodings of every private key under the secrets directory that a leak could take."""
    needles = set()
    for path in secrets_dir.rglob("*"):
        if path.is_file():
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
            raw = key.private_bytes(  # type: ignore[union-attr]
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            needles |= {raw.hex(), base64.b64encode(raw).decode()[:40]}
            needles.add(path.read_text().splitlines()[1][:40])
    return needles


def test_a_full_run_leaks_no_secret(
    sk: Sk,
    workdir: Path,
    fakes: tuple[FakeGitHub, FakeChainloop, FakeUnkey, FakeIftrue],
    monkeypatch: pytest.MonkeyPatch,
    running: Callable[..., Running],
) -> None:
    """Tokens, the webhook secret and private keys appear in no log, plan file, ledger byte,
    status, history, metrics, error message or exception text — CLI and daemon alike."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLOTKEEPER_WEBHOOK_SECRET", WEBHOOK_SECRET)
    (workdir / ".gitignore").write_text(".slotkeeper/\n")  # the ledger and private keys
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=workdir, check=True)
    # The manifests are acme/web itself, cloned with a token in the URL: the repository is read
    # from that URL, its credentials never.
    origin = f"https://x-access-token:{SECRETS['GITHUB_TOKEN']}@github.com/acme/web.git"
    subprocess.run(["git", "remote", "add", "origin", origin], cwd=workdir, check=True)
    declare(workdir / "m", fakes)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "feat: first (#3)",
        ],
        cwd=workdir,
        check=True,
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, check=True
    )
    fakes[0].add_commit("acme/web", head.stdout.strip())
    debug = ("--log-format", "json", "--log-level", "debug")
    outputs: list[str] = []

    def run(*args: str) -> Run:
        result = sk(*debug, *args)
        outputs.append(result.out + result.err)
        return result

    with stamina.set_testing(True):
        run("validate", "-m", "m")
        run("plan", "-m", "m", "--out", "p.plan")
        assert run("apply", "p.plan", "-m", "m").code == 0
        for command in (
            ("status",),
            ("status", "--json"),
            ("history", "production"),
            ("history", "production", "--json"),
            ("keys", "list", "--json"),
            ("plan", "-m", "m", "--format", "markdown"),
        ):
            run(*command)
        github = fakes[0]
        github.forbidden = True  # errors and failed syncs must not carry the token either
        write_manifests_and_targets(workdir / "m", {"apiVersion": "x"})
        run("apply", "--yes", "-m", "m")  # invalid manifests
        declare(workdir / "m", fakes)
        manifest = workdir / "m" / "envs.yaml"
        manifest.write_text(manifest.read_text().replace("version: v1", "version: v2"))
        assert run("apply", "--yes", "-m", "m").code == 1
        github.forbidden = False
        # The paths of the trust boundary: targets refused by the egress guard (loopback not
        # allowed), and a Target among the manifests naming every credential held.
        monkeypatch.delenv("SLOTKEEPER_EGRESS_ALLOW")
        assert run("apply", "--yes", "-m", "m").code == 1
        assert run("status").code == 0
        monkeypatch.setenv("SLOTKEEPER_EGRESS_ALLOW", "127.0.0.0/8, ::1")
        hostile = workdir / "m" / "zz-hostile.yaml"
        for name in [*SECRETS, "SLOTKEEPER_WEBHOOK_SECRET"]:
            hostile.write_text(
                "apiVersion: slotkeeper/v1\nkind: Target\nmetadata: {name: github}\n"
                f"spec: {{type: github, baseUrl: 'http://127.0.0.1:9', token: {{env: {name}}}}}\n"
            )
            assert run("plan", "-m", "m").code == 1
        hostile.unlink()

    daemon = running(
        "-m", "m", "--state", "sqlite:///.slotkeeper/state.db", "--resync-interval", "10m"
    )
    outputs.append(daemon.get("/status").text)
    outputs.append(daemon.get("/").text)
    outputs.append(daemon.get("/metrics").text)
    outputs.append(daemon.hook(b"{}", sign=False).text)
    daemon.hook(b"{not json", delivery="bad-json")
    wait_for(lambda: daemon.get("/readyz").status_code == 200, what="ready")
    code, err = daemon.terminate()
    assert code == 0
    outputs.append(err)

    outputs.append(Path("p.plan").read_text())
    for path in (workdir / ".slotkeeper").glob("state.db*"):
        outputs.append(path.read_bytes().decode("latin-1"))
    haystack = "\n".join(outputs)
    assert "permission denied" in haystack  # the failure was reported...
    assert "refused to connect" in haystack  # ...and the egress refusal...
    assert "Target documents belong to the operator" in haystack  # ...and the hostile file
    for name, value in {**SECRETS, "SLOTKEEPER_WEBHOOK_SECRET": WEBHOOK_SECRET}.items():
        assert value not in haystack, f"{name} leaked"
    for needle in private_key_needles(workdir / ".slotkeeper" / "secrets"):
        assert needle not in haystack, "a private key leaked"
    assert "Traceback" not in haystack


def test_secret_files_are_0600_in_0700_directories(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file under the secrets directory is 0600 and every directory 0700."""
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"api": image()},
            deployKeys=[deploy_key("a"), deploy_key("b", secret={"file": "x/y/b"})],
        ),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    root = workdir / ".slotkeeper" / "secrets"
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_malformed_webhook_bodies_are_refused(
    workdir: Path, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signed but malformed body is 400 and triggers nothing; a missing length is refused."""
    write_manifests_and_targets(workdir / "m", environment("staging", {"api": image()}))
    daemon = running("-m", "m", "--resync-interval", "10m")
    before = daemon.reconciles()
    assert daemon.hook(b"{not json", delivery="x-1").status_code == 400
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as raw:
        raw.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert raw.recv(64).split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
    assert daemon.reconciles() == before
    assert daemon.terminate()[0] == 0
