"""Source watching: ask for a reconcile when the manifests change.

A directory is watched (watchfiles: a burst of edits is one change). A git remote is polled
every ``poll_interval``: its branch head differs from the version the last reconcile fetched.
A failed poll is logged and tried again next time; the resync interval reconciles anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from slotkeeper import observability as obs
from slotkeeper.errors import SlotkeeperError
from slotkeeper.sources import DirectorySource, GitSource


def watch(
    source: DirectorySource | GitSource,
    *,
    stopping: threading.Event,
    trigger: Callable[[str], None],
    fetched: Callable[[], str | None],
    poll_interval: float,
) -> None:
    """Call ``trigger("change")`` on each change until ``stopping`` is set. ``fetched`` is
    the version the last reconcile fetched (None before the first)."""
    if isinstance(source, DirectorySource):
        source.watch(stopping, lambda: trigger("change"))
        return
    while not stopping.wait(poll_interval):
        try:
            head = source.peek()
        except SlotkeeperError as exc:
            obs.get_logger().warning("source.poll_failed", error=str(exc))
            continue
        applied = fetched()
        if applied is not None and head != applied:
            trigger("change")
