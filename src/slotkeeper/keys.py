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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from slotkeeper.errors import SecretError


@dataclass(frozen=True)
class KeyPair:
    public_key: str
    fingerprint: str
    private_key: bytes = field(repr=False)


def generate_key(comment: str) -> KeyPair:
    """A fresh ed25519 pair: OpenSSH public key (with ``comment``) and OpenSSH private key."""
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


class SecretSink:
    """Private keys as files under one root directory: mode 0600 in 0700 directories, written
    atomically (temp file + rename), and no path may leave the root."""

    def __init__(self, root: Path) -> None:
        self.root = root

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
        target = self.path_of(name)
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
