"""Deploy keys on the ledger side: create, rotate, revoke, secret files and their modes."""

from __future__ import annotations

import base64
import stat
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from slotkeeper.errors import SecretError
from slotkeeper.keys import SecretSink, fingerprint, generate_key
from tests.helpers import Run, age_ledger, deploy_key, environment, image, write_manifests

Sk = Callable[..., Run]
SECRETS = Path(".slotkeeper/secrets")


def declare(manifests: Path, *keys: dict, protected: bool = False) -> None:
    write_manifests(
        manifests,
        environment("production", {"api": image()}, deployKeys=list(keys), protected=protected),
    )


def keys_json(sk: Sk, *flags: str) -> list[dict]:
    result = sk("keys", "list", "--json", *flags)
    assert result.code == 0, result.err
    return list(result.json())


def public_of(private_pem: bytes) -> str:
    private = serialization.load_ssh_private_key(private_pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def manifests(workdir: Path) -> Path:
    return workdir / "manifests"


def test_declared_key_is_created_with_private_half_in_a_0600_file(sk: Sk, manifests: Path) -> None:
    """A declared key becomes an ed25519 pair: public key + fingerprint in the ledger, private
    key in a 0600 file in a 0700 directory, and the two halves match."""
    declare(manifests, deploy_key("deployer", rotateAfter="30d"))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    [key] = keys_json(sk)
    assert key["repository"] == "acme/web" and key["title"] == "deployer"
    assert key["status"] == "ACTIVE" and key["read_only"] is True
    assert key["public_key"].startswith("ssh-ed25519 ")
    assert key["fingerprint"] == fingerprint(key["public_key"])
    assert key["next_rotation"] is not None
    secret = SECRETS / "deployer"
    assert mode(secret) == 0o600
    assert mode(SECRETS) == 0o700
    assert key["public_key"].split()[:2] == public_of(secret.read_bytes()).split()
    assert "PRIVATE KEY" not in Path(".slotkeeper/state.db").read_bytes().decode("latin-1")


def test_nested_secret_paths_get_0700_directories(sk: Sk, manifests: Path) -> None:
    """A secret path with directories creates them 0700 under the secrets directory."""
    declare(manifests, deploy_key("deployer", secret={"file": "prod/keys/deployer"}))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    assert mode(SECRETS / "prod") == 0o700
    assert mode(SECRETS / "prod" / "keys") == 0o700
    assert mode(SECRETS / "prod" / "keys" / "deployer") == 0o600


def test_key_rotates_when_due(sk: Sk, manifests: Path, state: Path) -> None:
    """`plan --at` shows the rotation due next month; once that time has come, applying a plan
    rotates the key: a new pair and file, the old key ROTATED and pointing at the new one."""
    declare(manifests, deploy_key("deployer", rotateAfter="30d"))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    [old] = keys_json(sk)
    old_private = (SECRETS / "deployer").read_bytes()
    assert "rotate_key" not in sk("plan", "-m", "manifests", "--at", "+29d").out
    assert "older than rotateAfter 30d" in sk("plan", "-m", "manifests", "--at", "+31d").out
    assert "rotate_key" not in sk("plan", "-m", "manifests", "--out", "early.plan").out
    age_ledger(state, "deploy_keys", "created_at", timedelta(days=31))
    planned = sk("plan", "-m", "manifests", "--out", "rotate.plan")
    assert planned.code == 0
    assert "rotate_key" in planned.out and "older than rotateAfter 30d" in planned.out
    assert sk("apply", "rotate.plan").code == 0
    [new] = keys_json(sk)
    assert new["id"] != old["id"] and new["fingerprint"] != old["fingerprint"]
    retired = {k["id"]: k for k in keys_json(sk, "--all")}[old["id"]]
    assert retired["status"] == "ROTATED" and retired["replaced_by"] == new["id"]
    private = (SECRETS / "deployer").read_bytes()
    assert private != old_private and mode(SECRETS / "deployer") == 0o600
    assert new["public_key"].split()[:2] == public_of(private).split()


def test_plan_at_accepts_iso_times_and_rejects_garbage(sk: Sk, manifests: Path) -> None:
    """--at takes an ISO-8601 time; anything else is a usage error naming --at."""
    declare(manifests, deploy_key("deployer", rotateAfter="30d"))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    assert "rotate_key" in sk("plan", "-m", "manifests", "--at", "2099-01-01").out
    bad = sk("plan", "-m", "manifests", "--at", "next tuesday")
    assert bad.code == 1 and "--at" in bad.err


def test_keys_rotate_on_demand_touches_nothing_else(sk: Sk, manifests: Path) -> None:
    """`keys rotate REPO/TITLE` rotates that key now, applies no other change, and keeps what
    a guard holds back pending."""

    def declare_with(slots: dict) -> None:
        write_manifests(
            manifests,
            environment(
                "production",
                slots,
                deployKeys=[deploy_key("deployer"), deploy_key("other")],
                protected=True,
            ),
        )

    declare_with({"api": image(), "web": image("web"), "db": image("db")})
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    declare_with({"api": image(version="v2"), "db": image("db")})  # web's removal is blocked
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    before = {k["title"]: k for k in keys_json(sk)}

    declare_with({"api": image(version="v3"), "db": image("db")})
    result = sk("keys", "rotate", "acme/web/deployer", "--yes", "-m", "manifests")
    assert result.code == 0, result.err
    after = {k["title"]: k for k in keys_json(sk)}
    assert after["deployer"]["fingerprint"] != before["deployer"]["fingerprint"]
    assert after["other"] == before["other"]
    history = sk("history", "production/api", "--json").json()
    assert [r["artifact"]["version"] for r in history] == ["v2", "v1"]
    web = {row["slot"]: row for row in sk("status", "--json").json()["slots"]}["web"]
    assert web["status"] == "DEPLOYED"
    assert web["pending"] is not None and "protected" in web["pending"]["blocked"]
    missing = sk("keys", "rotate", "acme/web/nope", "--yes", "-m", "manifests")
    assert missing.code == 1 and "no managed deploy key named acme/web/nope" in missing.err


def test_removed_key_is_revoked_and_its_secret_removed(sk: Sk, manifests: Path) -> None:
    """A key that leaves the manifests is REVOKED and its private file deleted."""
    declare(manifests, deploy_key("deployer"), deploy_key("other"))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    declare(manifests, deploy_key("other"))
    assert "revoke_key" in sk("plan", "-m", "manifests").out
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    assert [k["title"] for k in keys_json(sk)] == ["other"]
    revoked = [k for k in keys_json(sk, "--all") if k["title"] == "deployer"]
    assert [k["status"] for k in revoked] == ["REVOKED"]
    assert revoked[0]["next_rotation"] is None
    assert not (SECRETS / "deployer").exists()
    assert (SECRETS / "other").exists()


def test_revocation_in_a_protected_environment_is_blocked(sk: Sk, manifests: Path) -> None:
    """Removing a key from a protected environment cuts access: it needs --allow-decommission."""
    declare(manifests, deploy_key("deployer"), protected=True)
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    declare(manifests, protected=True)
    out = sk("apply", "--yes", "-m", "manifests").out
    assert "1 blocked" in out
    assert [k["status"] for k in keys_json(sk)] == ["ACTIVE"]
    assert "pending revoke_key acme/web/deployer" in sk("status").out
    assert sk("apply", "--yes", "-m", "manifests", "--allow-decommission").code == 0
    assert keys_json(sk) == []


def test_moving_a_secret_file_rotates_and_removes_the_old_file(sk: Sk, manifests: Path) -> None:
    """A key whose secret moves gets a fresh pair at the new path; the old file is removed."""
    declare(manifests, deploy_key("deployer"))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    declare(manifests, deploy_key("deployer", secret={"file": "moved"}))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    assert not (SECRETS / "deployer").exists()
    assert mode(SECRETS / "moved") == 0o600


def test_private_keys_never_reach_outputs_or_the_ledger(
    sk: Sk, manifests: Path, workdir: Path
) -> None:
    """No byte of a private key appears in plan files, JSON output, logs or the ledger file."""
    declare(manifests, deploy_key("deployer"))
    sk("plan", "-m", "manifests", "--out", "p.plan")
    runs = [
        sk("--log-format", "json", "--log-level", "debug", "apply", "p.plan"),
        sk("keys", "list", "--json", "--all"),
        sk("status", "--json"),
        sk("history", "production", "--json"),
    ]
    private = serialization.load_ssh_private_key((SECRETS / "deployer").read_bytes(), password=None)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    # The secret scalar in every encoding a leak could take.
    needles = {base64.b64encode(raw).decode()[:40], raw.hex(), base64.b64encode(raw[:30]).decode()}
    haystacks = [r.out + r.err for r in runs]
    haystacks.append(Path("p.plan").read_text())
    for path in (workdir / ".slotkeeper").glob("state.db*"):
        haystacks.append(path.read_bytes().decode("latin-1"))
    for haystack in haystacks:
        assert "PRIVATE KEY" not in haystack
        assert not any(needle in haystack for needle in needles)


def test_secret_sink_refuses_paths_leaving_its_root(tmp_path: Path) -> None:
    """The sink itself refuses '..' and absolute paths, whatever the manifests allowed."""
    sink = SecretSink(tmp_path / "secrets")
    for name in ("../escape", "/etc/passwd", "a/../../b", "."):
        with pytest.raises(SecretError):
            sink.write(name, b"x")
    assert not (tmp_path / "escape").exists()


def test_fingerprint_matches_openssh_format() -> None:
    """Fingerprints are SHA256: plus unpadded base64, 43 characters, as ssh-keygen prints."""
    pair = generate_key("slotkeeper:test")
    assert pair.public_key.endswith(" slotkeeper:test")
    assert pair.fingerprint.startswith("SHA256:")
    assert len(pair.fingerprint.removeprefix("SHA256:")) == 43
    assert "private_key" not in repr(pair)


def test_fingerprint_agrees_with_ssh_keygen(tmp_path: Path) -> None:
    """Our fingerprint is the one OpenSSH's own ssh-keygen prints for the same public key."""
    pair = generate_key("slotkeeper:test")
    public = tmp_path / "key.pub"
    public.write_text(pair.public_key + "\n")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(public)], capture_output=True, text=True, check=True
    ).stdout
    assert printed.split()[1] == pair.fingerprint


def test_keys_list_human_table(sk: Sk, manifests: Path) -> None:
    """`keys list` prints one aligned row per key with fingerprint, access and next rotation."""
    declare(manifests)
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    assert sk("keys", "list").out.strip() == "No deploy keys recorded."
    declare(manifests, deploy_key("deployer", rotateAfter="2w", readOnly=False))
    assert sk("apply", "--yes", "-m", "manifests").code == 0
    [key] = keys_json(sk)
    header, row = sk("keys", "list").out.splitlines()
    assert header.split()[:5] == ["REPOSITORY", "TITLE", "ENVIRONMENT", "STATUS", "FINGERPRINT"]
    cells = row.split()
    assert cells[:6] == [
        "acme/web",
        "deployer",
        "production",
        "ACTIVE",
        key["fingerprint"],
        "read-write",
    ]
    assert key["next_rotation"][:10] in row
