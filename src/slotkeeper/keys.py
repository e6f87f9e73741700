"""Deploy key material: ed25519 generation and the secret sink for private halves.

Private keys leave this module only as bytes handed to a :class:`SecretSink`; they are never
logged, put in a plan or stored in the ledger. The ledger keeps the public key and its SHA256
fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from slotkeeper.errors import SecretError
from slotkeeper.model import KeyRecord
from slotkeeper.worktree import refuse_if_exposed


@dataclass(frozen=True)
class KeyPair:
    public_key: str
    fingerprint: str
    private_key: bytes = field(repr=False)


def generate_key(comment: str) -> KeyPair:
    """A fresh ed25519 pair: OpenSSH public key (with ``comment``) and OpenSSH private key."""
    # imported where keys are made or read: a plan without a refresh does neither
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    private_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return KeyPair(
        public_key=f"{public} {comment}",
        fingerprint=fingerprint(public),
        private_key=private_bytes,
    )


def fingerprint(public_key: str) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key line (as ``ssh-keygen -lf`` prints)."""
    blob = base64.b64decode(public_key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def private_key_fingerprint(content: bytes) -> str | None:
    """The fingerprint of the OpenSSH private key in ``content``, or None if it holds none."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_ssh_private_key(content, password=None)
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return fingerprint(public.decode())


def key_file_problems(keys: Iterable[KeyRecord], sink: SecretSink) -> dict[int, str]:
    """What is wrong with the private half of each key in ``sink``, by key id: missing,
    unreadable, or holding another key. A key whose consumer has no working private half must
    be rotated, never silently kept."""
    problems: dict[int, str] = {}
    for key in keys:
        if not key.secret_file:
            continue  # delivered elsewhere only (Kubernetes, Actions): see sinks.delivery
        try:
            content = sink.read(key.secret_file)
        except SecretError as exc:
            problems[key.id] = f"private key file unreadable: {exc}"
            continue
        if content is None:
            problems[key.id] = f"private key file {key.secret_file!r} is missing"
        elif private_key_fingerprint(content) != key.fingerprint:
            problems[key.id] = f"private key file {key.secret_file!r} holds another key"
    return problems


class SecretSink:
    """Private keys as files under one root directory: mode 0600 in 0700 directories, written
    atomically (temp file + rename), and no path may leave the root. A path inside a git work
    tree that git does not ignore is refused (see ``worktree``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, name: str) -> bytes | None:
        """The content of a secret, or None when there is no such file."""
        target = self.path_of(name)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretError(f"cannot read secret {name!r}: {exc.strerror}") from exc

    def check_writable(self, name: str) -> None:
        """Raise ``SecretError`` unless ``name`` can be written now (checked by creating and
        removing a temporary file beside it)."""
        Path(self._temp_file(name, b"")[1]).unlink(missing_ok=True)

    def _temp_file(self, name: str, content: bytes) -> tuple[Path, str]:
        """A new file holding ``content`` beside where ``name`` goes: (target, temp path)."""
        target = self.path_of(name)
        self._refuse_exposed(target)
        try:
            self._make_dirs(target.parent)
            handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                os.fchmod(handle, 0o600)
                os.write(handle, content)
                os.fsync(handle)
            finally:
                os.close(handle)
        except OSError as exc:
            raise SecretError(
                f"cannot write secret {name!r} under {self.root}: {exc.strerror}"
            ) from exc
        return target, temp_name

    def _refuse_exposed(self, target: Path) -> None:
        refuse_if_exposed(
            target,
            what="a private key",
            fix="point --secrets-dir (SLOTKEEPER_SECRETS_DIR) outside the work tree",
        )

    def path_of(self, name: str) -> Path:
        root = self.root.resolve()
        candidate = (root / name).resolve()
        if candidate == root or not candidate.is_relative_to(root):
            raise SecretError(f"secret path {name!r} would leave the secrets directory {self.root}")
        return candidate

    @contextmanager
    def staged(self, name: str, content: bytes) -> Iterator[Path]:
        """Write ``content`` beside ``name`` now; move it into place when the block succeeds,
        discard it when the block raises. The ledger commit goes inside the block, so a failed
        commit never leaves an unrecorded key where the recorded one was."""
        target, temp_name = self._temp_file(name, content)
        temp = Path(temp_name)
        try:
            yield target
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        try:
            temp.replace(target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise SecretError(
                f"cannot write secret {name!r} under {self.root}: {exc.strerror}"
            ) from exc

    def write(self, name: str, content: bytes) -> Path:
        """Write one secret atomically (temp file, fsync, rename)."""
        with self.staged(name, content) as target:
            return target

    def remove(self, name: str) -> None:
        target = self.path_of(name)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise SecretError(f"cannot remove secret {name!r}: {exc.strerror}") from exc

    def _make_dirs(self, directory: Path) -> None:
        root = self.root.resolve()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        root.chmod(0o700)
        current = root
        for part in directory.relative_to(root).parts:
            current = current / part
            current.mkdir(mode=0o700, exist_ok=True)
