"""The daemon's notification sender: a thread of its own, so that a slow or dead endpoint never
holds a reconcile up. It sends what is due in the ledger's outbox when woken (after each
reconcile queued something) and every second otherwise (retries, digests, rate limits), and
only while this replica leads (see ``notify.pipeline``)."""

from __future__ import annotations

import threading

from slotkeeper import observability as obs
from slotkeeper.errors import SlotkeeperError
from slotkeeper.model import DesiredState
from slotkeeper.notify.pipeline import Notifications


class NotificationSender:
    """Looks for transitions after each reconcile (on the loop's thread) and sends (on its own)."""

    def __init__(
        self, notifications: Notifications, stopping: threading.Event, *, interval: float = 1.0
    ) -> None:
        self._notifications = notifications
        self._stopping = stopping
        self._interval = interval
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = obs.get_logger()

    def start(self) -> None:
        if not self._notifications.configured or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()

    def before_reconcile(self, desired: DesiredState | None) -> None:
        """On the first reconcile ever with notifiers: note where telling starts."""
        if self._notifications.configured:
            try:
                self._notifications.prime(desired)
            except SlotkeeperError as exc:
                self._log.warning("notify.look_failed", error=str(exc))

    def after_reconcile(self, desired: DesiredState | None) -> None:
        """Queue the messages of what this reconcile changed, and wake the sender. A failure
        here is logged and never fails the reconcile: the next look finds the same
        transitions (nothing was recorded)."""
        if not self._notifications.configured:
            return
        try:
            self._notifications.look(desired)
        except SlotkeeperError as exc:
            self._log.warning("notify.look_failed", error=str(exc))
        self._wake.set()

    def send_now(self) -> None:
        """Send what is due, on the caller's thread (``run --once``)."""
        self._drain()

    def stop(self) -> None:
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._notifications.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            self._drain()

    def _drain(self) -> None:
        try:
            self._notifications.drain()
        except SlotkeeperError as exc:  # the ledger unreachable: the outbox waits
            self._log.warning("notify.send_failed", error=str(exc))
