"""Deploy keys delivered to their consumers, end to end through the CLI: a Flux Secret, an Argo
CD Secret and an Actions secret (fake Kubernetes API and fake GitHub, both on loopback), the
operator's allow-lists, other teams' secrets never touched, rotations that never leave a
consumer holding a key GitHub does not know (checked at every request either fake receives),
a place failing mid-rotation, drift repaired, and revocation cleaning up."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from slotkeeper.cli import common
from slotkeeper.keys import fingerprint, private_key_fingerprint
from tests.daemon_support import Running, Ui, wait_for
from tests.fakes.github import ALL_PERMISSIONS, FakeGitHub
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.spec import OpenApiChecker, check_recorded
from tests.helpers import (
    Run,
    environment,
    image,
    recorded_state,
    target_document,
    write_manifests_and_targets,
)

TOKEN = "ghp_delivery0123456789abcdefghijklmnop"
KUBE_TOKEN = "kube-delivery-token-0123456789"
FLUX = {"kubernetes": {"namespace": "flux-system", "name": "flux-system", "format": "flux"}}
ARGO = {"kubernetes": {"namespace": "argocd", "name": "repo-platform", "format": "argocd"}}
ACTIONS = {
    "githubActions": {
        "repository": "acme/ci",
        "name": "PLATFORM_DEPLOY_KEY",
        "environment": "production",
    }
}
ALLOW = ("--secret-namespaces", "flux-system,argocd", "--secret-repositories", "acme/ci")


@pytest.fixture
def gh(github_spec: OpenApiChecker, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The fake GitHub: the key's repository and a CI repository with a `production`
    environment; the token may write deploy keys and Actions secrets."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with FakeGitHub(token=TOKEN, repositories=["acme/platform", "acme/ci"]) as fake:
        fake.tokens[TOKEN] = {**ALL_PERMISSIONS, "secrets": "write", "environments": "write"}
        httpx.put(
            f"{fake.base_url}/repos/acme/ci/environments/production",
            headers={"Authorization": f"Bearer {TOKEN}", "User-Agent": "test"},
            json={},
        ).raise_for_status()
        fake.reset_log()
        yield fake
        check_recorded(fake.requests, github_spec)


@pytest.fixture
def kube(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeKubernetes]:
    """The fake Kubernetes API, reached through the operator's KUBECONFIG; no body it received
    was refused."""
    with FakeKubernetes(KUBE_TOKEN) as fake:
        config = fake.kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(config))
        yield fake
        assert fake.violations == []


def declare(workdir: Path, gh: FakeGitHub, *places: dict[str, Any], **key: Any) -> None:
    env = environment(
        "production",
        {"api": image()},
        repository="acme/platform",
        targets=["github"],
        deployKeys=[
            {
                "repository": "acme/platform",
                "title": "gitops",
                "rotateAfter": "30d",
                "secrets": list(places),
                **key,
            }
        ]
        if places
        else [],
    )
    env["spec"]["slots"]["api"]["ref"] = "main"
    write_manifests_and_targets(
        workdir / "m",
        env,
        target_document(
            "github", type="github", baseUrl=gh.base_url, token={"env": "GITHUB_TOKEN"}
        ),
    )


def registered(gh: FakeGitHub) -> set[str]:
    """Fingerprints of the deploy keys GitHub knows for acme/platform."""
    return {fingerprint(key["key"]) for key in gh.keys("acme", "platform")}


def held(kube: FakeKubernetes, gh: FakeGitHub) -> dict[str, str | None]:
    """The fingerprint of the private key each consumer holds now (None: none yet)."""
    found: dict[str, str | None] = {}
    for label, (namespace, name, field) in {
        "flux": ("flux-system", "flux-system", "identity"),
        "argocd": ("argocd", "repo-platform", "sshPrivateKey"),
    }.items():
        secret = kube.secret(namespace, name)
        value = (secret or {}).get("data", {}).get(field)
        found[label] = private_key_fingerprint(base64.b64decode(value)) if value else None
    value = gh.actions_secret("acme/ci", "PLATFORM_DEPLOY_KEY", "production")
    found["actions"] = private_key_fingerprint(value.encode()) if value else None
    return found


class Invariant:
    """At every request either fake receives: every consumer that holds a key holds one GitHub
    has registered."""

    def __init__(self, kube: FakeKubernetes, gh: FakeGitHub) -> None:
        self.kube, self.gh = kube, gh
        self.violations: list[str] = []
        self.checks = 0
        kube.on_request = lambda _: self.check()
        gh.on_request = lambda _: self.check()

    def check(self) -> None:
        self.checks += 1
        known = registered(self.gh)
        for consumer, key in held(self.kube, self.gh).items():
            if key is not None and key not in known:
                self.violations.append(f"check {self.checks}: {consumer} holds unregistered {key}")


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Move slotkeeper's clock (as a daemon that has run for that long would see it)."""

    def move(offset: timedelta) -> None:
        moment = datetime.now(UTC) + offset
        monkeypatch.setattr(common, "utcnow", lambda: moment)

    return move


