"""A GitHub target authenticated as a GitHub App, end to end against the fake GitHub's App
endpoints (which verify the JWT with the App's public key and issue installation tokens that
expire): a whole apply through the CLI and the daemon, a token expiring mid-apply, two
installations with two budgets, and no App key, JWT or token anywhere it does not belong."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.fakes.github_apps import AppCredentials
from tests.fakes.spec import OpenApiChecker, check_recorded
from tests.helpers import (
    Run,
    deploy_key,
    environment,
    image,
    recorded_state,
    target_document,
    write_manifests_and_targets,
)

UNUSED_TOKEN = "no-personal-token-is-used-here"


@pytest.fixture
def gh(github_spec: OpenApiChecker) -> Iterator[FakeGitHub]:
    """The fake GitHub with repositories of two organisations; every exchange slotkeeper had
    with it fits GitHub's descriptions."""
    with FakeGitHub(token=UNUSED_TOKEN, repositories=["acme/web", "globex/shop"]) as fake:
        yield fake
        check_recorded(fake.requests, github_spec)


@pytest.fixture
def app(gh: FakeGitHub, tmp_path_factory: pytest.TempPathFactory) -> tuple[AppCredentials, Path]:
    """An App installed on acme, and its private key in a file of the operator's (0600)."""
    credentials = gh.add_app()
    gh.add_installation(credentials, "acme")
    key_file = tmp_path_factory.mktemp("operator-keys") / "app.pem"
    key_file.write_bytes(credentials.private_key_pem)
    key_file.chmod(0o600)
    return credentials, key_file


def app_target(gh: FakeGitHub, key_file: Path, client_id: str, **extra: Any) -> dict[str, Any]:
    return target_document(
        "github",
        type="github",
        baseUrl=gh.base_url,
        auth={"app": {"clientId": client_id, "privateKey": {"file": str(key_file)}}},
        **extra,
    )


def production(
    repository: str = "acme/web", name: str = "production", **slots: Any
) -> dict[str, Any]:
    env = environment(
        name,
        slots or {"api": image()},
        repository=repository,
        targets=["github"],
        deployKeys=[deploy_key(f"{name}-deployer", repository=repository)],
    )
    for slot in env["spec"]["slots"].values():
        slot["ref"] = "main"
    return env


def authorizations(gh: FakeGitHub) -> list[tuple[str, str, str]]:
    """(method, path, credential) of every request the fake received."""
    return [
        (r.method, r.path, r.headers.get("authorization", "").removeprefix("Bearer "))
        for r in gh.requests
    ]


def test_a_whole_apply_as_an_app_uses_one_jwt_lookup_and_one_installation_token(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, app: tuple[AppCredentials, Path]
) -> None:
    """Deployments, statuses and a deploy key are made with the installation's token; the JWT
    is sent only to find the installation and to mint that token, once each."""
    credentials, key_file = app
    write_manifests_and_targets(
        workdir / "m", production(), app_target(gh, key_file, credentials.client_id)
    )
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err
    assert len(gh.deployments("acme", "web")) == 1 and len(gh.keys("acme", "web")) == 1
    calls = authorizations(gh)
    jwt_calls = [(m, p) for m, p, credential in calls if credential.count(".") == 2]
    assert jwt_calls == [
        ("GET", "/repos/acme/web/installation"),
        ("POST", f"/app/installations/{gh_installation(gh)}/access_tokens"),
    ]
    assert len(gh.tokens_issued) == 1
    token_calls = [c for c in calls if c[2].count(".") != 2]
    assert token_calls and all(gh.issued_token(c[2]) is not None for c in token_calls)
    assert all(r.status is not None and r.status < 400 for r in gh.requests), calls


def gh_installation(gh: FakeGitHub) -> int:
    [(installation, _)] = gh.tokens_issued
    return installation


