"""Logging set-up and the names of the events slotkeeper logs.

Events have stable dotted names and flat keys (``environment``, ``slot``, ``action_id``,
``duration_ms``...). Logs go to stderr: human-readable on a terminal, one JSON object per line
with ``--log-format json``. No secret value is ever passed to a logger.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "console", "json"]

APPLY_STARTED = "apply.started"
APPLY_FINISHED = "apply.finished"
ACTION_APPLIED = "action.applied"
ACTION_FAILED = "action.failed"
ACTION_BLOCKED = "action.blocked"
TARGET_REQUEST = "target.request"
TARGET_REQUEST_FAILED = "target.request_failed"
TARGET_SYNCED = "target.synced"
TARGET_SYNC_FAILED = "target.sync_failed"


def configure_logging(*, fmt: LogFormat = "auto", level: str = "warning") -> None:
    """Route structlog to stderr in the requested format at the requested level."""
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger() -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("slotkeeper")
    return logger
