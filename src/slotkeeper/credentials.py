"""Reading the credentials that Target documents reference: an environment variable or a file.

Errors name the reference (``GITHUB_TOKEN``, a path), never the value. A credential file must be
a credential file: a regular file (no FIFO, device or directory, and not reached through a final
symlink), at most ``MAX_CREDENTIAL_BYTES``, one line of printable text. Anything else is a clear
``ConfigError`` at once — never a process that reads ``/dev/zero`` until it is killed, nor a
reconcile that waits on a FIFO for a writer that never comes.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from slotkeeper.errors import ConfigError
from slotkeeper.model import SecretRef

#: the largest credential file read (a token is a few hundred bytes)
MAX_CREDENTIAL_BYTES = 64 * 1024


def resolve_secret(reference: SecretRef, *, owner: str, pem: bool = False) -> str:
    """The credential ``reference`` points at; ``owner`` names who needs it, for messages.
    ``pem``: the credential is a PEM block (a private key), several lines, not one token."""
    check = _pem_block if pem else _one_line
    if reference.env is not None:
        value = os.environ.get(reference.env, "")
        if not value.strip():
            raise ConfigError(f"{owner}: environment variable {reference.env} is not set")
        return check(value.strip(), owner=owner, where=f"environment variable {reference.env}")
    assert reference.file is not None
    path = Path(reference.file).expanduser()
    value = read_credential_file(path, owner=owner).strip()
    if not value:
        raise ConfigError(f"{owner}: credential file {path} is empty")
    return check(value, owner=owner, where=f"credential file {path}")


def read_credential_file(path: Path, *, owner: str) -> str:
    """The text of the credential file ``path`` (see the module docstring for what is refused)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: no final symlink.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"{owner}: credential file {path} is a symlink: name the file itself"
            ) from exc
        raise ConfigError(f"{owner}: cannot read credential file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{owner}: credential file {path} is not a regular file")
        if info.st_size > MAX_CREDENTIAL_BYTES:
            raise ConfigError(
                f"{owner}: credential file {path} is {info.st_size} bytes, over the limit of "
                f"{MAX_CREDENTIAL_BYTES}"
            )
        raw = os.read(descriptor, MAX_CREDENTIAL_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{owner}: cannot read credential file {path}: {exc.strerror}") from exc
    finally:
        os.close(descriptor)
    if len(raw) > MAX_CREDENTIAL_BYTES:  # it grew between fstat and read
        raise ConfigError(f"{owner}: credential file {path} is over {MAX_CREDENTIAL_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{owner}: credential file {path} is not UTF-8 text") from exc


def _one_line(value: str, *, owner: str, where: str) -> str:
    """A token is one line of printable characters: a header built from anything else could
    carry a second header or break the request."""
    if any(not character.isprintable() for character in value):
        raise ConfigError(
            f"{owner}: {where} must hold one line of printable text (it has a line break or a "
            "control character)"
        )
    return value


def _pem_block(value: str, *, owner: str, where: str) -> str:
    """A PEM block: ``-----BEGIN ...-----`` lines around base64 (what it holds is judged by
    whoever loads it; here only its shape, so a token pasted by mistake is named as such)."""
    text = value.replace("\r\n", "\n")
    if not (text.startswith("-----BEGIN ") and text.rstrip().endswith("-----")):
        raise ConfigError(f"{owner}: {where} does not hold a PEM private key (-----BEGIN ...)")
    return text


def private_dirs(directory: Path) -> None:
    """Make ``directory`` (and missing parents) readable by this user only (0700): the ledger
    caches what targets answered, the git cache holds the manifests."""
    missing = []
    current = directory
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when missing; narrow an existing one of ours to
    0600 (a ledger written by an older slotkeeper was 0644)."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        try:
            if path.stat().st_uid == os.getuid():
                path.chmod(0o600)
        except OSError:
            pass
        return
    os.close(descriptor)
