"""Several `slotkeeper run` replicas on one PostgreSQL ledger: one leader writes, the others
stand by and take over when its lease expires (it died) or is released (it stopped)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from slotkeeper.ledger import open_ledger
from slotkeeper.ledger.postgres import application_name, split_url
from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import environment, image, write_manifests_and_targets
from tests.test_github_target import target

SLOTS = 12


def leader_gauge(daemon: Running) -> float:
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        if family.name == "slotkeeper_leader":
            return float(family.samples[0].value)
    raise AssertionError("no slotkeeper_leader metric")


def declare(workdir: Path, github: FakeGitHub, version: str) -> None:
    manifest = environment(
        "production",
        {f"s{i}": image(f"img{i}", version) for i in range(SLOTS)},
        repository="acme/web",
        targets=["github"],
    )
    for slot in manifest["spec"]["slots"].values():
        slot["ref"] = "main"
    write_manifests_and_targets(workdir / "m", manifest, target(github))


def deployed_per_slot(url: str) -> list[tuple[object, ...]]:
    libpq, schema = split_url(url)
    with psycopg.connect(libpq, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        return list(
            db.execute(
                "SELECT slot, COUNT(*) FROM records WHERE status = 'DEPLOYED' GROUP BY slot"
            ).fetchall()
        )


def lease_row(url: str) -> tuple[str, int, bool]:
    """The writer lease as the ledger holds it: holder, epoch, and whether it has expired."""
    libpq, schema = split_url(url)
    with psycopg.connect(libpq, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        row = db.execute("SELECT holder, epoch, expires_at <= now() FROM lease").fetchone()
        assert row is not None, "no lease taken"
        return str(row[0]), int(row[1]), bool(row[2])


#: a short lease, so that a takeover after a death takes seconds in these tests
FAST = ("--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.5s")


def last_result(daemon: Running) -> str | None:
    """The result of the daemon's last reconcile (None before its first one starts)."""
    last = daemon.status()["last_reconcile"]
    return None if last is None else str(last["result"])


def assert_no_duplicates(github: FakeGitHub) -> None:
    seen: dict[int, int] = {}
    for deployment in github.deployments("acme", "web"):
        record = deployment["payload"]["slotkeeper"]["record_id"]
        seen[record] = seen.get(record, 0) + 1
    assert all(count == 1 for count in seen.values()), seen


def test_one_leader_writes_and_a_follower_takes_over_after_sigkill(
    workdir: Path, github: FakeGitHub, pg_url: str, running: Callable[..., Running]
) -> None:
    """Exactly one replica reconciles; SIGKILL it mid-apply and the other takes over once the
    dead one's lease has expired, with the next epoch, and converges: no duplicate deployment,
    one DEPLOYED record per slot."""
    declare(workdir, github, "v1")
    common = ("-m", "m", "--state", pg_url, "--resync-interval", "10m", *FAST)
    first = running(*common)
    wait_for(lambda: first.status()["leader"] is True, what="a leader")
    second = running(*common)
    assert second.status()["leader"] is False
    assert second.get("/readyz").status_code == 200
    assert (leader_gauge(first), leader_gauge(second)) == (1.0, 0.0)
    wait_for(lambda: last_result(first) == "success", what="v1 applied")
    assert second.reconciles() == 0

    github.latency = 0.05  # long enough an apply to kill it in the middle
    declare(workdir, github, "v2")
    writes = len(github.writes())
    wait_for(lambda: len(github.writes()) >= writes + 5, what="the apply under way")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    wait_for(lambda: second.status()["leader"] is True, what="the takeover")
    assert leader_gauge(second) == 1.0
    lease = second.status()["lease"]
    assert lease["this_replica"] is True and lease["epoch"] == 2
    assert lease_row(pg_url)[:2] == (lease["holder"], 2)
    github.latency = 0.0

    def converged() -> bool:
        last = second.status()["last_reconcile"]
        versions = {row["artifact"]["version"] for row in second.status()["slots"]}
        return last is not None and last["result"] == "success" and versions == {"v2"}

    wait_for(converged, timeout=60, what="convergence on the new leader")
    assert sorted(count for _, count in deployed_per_slot(pg_url)) == [1] * SLOTS
    assert_no_duplicates(github)
    by_record = {
        d["payload"]["slotkeeper"]["record_id"]: d for d in github.deployments("acme", "web")
    }
    assert len(by_record) == 2 * SLOTS
    assert second.terminate()[0] == 0


