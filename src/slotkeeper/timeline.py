"""What was deployed where at a moment of the past, replayed from the audit log.

Every deploy, supersede and decommission appends an event in the same transaction as the record
change (``execute``), so the log replayed up to a cut — a ledger serial, or a time — gives the
DEPLOYED record of every slot at that cut exactly. Pure: the caller reads the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from slotkeeper.ledger import Event

#: the events that change which record a slot holds
RECORD_EVENTS = ("record.deployed", "record.superseded", "record.decommissioned")

Slot = tuple[str, str]


@dataclass(frozen=True)
class Cut:
    """A moment of the ledger's past: after serial ``serial``, or at time ``at``."""

    serial: int | None = None
    at: datetime | None = None

    def passed(self, event: Event) -> bool:
        """Whether ``event`` happened after this cut."""
        if self.serial is not None:
            return event.serial > self.serial
        return self.at is not None and event.at > self.at

    def describe(self) -> str:
        return (
            f"serial {self.serial}" if self.serial is not None else f"{self.at:%Y-%m-%d %H:%M:%SZ}"
        )


def deployed_at(events: Iterable[Event], cut: Cut) -> dict[Slot, int]:
    """The id of the DEPLOYED record of every slot at ``cut`` (slots holding none are left
    out), from the record events in log order."""
    held: dict[Slot, int] = {}
    for event in events:
        if cut.passed(event):
            break
        if event.environment is None or event.slot is None or event.record_id is None:
            continue
        slot = (event.environment, event.slot)
        if event.type == "record.deployed":
            held[slot] = event.record_id
        elif event.type in RECORD_EVENTS and held.get(slot) == event.record_id:
            del held[slot]
    return held


@dataclass(frozen=True)
class Change:
    """One slot whose record differs between two cuts (None: it held none)."""

    environment: str
    slot: str
    before: int | None
    after: int | None


def changes(before: Mapping[Slot, int], after: Mapping[Slot, int]) -> list[Change]:
    """The slots whose record differs between two cuts, by environment and slot."""
    return [
        Change(environment, slot, before.get((environment, slot)), after.get((environment, slot)))
        for environment, slot in sorted(set(before) | set(after))
        if before.get((environment, slot)) != after.get((environment, slot))
    ]
