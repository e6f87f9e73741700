"""The PostgreSQL writer lock when the network to the database fails without closing (a
partition, through tests/netfault.py): the leader finds out by a local deadline, never by a
query that hangs for as long as TCP retransmits (issue 17)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from slotkeeper.ledger import open_ledger
from slotkeeper.ledger.postgres import LOCK_CHECK_SECONDS
from tests.conftest import postgres_schema_url
from tests.netfault import TcpProxy


@pytest.fixture
def proxied() -> Iterator[tuple[str, TcpProxy]]:
    """A fresh ledger schema's URL that reaches PostgreSQL through a proxy that can fail."""
    for url in postgres_schema_url():
        parts = urlsplit(url)
        with TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432)) as proxy:
            yield url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}"), proxy


def test_a_partitioned_leader_knows_it_within_the_local_deadline(
    proxied: tuple[str, TcpProxy],
) -> None:
    """A leader whose lock session is blackholed answers `leading()` False within the lock
    check's deadline, instead of hanging; it leads again once the network heals."""
    url, proxy = proxied
    ledger = open_ledger(url, now=datetime.now(UTC))
    try:
        assert ledger.try_lead() and ledger.leading()
        proxy.blackhole()
        started = time.monotonic()
        assert ledger.leading() is False
        waited = time.monotonic() - started
        assert waited >= LOCK_CHECK_SECONDS * 0.9  # it did wait for an answer first
        proxy.heal()
        assert ledger.try_lead() and ledger.leading()
    finally:
        ledger.close()
