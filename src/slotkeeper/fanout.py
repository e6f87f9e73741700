"""Sharing a large, CPU-bound map with a second processor: about half of the work goes to a
forked worker process while this one does the rest.

Used for the first parse of a large manifest set (the parse is pure Python and holds the
interpreter lock, so threads would not help). A forked worker starts with everything this
process has imported and built, so it costs milliseconds, not a second start-up; only the
inputs it is given and what it sends back are pickled. What it sends back is ``ship``'s
compact form of each result (rich objects pickle slowly: for parsed manifests, moving them
back cost a third of the parse), made whole here by ``land``. Forking is safe only in a
process that runs no other thread (a lock held by another thread stays held in the child), so
the daemon, whose HTTP server and watcher are threads, maps in one process; so does any
machine with one processor, any platform without ``fork``, and a map too small to gain from it.
Whatever goes wrong with the worker (it cannot be forked, it dies, a result cannot be
pickled), its half is done here instead: the result is the same, only slower.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
_Wire = TypeVar("_Wire")


def processors() -> int:
    """The processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def may_fork() -> bool:
    """Whether a worker may be forked here: Linux, more than one processor, and no thread but
    this one."""
    return sys.platform == "linux" and processors() > 1 and threading.active_count() == 1


#: the worker's share of the weight: less than half, as this process still has to ``land``
#: what the worker sends back once it is done
WORKER_SHARE = 0.45


def split_map(
    function: Callable[[_Item], _Result],
    items: Sequence[_Item],
    *,
    weight: Callable[[_Item], int],
    worth: int,
    ship: Callable[[_Item], _Wire],
    land: Callable[[_Item, _Wire], _Result],
) -> list[_Result]:
    """``[function(item) for item in items]``, in order. When the items weigh ``worth`` or more
    (by ``weight``, e.g. bytes to parse) and ``may_fork()``, the later items making up
    ``WORKER_SHARE`` of the weight go to a forked worker, which sends back ``ship(item)`` for
    each, made into its result here by ``land(item, shipped)``, while this process maps the
    others. ``land(item, ship(item))`` must equal ``function(item)``; ``ship`` must be pure
    (what the worker changes stays in the worker) and importable by name; items and what
    ``ship`` returns must pickle."""
    total = sum(weight(item) for item in items)
    if total < worth or len(items) < 2 or not may_fork():
        return [function(item) for item in items]
    split, carried = 0, 0
    while split < len(items) - 1 and carried < total * (1 - WORKER_SHARE):
        carried += weight(items[split])
        split += 1
    mine, theirs = items[:split], items[split:]

    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    worker: Future[list[_Wire]] | None = None
    pool: ProcessPoolExecutor | None = None
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        worker = pool.submit(_map, ship, list(theirs))
    except (OSError, ValueError, BrokenProcessPool):
        worker = None
    try:
        done = [function(item) for item in mine]
        try:
            shipped = worker.result() if worker is not None else None
        except Exception:  # whatever failed in the worker: its share is done here
            shipped = None
        if shipped is None:
            return done + [function(item) for item in theirs]
        return done + [land(item, wire) for item, wire in zip(theirs, shipped, strict=True)]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _map(function: Callable[[_Item], _Wire], items: list[_Item]) -> list[_Wire]:
    return [function(item) for item in items]
