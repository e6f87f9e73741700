"""One parser of durations: manifests (``rotateAfter: 30d``), ``--at +30d`` and the daemon's
intervals (``--poll-interval 90s``) all read them with ``model.parse_duration``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from slotkeeper.model import parse_duration
from tests.helpers import Run

Sk = Callable[..., Run]


@pytest.mark.parametrize(
    ("text", "seconds", "expected"),
    [
        ("90m", False, timedelta(minutes=90)),
        ("12h", False, timedelta(hours=12)),
        ("30d", False, timedelta(days=30)),
        ("2w", False, timedelta(weeks=2)),
        (" 5m ", False, timedelta(minutes=5)),
        ("90", True, timedelta(seconds=90)),
        ("90s", True, timedelta(seconds=90)),
        ("0.5", True, timedelta(seconds=0.5)),
        (".25s", True, timedelta(seconds=0.25)),
        ("1h", True, timedelta(hours=1)),
    ],
)
def test_a_duration_is_read_in_its_unit(text: str, seconds: bool, expected: timedelta) -> None:
    """Minutes, hours, days and weeks everywhere; bare or ``s`` seconds where asked for."""
    assert parse_duration(text, seconds=seconds) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", False),
        ("90s", False),
        ("", True),
        ("5 m", True),
        ("1y", True),
        ("-5m", True),
        ("s", True),
    ],
)
def test_anything_else_is_refused_with_examples(text: str, seconds: bool) -> None:
    """A value that is not a duration (of that kind) is a ValueError that shows examples."""
    with pytest.raises(ValueError, match=r"not a duration: .* \(expected e\.g\. 30"):
        parse_duration(text, seconds=seconds)


def test_the_command_line_reads_offsets_and_intervals_with_it(sk: Sk) -> None:
    """``--at +Nd`` and ``--poll-interval`` go through the one parser; a bad value is a usage
    error naming the option (exit 1 or click's 2, never a traceback)."""
    assert sk("plan", "--at", "+30x").code == 1
    assert "--at" in sk("plan", "--at", "+30x").err
    bad = sk("run", "--once", "--poll-interval", "5 minutes")
    assert bad.code != 0 and "not a duration: '5 minutes' (e.g. 30s, 5m, 1h)" in bad.err
    assert "Traceback" not in bad.err
