"""Credential reading at its edges: the size limit to the byte, whitespace, encodings, symlinks,
and the modes of the files and directories slotkeeper keeps private (issue 15: the mutants these
tests kill)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slotkeeper.credentials import (
    MAX_CREDENTIAL_BYTES,
    private_dirs,
    private_file,
    read_credential_file,
    resolve_secret,
)
from slotkeeper.errors import ConfigError
from slotkeeper.model import SecretRef


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_variable_is_read_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token from the environment loses the whitespace around it."""
    monkeypatch.setenv("SK_TEST_TOKEN", "  tok-123\n")
    assert resolve_secret(SecretRef(env="SK_TEST_TOKEN"), owner="target 't'") == "tok-123"


@pytest.mark.parametrize("value", [None, "", "  \n"])
def test_an_unset_or_blank_variable_is_an_error(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """Unset and blank are the same error, naming the variable."""
    if value is None:
        monkeypatch.delenv("SK_TEST_TOKEN", raising=False)
    else:
        monkeypatch.setenv("SK_TEST_TOKEN", value)
    with pytest.raises(ConfigError, match=r"^target 't': environment variable SK_TEST_TOKEN is"):
        resolve_secret(SecretRef(env="SK_TEST_TOKEN"), owner="target 't'")


def test_a_file_is_read_stripped_and_a_blank_one_is_an_error(tmp_path: Path) -> None:
    """A credential file's trailing newline goes; a file of whitespace is 'empty'."""
    token = tmp_path / "token"
    token.write_text("tok-456\n")
    assert resolve_secret(SecretRef(file=str(token)), owner="o") == "tok-456"
    token.write_text(" \n")
    with pytest.raises(ConfigError, match=f"^o: credential file {token} is empty$"):
        resolve_secret(SecretRef(file=str(token)), owner="o")


def test_a_file_of_exactly_the_limit_is_read_whole(tmp_path: Path) -> None:
    """The limit is inclusive: a file of MAX_CREDENTIAL_BYTES is read to its last byte."""
    token = tmp_path / "token"
    token.write_text("a" * (MAX_CREDENTIAL_BYTES - 1) + "z")
    value = read_credential_file(token, owner="o")
    assert len(value) == MAX_CREDENTIAL_BYTES and value.endswith("z")


def test_a_file_one_byte_over_the_limit_is_refused(tmp_path: Path) -> None:
    """One byte more is refused before it is read, with the size in the message."""
    token = tmp_path / "token"
    token.write_text("a" * (MAX_CREDENTIAL_BYTES + 1))
    with pytest.raises(ConfigError, match=f"is {MAX_CREDENTIAL_BYTES + 1} bytes, over the limit"):
        read_credential_file(token, owner="o")


def test_a_symlink_is_named_as_such(tmp_path: Path) -> None:
    """A final symlink is refused with its own message, even when it points at a good file."""
    real = tmp_path / "real"
    real.write_text("tok")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="is a symlink: name the file itself"):
        read_credential_file(link, owner="o")


def test_a_missing_file_says_it_cannot_be_read(tmp_path: Path) -> None:
    """A missing file is 'cannot read', with the system's reason."""
    with pytest.raises(ConfigError, match=r"cannot read credential file .*No such file"):
        read_credential_file(tmp_path / "absent", owner="o")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 text are a ConfigError, not a UnicodeDecodeError."""
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe\x00tok")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_credential_file(token, owner="o")


def test_private_dirs_makes_every_missing_level_0700(tmp_path: Path) -> None:
    """Each directory it creates is 0700; one that existed keeps its mode."""
    tmp_path.chmod(0o755)
    private_dirs(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert mode(tmp_path) == 0o755


def test_private_file_creates_0600_and_narrows_our_own(tmp_path: Path) -> None:
    """A new file is created empty with mode 0600; an existing one of ours is narrowed."""
    new = tmp_path / "new.db"
    private_file(new)
    assert new.read_bytes() == b"" and mode(new) == 0o600
    old = tmp_path / "old.db"
    old.write_text("kept")
    old.chmod(0o644)
    private_file(old)
    assert old.read_text() == "kept" and mode(old) == 0o600


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file away needs root")
def test_private_file_leaves_another_users_file_alone(tmp_path: Path) -> None:
    """A file someone else owns is not ours to narrow."""
    theirs = tmp_path / "theirs.db"
    theirs.write_text("x")
    theirs.chmod(0o644)
    os.chown(theirs, 4242, 4242)
    private_file(theirs)
    assert mode(theirs) == 0o644


def test_the_documented_limit_is_64_kib(tmp_path: Path) -> None:
    """65536 bytes are a credential file; 65537 are not."""
    token = tmp_path / "token"
    token.write_text("t" * 65536)
    assert len(read_credential_file(token, owner="o")) == 65536
    token.write_text("t" * 65537)
    with pytest.raises(ConfigError, match="is 65537 bytes, over the limit of 65536"):
        read_credential_file(token, owner="o")


def test_private_file_leaves_a_dangling_symlink_alone(tmp_path: Path) -> None:
    """A name that is a symlink to nothing is neither followed nor an error."""
    link = tmp_path / "state.db"
    link.symlink_to(tmp_path / "elsewhere.db")
    private_file(link)
    assert link.is_symlink() and not (tmp_path / "elsewhere.db").exists()
