"""The one redactor, form by form, as tables: a ledger URL keeps its role and loses every libpq
password (userinfo, query, keyword string); git's words lose a URL's whole userinfo (a token
alone, ``x-access-token:``); a credential a caller knows of goes wherever it appears."""

from __future__ import annotations

import base64

import pytest

from slotkeeper.redact import (
    HIDDEN,
    SHORTEST_GUESS,
    hide,
    redact_text,
    redact_url,
    scrub,
    without_userinfo,
)

TOKEN = "ghs_installation0token0123"
BASIC = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()

LEDGER_URLS = [
    ("userinfo", "postgresql://sk:s3cret@db:5432/x", "postgresql://sk:***@db:5432/x"),
    ("userinfo with an @", "postgres://sk:p@ss@db/x", "postgres://sk:***@db/x"),
    ("userinfo, user only", "postgresql://sk@db/x", "postgresql://sk@db/x"),
    (
        "password in the query",
        "postgresql://sk@db/x?password=s3cret&schema=a",
        "postgresql://sk@db/x?password=***&schema=a",
    ),
    (
        "sslpassword in the query",
        "postgresql://db/x?sslpassword=k3y",
        "postgresql://db/x?sslpassword=***",
    ),
    (
        "query key in capitals",
        "postgresql://db/x?PASSWORD=s3cret",
        "postgresql://db/x?PASSWORD=***",
    ),
    (
        "query key encoded",
        "postgresql://db/x?pass%77ord=s3cret",
        "postgresql://db/x?pass%77ord=***",
    ),
    ("query key without a value", "postgresql://db/x?password", "postgresql://db/x?password=***"),
    (
        "passfile names a file",
        "postgresql://db/x?passfile=/run/pgpass",
        "postgresql://db/x?passfile=/run/pgpass",
    ),
    ("fragment kept", "postgresql://u:p@db/x#part", "postgresql://u:***@db/x#part"),
    (
        "x-access-token userinfo",
        f"https://x-access-token:{TOKEN}@github.com/acme/d.git",
        "https://x-access-token:***@github.com/acme/d.git",
    ),
    ("keyword=value string", "host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
    (
        "keyword=value, quoted, spaced",
        "host=db password = 's3 cr\\'et' sslpassword=k3y",
        "host=db password = *** sslpassword=***",
    ),
    ("keyword inside a word", "host=db mypassword=x", "host=db mypassword=x"),
    ("a file path", "sqlite:///.slotkeeper/state.db", "sqlite:///.slotkeeper/state.db"),
]


@pytest.mark.parametrize(
    ("url", "shown"), [row[1:] for row in LEDGER_URLS], ids=[row[0] for row in LEDGER_URLS]
)
def test_a_ledger_url_is_shown_with_its_role_and_without_any_password(url: str, shown: str) -> None:
    """Each place libpq takes a password is hidden; the user, host, file and the rest stay."""
    assert redact_url(url) == shown


GIT_WORDS = [
    ("user and password", "https://u:pw@host/r", (), "https://***@host/r"),
    ("a token alone", "https://ghp_token0123@host/r", (), "https://***@host/r"),
    (
        "x-access-token userinfo",
        f"fatal: unable to access 'https://x-access-token:{TOKEN}@github.com/acme/d.git/'",
        (),
        "fatal: unable to access 'https://***@github.com/acme/d.git/'",
    ),
    ("a password holding an @", "https://u:p@ss@host/r", (), "https://***@host/r"),
    (
        "every URL of a message",
        "from git+https://a:b@one/x to ssh://git@two/y",
        (),
        "from git+https://***@one/x to ssh://***@two/y",
    ),
    ("an @ in the path is no userinfo", "https://host/r/@v1", (), "https://host/r/@v1"),
    (
        "the Basic credential of x-access-token",
        f"proxy said: Authorization: Basic {BASIC}",
        (TOKEN, BASIC),
        "proxy said: Authorization: Basic ***",
    ),
    (
        "a known token in the query",
        f"GET https://host/r.git?access_token={TOKEN} failed",
        (TOKEN,),
        "GET https://host/r.git?access_token=*** failed",
    ),
    ("a known token anywhere", f"token {TOKEN} refused", (None, "", TOKEN), "token *** refused"),
    ("a guess too short to hide", "the git user abc", ("git", "abc"), "the git user abc"),
    ("a guess just long enough", "the user abcd", ("abcd",), "the user ***"),
    ("one holding another", "rejected abcdef", ("abcd", "abcdef"), "rejected ***"),
]


@pytest.mark.parametrize(
    ("text", "secrets", "shown"),
    [row[1:] for row in GIT_WORDS],
    ids=[row[0] for row in GIT_WORDS],
)
def test_gits_words_lose_every_userinfo_and_every_known_secret(
    text: str, secrets: tuple[str | None, ...], shown: str
) -> None:
    """A URL's whole userinfo goes (it may be a token alone); known secrets of four characters
    or more go wherever they appear, a longer one before one it holds."""
    assert redact_text(text, secrets=secrets) == shown


DRIVER_MESSAGES = [
    (
        "the password as written and decoded",
        "postgresql://sk:p%40ss@db/x",
        'bad "p@ss" or "p%40ss"',
        'bad "***" or "***"',
    ),
    (
        "a short password too",
        "postgresql://db/x?sslpassword=k3y",
        "key k3y refused",
        "key *** refused",
    ),
    (
        "another URL's password",
        "postgresql://sk@db/x",
        "at postgresql://other:pw@db",
        "at postgresql://other:***@db",
    ),
    (
        "a keyword password",
        "postgresql://sk@db/x",
        "password=zz sslpassword='a b'",
        "password=*** sslpassword=***",
    ),
    (
        "a password in a quoted URL's query",
        "postgresql://sk@db/x",
        "at postgresql://db/x?password=zz next",
        "at postgresql://db/x?password=*** next",
    ),
    (
        "a keyword string's own password",
        "host=db password=s3cret",
        "for user at s3cret",
        "for user at ***",
    ),
]


@pytest.mark.parametrize(
    ("url", "message", "shown"),
    [row[1:] for row in DRIVER_MESSAGES],
    ids=[row[0] for row in DRIVER_MESSAGES],
)
def test_a_drivers_message_loses_every_password_it_quotes(
    url: str, message: str, shown: str
) -> None:
    """The ledger URL's own credentials (any length, as written and decoded) and any other
    password a message quotes are hidden; the role names stay."""
    assert scrub(message, url) == shown


@pytest.mark.parametrize(
    ("secrets", "shown"),
    [
        (("abcd", "abcdef"), "*** ***"),
        (("abcdef", "abcd"), "*** ***"),
        (("bcde", "abcd"), "***ef ***"),
        (("abcd", "bcde"), "***ef ***"),
        (("ab",), "***cdef ***cd"),
        (("f",), "abcde*** abcd"),
        ((None, "", "d"), "abc***ef abc***"),
    ],
)
def test_known_secrets_are_hidden_longest_first_in_a_fixed_order(
    secrets: tuple[str, ...], shown: str
) -> None:
    """Whatever order they come in: the longest first, equal lengths alphabetically; one
    character is enough, none (or None) is nothing to hide."""
    assert hide("abcdef abcd", secrets) == shown


def test_the_shortest_guess_is_a_parameter_of_hide() -> None:
    """``shortest`` skips shorter secrets: what ``redact_text`` uses for its guesses."""
    assert hide("git abc", ("git",), shortest=SHORTEST_GUESS) == "git abc"
    assert hide("git abc", ("git",)) == f"{HIDDEN} abc"


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://u:p@host/r.git", "https://host/r.git"),
        (f"https://x-access-token:{TOKEN}@github.com/a/b.git", "https://github.com/a/b.git"),
        ("ssh://git@host/r.git", "ssh://host/r.git"),
        ("git@github.com:acme/r.git", "git@github.com:acme/r.git"),
        ("file:///srv/r.git", "file:///srv/r.git"),
    ],
)
def test_a_remote_is_recorded_without_its_userinfo(url: str, recorded: str) -> None:
    """The origin a checkout records has no userinfo; scp-like ssh forms are kept as written."""
    assert without_userinfo(url) == recorded
