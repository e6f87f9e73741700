"""Which held action an operator means: ``approve ACTION_ID``, ``approve ENV/SLOT``.

Pure: it reads the held actions the last apply recorded (the ledger's ``pending`` list) and
names the one an operator's argument designates, or says clearly why none is.
"""

from __future__ import annotations

from collections.abc import Sequence

from slotkeeper.errors import ConfigError
from slotkeeper.ledger.base import PendingAction


def find_held(pending: Sequence[PendingAction], wanted: str) -> PendingAction:
    """The held action ``wanted`` names: its action id, its content digest, or where it acts
    (``ENV/SLOT``, ``ENV/key:REPOSITORY/TITLE``). Only an action that waits for a person may be
    approved or rejected; anything else is a ``ConfigError`` that says what is held and why."""
    by_id = [p for p in pending if wanted in (p.action_id, p.digest)]
    environment, _, subject = wanted.partition("/")
    found = by_id or [p for p in pending if (p.environment, p.subject) == (environment, subject)]
    if not found:
        waiting = [f"{p.action_id} ({p.environment}/{p.subject})" for p in pending if p.awaiting]
        shown = "; awaiting approval now: " + ", ".join(waiting) if waiting else ""
        raise ConfigError(
            f"no held action {wanted!r} in the ledger (the last apply or reconcile recorded "
            f"{len(pending)} held action{'s' if len(pending) != 1 else ''}{shown}); "
            "`slotkeeper status` lists them"
        )
    held = found[0]
    if held.digest is None:
        raise ConfigError(
            f"{held.type} {held.environment}/{held.subject} ({held.action_id}) is held by what "
            f"no approval lifts: {held.blocked}"
        )
    return held
