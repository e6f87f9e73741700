from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from slotkeeper.cli import main
from tests.daemon_support import running, ui  # noqa: F401  (fixtures shared by the tests)
from tests.fakes.chainloop import FakeChainloop
from tests.fakes.github import FakeGitHub
from tests.fakes.iftrue import FakeIftrue
from tests.fakes.slack import FakeSlack
from tests.fakes.unkey import FakeUnkey
from tests.fakes.webhook import FakeWebhook
from tests.helpers import FAKES_EGRESS, Run

if TYPE_CHECKING:
    from tests.fakes.spec import OpenApiChecker

#: the token the `github` fixture accepts (and the `gh` fixture sets as GITHUB_TOKEN)
GITHUB_TOKEN_VALUE = "ghp_testtoken0123456789"
#: the repository the `github` fixture starts with: the one the tests' environments and deploy
#: keys name (helpers.deploy_key's default); a test that uses another one creates it
GITHUB_REPOSITORY = "acme/web"

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def egress_to_the_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fakes serve on loopback, which the egress guard refuses unless the operator allows
    it: every test allows loopback (inherited by the daemon it starts), except where a test
    takes the permission away to see the refusal."""
    monkeypatch.setenv("SLOTKEEPER_EGRESS_ALLOW", FAKES_EGRESS)


@pytest.fixture(autouse=True)
def no_app_tokens_from_earlier_tests() -> Iterator[None]:
    """GitHub App installation ids and tokens are kept for the life of the process (a daemon's
    reconciles share them); tests run in one process against fakes whose ports are reused, so
    each test starts with none."""
    from slotkeeper.targets.githubapp import APP_TOKENS

    APP_TOKENS.clear()
    yield
    APP_TOKENS.clear()


@pytest.fixture
def workdir(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A scratch current directory: the default ledger and secrets land under it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("SLOTKEEPER_STATE", raising=False)
    monkeypatch.delenv("SLOTKEEPER_SECRETS_DIR", raising=False)
    monkeypatch.delenv("SLOTKEEPER_STATE_FILE", raising=False)
    # The operator's targets file, outside the work tree: empty (no target) until a test writes
    # its targets (helpers.write_targets); subprocesses (the daemon) inherit it too.
    targets = tmp_path_factory.mktemp("operator") / "targets.yaml"
    targets.write_text("")
    monkeypatch.setenv("SLOTKEEPER_TARGETS", str(targets))
    return tmp_path


@pytest.fixture
def sk(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run the real CLI entry point in-process and capture its exit code and output."""

    def run(*args: str) -> Run:
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return Run(code=code, out=captured.out, err=captured.err)

    return run


@pytest.fixture
def state(workdir: Path) -> Path:
    """Where the CLI's default ledger lives for tests that use ``workdir``."""
    return workdir / ".slotkeeper" / "state.db"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A running fake of GitHub's deployment APIs that accepts ``GITHUB_TOKEN_VALUE`` and holds
    one repository, ``GITHUB_REPOSITORY``."""
    with FakeGitHub(token=GITHUB_TOKEN_VALUE, repositories=[GITHUB_REPOSITORY]) as fake:
        yield fake


@pytest.fixture
def gh(
    github: FakeGitHub, github_spec: OpenApiChecker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGitHub]:
    """The fake GitHub with GITHUB_TOKEN set; every request sent is checked against the spec."""
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN_VALUE)
    yield github
    for recorded in github.requests:
        github_spec.check_request(recorded.method, recorded.url, recorded.headers, recorded.body)


@pytest.fixture(scope="session")
def github_spec() -> OpenApiChecker:
    """GitHub's OpenAPI descriptions (the three extracts: deployments, deploy keys and
    environments; Apps, Actions secrets, meta and rate limit; pull requests; parsed once per
    session) as one request/response checker that checks each exchange against the file
    matching its path."""
    from tests.fakes.spec import GITHUB_SPECS, OpenApiChecker  # openapi-core is slow to import

    return OpenApiChecker(GITHUB_SPECS)


@pytest.fixture
def chainloop() -> Iterator[FakeChainloop]:
    """A running fake of Chainloop's deployment-records API that accepts its default token."""
    with FakeChainloop() as fake:
        yield fake


@pytest.fixture
def unkey() -> Iterator[FakeUnkey]:
    """A running fake of Unkey's deploy API (project acme, apps default and api)."""
    with FakeUnkey() as fake:
        yield fake


@pytest.fixture
def iftrue() -> Iterator[FakeIftrue]:
    """A running fake of iftrue's deployment tracking that accepts its default JWT."""
    with FakeIftrue() as fake:
        yield fake


@pytest.fixture(scope="session")
def chainloop_spec() -> OpenApiChecker:
    """Chainloop's OpenAPI description (parsed once per session) as a request/response checker."""
    from tests.fakes.spec import CHAINLOOP_SPEC, OpenApiChecker  # openapi-core is slow to import

    return OpenApiChecker(CHAINLOOP_SPEC)


@pytest.fixture(scope="session")
def unkey_spec() -> OpenApiChecker:
    """Unkey's OpenAPI description (parsed once per session) as a request/response checker."""
    from tests.fakes.spec import UNKEY_SPEC, OpenApiChecker  # openapi-core is slow to import

    return OpenApiChecker(UNKEY_SPEC)


POSTGRES = os.environ.get("SLOTKEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_schema_url() -> Iterator[str]:
    """A ledger URL in a fresh PostgreSQL schema, dropped afterwards. PostgreSQL not answering
    is a failure, never a skip: CI starts it (see .ci/run)."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        connection = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}: {exc}")
    connection.close()
    try:
        yield f"{POSTGRES}?schema={schema}"
    finally:
        # a connection of its own: a test may have restarted the server meanwhile
        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL ledger schema's URL."""
    yield from postgres_schema_url()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger URL on each backend: an SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    """A running webhook receiver at ``/hook`` (no secret), checking each message against the
    notification schema; at teardown no message may have broken the contract (a test that
    sends bad ones on purpose clears ``violations``) and the fake itself may not have failed."""
    with FakeWebhook() as fake:
        yield fake
    assert fake.violations == [], "messages broke the notification contract"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A running fake of Slack's incoming webhooks (no hook until the test adds one); at
    teardown Slack may not have refused a message as malformed (a test that sends bad ones on
    purpose clears ``violations``) and the fake itself may not have failed."""
    with FakeSlack() as fake:
        yield fake
    assert fake.violations == [], "Slack refused messages as malformed"
