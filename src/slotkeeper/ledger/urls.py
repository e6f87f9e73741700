"""Ledger URLs as they may be shown, and state strings that are refused before anything opens.

libpq takes a password in three places: the URL's userinfo (``postgresql://user:SECRET@host``),
a query parameter (``?password=SECRET``, and ``sslpassword=`` for an encrypted client key), and a
keyword connection string (``password=SECRET``). ``redact`` removes every one of them: it is the
one function that every message, log line, banner and page uses to show a ledger URL. ``scrub``
removes the same values from a driver's message, which may quote a URL or a parameter back.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

#: libpq parameters whose value is a credential (``passfile`` names a file: it may be shown)
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})

#: the keywords of a libpq connection string (``host=db dbname=x``), as libpq documents them
LIBPQ_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    }
)

HIDDEN = "***"

_KEYWORD_SECRET = re.compile(
    r"(?<![\w.-])(" + "|".join(sorted(SECRET_PARAMETERS)) + r")(\s*=\s*)('(?:\\.|[^'\\])*'|\S*)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)
_KEYWORD = re.compile(r"(?:^|\s)([A-Za-z_]+)\s*=")


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


def redact(url: str) -> str:
    """The ledger URL (or connection string) without any credential, for messages and pages."""
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
    """Every credential value ``url`` carries, as written and decoded (longest first)."""
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
    """``text`` (e.g. a driver's error) with every credential of ``url`` hidden, and any other
    password it quotes (in a URL's userinfo, or as ``password=``) too."""
    for value in credentials(url):
        text = text.replace(value, HIDDEN)
    text = _URL_PASSWORD.sub(lambda m: f"{m[1]}:{HIDDEN}@", text)
    return _KEYWORD_SECRET.sub(lambda m: f"{m[1]}{m[2]}{HIDDEN}", text)


def is_keyword_dsn(state: str) -> bool:
    """Whether a state string is a libpq keyword connection string (``host=db dbname=x``)
    rather than a URL or a file path: ``=`` together with whitespace, or a libpq keyword
    followed by ``=``."""
    if "://" in state:
        return False
    if "=" in state and re.search(r"\s", state.strip()):
        return True
    return any(match[1].lower() in LIBPQ_KEYWORDS for match in _KEYWORD.finditer(state))
