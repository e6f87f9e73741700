"""Logging set-up and the names of the events slotkeeper logs.

Events have stable dotted names and flat keys (``environment``, ``slot``, ``action_id``,
``duration_ms``...). Logs go to stderr: human-readable on a terminal, one JSON object per line
with ``--log-format json``. No secret value is ever passed to a logger.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Literal

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


def _apply() -> None:
    import structlog

    global _pending
    if _pending is None:
        return
    (fmt, level), _pending = _pending, None
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


def get_logger() -> structlog.typing.FilteringBoundLogger:
    import structlog

    _apply()
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("slotkeeper")
    return logger
