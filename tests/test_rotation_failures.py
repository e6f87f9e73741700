"""A deploy key rotation that fails at each of its steps, on demand (`keys rotate`) and when due
(rotateAfter, a saved plan applied once the ledger has aged), through the CLI against the fake
GitHub.

The steps (execute.py): check the secrets directory is writable, register the new key, read it
back, then (ledger and private key file switch to it together) delete the old key. The contract:
a failure before the switch changes nothing locally (the old key stays ACTIVE, its file and its
registration stay; a key registered before the failure is left as an orphan for the next
refresh to delete); a failure after it leaves the new key fully in place and the old one ROTATED,
its deletion pending. Either way the private key file holds a key that GitHub has registered,
the repository is never without a managed key, and the next apply without faults converges.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import stamina

from tests.fakes.github import FakeGitHub
from tests.helpers import Run, age_ledger, deploy_key, environment, write_manifests_and_targets
from tests.test_github_target import target
from tests.test_keys import public_of

Sk = Callable[..., Run]
SECRETS = Path(".slotkeeper/secrets")
KEYS = "/repos/acme/web/keys"


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=5):
        yield


def body(public_key: str) -> str:
    """What GitHub compares of a public key: its type and base64, no comment."""
    return " ".join(public_key.split()[:2])


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` refuses new files, root included (root ignores modes: the immutable
    attribute stops it)."""
    directory.chmod(0o500)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o700)


@dataclass(frozen=True)
class Fault:
    """A failure of one step of the rotation: how to cause it and what it leaves."""

    step: str
    #: cause the fault; returns what undoes it
    arm: Callable[[FakeGitHub], Callable[[], None]]
    #: whether the ledger and the private key file switched to the new key
    switched: bool
    #: whether the old key was deleted from GitHub by the faulty run
    old_deleted: bool = False
    #: the exit code of the faulty run
    code: int = 1


def knob(**settings: Any) -> Callable[[FakeGitHub], Callable[[], None]]:
    """Set the fake's knobs; undo restores them."""

    def arm(gh: FakeGitHub) -> Callable[[], None]:
        before = {name: getattr(gh, name) for name in settings}
        for name, value in settings.items():
            setattr(gh, name, value)

        def disarm() -> None:
            for name, value in before.items():
                setattr(gh, name, value)

        return disarm

    return arm


def secrets_read_only(gh: FakeGitHub) -> Callable[[], None]:
    """The secrets directory (of the current directory) made read-only."""
    stack = ExitStack()
    stack.enter_context(read_only(SECRETS.absolute()))
    return stack.close


def secrets_exposed(gh: FakeGitHub) -> Callable[[], None]:
    """The current directory a git work tree that does not ignore the secrets directory: a
    private key written there would be one `git add -A` from a push."""
    subprocess.run(["git", "init", "-q"], check=True)
    ignore = Path(".gitignore")
    kept = ignore.read_text()
    ignore.write_text("")

    def disarm() -> None:
        ignore.write_text(kept)

    return disarm


FAULTS = {
    # registering the new key
    "register-403": Fault("register", knob(forbidden=True), switched=False),
    "register-rate-limited": Fault("register", knob(rate_limit_remaining=0), switched=False),
    "register-5xx": Fault("register", knob(error_rate=1.0, knob_methods={"POST"}), switched=False),
    # the key was created, its answer lost: found by its body and adopted, nothing twice
    "register-dropped": Fault(
        "register",
        knob(drop_rate=1.0, knob_methods={"POST"}),
        switched=True,
        old_deleted=True,
        code=0,
    ),
    # reading it back (the POST got through: the new key is an orphan until a refresh)
    "confirm-5xx": Fault("confirm", knob(error_rate=1.0, knob_methods={"GET"}), switched=False),
    "confirm-dropped": Fault("confirm", knob(drop_rate=1.0, knob_methods={"GET"}), switched=False),
    "confirm-403": Fault("confirm", knob(rate_limit_remaining=1), switched=False),
    # writing the private key file
    "secret-read-only": Fault("secret", secrets_read_only, switched=False),
    "secret-exposed": Fault("secret", secrets_exposed, switched=False),
    # deleting the old key
    "delete-5xx": Fault("delete", knob(error_rate=1.0, knob_methods={"DELETE"}), switched=True),
    "delete-403": Fault("delete", knob(rate_limit_remaining=2), switched=True),
    # deleted, its answer lost, and every retry's answer too
    "delete-dropped": Fault(
        "delete", knob(drop_rate=1.0, knob_methods={"DELETE"}), switched=True, old_deleted=True
    ),
}


def declare(workdir: Path, gh: FakeGitHub) -> None:
    gh.add_repository("acme/web")
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {},
            repository="acme/web",
            targets=["github"],
            deployKeys=[deploy_key("deployer", rotateAfter="30d")],
        ),
        target(gh),
    )


def keys_json(sk: Sk, *flags: str) -> list[dict[str, Any]]:
    result = sk("keys", "list", "--json", *flags)
    assert result.code == 0, result.err
    return list(result.json())


