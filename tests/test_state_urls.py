"""Where `--state` points: readers never create a ledger, a libpq keyword string is refused
rather than turned into a file, and no ledger credential is ever shown, through the real CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from slotkeeper.redact import redact_url, scrub
from tests.conftest import POSTGRES, postgres_schema_url
from tests.daemon_support import Ui
from tests.helpers import Run, deploy_key, environment, image, write_manifests

Sk = Callable[..., Run]

READERS = [
    ("status",),
    ("status", "--json"),
    ("history", "production"),
    ("history", "production", "--json"),
    ("keys", "list"),
    ("keys", "list", "--json"),
    ("ui", "--listen", "127.0.0.1:0"),
]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL ledger URL whose schema does not exist yet."""
    yield from postgres_schema_url()


def schema_exists(url: str) -> bool:
    schema = url.rsplit("schema=", 1)[1].split("&")[0]
    with psycopg.connect(POSTGRES, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return bool(row and row[0])


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reader_at_a_mistyped_state_creates_nothing(
    sk: Sk, workdir: Path, command: tuple[str, ...]
) -> None:
    """status, history, keys list and ui say "no ledger at PATH", exit 1, and create nothing."""
    before = files_under(workdir)
    result = sk(*command, "--state", "sqlite:///typo/state.db")
    assert result.code == 1
    assert "no ledger at typo/state.db" in result.err
    assert "Traceback" not in result.err
    assert files_under(workdir) == before


def test_a_reader_leaves_an_empty_file_as_it_is(sk: Sk, workdir: Path) -> None:
    """An existing empty file is no ledger: a reader says so and does not turn it into one."""
    (workdir / "empty.db").write_bytes(b"")
    result = sk("status", "--state", "empty.db")
    assert result.code == 1
    assert "no ledger at empty.db" in result.err
    assert (workdir / "empty.db").read_bytes() == b""


def test_a_first_plan_needs_no_ledger_and_creates_none(sk: Sk, workdir: Path) -> None:
    """Before any apply, plan shows every slot as new (as CI does on a first pull request),
    says there is no ledger yet, and leaves nothing on disk."""
    write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
    before = files_under(workdir)
    result = sk("plan", "-m", "m", "--state", "sqlite:///fresh/state.db")
    assert result.code == 0, result.err
    assert "production/api" in result.out and "Plan: 1 to deploy" in result.out
    assert "no ledger at fresh/state.db" in result.err
    assert files_under(workdir) == before
    as_json = sk("plan", "-m", "m", "--state", "sqlite:///fresh/state.db", "--json")
    assert as_json.json()["summary"]["deploy"] == 1
    assert files_under(workdir) == before


def test_a_plan_saved_before_the_first_apply_applies_and_creates_the_ledger(
    sk: Sk, workdir: Path
) -> None:
    """`plan --out` on no ledger, then `apply PLANFILE`: the ledger is created and the plan
    applied; a second ledger created in between would make the plan stale instead."""
    write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
    assert sk("plan", "-m", "m", "--state", "first.db", "--out", "p.plan").code == 0
    assert not (workdir / "first.db").exists()
    applied = sk("apply", "p.plan", "--state", "first.db")
    assert applied.code == 0, applied.err
    status = sk("status", "--state", "first.db", "--json").json()["slots"]
    assert [(row["slot"], row["status"]) for row in status] == [("api", "DEPLOYED")]

    assert sk("plan", "-m", "m", "--state", "second.db", "--out", "q.plan").code == 0
    assert sk("apply", "--yes", "-m", "m", "--state", "second.db").code == 0
    stale = sk("apply", "q.plan", "--state", "second.db")
    assert stale.code == 1 and "stale" in stale.err


def test_writers_create_the_ledger(sk: Sk, workdir: Path) -> None:
    """apply (and so run and keys rotate, which open the ledger the same way) creates it."""
    write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
    assert sk("apply", "--yes", "-m", "m", "--state", "sqlite:///new/dir/state.db").code == 0
    assert (workdir / "new" / "dir" / "state.db").is_file()


DSNS = [
    "host=db user=sk password=s3cretpw dbname=deployments",
    "dbname=deployments password=s3cretpw",
    "host=db.internal",
    "user = sk  password = 's3cretpw'",
]


@pytest.mark.parametrize("dsn", DSNS)
@pytest.mark.parametrize(
    "command",
    [("status",), ("plan", "-m", "m"), ("apply", "--yes", "-m", "m"), ("keys", "list")],
    ids=" ".join,
)
def test_a_libpq_keyword_string_is_refused_and_never_a_file(
    sk: Sk, workdir: Path, dsn: str, command: tuple[str, ...]
) -> None:
    """A keyword connection string is refused with a pointer to postgresql:// URLs; no file is
    made after it and its password is never printed."""
    write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
    before = files_under(workdir)
    result = sk(*command, "--state", dsn)
    assert result.code == 1
    assert "libpq keyword connection string" in result.err
    assert "postgresql://" in result.err
    assert "s3cretpw" not in result.out + result.err
    assert files_under(workdir) == before


def test_the_state_from_the_environment_is_checked_too(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLOTKEEPER_STATE holding a keyword string is refused like --state."""
    monkeypatch.setenv("SLOTKEEPER_STATE", "host=db password=s3cretpw")
    result = sk("status")
    assert result.code == 1 and "libpq keyword" in result.err
    assert "s3cretpw" not in result.err and not any(workdir.iterdir())


def test_readers_on_a_postgres_schema_without_a_ledger(
    sk: Sk, workdir: Path, postgres_url: str
) -> None:
    """status says "no ledger in URL" (password hidden) and plan plans from an empty ledger;
    neither creates the schema; apply does."""
    url = f"{postgres_url}&password=s3cretpw"
    write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
    status = sk("status", "--state", url)
    assert status.code == 1
    assert f"no ledger in {redact_url(url)}" in status.err
    assert "password=***" in status.err and "s3cretpw" not in status.err
    plan = sk("plan", "-m", "m", "--state", url, "--json")
    assert plan.code == 0, plan.err
    assert plan.json()["summary"]["deploy"] == 1
    assert "s3cretpw" not in plan.out + plan.err
    assert not schema_exists(url)
    assert sk("apply", "--yes", "-m", "m", "--state", url).code == 0
    assert schema_exists(url)
    assert [row["slot"] for row in sk("status", "--state", url, "--json").json()["slots"]] == [
        "api"
    ]


# -- credentials are never shown --------------------------------------------------------------

REDACTED = [
    ("postgresql://sk:s3cret@db:5432/x", "postgresql://sk:***@db:5432/x"),
    ("postgres://sk:p@ss@db/x?schema=a", "postgres://sk:***@db/x?schema=a"),
    ("postgresql://sk@db/x?password=s3cret&schema=a", "postgresql://sk@db/x?password=***&schema=a"),
    ("postgresql://db/x?sslpassword=s3cret", "postgresql://db/x?sslpassword=***"),
    ("postgresql://db/x?PASSWORD=s3cret", "postgresql://db/x?PASSWORD=***"),
    ("postgresql://db/x?passfile=/run/pgpass", "postgresql://db/x?passfile=/run/pgpass"),
    ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
    ("host=db password='s3 cret' sslpassword=k3y", "host=db password=*** sslpassword=***"),
    ("sqlite:///.slotkeeper/state.db", "sqlite:///.slotkeeper/state.db"),
]


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_redact_hides_every_credential_form_libpq_accepts(url: str, shown: str) -> None:
    """Userinfo, ?password=, ?sslpassword= and keyword password= are hidden; the rest stays."""
    assert redact_url(url) == shown


def test_scrub_hides_credentials_a_driver_echoes() -> None:
    """A driver message that quotes a credential (as written or decoded) loses it."""
    url = "postgresql://sk:p%40ss@db/x?sslpassword=k3y"
    message = 'bad value "p@ss" for k3y at postgresql://other:pw@db and password=zz'
    assert scrub(message, url) == (
        'bad value "***" for *** at postgresql://other:***@db and password=***'
    )


FAILING = [
    "postgresql://sk:s3cretA@127.0.0.1:1/x",
    "postgresql://sk@127.0.0.1:1/x?password=s3cretA",
    "postgresql://sk@127.0.0.1:1/x?sslpassword=s3cretA&password=s3cretB",
    "postgresql://sk:s3cretB@127.0.0.1:1/x?password=s3cretA&schema=ledger",
]


@pytest.mark.parametrize("url", FAILING)
@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("plan", "-m", "m"),
        ("apply", "--yes", "-m", "m"),
        ("ui", "--listen", "127.0.0.1:0"),
    ],
    ids=" ".join,
)
def test_a_failing_connection_never_prints_a_credential(
    sk: Sk, workdir: Path, url: str, command: tuple[str, ...]
) -> None:
    """Every form of PostgreSQL password stays out of stdout and stderr when connecting fails."""
    write_manifests(workdir / "m", environment("production", {"api": image(version="v1")}))
    result = sk(*command, "--state", url)
    assert result.code == 1
    assert "cannot connect to the ledger at postgresql://sk" in result.err
    assert "***" in result.err
    assert "s3cret" not in result.out + result.err


def test_ui_banner_and_pages_never_show_a_credential(
    sk: Sk,
    workdir: Path,
    postgres_url: str,
    ui: Callable[..., Ui],
) -> None:
    """`ui` over a PostgreSQL ledger whose URL carries passwords: the banner, the pages and
    /status show the URL without them."""
    url = postgres_url.replace("postgres@", "postgres:s3cretA@") + "&password=s3cretB"
    write_manifests(
        workdir / "m",
        environment("production", {"api": image(version="v1")}, deployKeys=[deploy_key("d")]),
    )
    assert sk("apply", "--yes", "-m", "m", "--state", url).code == 0
    server = ui("--state", url)
    for path in ("/", "/keys", "/status", "/slots/production/api", "/status/slots/production/api"):
        page = server.get(path)
        assert page.status_code == 200
        assert "s3cret" not in page.text
    assert "postgresql://postgres:***@" in server.get("/").text
    _, err = server.stop()
    assert f"Serving the dashboard of {redact_url(url)}" in err
    assert "s3cret" not in err
