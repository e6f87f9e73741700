"""Which git ref a GitHub deployment is made at, decided before anything is sent.

GitHub refuses (422 "No ref found for: X") a deployment whose ref is not a branch, tag or
commit of *that* repository. The ref is the slot's ``ref``; else a ``refFrom`` rule on the slot
or the environment (``version``, or a template such as ``v{version}``); else the manifests'
commit, only when the manifests live in the environment's repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import pytest

from slotkeeper.manifests import check_refs, load_manifests
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
from tests.helpers import DIGEST_A

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


def environment_text(name: str, targets: str, *, extra: str = "", slots: str = SLOTS) -> str:
    """An Environment document for acme/web; ``slots`` is the YAML of the slots mapping."""
    return ENV.format(name=name, targets=targets, extra=extra, slots=indent(slots, "    "))


def test_only_environments_mirrored_to_github_need_a_ref(tmp_path: Path) -> None:
    """The pure check names each GitHub slot without a ref (file, line, field path), and
    ignores environments that no target needing a ref mirrors."""
    (tmp_path / "envs.yaml").write_text(
        environment_text("production", "[github]")
        + "---\n"
        + environment_text("staging", "[]")
        + "---\n"
        + GITHUB_TARGET.format(url="https://api.github.com")
    )
    desired = load_manifests(tmp_path)
    errors = check_refs(desired, revision("acme/deployments"))
    assert [(e.file.name, e.line, e.field) for e in errors] == [
        ("envs.yaml", 8, "spec.slots.api"),
        ("envs.yaml", 10, "spec.slots.worker"),
    ]
    assert check_refs(desired, revision("acme/web")) == []
