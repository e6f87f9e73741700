"""State strings that are refused before anything opens: libpq keyword connection strings.

``host=db dbname=x password=SECRET`` is a connection string libpq accepts, but as ``--state`` it
would otherwise be taken for a file path, password and all; ``open_ledger`` refuses it without
echoing it. (Showing a ledger URL without its credentials is ``slotkeeper.redact``'s.)
"""

from __future__ import annotations

import re

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

_KEYWORD = re.compile(r"(?:^|\s)([A-Za-z_]+)\s*=")


def is_keyword_dsn(state: str) -> bool:
    """Whether a state string is a libpq keyword connection string (``host=db dbname=x``)
    rather than a URL or a file path: ``=`` together with whitespace, or a libpq keyword
    followed by ``=``."""
    if "://" in state:
        return False
    if "=" in state and re.search(r"\s", state.strip()):
        return True
    return any(match[1].lower() in LIBPQ_KEYWORDS for match in _KEYWORD.finditer(state))
