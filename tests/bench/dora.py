"""Target 7, delivery metrics at scale: ``slotkeeper dora`` over a ledger of 1,000,000 records
spanning two years, on SQLite and on PostgreSQL.

The ledger is written directly (bulk inserts into a freshly migrated ledger: applying a million
deploys through the CLI would take hours and measure something else): 50 environments of 100
slots, each slot deployed 200 times over 730 days, one commit per deployment recorded at deploy
time, every twentieth deployment a rollback to the artifact before. Then the real entry point
runs as a subprocess, as a person would: ``python -m slotkeeper dora production-00 --since 90d
--json`` (one environment, 90 days: about 2,500 of the million records), timed from outside,
with its peak RSS (``ru_maxrss`` of the child). Targets: at most 2 s and 200 MB on each backend.

``--quick`` (``make test``) builds 20,000 records over 60 days and holds no time.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slotkeeper.ledger import open_ledger
from tests.bench.ledger import postgres_reachable, postgres_schema
from tests.bench.measure import slotkeeper
from tests.bench.report import Figure, at_most, reported

ENVIRONMENTS = 50
SLOTS = 100
PER_SLOT = 200
SPAN = timedelta(days=730)
SECONDS_BOUND = 2.0
RSS_BOUND_MB = 200.0


def environment_name(index: int) -> str:
    """Ten production environments, the others not."""
    return f"production-{index:02d}" if index < 10 else f"env-{index:02d}"


def environment_rows(now: datetime) -> list[tuple[object, ...]]:
    """The ledger's environment rows (name, protected, production, repository, updated_at)."""
    return [(environment_name(e), 0, int(e < 10), None, stamp(now)) for e in range(ENVIRONMENTS)]


ENVIRONMENT_INSERT = (
    "INSERT INTO environments (name, protected, production, repository, updated_at) "
    "VALUES ({marks})"
)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Row = tuple[object, ...]


def rows(now: datetime, per_slot: int, span: timedelta) -> Iterator[tuple[Row, Row, Row | None]]:
    """(record, commit, failure) rows: every slot's deployments in time order, each superseding
    the one before (ids assigned here, in order), one commit a few hours before each, and one
    deployment in fifty reported failed by a target."""
    rng = random.Random(7)
    record_id = 0
    start = now - span
    step = span / per_slot
    for e in range(ENVIRONMENTS):
        environment = environment_name(e)
        for s in range(SLOTS):
            slot = f"s{s:03d}"
            versions: list[str] = []
            for n in range(per_slot):
                record_id += 1
                at = start + step * n + timedelta(minutes=rng.randrange(0, 600))
                rollback = n >= 2 and n % 20 == 0
                version = versions[-2] if rollback else f"v{n}"
                versions.append(version)
                last = n == per_slot - 1
                record = (
                    record_id,
                    environment,
                    slot,
                    "CONTAINER_IMAGE",
                    f"ghcr.io/acme/{slot}",
                    version,
                    None,
                    version,
                    "DEPLOYED" if last else "SUPERSEDED",
                    stamp(at),
                    stamp(at),
                    stamp(at),
                    None if last else record_id + 1,
                    None,
                    f"a{record_id}",
                    "{}",
                    1,
                )
                commit_at = stamp(at - timedelta(hours=rng.randrange(1, 72)))
                commit = (record_id, f"{record_id:040x}", commit_at, commit_at, f"feat: {n}")
                failure = (record_id, "unkey", "FAILED", stamp(at)) if n % 50 == 7 else None
                yield record, commit, failure


RECORD_INSERT = (
    "INSERT INTO records (id, environment, slot, artifact_kind, artifact_name, "
    "artifact_version, artifact_digest, ref, status, created_at, updated_at, last_seen_at, "
    "superseded_by, revision, action_id, annotations, commits_known) "
    "VALUES ({marks})"
)
FAILURE_INSERT = (
    "INSERT INTO target_failures (record_id, target, status, reported_at) VALUES ({marks})"
)
COMMIT_INSERT = (
    "INSERT INTO record_commits (record_id, sha, authored_at, committed_at, subject) "
    "VALUES ({marks})"
)


def fill_sqlite(path: Path, now: datetime, per_slot: int, span: timedelta) -> int:
    open_ledger(f"sqlite:///{path}", now=now).close()  # the schema, migrated
    db = sqlite3.connect(path)
    count = 0
    try:
        db.execute("PRAGMA foreign_keys = OFF")
        db.executemany(ENVIRONMENT_INSERT.format(marks=", ".join("?" * 5)), environment_rows(now))
        batch: list[tuple[Row, Row, Row | None]] = []
        for pair in rows(now, per_slot, span):
            batch.append(pair)
            if len(batch) == 50_000:
                count += _sqlite_batch(db, batch)
                batch = []
        count += _sqlite_batch(db, batch)
        db.commit()
        db.execute("ANALYZE")
    finally:
        db.close()
    return count


