"""Credentials out of what slotkeeper shows: the one home of every redaction rule.

Two kinds of URL pass through messages, logs and pages, and their userinfo means two things:

- a ledger URL (``postgresql://user:SECRET@host/db``): the user is a database role, shown so
  the operator can tell ledgers apart; the password goes, wherever libpq takes one (the
  userinfo, ``?password=`` and ``?sslpassword=``, a keyword string's ``password=``).
  ``redact_url`` shows such a URL, ``scrub`` cleans a driver's message about it.
- a git remote (``https://x-access-token:SECRET@github.com/…``, or ``https://SECRET@…``, a
  token alone): the userinfo may be nothing but the credential, so all of it goes.
  ``redact_text`` cleans git's words and the remote's description; ``without_userinfo`` is
  the URL as recorded (the origin of a checkout).

Both hide the credentials they were told of (``hide``), in every form a caller knows them in
(as written, percent-decoded, Basic-encoded), longest first so that one holding another goes
whole. Whatever is hidden becomes ``HIDDEN``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

HIDDEN = "***"

#: libpq parameters whose value is a credential (``passfile`` names a file: it may be shown)
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})

#: the shortest credential ``redact_text`` hides when told of it: its callers also pass
#: guesses (a URL's lone userinfo may be a user name such as "git"), and hiding shorter ones
#: would blank ordinary words
SHORTEST_GUESS = 4

_KEYWORD_SECRET = re.compile(
    r"(?<![\w.-])(" + "|".join(sorted(SECRET_PARAMETERS)) + r")(\s*=\s*)('(?:\\.|[^'\\])*'|\S*)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)


def hide(text: str, secrets: Iterable[str | None], *, shortest: int = 1) -> str:
    """``text`` with each of ``secrets`` of at least ``shortest`` characters (one or more: the
    empty string is in every text) hidden wherever it appears, longest first, so that a
    secret that contains another is hidden whole."""
    known = {s for s in secrets if s is not None and len(s) >= shortest}
    # Ties in a fixed order: two overlapping ones are hidden the same way on every run.
    for secret in sorted(known, key=_longest_first):
        text = text.replace(secret, HIDDEN)
    return text


def _longest_first(secret: str) -> tuple[int, str]:
    return -len(secret), secret


# -- ledger URLs: the role stays, every libpq password goes ----------------------------------


def _split(url: str) -> tuple[str, str, str, str]:
    """``scheme://``, the authority-and-path part, ``?query`` and ``#fragment`` of a URL."""
    scheme, _, rest = url.partition("://")
    rest, hash_, fragment = rest.partition("#")
    head, question, query = rest.partition("?")
    return f"{scheme}://", head, question + query, hash_ + fragment


def _userinfo(head: str) -> tuple[str, str, str] | None:
    """(user, password, the rest) of ``user:password@host/db``; None when there is no password.

    The password ends at the last ``@`` (a careless ``@`` inside it is still part of it)."""
    at = head.rfind("@")
    if at < 0 or ":" not in head[:at]:
        return None
    user, _, password = head[:at].partition(":")
    return user, password, head[at:]


def _parameters(query: str) -> list[tuple[str, str, str]]:
    """(key, ``=`` or nothing, value) of every parameter of ``?query``, in order."""
    return [pair.partition("=") for pair in query.lstrip("?").split("&") if pair]


def _secret(key: str) -> bool:
    return unquote_plus(key).lower() in SECRET_PARAMETERS


def redact_url(url: str) -> str:
    """The ledger URL (or connection string) without any credential, for messages and pages:
    the one function every message, log line, banner and page uses to show a ledger URL."""
    if "://" not in url:
        return _KEYWORD_SECRET.sub(lambda m: f"{m[1]}{m[2]}{HIDDEN}", url)
    scheme, head, query, fragment = _split(url)
    userinfo = _userinfo(head)
    if userinfo is not None:
        user, _, rest = userinfo
        head = f"{user}:{HIDDEN}{rest}"
    if query:
        query = "?" + "&".join(
            f"{key}={HIDDEN}" if _secret(key) else f"{key}{equals}{value}"
            for key, equals, value in _parameters(query)
        )
    return f"{scheme}{head}{query}{fragment}"


def credentials(url: str) -> list[str]:
    """Every credential value a ledger ``url`` carries, as written and decoded (longest
    first)."""
    found: list[str] = []
    if "://" not in url:
        for match in _KEYWORD_SECRET.finditer(url):
            value = match[3]
            found += [value, value.strip("'").replace("\\'", "'")]
    else:
        _, head, query, _ = _split(url)
        userinfo = _userinfo(head)
        if userinfo is not None:
            found += [userinfo[1], unquote(userinfo[1])]
        for key, _, value in _parameters(query):
            if _secret(key):
                found += [value, unquote_plus(value)]
    return sorted({value for value in found if value}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error) with every credential of the ledger ``url`` hidden, and
    any other password it quotes (in a URL's userinfo, or as ``password=``) too."""
    text = hide(text, credentials(url))
    text = _URL_PASSWORD.sub(lambda m: f"{m[1]}:{HIDDEN}@", text)
    return _KEYWORD_SECRET.sub(lambda m: f"{m[1]}{m[2]}{HIDDEN}", text)


# -- git remotes: the whole userinfo goes -----------------------------------------------------


def redact_text(text: str, *, secrets: Iterable[str | None] = ()) -> str:
    """Drop ``user:password@`` from URLs in a message (up to the last ``@`` of the authority,
    so a password holding an ``@`` goes too), and any of ``secrets`` of ``SHORTEST_GUESS``
    characters or more wherever it appears."""
    text = re.sub(r"(://)[^/?#\s]*@", rf"\1{HIDDEN}@", text)
    return hide(text, secrets, shortest=SHORTEST_GUESS)


def without_userinfo(url: str) -> str:
    """``url`` without any ``user:password@`` part (scp-like ``git@host:`` forms are kept)."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/]*@", r"\1", url)
