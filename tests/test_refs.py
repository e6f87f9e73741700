"""Which git ref a GitHub deployment is made at, decided before anything is sent.

GitHub refuses (422 "No ref found for: X") a deployment whose ref is not a branch, tag or
commit of *that* repository. The ref is the slot's ``ref``; else a ``refFrom`` rule on the slot
or the environment (``version``, or a template such as ``v{version}``); else the manifests'
commit, only when the manifests live in the environment's repository. A slot whose ref cannot
be decided is a manifest error naming it, from ``validate``, ``plan``, ``apply`` and the daemon
alike, and nothing is sent. The fake GitHub knows each repository's refs, so a wrong ref fails
these tests as it would fail against GitHub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import pytest
import stamina

from slotkeeper.manifests import check_refs, load_manifests, load_targets
from slotkeeper.model import (
    Artifact,
    ArtifactKind,
    DecidedRef,
    EnvironmentSpec,
    Revision,
    SlotSpec,
    decide_ref,
)
from slotkeeper.sources import repository_of
from tests.daemon_support import Running, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import DIGEST_A, Run, git, recorded_state

Sk = Callable[..., Run]
TOKEN = "ghp_testtoken0123456789"
SHA = "c0ffee" + "0" * 34


# -- the decision, as a table -------------------------------------------------------------------


def slot(version: str | None = "1.4.2", digest: str | None = None, **fields: Any) -> SlotSpec:
    artifact = Artifact(
        kind=ArtifactKind.CONTAINER_IMAGE, name="ghcr.io/acme/api", version=version, digest=digest
    )
    return SlotSpec.model_validate({"artifact": artifact, **fields}, by_alias=True)


def env(**fields: Any) -> EnvironmentSpec:
    return EnvironmentSpec.model_validate({"repository": "acme/web", **fields}, by_alias=True)


def revision(repository: str | None) -> Revision:
    return Revision(
        sha=SHA,
        message="m",
        author="a",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        branch="main",
        repository=repository,
    )


@pytest.mark.parametrize(
    ("the_slot", "the_env", "the_revision", "ref", "rule"),
    [
        (slot(ref="main", refFrom="v{version}"), env(refFrom="version"), None, "main", "ref"),
        (slot(refFrom="v{version}"), env(refFrom="version"), None, "v1.4.2", "refFrom"),
        (slot(), env(refFrom="version"), revision("acme/web"), "1.4.2", "refFrom"),
        (slot(), env(refFrom="release/{version}"), None, "release/1.4.2", "refFrom"),
        (slot(), env(refFrom="{version}-{version}"), None, "1.4.2-1.4.2", "refFrom"),
        (slot(), env(), revision("acme/web"), SHA, "commit"),
        (slot(), env(), revision("ACME/Web"), SHA, "commit"),
        (slot(digest=DIGEST_A, version=None), env(), revision("acme/web"), SHA, "commit"),
    ],
    ids=[
        "slot-ref-wins",
        "slot-rule-over-environment-rule",
        "rule-over-commit",
        "template-with-slash",
        "placeholder-twice",
        "same-repository-commit",
        "repository-case-insensitive",
        "digest-only-same-repository",
    ],
)
def test_the_ref_is_decided_in_order(
    the_slot: SlotSpec, the_env: EnvironmentSpec, the_revision: Revision | None, ref: str, rule: str
) -> None:
    """Slot ref, then the slot's refFrom, then the environment's, then the manifests' commit
    when they live in the environment's repository."""
    assert decide_ref(the_slot, the_env, the_revision) == DecidedRef(ref, rule)