def test_a_leader_whose_sessions_are_ended_reconnects_and_keeps_leading(
    workdir: Path, github: FakeGitHub, pg_url: str, running: Callable[..., Running]
) -> None:
    """Leadership does not hang on a database session: with both sessions of the leader
    ended by the server (what a restart does to them), it reconnects, renews its lease in time
    and goes on leading at the same epoch, and the standby stays a standby."""
    declare(workdir, github, "v1")
    common = ("-m", "m", "--state", pg_url, "--resync-interval", "10m")
    first = running(*common, environ={"SLOTKEEPER_ACTOR": "replica-a"})
    wait_for(lambda: last_result(first) == "success", what="v1 applied")
    second = running(*common)
    holder, epoch, _ = lease_row(pg_url)
    libpq, _ = split_url(pg_url)
    with psycopg.connect(libpq, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name IN (%s, %s)",
            (application_name(holder), application_name(holder, "slotkeeper-lease")),
        ).fetchall()
        assert len(ended) == 2, "the leader's sessions (main and lease) were ended"
    declare(workdir, github, "v2")
    assert first.hook(b'{"ref": "refs/heads/main"}', delivery="r-1").status_code == 202
    wait_for(
        lambda: {r["artifact"]["version"] for r in first.status()["slots"]} == {"v2"},
        timeout=30,
        what="v2 applied by the same leader",
    )
    assert lease_row(pg_url)[:2] == (holder, epoch)
    assert first.status()["leader"] is True and second.status()["leader"] is False
    assert first.terminate()[0] == 0 and second.terminate()[0] == 0


def test_a_webhook_that_reaches_a_follower_reconciles_on_the_leader(
    workdir: Path, github: FakeGitHub, pg_url: str, running: Callable[..., Running]
) -> None:
    """Behind one Service either replica may get the webhook: a follower passes it to the
    leader through the ledger, and the leader reconciles at once."""
    declare(workdir, github, "v1")
    common = ("-m", "m", "--state", pg_url, "--resync-interval", "10m")
    leader = running(*common)
    wait_for(lambda: leader.status()["leader"] is True, what="a leader")
    follower = running(*common)
    wait_for(lambda: last_result(leader) == "success", what="v1 applied")
    before = leader.reconciles()
    assert follower.hook(b'{"ref": "refs/heads/main"}', delivery="f-1").status_code == 202
    wait_for(lambda: leader.reconciles() >= before + 1, timeout=10, what="the leader's reconcile")
    assert follower.reconciles() == 0
    assert leader.terminate()[0] == 0 and follower.terminate()[0] == 0


def test_replicas_started_together_on_a_fresh_schema_all_come_up_with_one_leader(
    workdir: Path, github: FakeGitHub, pg_url: str, running: Callable[..., Running]
) -> None:
    """Four replicas started at once on a schema that does not exist yet: the schema and its
    tables are made once (no replica fails on a duplicate key of pg_namespace), all four are
    ready, and exactly one leads."""
    declare(workdir, github, "v1")
    common = ("-m", "m", "--state", pg_url, "--resync-interval", "10m")
    with ThreadPoolExecutor(max_workers=4) as pool:
        replicas = list(pool.map(lambda _: running(*common), range(4)))
    wait_for(lambda: sum(bool(r.status()["leader"]) for r in replicas) == 1, what="one leader")
    assert all(r.get("/readyz").status_code == 200 for r in replicas)
    leader = next(r for r in replicas if r.status()["leader"])
    assert lease_row(pg_url) == (leader.status()["lease"]["holder"], 1, False)
    assert {r.status()["lease"]["holder"] for r in replicas} == {lease_row(pg_url)[0]}


def test_ledgers_opened_at_once_on_a_fresh_schema_share_one_lineage(pg_url: str) -> None:
    """Eight writers opening the same fresh schema at the same instant (a barrier) all succeed
    and find one ledger: schema creation and migrations are serialised."""
    start = threading.Barrier(8)

    def open_one(_: int) -> str:
        start.wait()
        ledger = open_ledger(pg_url, now=datetime.now(UTC))
        try:
            return ledger.read_state().lineage
        finally:
            ledger.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        lineages = set(pool.map(open_one, range(8)))
    assert len(lineages) == 1