def test_a_token_that_expires_mid_apply_is_renewed_and_no_write_fails(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, app: tuple[AppCredentials, Path]
) -> None:
    """The installation token expires after the first deployment is created: the next request
    gets a 401, a new token is minted, and the request is sent again: every record and key
    still lands, each written once."""
    credentials, key_file = app
    slots = {f"s{i}": image(f"ghcr.io/acme/s{i}") for i in range(4)}
    write_manifests_and_targets(
        workdir / "m",
        production(**slots),
        app_target(gh, key_file, credentials.client_id),
    )
    expired: list[bool] = []

    def expire_after_first_deployment(fake: FakeGitHub) -> None:
        created = [
            r for r in fake.requests if r.method == "POST" and r.path.endswith("/deployments")
        ]
        if created and not expired:
            expired.append(True)
            fake.expire_tokens()

    gh.on_request = expire_after_first_deployment
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err
    assert expired and len(gh.tokens_issued) == 2
    assert sum(1 for r in gh.requests if r.status == 401) >= 1
    deployments = gh.deployments("acme", "web")
    assert len(deployments) == 4 and {gh.latest_state(d["id"]) for d in deployments} == {"success"}
    records = {d["payload"]["slotkeeper"]["record_id"] for d in deployments}
    assert len(records) == 4  # none created twice


def test_two_installations_are_two_write_budgets(
    sk: Callable[..., Run],
    workdir: Path,
    gh: FakeGitHub,
    app: tuple[AppCredentials, Path],
    tmp_path: Path,
) -> None:
    """Environments in two organisations: each installation spends its own budget (kept in
    the ledger under its own name), so a budget of two writes a minute deploys both."""
    credentials, key_file = app
    gh.add_installation(credentials, "globex")
    write_manifests_and_targets(
        workdir / "m",
        {**production(), "spec": {**production()["spec"], "deployKeys": []}},
        {
            **production("globex/shop", "shop"),
            "spec": {**production("globex/shop", "shop")["spec"], "deployKeys": []},
        },
        app_target(gh, key_file, credentials.client_id, writesPerMinute=2, maxWaitSeconds=0),
    )
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err + result.out
    assert len(gh.deployments("acme", "web")) == 1 and len(gh.deployments("globex", "shop")) == 1
    assert len(gh.tokens_issued) == 2
    state = workdir / ".slotkeeper" / "state.db"
    with sqlite3.connect(state) as db:
        budgets = {row[0] for row in db.execute("SELECT DISTINCT target FROM target_writes")}
    installations = sorted(i for i, _ in gh.tokens_issued)
    assert budgets == {f"github@installation-{i}" for i in installations}
    assert recorded_state(state).deployed


