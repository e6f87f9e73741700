"""Logging set-up and the names of the events slotkeeper logs.

Events have stable dotted names and flat keys (``environment``, ``slot``, ``action_id``,
``duration_ms``...). Logs go to stderr: human-readable on a terminal, one JSON object per line
with ``--log-format json``. No secret value is ever passed to a logger.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import structlog

LogFormat = Literal["auto", "console", "json"]

RECONCILE_STARTED = "reconcile.started"
RECONCILE_FINISHED = "reconcile.finished"
RECONCILE_FAILED = "reconcile.failed"
APPLY_STARTED = "apply.started"
APPLY_FINISHED = "apply.finished"
ACTION_APPLIED = "action.applied"
ACTION_FAILED = "action.failed"
ACTION_BLOCKED = "action.blocked"
TARGET_REQUEST = "target.request"
TARGET_REQUEST_FAILED = "target.request_failed"
TARGET_SYNCED = "target.synced"
TARGET_SYNC_FAILED = "target.sync_failed"
TARGET_REPORTED_FAILURE = "target.reported_failure"


#: what ``configure_logging`` was asked for, not yet handed to structlog: it is imported by the
#: first logger made, so a command that logs nothing (a ``plan`` with nothing to report) does
#: not import it
_pending: tuple[LogFormat, str] | None = None
#: the level events are logged at (None: never configured, structlog's defaults log everything)
_level: str | None = None


def configure_logging(*, fmt: LogFormat = "auto", level: str = "warning") -> None:
    """Route structlog to stderr in the requested format at the requested level."""
    global _pending, _level
    logging.getLevelNamesMapping()[level.upper()]  # an unknown level fails here, not later
    _pending, _level = (fmt, level), level
    if "structlog" in sys.modules:  # loggers made earlier follow the new settings now
        _apply()


def enabled(level: str) -> bool:
    """Whether events at ``level`` are logged: to skip working out what a log line would say
    (and importing structlog) when it would be dropped."""
    if _level is None:
        return True
    levels = logging.getLevelNamesMapping()
    return levels[level.upper()] >= levels[_level.upper()]


#: held while the settings are handed to structlog: a logger made meanwhile, in another
#: thread, waits for them (structlog's defaults print to stdout)
_applying = threading.Lock()


def _apply() -> None:
    if _pending is None:
        return
    with _applying:
        if _pending is not None:
            _hand_over(*_pending)


def _hand_over(fmt: LogFormat, level: str) -> None:
    import structlog

    global _pending
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # Resolve sys.stderr when a logger is made, not now: it may be swapped (tests, daemons).
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _pending = None


class Logger(Protocol):
    """What slotkeeper asks of a logger: structlog's filtering logger, or :class:`_Deferred`."""

    def bind(self, **context: Any) -> Logger: ...
    def debug(self, event: str, **fields: Any) -> Any: ...
    def info(self, event: str, **fields: Any) -> Any: ...
    def warning(self, event: str, **fields: Any) -> Any: ...
    def error(self, event: str, **fields: Any) -> Any: ...


def get_logger() -> Logger:
    """The logger events go through. Until structlog is imported (the command line configured
    logging, and nothing was logged yet), one that imports it only for an event at a level
    that is logged: a command that logs nothing (an apply that goes well, at the default
    level) never imports it."""
    if _pending is not None and "structlog" not in sys.modules:
        return _Deferred({})
    return _structlog_logger()


def _structlog_logger() -> structlog.typing.FilteringBoundLogger:
    import structlog

    _apply()
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("slotkeeper")
    return logger


class _Deferred:
    """A logger whose events below the configured level are dropped here, and the others
    handed to structlog's (imported then) with the context bound so far."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context

    def bind(self, **context: Any) -> Logger:
        return _Deferred({**self._context, **context})

    def debug(self, event: str, **fields: Any) -> Any:
        return self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> Any:
        return self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> Any:
        return self._log("error", event, fields)

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> Any:
        if not enabled(level):
            return None
        logger = _structlog_logger().bind(**self._context)
        return getattr(logger, level)(event, **fields)
