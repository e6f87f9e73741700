"""Ledger URL redaction at its edges: the credentials a URL carries, in which order, and which
state strings are libpq keyword strings (issue 15: the mutants these tests kill)."""

from __future__ import annotations

import pytest

from slotkeeper.ledger.urls import is_keyword_dsn
from slotkeeper.redact import credentials, redact_url, scrub


def test_a_url_with_a_port_and_no_userinfo_is_shown_as_it_is() -> None:
    """A ``host:port`` is not ``user:password``: without an ``@`` nothing is hidden."""
    assert (
        redact_url("postgresql://db.internal:5432/ledger") == "postgresql://db.internal:5432/ledger"
    )


def test_an_empty_userinfo_hides_nothing() -> None:
    """``postgresql://@host`` has no password, so it is shown unchanged."""
    assert redact_url("postgresql://@db:5432/ledger") == "postgresql://@db:5432/ledger"


def test_the_userinfo_password_is_found_as_written_and_decoded() -> None:
    """A percent-encoded password is found both ways, longest first, never the user name."""
    assert credentials("postgresql://alice:p%40ss@db/ledger") == ["p%40ss", "p@ss"]


def test_keyword_passwords_are_found_quoted_and_unquoted() -> None:
    """Every ``password=`` of a keyword string is found, quoted as written and unquoted."""
    found = credentials("host=db password='s3cr et' sslpassword=k3y dbname=x")
    assert found == ["'s3cr et'", "s3cr et", "k3y"]


def test_credentials_come_longest_first() -> None:
    """Longest first, so that a password that contains another is hidden whole."""
    found = credentials("postgresql://u:abc@db/x?password=abcdef&sslpassword=abcd")
    assert found == ["abcdef", "abcd", "abc"]


def test_scrub_hides_a_password_that_contains_another_whole() -> None:
    """A message quoting the longer password shows none of it."""
    url = "postgresql://u:abc@db/x?password=abcdef"
    assert scrub("rejected abcdef for u", url) == "rejected *** for u"


@pytest.mark.parametrize(
    ("state", "keyword"),
    [
        ("foo=bar baz=qux", True),  # "=" and whitespace, no libpq keyword
        ("host=db", True),  # a libpq keyword, no whitespace
        ("/var/lib/my ledger.db", False),  # a path with a space but no "="
        ("ledger=1.db", False),  # "=" without whitespace or keyword
        ("postgresql://u@db/x?host=a b", False),  # a URL is never a keyword string
    ],
)
def test_which_state_strings_are_keyword_strings(state: str, keyword: bool) -> None:
    """A keyword string has ``=`` with whitespace, or starts a libpq keyword with ``=``."""
    assert is_keyword_dsn(state) is keyword
