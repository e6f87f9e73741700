"""Notifications end to end: look for transitions after a reconcile, queue them in the ledger's
outbox, and send what is due.

**Looking** (:meth:`Notifications.look`, the writer after each reconcile): the audit events
since the last one told and the conditions that hold now give the messages of what changed
(``notify.transitions``); they are queued for every notifier whose filters want them *in the
same transaction* that moves the audit cursor and keeps the conditions. A crash before it
commits looks again; after it, the messages are in the outbox: none is lost, none is queued
twice.

**Sending** (:meth:`Notifications.drain`, a thread of its own in the daemon: a slow or dead
endpoint never holds a reconcile up): due messages, oldest first, through each notifier's
channel; a message is marked sent once its endpoint said so, retried with backoff (5 s,
doubling, at most 10 min; given up after 24 h), delayed as a 429's Retry-After says, and a
notifier whose endpoint is gone (a revoked Slack webhook) stops, with an error in the log.
Each notifier is paced (``ratePerMinute``). The channels send only while this process is the
ledger's writer, and the bookkeeping is fenced the same way: a frozen leader that wakes up
neither sends nor marks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from slotkeeper import metrics
from slotkeeper import observability as obs
from slotkeeper.errors import SlotkeeperError
from slotkeeper.ledger.base import Event, Ledger, NotifyState, OutboxMessage
from slotkeeper.model import Artifact, DesiredState, RecordedState, parse_duration
from slotkeeper.notify.channels import Channel, Next, open_channel
from slotkeeper.notify.message import Notification, NotificationDigest
from slotkeeper.notify.spec import NotifierSpec, SlackNotifierSpec
from slotkeeper.notify.transitions import Conditions, detect, observe

Clock = Callable[[], datetime]

#: audit events older than this are not told (a notifier added to a ledger with a long past)
TOLD_WITHIN = timedelta(hours=24)
#: a message not sent after this long is given up
GIVE_UP_AFTER = timedelta(hours=24)
#: the first retry's delay, doubled each time up to ``MAX_BACKOFF``
FIRST_BACKOFF = timedelta(seconds=5)
MAX_BACKOFF = timedelta(minutes=10)


def route(
    notes: Iterable[Notification], notifiers: Mapping[str, NotifierSpec], *, now: datetime
) -> list[OutboxMessage]:
    """The outbox rows of ``notes``: one per notifier that wants each, due now (or when the
    notifier's digest window closes)."""
    listed = list(notes)
    rows = []
    for name, spec in sorted(notifiers.items()):
        window = parse_duration(spec.digest) if spec.digest else timedelta(0)
        for note in listed:
            if spec.wants(note.event, note.environment):
                rows.append(
                    OutboxMessage(
                        notifier=name,
                        message_id=note.id,
                        event=note.event,
                        environment=note.environment,
                        body=note.model_dump_json(by_alias=True),
                        created_at=now,
                        due_at=now + window,
                    )
                )
    return rows


def _rate(spec: NotifierSpec) -> int:
    if spec.rate_per_minute is not None:
        return spec.rate_per_minute
    return 60 if isinstance(spec, SlackNotifierSpec) else 300


class _Pace:
    """A token bucket per notifier: ``rate`` messages a minute on average, in bursts of up to
    a twentieth of that (at least one, at most ten: Slack allows short bursts)."""

    def __init__(self, rate: int, now: float) -> None:
        self.per_second = rate / 60.0
        self.capacity = float(max(1, min(10, rate // 20)))
        self.tokens = self.capacity
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def pause(self, seconds: float, now: float) -> None:
        """A 429: nothing before ``seconds`` from now."""
        self.tokens = -seconds * self.per_second
        self.at = now


class Notifications:
    """The operator's notifiers over one ledger. ``may_write`` says whether this process is
    the ledger's writer (only the writer looks and sends)."""

    def __init__(
        self,
        ledger: Ledger,
        notifiers: Mapping[str, NotifierSpec],
        *,
        clock: Clock,
        may_write: Callable[[], bool] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._ledger = ledger
        self._notifiers = dict(notifiers)
        self._clock = clock
        self._may_write = may_write or (lambda: True)
        self._monotonic = monotonic or time.monotonic
        self._channels: dict[str, Channel] = {}
        self._pace: dict[str, _Pace] = {}
        self._gone: dict[str, str] = {}
        self._log = obs.get_logger()
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._notifiers)

    def document(self) -> dict[str, object]:
        """What ``/status`` says: the notifiers, and those whose endpoint is gone, with why
        (they are sent nothing more until the daemon restarts with a working URL)."""
        return {"notifiers": sorted(self._notifiers), "gone": dict(self._gone)}

    # -- looking --------------------------------------------------------------------------

    def prime(self, desired: DesiredState | None) -> None:
        """Before the first look ever: note where telling starts (the audit log's end, what
        holds now), so that what happens next is told and the past is not."""
        if self._notifiers and self._may_write() and self._ledger.notify_state() is None:
            latest = self._ledger.events(last=1)
            first = NotifyState(
                cursor=latest[-1].seq if latest else 0,
                generation=0,
                conditions=self._conditions(self._ledger.read_state(), desired).model_dump(
                    mode="json"
                ),
            )
            self._ledger.record_notifications(first, [])

    def look(self, desired: DesiredState | None) -> int:
        """Queue the messages of what changed since the last look; how many were queued."""
        if not self._notifiers or not self._may_write():
            return 0
        self.prime(desired)
        ledger = self._ledger
        state = ledger.notify_state()
        assert state is not None  # primed
        now = self._clock()
        recorded = ledger.read_state()
        after = self._conditions(recorded, desired)
        before = Conditions.model_validate(state.conditions)
        events = ledger.events(since=state.cursor)
        cursor = events[-1].seq if events else state.cursor
        if after == before and cursor == state.cursor:
            return 0
        recent = [event for event in events if event.at >= now - TOLD_WITHIN]
        notes = detect(
            before,
            after,
            recent,
            lineage=recorded.lineage,
            generation=state.generation + 1,
            now=now,
            artifacts=self._artifacts(recent),
            key_names=self._key_names(recent),
        )
        messages = route(notes, self._notifiers, now=now)
        ledger.record_notifications(
            NotifyState(
                cursor=cursor,
                generation=state.generation + 1,
                conditions=after.model_dump(mode="json"),
            ),
            messages,
        )
        if messages:
            self._log.info("notify.queued", messages=len(messages))
        return len(messages)

    def _conditions(self, recorded: RecordedState, desired: DesiredState | None) -> Conditions:
        status = self._ledger.manifest_status()
        return observe(
            recorded,
            self._ledger.pending(),
            desired=desired,
            broken=[b.file for b in status.broken] if status else (),
            now=self._clock(),
        )

    def _artifacts(self, events: Sequence[Event]) -> dict[int, Artifact]:
        """The artifact of each record a supersede event names (the one replaced)."""
        return {
            event.record_id: self._ledger.record(event.record_id).artifact
            for event in events
            if event.type == "record.superseded" and event.record_id is not None
        }

    def _key_names(self, events: Sequence[Event]) -> dict[int, str]:
        """``repository/title`` of each key a rotation event names."""
        found: dict[int, str] = {}
        for event in events:
            if event.type == "key.rotated" and event.key_id is not None:
                key = self._ledger.key(event.key_id)
                found[event.key_id] = f"{key.repository}/{key.title}"
        return found

    # -- sending --------------------------------------------------------------------------

    def drain(self, *, limit: int = 200) -> int:
        """Send what is due (at most ``limit`` messages); how many were sent. Never raises for
        an endpoint's failure."""
        if not self._notifiers or not self._may_write():
            return 0
        with self._lock:
            now = self._clock()
            due = self._ledger.due_messages(now=now, limit=limit)
            sent = 0
            by_notifier: dict[str, list[OutboxMessage]] = {}
            for row in due:
                by_notifier.setdefault(row.notifier, []).append(row)
            for name, rows in by_notifier.items():
                sent += self._send_all(name, rows, now)
            metrics.NOTIFICATIONS_QUEUED.set(len(self._ledger.due_messages(now=now, limit=10_000)))
            return sent

    def _send_all(self, name: str, rows: list[OutboxMessage], now: datetime) -> int:
        spec = self._notifiers.get(name)
        if spec is None or name in self._gone:
            why = self._gone.get(name, "the notifier is no longer configured")
            self._ledger.give_up([r.id for r in rows], at=now, error=why)
            metrics.NOTIFICATIONS.labels(notifier=name, outcome="given_up").inc(len(rows))
            return 0
        groups: list[list[OutboxMessage]]
        if spec.digest:
            by_environment: dict[str | None, list[OutboxMessage]] = {}
            for row in rows:
                by_environment.setdefault(row.environment, []).append(row)
            groups = list(by_environment.values())
        else:
            groups = [[row] for row in rows]
        sent = 0
        pace = self._pace.setdefault(name, _Pace(_rate(spec), self._monotonic()))
        for group in groups:
            if not pace.take(self._monotonic()):
                break  # paced: the rest waits for the next round
            if self._send(name, spec, group, now):
                sent += len(group)
            if name in self._gone:
                break
        return sent

    def _send(
        self, name: str, spec: NotifierSpec, group: list[OutboxMessage], now: datetime
    ) -> bool:
        ids = [row.id for row in group]
        try:
            channel = self._channel(name, spec)
        except SlotkeeperError as exc:  # a credential missing: says which, never its value
            self._log.error("notify.unusable", notifier=name, error=str(exc))
            self._ledger.retry_later(ids, due_at=now + MAX_BACKOFF, error="notifier not usable")
            return False
        answer = channel.send(_message(group))
        outcome = answer.next
        metrics.NOTIFICATIONS.labels(notifier=name, outcome=outcome.value).inc(len(group))
        if outcome is Next.SENT:
            self._ledger.mark_sent(ids, at=now)
            self._log.info(
                "notify.sent",
                notifier=name,
                events=[row.event for row in group],
                message=group[0].message_id if len(group) == 1 else None,
            )
            return True
        if outcome is Next.WAIT:
            wait = answer.retry_after or 1.0
            self._pace[name].pause(wait, self._monotonic())
            self._ledger.delay(ids, due_at=now + timedelta(seconds=wait))
            self._log.info("notify.rate_limited", notifier=name, retry_after=wait)
            return False
        if outcome is Next.GONE:
            self._gone[name] = f"endpoint gone ({answer.reason}): sending stopped"
            self._ledger.give_up(ids, at=now, error=self._gone[name])
            self._log.error(
                "notify.gone",
                notifier=name,
                reason=answer.reason,
                message="the endpoint is gone (revoked or archived): nothing more is sent to "
                "it; fix the notifier's URL and restart",
            )
            return False
        if outcome is Next.REFUSED or now - group[0].created_at > GIVE_UP_AFTER:
            self._ledger.give_up(ids, at=now, error=answer.reason)
            metrics.NOTIFICATIONS.labels(notifier=name, outcome="given_up").inc(len(group))
            self._log.error("notify.given_up", notifier=name, reason=answer.reason)
            return False
        attempts = max(row.attempts for row in group)
        backoff = min(FIRST_BACKOFF * (2**attempts), MAX_BACKOFF)
        if answer.retry_after is not None:
            backoff = max(backoff, timedelta(seconds=answer.retry_after))
        self._ledger.retry_later(ids, due_at=now + backoff, error=answer.reason)
        self._log.warning(
            "notify.retry", notifier=name, reason=answer.reason, attempts=attempts + 1
        )
        return False

    def tell(self, desired: DesiredState | None, *, within: float) -> None:
        """A one-shot apply's notifications: look, then send (see :meth:`flush`)."""
        self.look(desired)
        self.flush(within=within)

    def flush(self, *, within: float) -> None:
        """Send what is due now, waiting out the pacing for at most ``within`` seconds (a
        one-shot apply: what is left waits in the outbox for the next apply or the daemon)."""
        deadline = self._monotonic() + within
        while self._notifiers and self._may_write():
            self.drain()
            remaining = deadline - self._monotonic()
            soon = self._clock() + timedelta(seconds=max(0.0, remaining))
            if remaining <= 0 or not self._ledger.due_messages(now=soon, limit=1):
                return  # nothing more can go in time (a retry in minutes waits for later)
            time.sleep(0.2)

    def _channel(self, name: str, spec: NotifierSpec) -> Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = open_channel(name, spec, may_write=self._may_write)
        return channel

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def _message(group: list[OutboxMessage]) -> Notification | NotificationDigest:
    """One row's message, or a digest of several (its id made of theirs, so a retry of the
    same group is the same message)."""
    notes = [Notification.model_validate_json(row.body) for row in group]
    if len(notes) == 1:
        return notes[0]
    environment = group[0].environment
    where = environment or "slotkeeper"
    return NotificationDigest(
        id=f"digest:{notes[0].id}+{len(notes) - 1}",
        at=max(note.at for note in notes),
        environment=environment,
        summary=f"{len(notes)} events in {where}",
        notifications=tuple(notes),
    )