def key_counts(gh: FakeGitHub) -> list[int]:
    """How many keys acme/web held after each key creation or deletion the fake processed
    (one whose answer was dropped included)."""
    present: set[int | str] = set()
    counts = []
    for number, request in enumerate(gh.requests):
        if not request.processed or not request.path.startswith(KEYS):
            continue
        if request.method == "POST" and request.status == 201:
            present.add(request.response_json()["id"])
        elif request.method == "POST" and request.dropped:
            present.add(f"created by request {number}, its answer dropped")
        elif request.method == "DELETE" and request.status in (204, None):
            present.discard(int(request.path.rsplit("/", 1)[1]))
        else:
            continue
        counts.append(len(present))
    return counts


def assert_sound(sk: Sk, gh: FakeGitHub) -> dict[str, Any]:
    """The private key file holds the ACTIVE key, which GitHub has registered, and the
    repository has held a key at every moment since the first one. Returns the ACTIVE key."""
    registered = {key["key"] for key in gh.keys("acme", "web")}
    [active] = keys_json(sk)
    assert body(active["public_key"]) in registered
    assert body(public_of((SECRETS / "deployer").read_bytes())) == body(active["public_key"])
    counts = key_counts(gh)
    assert counts and min(counts) >= 1, counts
    return active


@pytest.mark.parametrize("when", ["on-demand", "when-due"])
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_a_rotation_failing_at_a_step_keeps_a_working_key_and_converges(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path, fault: str, when: str
) -> None:
    """Whatever step fails, the private key file holds a key GitHub has registered and the
    repository always has one; before the switch nothing changed locally, after it the old key
    waits for its deletion; the next runs without faults converge to exactly the ACTIVE key."""
    case = FAULTS[fault]
    (workdir / ".gitignore").write_text(".slotkeeper/\n")
    declare(workdir, gh)
    assert sk("apply", "--yes", "-m", "m").code == 0
    old = assert_sound(sk, gh)
    old_file = (SECRETS / "deployer").read_bytes()
    if when == "when-due":
        age_ledger(state, "deploy_keys", "created_at", timedelta(days=31))
        planned = sk("plan", "-m", "m", "--out", "rotate.plan")
        assert planned.code == 0 and "older than rotateAfter 30d" in planned.out
        run = ("apply", "rotate.plan")
    else:
        run = ("keys", "rotate", "acme/web/deployer", "--yes", "-m", "m")

    disarm = case.arm(gh)
    try:
        failed = sk(*run)
    finally:
        disarm()
    assert failed.code == case.code, failed.out + failed.err
    # The fault ends as GitHub's rate limit does: its reset, which the ledger waits for, comes.
    age_ledger(state, "target_syncs", "not_before", timedelta(hours=2))
    active = assert_sound(sk, gh)
    registered = {key["key"] for key in gh.keys("acme", "web")}
    assert (body(old["public_key"]) in registered) is not case.old_deleted
    if case.switched:
        assert active["fingerprint"] != old["fingerprint"]
        retired = {k["id"]: k for k in keys_json(sk, "--all")}[old["id"]]
        assert retired["status"] == "ROTATED" and retired["replaced_by"] == active["id"]
        if not case.old_deleted:
            assert "-> absent" in sk("plan", "-m", "m", "--no-refresh").out
    else:
        assert active["id"] == old["id"] and active["status"] == "ACTIVE"
        assert (SECRETS / "deployer").read_bytes() == old_file
        assert [k["status"] for k in keys_json(sk, "--all")] == ["ACTIVE"]
    if case.step == "secret":  # refused before anything was registered
        assert "cannot write secret 'deployer'" in failed.out or (
            "refusing to write a private key" in failed.out
        )
        assert len([r for r in gh.requests if r.method == "POST" and r.path == KEYS]) == 1

    # No fault now: a rotation asked for on demand is asked again; a due one is still due.
    if not case.switched and when == "on-demand":
        assert sk(*run).code == 0
    assert sk("apply", "--yes", "-m", "m").code == 0  # leftovers (orphans, old keys) deleted
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
    final = assert_sound(sk, gh)
    assert final["fingerprint"] != old["fingerprint"]
    assert [key["key"] for key in gh.keys("acme", "web")] == [body(final["public_key"])]
    assert {k["status"] for k in keys_json(sk, "--all") if k["id"] != final["id"]} <= {"ROTATED"}


def test_a_rotated_key_waiting_for_its_deletion_is_no_orphan(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """After a rotation whose deletion of the old key failed, the refresh knows the old key as
    the ledger's (ROTATED, to be deleted), not as a managed key the ledger lacks: the plan
    deletes it once and the apply sends one DELETE."""
    (workdir / ".gitignore").write_text(".slotkeeper/\n")
    declare(workdir, gh)
    assert sk("apply", "--yes", "-m", "m").code == 0
    [old] = gh.keys("acme", "web")
    disarm = knob(error_rate=1.0, knob_methods={"DELETE"})(gh)
    try:
        assert sk("keys", "rotate", "acme/web/deployer", "--yes", "-m", "m").code == 1
    finally:
        disarm()
    planned = sk("plan", "-m", "m")
    assert "is not in the ledger" not in planned.out
    assert planned.out.count("-> absent") == 1
    gh.reset_log()
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert [(r.method, r.path) for r in gh.writes()] == [("DELETE", f"{KEYS}/{old['id']}")]
    assert sk("plan", "-m", "m", "--detailed-exitcode").code == 0