def _sqlite_batch(db: sqlite3.Connection, batch: list[tuple[Row, Row, Row | None]]) -> int:
    db.executemany(RECORD_INSERT.format(marks=", ".join("?" * 17)), [r for r, _, _ in batch])
    db.executemany(COMMIT_INSERT.format(marks=", ".join("?" * 5)), [c for _, c, _ in batch])
    db.executemany(
        FAILURE_INSERT.format(marks=", ".join("?" * 4)), [f for _, _, f in batch if f is not None]
    )
    return len(batch)


def fill_postgres(url: str, now: datetime, per_slot: int, span: timedelta) -> int:
    import psycopg

    from slotkeeper.ledger.postgres import split_url

    open_ledger(url, now=now).close()
    conninfo, schema = split_url(url)
    count = 0
    with psycopg.connect(conninfo, autocommit=False) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}"')
            cursor.execute("SET session_replication_role = replica")  # no FK checks
            cursor.executemany(
                ENVIRONMENT_INSERT.format(marks=", ".join(["%s"] * 5)), environment_rows(now)
            )
            with cursor.copy(
                "COPY records (id, environment, slot, artifact_kind, artifact_name, "
                "artifact_version, artifact_digest, ref, status, created_at, updated_at, "
                "last_seen_at, superseded_by, revision, action_id, annotations, "
                "commits_known) FROM STDIN"
            ) as records:
                commits = []
                failures = []
                for record, commit, failure in rows(now, per_slot, span):
                    records.write_row(record)
                    commits.append(commit)
                    if failure is not None:
                        failures.append(failure)
                    count += 1
            with cursor.copy(
                "COPY record_commits (record_id, sha, authored_at, committed_at, subject) "
                "FROM STDIN"
            ) as copied:
                for commit in commits:
                    copied.write_row(commit)
            with cursor.copy(
                "COPY target_failures (record_id, target, status, reported_at) FROM STDIN"
            ) as copied:
                for failure in failures:
                    copied.write_row(failure)
            cursor.execute("ANALYZE records")
            cursor.execute("ANALYZE record_commits")
            cursor.execute("ANALYZE target_failures")
        connection.commit()
    return count


def time_dora(url: str) -> tuple[float, float, dict[str, Any]]:
    """Seconds and peak RSS (MB) of ``slotkeeper dora production-00 --since 90d --json``."""
    done = slotkeeper("dora", "production-00", "--since", "90d", "--json", "--state", url)
    if done.code != 0:
        raise RuntimeError(f"dora failed: {done.err[-2000:]}")
    document: dict[str, Any] = json.loads(done.out)
    return done.seconds, done.peak_rss_mb, document


def _figures(label: str, records: int, seconds: float, rss: float, quick: bool) -> list[Figure]:
    target = "7 dora"
    if quick:
        return [
            reported(
                target, f"{label}: dora, 1 environment, 90 days, of {records:,}", seconds, "s"
            ),
            reported(target, f"{label}: dora peak RSS", rss, "MB"),
        ]
    return [
        at_most(
            target,
            f"{label}: dora, 1 environment, 90 days, of {records:,} records",
            seconds,
            "s",
            SECONDS_BOUND,
        ),
        at_most(target, f"{label}: dora peak RSS", rss, "MB", RSS_BOUND_MB),
    ]


def run(work: Path, *, quick: bool) -> list[Figure]:
    work.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    per_slot = 4 if quick else PER_SLOT
    span = timedelta(days=60) if quick else SPAN
    figures: list[Figure] = []
    path = work / "dora.db"
    built = time.perf_counter()
    records = fill_sqlite(path, now, per_slot, span)
    print(f"   sqlite: {records:,} records in {time.perf_counter() - built:.0f}s", file=sys.stderr)
    seconds, rss, document = time_dora(f"sqlite:///{path}")
    _check(document)
    figures += _figures("SQLite", records, seconds, rss, quick)
    if postgres_reachable() is not None:
        return figures  # reported as missing, never a failure (as the ledger target does)
    with postgres_schema() as url:
        built = time.perf_counter()
        records = fill_postgres(url, now, per_slot, span)
        print(
            f"   postgres: {records:,} records in {time.perf_counter() - built:.0f}s",
            file=sys.stderr,
        )
        seconds, rss, document = time_dora(url)
        _check(document)
        figures += _figures("PostgreSQL", records, seconds, rss, quick)
    return figures


def _check(document: dict[str, Any]) -> None:
    """The answer is a real one: deployments were found and judged."""
    if document["metrics"]["deployment_frequency"]["deployments"] == 0:
        raise RuntimeError("dora found no deployment in the bench ledger")
