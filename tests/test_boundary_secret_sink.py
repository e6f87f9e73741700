"""The secret sink at its edges: reads that fail, writes that fail half-way, removals, and the
check of every key's private half (issue 15: the mutants these tests kill)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotkeeper.errors import SecretError
from slotkeeper.keys import SecretSink, generate_key, key_file_problems
from slotkeeper.model import KeyRecord, KeyStatus

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def key_record(key_id: int, secret_file: str, fingerprint: str) -> KeyRecord:
    return KeyRecord(
        id=key_id,
        environment="production",
        repository="acme/api",
        title=f"key-{key_id}",
        fingerprint=fingerprint,
        public_key="ssh-ed25519 AAAA",
        read_only=True,
        secret_file=secret_file,
        rotate_after=None,
        status=KeyStatus.ACTIVE,
        created_at=NOW,
        updated_at=NOW,
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".tmp-*"))


def test_every_key_with_a_bad_private_half_is_reported(tmp_path: Path) -> None:
    """An unreadable file does not stop the check: the missing, foreign and good keys after it
    are judged too."""
    sink = SecretSink(tmp_path / "secrets")
    good, other = generate_key("good"), generate_key("other")
    sink.write("good", good.private_key)
    sink.write("foreign", other.private_key)
    (tmp_path / "secrets" / "unreadable").mkdir()  # reading a directory fails
    keys = [
        key_record(1, "unreadable", good.fingerprint),
        key_record(2, "missing", good.fingerprint),
        key_record(3, "foreign", good.fingerprint),
        key_record(4, "good", good.fingerprint),
    ]
    problems = key_file_problems(keys, sink)
    assert sorted(problems) == [1, 2, 3]
    assert problems[1].startswith("private key file unreadable: cannot read secret 'unreadable'")
    assert problems[2] == "private key file 'missing' is missing"
    assert problems[3] == "private key file 'foreign' holds another key"


def test_a_missing_secret_reads_as_none_and_an_unreadable_one_is_an_error(tmp_path: Path) -> None:
    """Absent is None (the key will be recreated); present but unreadable is a SecretError."""
    sink = SecretSink(tmp_path)
    assert sink.read("absent") is None
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(SecretError, match="cannot read secret 'a-directory'"):
        sink.read("a-directory")


def test_the_secrets_root_is_created_with_its_parents_0700(tmp_path: Path) -> None:
    """A secrets directory whose parents do not exist yet is created, readable by its user only."""
    root = tmp_path / "a" / "b" / "secrets"
    path = SecretSink(root).write("deploy/key", b"private")
    assert path.read_bytes() == b"private"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_write_under_a_file_is_a_secret_error(tmp_path: Path) -> None:
    """A directory that cannot be made (a file is in the way) is reported, not raised raw."""
    sink = SecretSink(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(SecretError, match="cannot write secret 'blocker/key'"):
        sink.write("blocker/key", b"private")
    with pytest.raises(SecretError, match="cannot write secret 'blocker/key'"):
        sink.check_writable("blocker/key")


def test_a_failed_block_discards_the_staged_secret(tmp_path: Path) -> None:
    """When the block raises (e.g. the ledger commit fails), the old secret stays and no temp
    file is left behind."""
    sink = SecretSink(tmp_path)
    sink.write("key", b"old")
    with pytest.raises(RuntimeError, match="commit failed"), sink.staged("key", b"new"):
        raise RuntimeError("commit failed")
    assert (tmp_path / "key").read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_secret_that_cannot_be_moved_into_place_is_an_error(tmp_path: Path) -> None:
    """A directory where the secret goes makes the rename fail: a SecretError, no temp left."""
    sink = SecretSink(tmp_path)
    (tmp_path / "key").mkdir()
    (tmp_path / "key" / "inside").write_text("x")
    with pytest.raises(SecretError, match="cannot write secret 'key'"):
        sink.write("key", b"private")
    assert leftovers(tmp_path) == []


def test_removing_a_missing_secret_is_a_no_op_and_a_failing_removal_an_error(
    tmp_path: Path,
) -> None:
    """Removal is idempotent; what cannot be removed (a directory) is a SecretError."""
    sink = SecretSink(tmp_path)
    sink.remove("never-written")
    sink.write("key", b"private")
    sink.remove("key")
    assert not (tmp_path / "key").exists()
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(SecretError, match="cannot remove secret 'a-directory'"):
        sink.remove("a-directory")


def test_checking_that_a_secret_is_writable_changes_nothing(tmp_path: Path) -> None:
    """The probe file is removed again; the secret already there stays as it was."""
    sink = SecretSink(tmp_path)
    sink.write("deploy/key", b"current")
    sink.check_writable("deploy/key")
    assert (tmp_path / "deploy" / "key").read_bytes() == b"current"
    assert leftovers(tmp_path) == []
