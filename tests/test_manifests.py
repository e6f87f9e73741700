"""Manifest loading and validation, driven through the real ``slotkeeper`` entry point.

Every error case is a literal YAML text (``dedent``) so that the expected line numbers can be
read off the text: line 1 is the first line after the opening quotes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import pytest
import yaml

from slotkeeper import yamlsource
from slotkeeper.model import DIGEST_PATTERN, SLUG_PATTERN
from tests.helpers import Run, recorded_state

Sk = Callable[..., Run]

SECRET = "ghp_S3cr3tT0kenValue0123456789abcdef"


def y(text: str) -> str:
    """A dedented YAML text; ``<a64>``/``<A64>`` stand for 64 lower/upper-case hex digits."""
    return dedent(text).replace("<a64>", "a" * 64).replace("<A64>", "A" * 64)


VALID = y("""\
    apiVersion: slotkeeper/v1
    kind: Environment
    metadata:
      name: production
    spec:
      repository: acme/web
      refFrom: version
      production: true
      protected: true
      targets: [github]
      slots:
        api:
          artifact:
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/api
            version: v1.4.2
            digest: "sha256:<a64>"
        web-chart:
          artifact: {kind: HELM_CHART, name: oci://ghcr.io/acme/charts/web, version: 2.3.0}
      deployKeys:
        - repository: acme/web
          title: production-deployer
          readOnly: true
          rotateAfter: 30d
          secret: {file: production-deployer}
    """)
# The operator's targets file these tests run with (see ``operator_targets``).
VALID_TARGET = y("""\
    apiVersion: slotkeeper/v1
    kind: Target
    metadata: {name: github}
    spec:
      type: github
      baseUrl: https://api.github.com
      token: {env: GITHUB_TOKEN}
    """)

# VALID without its target: applying it touches only the ledger (no credentials, no network).
LEDGER_ONLY = VALID.replace("  targets: [github]\n", "")

VALID_SUMMARY = {"environments": 1, "slots": 2, "deploy_keys": 1, "targets": 1}


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Replace the tree under ``root`` with ``files`` (name relative to ``root`` -> content)."""
    shutil.rmtree(root, ignore_errors=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console, so these tests check messages, not wrapping (pinned separately below)."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture(autouse=True)
def operator_targets(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator configures one target, github (the targets file of the workdir fixture),
    with its credential (set up, never used: these manifests never reach a target)."""
    Path(os.environ["SLOTKEEPER_TARGETS"]).write_text(VALID_TARGET)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_unused")


def error_lines(err: str) -> list[str]:
    return err.rstrip("\n").split("\n")


def assert_clean(run: Run) -> None:
    assert "Traceback" not in run.out + run.err
    assert "Error:" not in run.out


@dataclass(frozen=True)
class Case:
    files: dict[str, str | bytes]
    file: str  # the file the one expected error is in, relative to m/ (or t/)
    line: int | None
    field: str | None
    words: tuple[str, ...]  # what is wrong, as fragments of the message
    #: the files are the operator's targets file (t/, --targets t) beside valid manifests
    targets: bool = False

    @property
    def root(self) -> str:
        return "t" if self.targets else "m"

    @property
    def where(self) -> str:
        return f"{self.root}/{self.file}" + (f":{self.line}" if self.line is not None else "")

    def write(self, workdir: Path) -> tuple[str, ...]:
        """Write the case; the arguments that read it."""
        if not self.targets:
            write_tree(workdir / "m", self.files)
            return ("-m", "m")
        write_tree(workdir / "m", {"envs.yaml": VALID})
        write_tree(workdir / "t", self.files)
        return ("-m", "m", "--targets", "t")


def case(
    id: str,
    text: str | bytes,
    line: int | None,
    field: str | None,
    *words: str,
    file: str = "a",
    targets: bool = False,
) -> Any:
    name = f"{file}.yaml"
    return pytest.param(Case({name: text}, name, line, field, words, targets), id=id)


# Most cases start with one of these three lines, so their `spec:` is always line 4.
ENV_HEAD = "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: production}\n"
TARGET_HEAD = "apiVersion: slotkeeper/v1\nkind: Target\nmetadata: {name: github}\n"


def slot(body: str) -> str:
    """An Environment whose slot ``api`` has ``body``: spec/slots/api are lines 4-6, body line 7."""
    return ENV_HEAD + "spec:\n  slots:\n    api:\n" + indent(y(body), "      ")


# fmt: off
CASES = [
    # unknown fields, at every depth
    case("unknown-top", ENV_HEAD + "spec: {}\nstatus: live\n", 5, "status", "unknown field"),
    case("unknown-metadata", y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata:
          name: production
          namespace: default
        spec: {}
        """), 5, "metadata.namespace", "unknown field"),
    case("unknown-spec", ENV_HEAD + "spec:\n  region: eu\n", 5, "spec.region", "unknown field"),
    case("unknown-slot", slot("""\
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1}
              replicas: 3
        """), 8, "spec.slots.api.replicas", "unknown field"),
    case("unknown-artifact", slot("""\
              artifact:
                kind: CONTAINER_IMAGE
                name: ghcr.io/acme/api
                version: v1
                tag: latest
        """), 11, "spec.slots.api.artifact.tag", "unknown field"),
    case("unknown-deploy-key", ENV_HEAD + y("""\
        spec:
          deployKeys:
            - repository: acme/web
              title: deployer
              secret: {file: deployer}
              writable: true
        """), 9, "spec.deployKeys[0].writable", "unknown field"),
    case("unknown-target-spec", TARGET_HEAD + y("""\
        spec:
          type: github
          token: {env: GITHUB_TOKEN}
          org: acme
        """), 7, "spec.org", "unknown field", targets=True),
    case("snake-case-name", ENV_HEAD + "spec:\n  deploy_keys: []\n", 5, "spec.deploy_keys",
         "unknown field"),
    # wrong types
    case("float-version", slot("""\
              artifact:
                kind: CONTAINER_IMAGE
                name: ghcr.io/acme/api
                version: 1.4
        """), 10, "spec.slots.api.artifact.version", "must be a string", "quote it"),
    case("string-bool", ENV_HEAD + 'spec:\n  production: "yes"\n', 5, "spec.production",
         "must be true or false"),
    case("yaml11-bool", ENV_HEAD + "spec:\n  protected: on\n", 5, "spec.protected",
         "must be true or false"),
    case("targets-not-list", ENV_HEAD + "spec:\n  targets: github\n", 5, "spec.targets",
         "must be a list"),
    case("slots-not-mapping", ENV_HEAD + "spec:\n  slots: [api]\n", 5, "spec.slots",
         "must be a mapping"),
    case("artifact-kind", slot("artifact: {kind: DOCKER, name: ghcr.io/acme/api, version: v1}\n"),
         7, "spec.slots.api.artifact.kind", "CONTAINER_IMAGE, HELM_CHART"),
    case("missing-name", slot("artifact: {kind: HELM_CHART, version: v1}\n"),
         7, "spec.slots.api.artifact.name", "is required"),
    # slugs
    *[
        case(f"env-name-{name}", ENV_HEAD.replace("production", bad) + "spec: {}\n", 3,
             "metadata.name", "must be a lowercase name")
        for name, bad in [("upper", "Production"), ("underscore", "pr_142"),
                          ("hyphen", "-staging"), ("too-long", "a" * 64)]
    ],
    case("slot-name-key", ENV_HEAD + y("""\
        spec:
          slots:
            Web_Api:
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1}
        """), 6, "spec.slots.Web_Api", "name must be a lowercase name"),
    # digests
    *[
        case(f"digest-{name}", slot(f"""\
              artifact:
                kind: CONTAINER_IMAGE
                name: ghcr.io/acme/api
                digest: "{digest}"
            """), 10, "spec.slots.api.artifact.digest", "'sha256:' followed by 64")
        for name, digest in [("short", "sha256:abc"), ("upper-hex", "sha256:<A64>"),
                             ("no-algorithm", "<a64>"), ("md5", "md5:" + "0" * 32)]
    ],
    case("no-version-no-digest", slot("artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/a/api}\n"),
         7, "spec.slots.api.artifact", "needs a version, a digest or both"),
    # YAML-level duplicates and cross-document rules
    case("duplicate-yaml-key", ENV_HEAD + y("""\
        spec:
          slots:
            api:
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1}
            api:
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v2}
        """), 8, "spec.slots.api", "duplicate key 'api'", "first at line 6"),
    pytest.param(Case({"a.yaml": ENV_HEAD + "spec: {}\n", "b.yaml": y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata:
          name: production
        spec: {}
        """)}, "b.yaml", 4, "metadata.name",
        ("environment 'production' is already declared at m/a.yaml:1",)),
        id="duplicate-environment"),
    case("duplicate-target", y("""\
        apiVersion: slotkeeper/v1
        kind: Target
        metadata: {name: github}
        spec: {type: github, token: {env: GITHUB_TOKEN}}
        ---
        apiVersion: slotkeeper/v1
        kind: Target
        metadata: {name: github}
        spec: {type: github, token: {env: GHE_TOKEN}, baseUrl: https://ghe.acme.dev/api/v3}
        """), 8, "metadata.name", "target 'github' is already declared at t/a.yaml:1",
        targets=True),
    case("undeclared-target", y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata: {name: production}
        spec:
          targets:
            - github
            - chainloop
        """), 7, "spec.targets[1]", "'chainloop'", "which the operator has not configured"),
    case("target-in-manifests", VALID_TARGET, 2, "kind",
         "Target documents belong to the operator, not to the manifests", "--targets"),
    case("duplicate-deploy-key", y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata: {name: staging}
        spec:
          deployKeys:
            - {repository: acme/web, title: deployer, secret: {file: staging}}
        ---
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata: {name: production}
        spec:
          deployKeys:
            - {repository: acme/web, title: deployer, secret: {file: production}}
        """), 13, "spec.deployKeys[0]",
        "deploy key acme/web/deployer is already declared in environment 'staging' at m/a.yaml:6"),
    case("duplicate-secret-file", y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata: {name: staging}
        spec:
          deployKeys:
            - {repository: acme/web, title: staging, secret: {file: deployer}}
        ---
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata: {name: production}
        spec:
          deployKeys:
            - repository: acme/web
              title: production
              secret: {file: deployer}
        """), 15, "spec.deployKeys[0].secret.file", "'deployer' is already used",
        "acme/web/staging at m/a.yaml:6"),
    # secrets
    case("inline-secret", TARGET_HEAD + f"spec:\n  type: github\n  token: {SECRET}\n", 6,
         "spec.token", "inline secrets are not allowed", "{env: NAME}", targets=True),
    *[
        case(f"secret-path-{name}", ENV_HEAD + y(f"""\
            spec:
              deployKeys:
                - repository: acme/web
                  title: deployer
                  secret:
                    file: {path}
            """), 9, "spec.deployKeys[0].secret.file", message)
        for name, path, message in [
            ("dotdot", "../x", "would leave the secrets directory"),
            ("inner-dotdot", "keys/../../x", "would leave the secrets directory"),
            ("absolute", "/etc/x", "must be a relative path inside the secrets directory"),
            ("home", "~/.ssh/id", "must be a relative path inside the secrets directory"),
        ]
    ],
    # document identity
    case("api-version-wrong", "apiVersion: slotkeeper/v2\nkind: Environment\n", 1, "apiVersion",
         "is not supported", "apiVersion: slotkeeper/v1"),
    case("api-version-missing", "# production\nkind: Environment\nmetadata: {name: x}\n", 2,
         "apiVersion", "is missing", "apiVersion: slotkeeper/v1"),
    case("kind-unknown", "apiVersion: slotkeeper/v1\nkind: Enviroment\n", 2, "kind",
         "must be one of Environment, Target"),
    case("not-a-mapping", "- production\n- staging\n", 1, None, "a document must be a mapping"),
    case("stray-compose-file", "services:\n  web:\n    image: nginx\n", 1, "apiVersion",
         "is missing", file="docker-compose"),
    case("target-type-unknown", TARGET_HEAD + "spec:\n  type: gitlab\n  token: {env: T}\n", 5,
         "spec.type", "must be one of 'github', 'chainloop', 'unkey', 'iftrue'", targets=True),
    case("target-type-missing", TARGET_HEAD + "spec:\n  token: {env: T}\n", 4, "spec.type",
         "is required", targets=True),
    # the file itself
    case("empty-file", "", None, None, "holds no slotkeeper document"),
    case("comments-only", "# nothing here yet\n---\n", None, None, "holds no slotkeeper document"),
    case("yaml-syntax", y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata:
          name: production: eu
        spec: {}
        """), 4, None, "invalid YAML", "mapping values are not allowed"),
    case("yaml-tab", ENV_HEAD + "spec:\n\tslots: {}\n", 5, None, "invalid YAML",
         "cannot start any token"),
    case("not-utf8", b"apiVersion: slotkeeper/v1\nkind: Environment\nmetadata:\n  name: caf\xe9\n",
         4, None, "not valid UTF-8"),
]
# fmt: on

APPLY_SUBSET = {
    "unknown-artifact", "float-version", "env-name-upper", "digest-short", "duplicate-yaml-key",
    "duplicate-environment", "undeclared-target", "inline-secret", "secret-path-dotdot",
    "stray-compose-file", "empty-file", "yaml-syntax", "not-utf8",
}  # fmt: skip
APPLY_CASES = [p for p in CASES if p.id in APPLY_SUBSET]


@pytest.mark.parametrize("c", CASES)
def test_error_names_file_line_field_and_problem(sk: Sk, workdir: Path, c: Case) -> None:
    """Each invalid manifest (or targets file) exits 1 with exactly one error naming file:line,
    field and problem."""
    args = c.write(workdir)
    human = sk("validate", *args)
    assert human.code == 1
    assert_clean(human)
    assert human.out == ""
    head, *errors = error_lines(human.err)
    assert head == "Error: 1 manifest error:"
    assert len(errors) == 1
    prefix = f"  {c.where}: " + (f"{c.field}: " if c.field else "")
    assert errors[0].startswith(prefix), errors[0]
    for word in c.words:
        assert word in errors[0]

    machine = sk("validate", "--json", *args)
    assert machine.code == 1
    assert_clean(machine)
    document = machine.json()
    assert document["valid"] is False
    [error] = document["errors"]
    assert (error["file"], error["line"], error["field"]) == (
        f"{c.root}/{c.file}",
        c.line,
        c.field,
    )
    for word in c.words:
        assert word in error["message"]


@pytest.mark.parametrize("c", APPLY_CASES)
def test_apply_with_invalid_manifests_leaves_ledger_untouched(
    sk: Sk, workdir: Path, state: Path, c: Case
) -> None:
    """`apply --yes` on invalid manifests exits 1, reports the error and writes nothing."""
    write_tree(workdir / "m", {"envs.yaml": LEDGER_ONLY})
    first = sk("apply", "--yes", "-m", "m")
    assert first.code == 0, first.err
    before = recorded_state(state)
    assert before.serial >= 1
    assert ("production", "api") in before.deployed

    run = sk("apply", "--yes", *c.write(workdir))
    assert run.code == 1
    assert_clean(run)
    assert any(line.startswith(f"  {c.where}: ") for line in error_lines(run.err))
    assert "Apply complete" not in run.out
    after = recorded_state(state)
    assert after.serial == before.serial
    assert after == before


@pytest.mark.parametrize(
    ("spec", "line", "field"),
    [
        (f"type: github\n  token: {SECRET}", 6, "spec.token"),
        (f'type: github\n  token: "{SECRET}"', 6, "spec.token"),
        (f"type: github\n  token: [{SECRET}]", 6, "spec.token"),
        (f"type: github\n  token: {{value: {SECRET}}}", 6, "spec.token.value"),
        (f"type: github\n  token: {{env: GITHUB_TOKEN, file: {SECRET}}}", 6, "spec.token"),
        (f"type: github\n  token: {{env: T}}\n  password: {SECRET}", 7, "spec.password"),
        (f"type: unkey\n  project: web\n  app: api\n  rootKey: {SECRET}", 8, "spec.rootKey"),
    ],
)
def test_inline_secret_value_is_never_printed(
    sk: Sk, workdir: Path, spec: str, line: int, field: str
) -> None:
    """However a secret is inlined in a Target, it is refused and its value is never printed."""
    write_tree(workdir / "m", {"envs.yaml": LEDGER_ONLY})
    (workdir / "t.yaml").write_text(TARGET_HEAD + f"spec:\n  {spec}\n")
    for args in (("validate",), ("apply", "--yes"), ("plan",), ("validate", "--json")):
        run = sk(*args, "-m", "m", "--targets", "t.yaml")
        assert run.code == 1
        assert_clean(run)
        assert SECRET not in run.out + run.err
    [error] = run.json()["errors"]
    assert (error["file"], error["line"], error["field"]) == ("t.yaml", line, field)


def test_all_errors_of_a_run_are_reported_together(sk: Sk, workdir: Path) -> None:
    """Problems in two files are both reported in one run, sorted, under '2 manifest errors'."""
    write_tree(workdir / "m", {
        "a.yaml": ENV_HEAD + "spec:\n  region: eu\n",
        "b.yaml": "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: x}\n"
        "spec: {zone: eu}\n",
        "ok.yaml": VALID,
    })  # fmt: skip
    run = sk("validate", "-m", "m")
    assert run.code == 1
    assert_clean(run)
    assert error_lines(run.err) == [
        "Error: 2 manifest errors:",
        "  m/a.yaml:5: spec.region: unknown field 'region'",
        "  m/b.yaml:4: spec.zone: unknown field 'zone'",
    ]
    errors = sk("validate", "--json", "-m", "m").json()["errors"]
    assert [(e["file"], e["line"]) for e in errors] == [("m/a.yaml", 5), ("m/b.yaml", 4)]


def test_all_errors_within_one_document_are_reported(sk: Sk, workdir: Path) -> None:
    """Several problems in one document are each reported, in line order, not just the first."""
    write_tree(workdir / "m", {"a.yaml": y("""\
        apiVersion: slotkeeper/v1
        kind: Environment
        metadata: {name: Production}
        spec:
          production: "yes"
          slots:
            api:
              artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: 1.4}
        """)})  # fmt: skip
    errors = sk("validate", "--json", "-m", "m").json()["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [
        (3, "metadata.name"),
        (5, "spec.production"),
        (8, "spec.slots.api.artifact.version"),
    ]


def test_validate_json_on_valid_manifests(sk: Sk, workdir: Path) -> None:
    """`validate --json` on valid manifests prints valid: true with counts and exits 0."""
    write_tree(workdir / "m", {"envs.yaml": VALID})
    run = sk("validate", "--json", "-m", "m")
    assert run.code == 0
    assert run.json() == {"valid": True, **VALID_SUMMARY}
    human = sk("validate", "-m", "m")
    assert human.code == 0
    assert "Valid: 1 environment, 2 slots, 1 deploy key, 1 target." in human.out


def test_hidden_paths_and_non_yaml_files_are_skipped(sk: Sk, workdir: Path) -> None:
    """Hidden dirs/files and non-YAML files are not read; `.yml` files are, in subdirectories."""
    garbage = "this: [is not: a manifest\n"
    write_tree(workdir / "m", {
        "envs/production.yml": VALID,
        ".git/config.yaml": garbage,
        ".hidden/broken.yaml": garbage,
        ".draft.yaml": garbage,
        "README.md": "# manifests\n",
        "notes.txt": garbage,
    })  # fmt: skip
    run = sk("validate", "--json", "-m", "m")
    assert run.code == 0, run.out
    assert run.json() == {"valid": True, **VALID_SUMMARY}


def test_yaml_suffixes_are_read_in_any_case(sk: Sk, workdir: Path) -> None:
    """YAML suffixes in any case (`prod.YAML`, `dev.Yml`) are read, and refused when broken."""

    def env(name: str) -> str:
        return (
            f"apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {{name: {name}}}\n"
            "spec:\n  slots:\n    api: {artifact: {kind: CONTAINER_IMAGE, name: a, version: v1}}\n"
        )

    write_tree(workdir / "m", {"prod.YAML": env("production"), "dev/dev.Yml": env("dev")})
    run = sk("validate", "--json", "-m", "m")
    assert run.code == 0, run.out
    assert run.json() == {
        "valid": True,
        "environments": 2,
        "slots": 2,
        "deploy_keys": 0,
        "targets": 1,  # configured by the operator, named by no environment here
    }
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert {(r["environment"], r["status"]) for r in sk("status", "--json").json()["slots"]} == {
        ("production", "DEPLOYED"),
        ("dev", "DEPLOYED"),
    }
    (workdir / "m" / "staging.YmL").write_text("kind: nope\n")
    (workdir / "m" / "gone.YML").symlink_to(workdir / "nowhere.yaml")
    errors = sk("validate", "--json", "-m", "m").json()["errors"]
    assert {(Path(e["file"]).name, e["field"], e["message"].split(":")[0]) for e in errors} == {
        ("staging.YmL", "apiVersion", "is missing"),
        ("gone.YML", None, "broken symlink"),
    }


def test_single_file_can_be_given(sk: Sk, workdir: Path) -> None:
    """`-m FILE` reads only that file, even when a sibling file is invalid."""
    write_tree(workdir / "m", {"good.yaml": VALID, "bad.yaml": "kind: nope\n"})
    assert sk("validate", "--json", "-m", "m/good.yaml").json() == {"valid": True, **VALID_SUMMARY}
    bad = sk("validate", "--json", "-m", "m/bad.yaml")
    assert bad.code == 1
    assert [e["file"] for e in bad.json()["errors"]] == ["m/bad.yaml"]


def test_missing_manifest_path_is_an_error(sk: Sk, workdir: Path) -> None:
    """A manifest path that does not exist exits 1 with a message, not an empty desired state."""
    run = sk("validate", "-m", "nowhere")
    assert run.code == 1
    assert_clean(run)
    assert error_lines(run.err) == [
        "Error: 1 manifest error:",
        "  nowhere: no such file or directory",
    ]
    machine = sk("validate", "--json", "-m", "nowhere")
    assert machine.code == 1
    assert machine.json()["errors"] == [
        {"file": "nowhere", "line": None, "field": None, "message": "no such file or directory"}
    ]
    assert sk("apply", "--yes", "-m", "nowhere").code == 1


def test_trailing_document_separator_is_allowed(sk: Sk, workdir: Path) -> None:
    """Empty documents (a leading or trailing `---`) are skipped, as other YAML tools do."""
    write_tree(workdir / "m", {"envs.yaml": "---\n" + VALID + "---\n"})
    assert sk("validate", "--json", "-m", "m").json() == {"valid": True, **VALID_SUMMARY}


def test_yaml_merge_keys_may_be_overridden(sk: Sk, workdir: Path) -> None:
    """A key next to a `<<:` merge overrides the merged value and is not a duplicate key."""
    write_tree(workdir / "m", {"envs.yaml": ENV_HEAD + y("""\
        spec:
          slots:
            api:
              artifact: &api {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1}
            worker:
              artifact:
                <<: *api
                name: ghcr.io/acme/worker
        """)})  # fmt: skip
    assert sk("validate", "--json", "-m", "m").json()["valid"] is True
    assert sk("apply", "--yes", "-m", "m").code == 0
    history = sk("history", "production/worker", "--json").json()
    assert "ghcr.io/acme/worker" in json.dumps(history)


def test_symlink_loop_reads_each_file_once(sk: Sk, workdir: Path) -> None:
    """A directory symlink back into the tree neither loops nor declares everything twice."""
    write_tree(workdir / "m", {"envs/envs.yaml": VALID})
    (workdir / "m" / "envs" / "loop").symlink_to("..", target_is_directory=True)
    assert sk("validate", "--json", "-m", "m").json() == {"valid": True, **VALID_SUMMARY}


def test_each_error_is_one_unwrapped_line_on_stderr(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a non-terminal stderr every error stays on one line, for grep and CI annotations."""
    monkeypatch.delenv("COLUMNS", raising=False)
    body = "spec:\n  slots:\n    Web_Api: {artifact: {kind: HELM_CHART, name: c, version: v1}}\n"
    write_tree(workdir / "m", {"a.yaml": ENV_HEAD + body})
    run = sk("validate", "-m", "m")
    assert run.err.splitlines() == [
        "Error: 1 manifest error:",
        "  m/a.yaml:6: spec.slots.Web_Api: name must be a lowercase name of a-z, 0-9 and '-', "
        "1 to 63 characters, starting and ending with a letter or digit",
    ]


def test_schema_describes_both_kinds_with_camel_case_names(sk: Sk) -> None:
    """`slotkeeper schema` prints a strict JSON Schema of a manifest (Environment) document,
    `schema --targets` one of a targets file (Target) document."""
    run = sk("schema")
    assert run.code == 0
    schema = run.json()
    targets_run = sk("schema", "--targets")
    assert targets_run.code == 0
    targets_schema = targets_run.json()
    for kind, document in (("Environment", schema), ("Target", targets_schema)):
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["properties"]["kind"]["const"] == kind
        assert document["properties"]["apiVersion"]["const"] == "slotkeeper/v1"
        assert set(document["required"]) == {"apiVersion", "kind", "metadata", "spec"}
        objects = [d for d in document["$defs"].values() if d.get("type") == "object"]
        assert objects
        assert document["additionalProperties"] is False
        assert all(d["additionalProperties"] is False for d in objects)
    # a manifest cannot hold a target: its schema knows no target field at all
    assert not any("Target" in name for name in schema["$defs"])
    defs = schema["$defs"]
    environment = defs["EnvironmentSpec"]["properties"]
    assert "deployKeys" in environment
    assert {"readOnly", "rotateAfter"} <= set(defs["DeployKeySpec"]["properties"])
    assert not re.search(r'"(deploy_keys|rotate_after|read_only|base_url)"', run.out)
    assert environment["slots"]["propertyNames"] == {"pattern": SLUG_PATTERN}
    assert environment["slots"]["additionalProperties"] == {"$ref": "#/$defs/SlotSpec"}
    assert defs["Artifact"]["properties"]["digest"]["pattern"] == DIGEST_PATTERN
    target_spec = targets_schema["properties"]["spec"]
    types = set(target_spec["discriminator"]["mapping"])
    assert types == {"github", "chainloop", "unkey", "iftrue"}
    assert "baseUrl" in targets_schema["$defs"]["GithubTargetSpec"]["properties"]


def test_schema_accepts_the_valid_example_structurally(sk: Sk) -> None:
    """Every field of the valid example is a property the schema declares (jsonschema absent)."""
    schema = sk("schema").json()
    defs = schema["$defs"]
    env = yaml.safe_load(VALID)
    assert set(env) <= set(schema["properties"])
    assert set(env["spec"]) <= set(defs["EnvironmentSpec"]["properties"])
    assert set(env["spec"]["deployKeys"][0]) <= set(defs["DeployKeySpec"]["properties"])
    assert set(env["spec"]["slots"]["api"]["artifact"]) <= set(defs["Artifact"]["properties"])
    target = yaml.safe_load(VALID_TARGET)
    assert set(target["spec"]) <= set(
        sk("schema", "--targets").json()["$defs"]["GithubTargetSpec"]["properties"]
    )


def test_libyaml_c_loader_is_used() -> None:
    """Manifests are parsed by PyYAML's libyaml-backed CSafeLoader, not the pure-Python one."""
    assert yaml.__with_libyaml__
    assert issubclass(yamlsource._Loader, yaml.CSafeLoader)


def test_yaml_1_2_booleans_only(sk: Sk, workdir: Path) -> None:
    """Only true/false are booleans (YAML 1.2): a slot named `no` or `on` is a name, not a bool."""
    body = "spec:\n  slots:\n    no: {artifact: {kind: HELM_CHART, name: c, version: v1}}\n"
    body += "    on: {artifact: {kind: HELM_CHART, name: c, version: v1}}\n"
    write_tree(workdir / "m", {"a.yaml": ENV_HEAD + body})
    run = sk("validate", "-m", "m", "--json")
    assert run.code == 0, run.out
    assert run.json()["slots"] == 2
    assert sk("apply", "--yes", "-m", "m").code == 0
    assert {row["slot"] for row in sk("status", "--json").json()["slots"]} == {"no", "on"}