@pytest.mark.parametrize(
    ("the_slot", "the_env", "the_revision", "says"),
    [
        (slot(), env(), revision("acme/deployments"), "(they live in acme/deployments)"),
        (slot(), env(), revision("acme/web-deployments"), "they live in acme/web-deployments"),
        (slot(), env(), None, "(they are not in a git work tree)"),
        (slot(), env(), revision(None), "(their git origin names no hosted repository)"),
        (slot(), env(repository=None), revision("acme/web"), "it names no repository"),
        (
            slot(version=None, digest=DIGEST_A),
            env(refFrom="version"),
            revision("acme/web"),
            "refFrom: version (on the environment) needs the artifact's version, and "
            "ghcr.io/acme/api has only a digest",
        ),
        (
            slot(version="1.0 beta", refFrom="v{version}"),
            env(),
            revision("acme/web"),
            "refFrom: v{version} (on the slot) makes 'v1.0 beta', which is not a git ref name",
        ),
        (slot(version="..", refFrom="version"), env(), None, "makes '..'"),
    ],
    ids=[
        "other-repository",
        "similar-name",
        "outside-git",
        "origin-not-hosted",
        "no-environment-repository",
        "rule-without-version",
        "rendered-not-a-ref",
        "rendered-dots",
    ],
)
def test_an_undecidable_ref_says_why_and_what_to_declare(
    the_slot: SlotSpec, the_env: EnvironmentSpec, the_revision: Revision | None, says: str
) -> None:
    """No ref is ever guessed: the reason names the cause and what to declare instead."""
    decided = decide_ref(the_slot, the_env, the_revision)
    assert decided.ref is None
    assert says in decided.reason
    assert "declare" in decided.reason and "ref on the slot" in decided.reason


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/web.git", "acme/web"),
        ("https://github.com/acme/web", "acme/web"),
        ("https://github.com/acme/web/", "acme/web"),
        ("https://x-access-token:s3cret@github.com/acme/web.git", "acme/web"),
        ("https://user:p@ss@github.com/acme/web.git", "acme/web"),
        ("http://ghe.example.com/Acme/Web.git", "Acme/Web"),
        ("git@github.com:acme/web.git", "acme/web"),
        ("git@github.com:acme/web", "acme/web"),
        ("ssh://git@github.com/acme/web.git", "acme/web"),
        ("ssh://git@ghe.example.com:2222/acme/web.git", "acme/web"),
        ("git+https://github.com/acme/web.git", "acme/web"),
        ("git+ssh://git@github.com/acme/web.git", "acme/web"),
        ("file:///srv/git/acme/web.git", None),
        ("/srv/git/acme/web.git", None),
        ("../web", None),
        ("https://github.com/acme", None),
        ("https://gitlab.example.com/group/sub/web.git", None),
        ("https:///acme/web.git", None),
        ("", None),
    ],
)
def test_the_manifests_repository_is_read_from_a_remote_url(
    url: str, repository: str | None
) -> None:
    """owner/repo of https, ssh, scp-like and git+ URLs, never credentials; local paths and
    file:// name no hosted repository."""
    assert repository_of(url) == repository


# -- manifests, the pure check, and the CLI ---------------------------------------------------

ENV = dedent("""\
    apiVersion: slotkeeper/v1
    kind: Environment
    metadata: {{name: {name}}}
    spec:
      repository: acme/web
      targets: {targets}{extra}
      slots:
    {slots}""")
SLOTS = dedent("""\
    api:
      artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1.4.2}
    worker:
      artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/worker, version: v2.0.1}
    """)
GITHUB_TARGET = dedent("""\
    apiVersion: slotkeeper/v1
    kind: Target
    metadata: {{name: github}}
    spec: {{type: github, baseUrl: "{url}", token: {{env: GITHUB_TOKEN}}}}
    """)

OTHER_TARGETS = dedent("""\
    ---
    apiVersion: slotkeeper/v1
    kind: Target
    metadata: {name: chainloop}
    spec: {type: chainloop, baseUrl: "https://api.cp.chainloop.dev", token: {env: CL_TOKEN}}
    ---
    apiVersion: slotkeeper/v1
    kind: Target
    metadata: {name: unkey}
    spec:
      type: unkey
      baseUrl: "https://api.unkey.com"
      rootKey: {env: UNKEY_ROOT_KEY}
      project: acme
      app: api
    ---
    apiVersion: slotkeeper/v1
    kind: Target
    metadata: {name: iftrue}
    spec:
      type: iftrue
      baseUrl: "https://api.iftrue.example"
      token: {env: IFTRUE_JWT}
      memberId: "42"
      repositoryUrl: "https://github.com/acme/web"
    """)