def needles(credentials: AppCredentials, gh: FakeGitHub) -> dict[str, str]:
    """What must never leave: the App key's body lines, every JWT and installation token the
    fake saw or issued."""
    found: dict[str, str] = {}
    pem_lines = credentials.private_key_pem.decode().splitlines()[1:-1]
    for number, line in enumerate(pem_lines[:: max(1, len(pem_lines) // 4)]):
        found[f"private key line {number}"] = line
    for _, _, credential in authorizations(gh):
        if credential:
            kind = "JWT" if credential.count(".") == 2 else "installation token"
            found[f"{kind} {credential[:6]}"] = credential
            if kind == "JWT":
                found[f"JWT signature {credential[:6]}"] = credential.rsplit(".", 1)[1]
    return found


def scan(outputs: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, secret in secrets.items()
        if secret and secret in text
    ]


def test_no_app_key_jwt_or_token_reaches_output_logs_the_ledger_or_a_plan(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, app: tuple[AppCredentials, Path]
) -> None:
    """Debug logs, JSON output, a saved plan and the ledger file hold none of the App's
    secrets, after an apply with a renewal on a 401 (the most logging path)."""
    credentials, key_file = app
    write_manifests_and_targets(
        workdir / "m", production(), app_target(gh, key_file, credentials.client_id)
    )
    outputs: dict[str, str] = {}
    gh.on_request = lambda fake: fake.expire_tokens() if len(fake.requests) == 4 else None
    applied = sk("--log-level", "debug", "apply", "--yes", "-m", "m")
    assert applied.code == 0, applied.err
    outputs["apply"] = applied.out + applied.err
    sk("--log-level", "debug", "plan", "-m", "m", "--out", "saved.plan")
    planned = sk("--log-level", "debug", "plan", "-m", "m", "--json")
    outputs["plan"] = planned.out + planned.err
    outputs["plan file"] = (workdir / "saved.plan").read_bytes().decode(errors="replace")
    state = workdir / ".slotkeeper"
    for path in state.rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes().decode(errors="replace")
    secrets = needles(credentials, gh)
    assert len(gh.tokens_issued) >= 2 and any(k.startswith("JWT") for k in secrets)
    assert scan(outputs, secrets) == []
    # the scan itself finds what it looks for
    assert scan({"x": f"Bearer {next(iter(secrets.values()))}"}, secrets)


def test_the_daemon_authenticates_as_the_app_and_exports_the_tokens_expiry(
    workdir: Path,
    gh: FakeGitHub,
    app: tuple[AppCredentials, Path],
    running: Callable[..., Running],
) -> None:
    """`slotkeeper run` with an App target: the record is deployed with an installation token,
    and /metrics says how long that token has left (about an hour, never zero)."""
    credentials, key_file = app
    write_manifests_and_targets(
        workdir / "m", production(), app_target(gh, key_file, credentials.client_id)
    )
    daemon = running("-m", "m", "--resync-interval", "1h")
    wait_for(lambda: len(gh.deployments("acme", "web")) == 1, what="deployment")
    metrics = text_string_to_metric_families(daemon.get("/metrics").text)
    [left] = [
        sample.value
        for family in metrics
        if family.name == "slotkeeper_credential_expiry_seconds"
        for sample in family.samples
        if sample.labels == {"target": "github"}
    ]
    assert 3000 < left <= 3600
    code, err = daemon.terminate()
    assert code == 0
    assert not re.search(r"BEGIN RSA|ghs_", err)


def test_a_token_close_to_its_expiry_is_replaced_before_github_refuses_it(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, app: tuple[AppCredentials, Path]
) -> None:
    """Tokens are minted again when less than 5 minutes are left, not only on a 401: with
    tokens that live 299 s, the second apply mints a new one and no request is refused."""
    credentials, key_file = app
    gh.token_lifetime = 299
    write_manifests_and_targets(
        workdir / "m", production(), app_target(gh, key_file, credentials.client_id)
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    first = len(gh.tokens_issued)
    write_manifests_and_targets(
        workdir / "m",
        production(api=image(version="v2")),
        app_target(gh, key_file, credentials.client_id),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert len(gh.tokens_issued) > first
    assert not any(r.status == 401 for r in gh.requests)


def test_a_long_lived_token_is_kept_across_applies_of_one_process(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, app: tuple[AppCredentials, Path]
) -> None:
    """An hour's token serves every apply of the process (as a daemon's reconciles): one
    installation lookup, one mint."""
    credentials, key_file = app
    for version in ("v1", "v2", "v3"):
        write_manifests_and_targets(
            workdir / "m",
            production(api=image(version=version)),
            app_target(gh, key_file, credentials.client_id),
        )
        assert sk("apply", "--yes", "-m", "m").code == 0
    assert len(gh.tokens_issued) == 1
    lookups = [r for r in gh.requests if r.path.endswith("/installation")]
    assert len(lookups) == 1


def test_an_app_named_by_its_app_id_with_a_fixed_installation_looks_nothing_up(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, app: tuple[AppCredentials, Path]
) -> None:
    """`appId` is the JWT's issuer when no clientId is given, and `installationId` spares the
    lookup: the apply mints one token for that installation and asks nothing else of /app."""
    credentials, key_file = app
    installation = gh.add_installation(credentials, "globex")
    target = target_document(
        "github",
        type="github",
        baseUrl=gh.base_url,
        auth={
            "app": {
                "appId": credentials.app_id,
                "privateKey": {"file": str(key_file)},
                "installationId": installation,
            }
        },
    )
    write_manifests_and_targets(workdir / "m", production("globex/shop", "shop"), target)
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err
    assert [i for i, _ in gh.tokens_issued] == [installation]
    assert not [r for r in gh.requests if r.path.endswith("/installation")]
    assert len(gh.deployments("globex", "shop")) == 1