def test_a_key_reaches_flux_argocd_and_an_actions_secret_in_their_formats(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """One apply: the key is registered, and each consumer holds its private half as it reads
    it; the ledger says what each place holds; nothing private reaches the output."""
    declare(workdir, gh, FLUX, ARGO, ACTIONS)
    result = sk("apply", "--yes", "-m", "m", *ALLOW)
    assert result.code == 0, result.out + result.err
    [key] = registered(gh)
    assert held(kube, gh) == {"flux": key, "argocd": key, "actions": key}
    flux = kube.decoded("flux-system", "flux-system")
    assert flux["known_hosts"].splitlines() == [f"127.0.0.1 {line}" for line in gh.ssh_host_keys]
    argo = kube.decoded("argocd", "repo-platform")
    assert argo["type"] == "git" and argo["url"] == "ssh://git@127.0.0.1/acme/platform.git"
    state = recorded_state(workdir / ".slotkeeper" / "state.db")
    [active] = state.keys.values()
    holdings = state.sinks[("acme/platform", "gitops")]
    assert {label: h.fingerprint for label, h in holdings.items()} == {
        "kubernetes:flux-system/flux-system": key,
        "kubernetes:argocd/repo-platform": key,
        "githubActions:acme/ci/production/PLATFORM_DEPLOY_KEY": key,
    }
    assert all(h.key_id == active.id for h in holdings.values())
    assert "PRIVATE KEY" not in result.out + result.err
    assert not (workdir / ".slotkeeper" / "secrets").exists()


def test_places_the_operator_did_not_allow_are_refused_by_validate(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """A manifest naming kube-system, or a repository outside the allow-list: exit 1, the
    file, line and field named, nothing sent anywhere."""
    places = {"kubernetes": {"namespace": "kube-system", "name": "x", "format": "opaque"}}
    declare(workdir, gh, places, ACTIONS)
    result = sk("validate", "-m", "m", "--secret-namespaces", "flux-system")
    assert result.code == 1
    assert "spec.deployKeys[0].secrets[0].kubernetes.namespace" in result.err, result.err
    assert "namespace 'kube-system' is not one the operator lets" in result.err
    assert "spec.deployKeys[0].secrets[1].githubActions.repository" in result.err
    assert "(allowed: none;" in result.err
    applied = sk("apply", "--yes", "-m", "m", "--secret-namespaces", "flux-system")
    assert applied.code == 1
    assert gh.keys("acme", "platform") == [] and kube.requests == []


def test_another_teams_secrets_hold_the_key_and_are_never_overwritten(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """An unmanaged Secret, or an Actions secret slotkeeper did not write, of the declared
    name: the key's creation is held with the reason, no key is registered, both are
    untouched."""
    kube.put_secret("flux-system", "flux-system", {"identity": "theirs"})
    gh.put_actions_secret("acme/ci", "PLATFORM_DEPLOY_KEY", "their value", environment="production")
    declare(workdir, gh, FLUX, ACTIONS)
    planned = sk("plan", "-m", "m", *ALLOW)
    assert planned.code == 0
    assert "slotkeeper does not manage it" in planned.out, planned.out
    assert "slotkeeper did not write it" in planned.out
    sk("apply", "--yes", "-m", "m", *ALLOW)
    assert gh.keys("acme", "platform") == []
    assert kube.decoded("flux-system", "flux-system") == {"identity": "theirs"}
    assert gh.actions_secret("acme/ci", "PLATFORM_DEPLOY_KEY", "production") == "their value"
    assert not [r for r in kube.requests if r.method != "GET"]


def test_ten_scheduled_rotations_never_leave_a_consumer_with_an_unregistered_key(
    sk: Callable[..., Run],
    workdir: Path,
    gh: FakeGitHub,
    kube: FakeKubernetes,
    at: Callable[[timedelta], None],
) -> None:
    """rotateAfter 30d, and 31 days pass ten times: each rotation delivers a new key to all
    three consumers and only then deletes the old one; at every request either fake received,
    each consumer's key was registered; at the end one key is registered and held by all."""
    declare(workdir, gh, FLUX, ARGO, ACTIONS)
    invariant = Invariant(kube, gh)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    seen = {registered(gh).pop()}
    for round_ in range(1, 11):
        at(timedelta(days=31 * round_))
        result = sk("apply", "--yes", "-m", "m", *ALLOW)
        assert result.code == 0, result.out + result.err
        [key] = registered(gh)
        assert key not in seen
        seen.add(key)
        assert held(kube, gh) == {"flux": key, "argocd": key, "actions": key}
    assert invariant.violations == [] and invariant.checks > 100


def test_a_place_failing_mid_rotation_keeps_the_old_key_and_converges_on_retry(
    sk: Callable[..., Run],
    workdir: Path,
    gh: FakeGitHub,
    kube: FakeKubernetes,
    at: Callable[[timedelta], None],
) -> None:
    """Argo CD's namespace refuses writes during a rotation: Flux gets the new key, Argo CD
    keeps the old one, both stay registered; the plan says which place is behind; once the
    namespace accepts writes again a later rotation lands everywhere and the old keys go."""
    declare(workdir, gh, FLUX, ARGO)
    invariant = Invariant(kube, gh)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    [first] = registered(gh)
    kube.permissions = {"flux-system": {"*"}, "argocd": {"get", "list"}}
    at(timedelta(days=31))
    failed = sk("apply", "--yes", "-m", "m", *ALLOW)
    assert failed.code == 1
    assert "not yet in every place" in failed.out + failed.err
    now = held(kube, gh)
    assert now["argocd"] == first and now["flux"] != first
    assert registered(gh) == {first, now["flux"]}
    at(timedelta(days=31, minutes=1))
    waiting = sk("plan", "-m", "m", *ALLOW, "--json")
    [rotation] = [a for a in json.loads(waiting.out)["actions"] if a["type"] == "rotate_key"]
    assert rotation["reason"].startswith(
        "kubernetes:argocd/repo-platform does not hold the current key (last delivery failed:"
    )
    assert rotation["blocked"].startswith("delivery to kubernetes:argocd/repo-platform is retried")
    at(timedelta(days=31, minutes=2))
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0  # held: nothing is deleted
    assert registered(gh) == {first, now["flux"]}
    kube.permissions = None
    at(timedelta(days=31, minutes=20))
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0  # the old keys' deletions
    [last] = registered(gh)
    assert last not in (first, now["flux"])
    assert held(kube, gh) == {"flux": last, "argocd": last, "actions": None}
    assert invariant.violations == []


def test_a_secret_changed_or_deleted_by_someone_is_repaired_by_a_rotation(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """Someone deletes the Flux Secret: the next plan rotates the key with that reason, and the
    apply puts a working key back everywhere."""
    declare(workdir, gh, FLUX, ACTIONS)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    [first] = registered(gh)
    kube.delete_secret("flux-system", "flux-system")
    planned = sk("plan", "-m", "m", *ALLOW)
    assert "kubernetes:flux-system/flux-system: the Secret was deleted" in planned.out
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    [second] = registered(gh) - {first} or registered(gh)
    assert held(kube, gh) == {"flux": second, "argocd": None, "actions": second}
    gh.put_actions_secret("acme/ci", "PLATFORM_DEPLOY_KEY", "edited", environment="production")
    planned = sk("plan", "-m", "m", *ALLOW)
    assert "the Actions secret was changed by someone else" in planned.out


def test_revoking_the_key_removes_what_slotkeeper_wrote(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """The key leaves the manifests: it is deleted on GitHub and its Secret and Actions
    secret are removed; a place marked keepOnRevoke stays."""
    declare(workdir, gh, FLUX, {**ARGO, "keepOnRevoke": True}, ACTIONS)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    declare(workdir, gh)
    result = sk("apply", "--yes", "-m", "m", *ALLOW, "--allow-mass-decommission")
    assert result.code == 0, result.out + result.err
    assert gh.keys("acme", "platform") == []
    assert kube.secret("flux-system", "flux-system") is None
    assert kube.secret("argocd", "repo-platform") is not None
    assert gh.actions_secret("acme/ci", "PLATFORM_DEPLOY_KEY", "production") is None


def test_keys_list_status_and_the_keys_page_say_which_place_is_behind(
    sk: Callable[..., Run],
    workdir: Path,
    gh: FakeGitHub,
    kube: FakeKubernetes,
    at: Callable[[timedelta], None],
    ui: Callable[..., Ui],
) -> None:
    """After a rotation Argo CD's namespace refused: `keys list` names the place and its
    error; /status and the keys page show it failed, without the error's words."""
    declare(workdir, gh, FLUX, ARGO)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    kube.permissions = {"flux-system": {"*"}, "argocd": {"get", "list"}}
    at(timedelta(days=31))
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 1
    listed = json.loads(sk("keys", "list", "--json").out)
    [active] = [key for key in listed if key["status"] == "ACTIVE"]
    places = {place["place"]: place for place in active["places"]}
    assert places["kubernetes:flux-system/flux-system"]["state"] == "current"
    argo = places["kubernetes:argocd/repo-platform"]
    assert argo["state"] == "failed" and "forbidden" in argo["last_error"]
    table = sk("keys", "list").out
    assert "kubernetes:argocd/repo-platform failed" in table
    page = ui("--state", str(workdir / ".slotkeeper" / "state.db"), "-m", "m", *ALLOW)
    [shown] = page.get("/status").json()["keys"]
    shown_places = {place["place"]: place for place in shown["places"]}
    assert shown_places["kubernetes:argocd/repo-platform"]["state"] == "failed"
    assert "last_error" not in shown_places["kubernetes:argocd/repo-platform"]
    html = page.get("/keys").text
    assert "delivered to" in html and "kubernetes:argocd/repo-platform" in html


def test_the_daemon_delivers_a_new_key_to_its_consumers(
    workdir: Path, gh: FakeGitHub, kube: FakeKubernetes, running: Callable[..., Running]
) -> None:
    """`slotkeeper run`, allowed the namespaces and repository by its environment: the
    declared key reaches the Flux Secret and the Actions secret, registered on GitHub."""
    declare(workdir, gh, FLUX, ACTIONS)
    daemon = running(
        "-m",
        "m",
        environ={
            "GITHUB_TOKEN": TOKEN,
            "SLOTKEEPER_SECRET_NAMESPACES": "flux-system",
            "SLOTKEEPER_SECRET_REPOSITORIES": "acme/*",
        },
    )
    wait_for(lambda: held(kube, gh)["actions"] is not None, what="delivery")
    [key] = registered(gh)
    assert held(kube, gh) == {"flux": key, "argocd": None, "actions": key}
    code, err = daemon.terminate()
    assert code == 0 and "PRIVATE KEY" not in err


def test_no_private_key_sealed_value_or_kubernetes_token_leaves_where_it_belongs(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """Debug logs, JSON plans and output, and the ledger file of a delivery and a rotation hold
    no line of a private key, no sealed Actions value and not the Kubernetes token."""
    declare(workdir, gh, FLUX, ACTIONS)
    outputs: dict[str, str] = {}
    for round_, args in enumerate(
        (("apply", "--yes"), ("keys", "rotate", "acme/platform/gitops", "--yes"))
    ):
        run = sk("--log-level", "debug", *args, "-m", "m", *ALLOW)
        assert run.code == 0, run.err
        outputs[f"run {round_}"] = run.out + run.err
    planned = sk("--log-level", "debug", "plan", "-m", "m", "--json", *ALLOW)
    outputs["plan"] = planned.out + planned.err
    listed = sk("keys", "list", "--json")
    outputs["keys list"] = listed.out
    for path in (workdir / ".slotkeeper").rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes().decode(errors="replace")
    needles = {"kubernetes token": KUBE_TOKEN}
    sealed = [r.json["encrypted_value"] for r in gh.requests if r.method == "PUT" and r.json]
    needles.update({f"sealed value {n}": value for n, value in enumerate(sealed)})
    identity = kube.decoded("flux-system", "flux-system")["identity"].splitlines()[1:-1]
    needles.update({f"private key line {n}": line for n, line in enumerate(identity)})
    assert len(sealed) == 2 and identity
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, needle in needles.items()
        if needle in text
    ]
    assert leaks == []


def test_a_plan_saved_before_the_operator_narrowed_the_places_writes_nothing_there(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """A plan saved while flux-system was allowed, applied after the operator dropped it: the
    key's creation is held with the refusal, and no Secret is written."""
    declare(workdir, gh, FLUX, ACTIONS)
    assert sk("plan", "-m", "m", *ALLOW, "--out", "saved.plan").code == 0
    declare(workdir, gh, ACTIONS)
    result = sk("apply", "saved.plan", "-m", "m", "--secret-repositories", "acme/ci")
    assert "namespace 'flux-system' is not one the operator lets" in result.out + result.err
    assert gh.keys("acme", "platform") == []
    assert not [r for r in kube.requests if r.method != "GET"]


def test_a_place_dropped_from_the_key_is_emptied_at_its_next_rotation(
    sk: Callable[..., Run], workdir: Path, gh: FakeGitHub, kube: FakeKubernetes
) -> None:
    """The Actions secret leaves the key's list: it keeps its working key until the key next
    rotates; then the Flux Secret holds the new key and the Actions secret is deleted."""
    declare(workdir, gh, FLUX, ACTIONS)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    [first] = registered(gh)
    declare(workdir, gh, FLUX)
    assert sk("apply", "--yes", "-m", "m", *ALLOW).code == 0
    assert held(kube, gh)["actions"] == first
    rotated = sk("keys", "rotate", "acme/platform/gitops", "-m", "m", "--yes", *ALLOW)
    assert rotated.code == 0, rotated.out + rotated.err
    [second] = registered(gh) - {first} or registered(gh)
    assert held(kube, gh) == {"flux": second, "argocd": None, "actions": None}
    state = recorded_state(workdir / ".slotkeeper" / "state.db")
    assert set(state.sinks[("acme/platform", "gitops")]) == {"kubernetes:flux-system/flux-system"}