def environment_text(name: str, targets: str, *, extra: str = "", slots: str = SLOTS) -> str:
    """An Environment document for acme/web; ``slots`` is the YAML of the slots mapping."""
    return ENV.format(name=name, targets=targets, extra=extra, slots=indent(slots, "    "))


def test_only_environments_mirrored_to_github_need_a_ref(tmp_path: Path) -> None:
    """The pure check names each GitHub slot without a ref (file, line, field path), and
    ignores environments that no target needing a ref mirrors: none, or only a target that
    takes no ref (Chainloop, Unkey, iftrue)."""
    (tmp_path / "envs.yaml").write_text(
        "---\n".join(
            [
                environment_text("production", "[github]"),
                environment_text("staging", "[]"),
                environment_text("dev", "[chainloop, unkey, iftrue]"),
            ]
        )
    )
    targets = tmp_path / "targets.yaml.operator"
    targets.write_text(GITHUB_TARGET.format(url="https://api.github.com") + OTHER_TARGETS)
    desired = load_manifests(tmp_path, targets=load_targets(targets))
    errors = check_refs(desired, revision("acme/deployments"))
    assert [(e.file.name, e.line, e.field) for e in errors] == [
        ("envs.yaml", 8, "spec.slots.api"),
        ("envs.yaml", 10, "spec.slots.worker"),
    ]
    assert check_refs(desired, revision("acme/web")) == []


@pytest.fixture(autouse=True)
def _no_backoff_sleeps() -> Iterator[None]:
    """Retries run without sleeping (stamina's test mode)."""
    with stamina.set_testing(True, attempts=2):
        yield


