"""Reading the credentials that Target documents reference: an environment variable or a file.

Errors name the reference (``GITHUB_TOKEN``, a path), never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from slotkeeper.errors import ConfigError
from slotkeeper.model import SecretRef


def resolve_secret(reference: SecretRef, *, owner: str) -> str:
    """The credential ``reference`` points at; ``owner`` names who needs it, for messages."""
    if reference.env is not None:
        value = os.environ.get(reference.env, "")
        if not value.strip():
            raise ConfigError(f"{owner}: environment variable {reference.env} is not set")
        return value.strip()
    assert reference.file is not None
    path = Path(reference.file).expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{owner}: cannot read credential file {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{owner}: credential file {path} is empty")
    return value