def manifests_repository(root: Path, origin: str | None) -> None:
    """``root`` as a git work tree whose origin is ``origin`` (None: no remote)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text(".slotkeeper/\n")  # the ledger and private keys
    git(root, "init", "-q", "-b", "main")
    if origin is not None:
        git(root, "remote", "add", "origin", origin)


def declare(
    root: Path, gh: FakeGitHub, *, extra: str = "", slots: str = SLOTS, commit: bool = True
) -> str | None:
    """Write production (mirrored to GitHub, repository acme/web) under ``root/m`` and commit
    it when ``commit``; returns the commit sha."""
    (root / "m").mkdir(parents=True, exist_ok=True)
    (root / "m" / "envs.yaml").write_text(
        environment_text("production", "[github]", extra=extra, slots=slots)
    )
    Path(os.environ["SLOTKEEPER_TARGETS"]).write_text(GITHUB_TARGET.format(url=gh.base_url))
    if not commit:
        return None
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "deploy")
    return git(root, "rev-parse", "HEAD")


def deployed_refs(gh: FakeGitHub) -> dict[str, tuple[str, str]]:
    """slot -> (ref, sha) of each deployment on acme/web."""
    return {d["payload"]["slot"]: (d["ref"], d["sha"]) for d in gh.deployments("acme", "web")}


def test_a_separate_deployments_repository_without_a_rule_is_refused_before_github(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """The issue's layout: manifests in acme/deployments, records for acme/web, no ref declared.
    validate, plan and apply exit 1 naming file:line and each slot; nothing is sent or
    recorded (GitHub would answer every deployment 422 "No ref found")."""
    manifests_repository(workdir, "https://github.com/acme/deployments.git")
    declare(workdir, gh)
    reason = (
        "no git ref of acme/web to deploy on GitHub: the manifests' commit is not one of its "
        "commits (they live in acme/deployments); declare refFrom: version (or a template "
        "such as v{version}) on the environment or the slot, or ref on the slot"
    )
    expected = [
        "Error: 2 manifest errors:",
        f"  m/envs.yaml:8: spec.slots.api: {reason}",
        f"  m/envs.yaml:10: spec.slots.worker: {reason}",
    ]
    for command in ("validate", "plan"):
        result = sk(command, "-m", "m")
        assert (result.code, result.err.splitlines(), result.out) == (1, expected, "")
    applied = sk("apply", "--yes", "-m", "m")
    assert (applied.code, applied.err.splitlines()) == (1, expected)
    machine = sk("validate", "--json", "-m", "m").json()
    assert machine["valid"] is False
    assert [(e["file"], e["line"], e["field"]) for e in machine["errors"]] == [
        ("m/envs.yaml", 8, "spec.slots.api"),
        ("m/envs.yaml", 10, "spec.slots.worker"),
    ]
    assert gh.requests == []
    recorded = recorded_state(state)  # apply opened the ledger, and wrote nothing to it
    assert (recorded.serial, recorded.deployed, recorded.environments) == (0, {}, {})


def test_ref_from_version_deploys_the_versions_tag(
    sk: Sk, workdir: Path, gh: FakeGitHub, state: Path
) -> None:
    """refFrom: version on the environment: each deployment's ref is its artifact's version,
    a tag of acme/web; the plan, the record and GitHub hold the same ref."""
    manifests_repository(workdir, "git@github.com:acme/deployments.git")
    api_tag = gh.add_tag("acme/web", "v1.4.2")
    worker_tag = gh.add_tag("acme/web", "v2.0.1")
    declare(workdir, gh, extra="\n  refFrom: version")
    assert sk("validate", "-m", "m").code == 0
    planned = sk("plan", "-m", "m", "--json").json()
    assert {a["slot"]: a["ref"] for a in planned["actions"]} == {
        "api": "v1.4.2",
        "worker": "v2.0.1",
    }
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err
    assert deployed_refs(gh) == {"api": ("v1.4.2", api_tag), "worker": ("v2.0.1", worker_tag)}
    assert [r["ref"] for r in sk("history", "production/api", "--json").json()] == ["v1.4.2"]
    assert {r.ref for r in recorded_state(state).deployed.values()} == {"v1.4.2", "v2.0.1"}


def test_templates_and_a_literal_ref_per_slot(sk: Sk, workdir: Path, gh: FakeGitHub) -> None:
    """The environment's template v{version}, a slot's own template, and a slot's literal ref
    (which wins over both) each reach GitHub as a ref it knows."""
    manifests_repository(workdir, "https://github.com/acme/deployments")
    gh.add_tag("acme/web", "v1.4.2")
    gh.add_tag("acme/web", "worker-2.0.1")
    gh.add_branch("acme/web", "release/2026-01")
    slots = dedent("""\
            api:
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: 1.4.2}
            worker:
              refFrom: "worker-{version}"
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/worker, version: 2.0.1}
            web:
              ref: release/2026-01
              refFrom: "never-{version}"
              artifact: {kind: HELM_CHART, name: oci://ghcr.io/acme/charts/web, version: 3.0.0}
        """)
    declare(workdir, gh, extra='\n  refFrom: "v{version}"', slots=slots)
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err
    assert {slot: ref for slot, (ref, _) in deployed_refs(gh).items()} == {
        "api": "v1.4.2",
        "worker": "worker-2.0.1",
        "web": "release/2026-01",
    }


def test_manifests_in_the_applications_own_repository_deploy_their_commit(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """A monorepo: the manifests' origin is acme/web (any case, scp-like URL), so with no rule
    each deployment is made at the manifests' commit."""
    manifests_repository(workdir, "git@github.com:Acme/Web.git")
    sha = declare(workdir, gh)
    assert sha is not None
    gh.add_commit("acme/web", sha)
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 0, result.err
    assert deployed_refs(gh) == {"api": (sha, sha), "worker": (sha, sha)}


def test_a_commit_github_does_not_have_fails_at_github_and_is_retried(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """A monorepo commit not pushed yet: GitHub (the fake) answers 422 "No ref found"; the
    ledger records the change, the sync fails with GitHub's message, and the next apply after
    the push converges."""
    manifests_repository(workdir, "https://github.com/acme/web.git")
    sha = declare(workdir, gh)
    assert sha is not None
    failed = sk("apply", "--yes", "-m", "m")
    assert failed.code == 1
    rows = {row["slot"]: row for row in sk("status", "--json").json()["slots"]}
    assert rows["api"]["targets"]["github"]["status"] == "failed"
    assert f"No ref found for: {sha}" in rows["api"]["targets"]["github"]["last_error"]
    assert gh.deployments("acme", "web") == []
    gh.add_commit("acme/web", sha)  # pushed
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert deployed_refs(gh) == {"api": (sha, sha), "worker": (sha, sha)}


def test_a_digest_only_artifact_with_a_version_rule_is_an_error_naming_the_slot(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """refFrom: version cannot apply to an artifact that has only a digest: validate and plan
    name that slot (even in the application's own repository), the others pass."""
    manifests_repository(workdir, "https://github.com/acme/web.git")
    slots = dedent(f"""\
            api:
              artifact: {{kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, digest: "{DIGEST_A}"}}
            worker:
              artifact: {{kind: CONTAINER_IMAGE, name: ghcr.io/acme/worker, version: v2.0.1}}
        """)
    declare(workdir, gh, extra="\n  refFrom: version", slots=slots)
    for command in ("validate", "plan"):
        result = sk(command, "-m", "m")
        assert result.code == 1
        assert result.err.splitlines() == [
            "Error: 1 manifest error:",
            "  m/envs.yaml:9: spec.slots.api: refFrom: version (on the environment) needs the "
            "artifact's version, and ghcr.io/acme/api has only a digest: add its version, or "
            "declare ref on the slot",
        ]
    assert gh.requests == []


def test_ref_rules_and_refs_are_checked_with_the_schema(sk: Sk, workdir: Path) -> None:
    """A rule with another placeholder, a template that cannot make a ref name, and a literal
    ref that is not one are schema errors with their line, reported together."""
    (workdir / "m").mkdir()
    (workdir / "m" / "envs.yaml").write_text(
        dedent("""\
            apiVersion: slotkeeper/v1
            kind: Environment
            metadata: {name: production}
            spec:
              refFrom: "v{version}-{tag}"
              slots:
                api:
                  refFrom: "-{version}"
                  artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1}
                worker:
                  ref: "main branch"
                  artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/worker, version: v1}
                web:
                  refFrom: main
                  artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/web, version: v1}
            """)
    )
    result = sk("validate", "--json", "-m", "m")
    assert result.code == 1
    assert [(e["line"], e["field"], e["message"]) for e in result.json()["errors"]] == [
        (5, "spec.refFrom", "the only placeholder allowed is {version}"),
        (
            8,
            "spec.slots.api.refFrom",
            "does not make a git ref name: it must not start with '-' or '/', nor end with "
            "'/' or '.'",
        ),
        (
            11,
            "spec.slots.worker.ref",
            "is not a git ref name: it must not contain spaces, control characters or any of "
            "~ ^ : ? * [ \\",
        ),
        (
            14,
            "spec.slots.web.refFrom",
            "must be 'version' or a template holding {version}, e.g. 'v{version}' (a fixed ref "
            "is declared as `ref` on the slot)",
        ),
    ]


def test_environments_not_mirrored_to_github_need_no_ref(sk: Sk, workdir: Path) -> None:
    """The ledger alone needs no git ref: the same layout without the github target applies."""
    manifests_repository(workdir, "https://github.com/acme/deployments.git")
    (workdir / "m").mkdir()
    (workdir / "m" / "envs.yaml").write_text(environment_text("production", "[]"))
    assert sk("validate", "-m", "m").code == 0
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert [r["ref"] for r in sk("history", "production/api", "--json").json()] == [None]


def test_a_ref_that_github_does_not_know_is_reported_with_githubs_message(
    sk: Sk, workdir: Path, gh: FakeGitHub
) -> None:
    """A declared ref that is no branch, tag or commit of acme/web: the fake GitHub refuses it
    as GitHub does (422 "No ref found for: X"), and the failure is shown per slot."""
    gh.add_tag("acme/web", "v1.4.2")
    declare(workdir, gh, extra="\n  refFrom: version", commit=False)
    assert sk("apply", "--yes", "-m", "m").code == 1
    rows = {row["slot"]: row["targets"]["github"] for row in sk("status", "--json").json()["slots"]}
    assert rows["api"]["status"] == "synced"
    assert rows["worker"]["status"] == "failed"
    assert "No ref found for: v2.0.1" in rows["worker"]["last_error"]


# -- through the daemon -------------------------------------------------------------------------


def run_once(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``slotkeeper run --once`` as a subprocess, JSON logs on stderr."""
    return subprocess.run(
        [sys.executable, "-m", "slotkeeper", "--log-format", "json", "run", "--once", *args],
        cwd=cwd,
        env={**os.environ, "GITHUB_TOKEN": TOKEN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_daemon_once_refuses_an_undecidable_ref_and_sends_nothing(
    workdir: Path, gh: FakeGitHub
) -> None:
    """`run --once` over the issue's layout exits 1: the file is held as broken, logged with
    file:line and the slot; GitHub receives nothing. With refFrom declared, the same run
    deploys the tags."""
    manifests_repository(workdir, "ssh://git@github.com/acme/deployments.git")
    declare(workdir, gh)
    refused = run_once(workdir, "-m", "m")
    assert refused.returncode == 1
    [invalid] = [
        json.loads(line)
        for line in refused.stderr.splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "manifests.invalid"
    ]
    assert any(
        "m/envs.yaml:8: spec.slots.api: no git ref of acme/web" in error
        for error in invalid["errors"]
    )
    assert gh.requests == []

    gh.add_tag("acme/web", "v1.4.2")
    gh.add_tag("acme/web", "v2.0.1")
    declare(workdir, gh, extra="\n  refFrom: version")
    applied = run_once(workdir, "-m", "m")
    assert applied.returncode == 0, applied.stderr
    assert {slot: ref for slot, (ref, _) in deployed_refs(gh).items()} == {
        "api": "v1.4.2",
        "worker": "v2.0.1",
    }


def test_a_running_daemon_holds_everything_until_a_rule_is_committed(
    workdir: Path, gh: FakeGitHub, running: Callable[..., Running]
) -> None:
    """A watched directory without a decidable ref: the file is held as broken (degraded, the
    slots named in /status) and nothing reaches GitHub; once refFrom is written, it converges."""
    manifests_repository(workdir, "https://github.com/acme/deployments.git")
    declare(workdir, gh, commit=False)
    daemon = running("-m", "m", "--resync-interval", "10m")
    status = daemon.status()
    assert status["last_reconcile"]["result"] == "degraded"
    [invalid] = status["manifests"]["invalid_files"]
    errors = " ".join(invalid["errors"])
    assert "spec.slots.api" in errors and "spec.slots.worker" in errors
    assert gh.requests == []

    gh.add_tag("acme/web", "v1.4.2")
    gh.add_tag("acme/web", "v2.0.1")
    declare(workdir, gh, extra="\n  refFrom: version", commit=False)
    wait_for(lambda: len(gh.deployments("acme", "web")) == 2, what="the deployments")
    assert {d["ref"] for d in gh.deployments("acme", "web")} == {"v1.4.2", "v2.0.1"}
    assert daemon.terminate()[0] == 0


def test_daemon_git_source_of_the_applications_repository_deploys_its_commit(
    workdir: Path, gh: FakeGitHub
) -> None:
    """A git source whose URL is acme/web (credentials in it): the clone's origin names the
    repository without the credentials, and each deployment is made at the fetched commit."""
    remote = workdir / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    work = workdir / "work"
    manifests_repository(work, str(remote))
    sha = declare(work, gh)
    assert sha is not None
    git(work, "push", "-q", "origin", "HEAD:main")
    gh.add_commit("acme/web", sha)
    url = "https://x-access-token:s3cret-token@github.com/acme/web.git"
    config = workdir / "gitconfig"  # the https URL is served from the local bare repository
    config.write_text(f'[url "file://{remote}"]\n\tinsteadOf = {url}\n')
    cache = workdir / "cache"

    result = run_once(
        workdir,
        "--source",
        f"git+{url}",
        "--branch",
        "main",
        "--path",
        "m",
        "--cache-dir",
        str(cache),
        env={"GIT_CONFIG_GLOBAL": str(config)},
    )
    assert result.returncode == 0, result.stderr
    assert deployed_refs(gh) == {"api": (sha, sha), "worker": (sha, sha)}
    [clone_config] = cache.glob("*/.git/config")
    assert "https://github.com/acme/web.git" in clone_config.read_text()
    assert "s3cret-token" not in clone_config.read_text()
