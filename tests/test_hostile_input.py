"""Hostile and malformed manifests: each is refused with exit code 1, a clear error naming file,
line and field, no traceback, and the ledger untouched; the ones whose size is the attack early,
by a bound on the loader's work (``work``), not on seconds.

``tests/corpus/`` holds one case per file (``NN-name.yaml``) or directory (``NN-name/``), with the
errors it must produce in ``NN-name.expected``: one line per error, ``LINE FIELD-PATH FRAGMENT``,
``-`` for no line or no field. ``tests/corpus-targets/`` holds hostile operator targets files
the same way (validated with ``--targets``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slotkeeper import yamlsource
from slotkeeper.errors import ManifestErrors
from slotkeeper.manifests import (
    DEFAULT_MAX_FILE_BYTES,
    OperatorTargets,
    load_manifests,
    load_targets,
)
from slotkeeper.model import DesiredState
from slotkeeper.yamlsource import MAX_ALIASES, MAX_DEPTH
from tests.helpers import Run, recorded_state, target_document, write_targets

Sk = Callable[..., Run]

CORPUS = Path(__file__).parent / "corpus"
TARGETS_CORPUS = Path(__file__).parent / "corpus-targets"


@dataclass(frozen=True)
class Expected:
    line: int | None
    field: str | None
    fragment: str


def _expected(path: Path) -> list[Expected]:
    rows = []
    for text in path.read_text(encoding="utf-8").splitlines():
        if not text.strip():
            continue
        line, field, fragment = text.split(" ", 2)
        rows.append(
            Expected(None if line == "-" else int(line), None if field == "-" else field, fragment)
        )
    return rows


def _cases(corpus: Path = CORPUS) -> list[Path]:
    return sorted(p for p in corpus.iterdir() if p.suffix != ".expected")


CASES = [pytest.param(path, id=path.stem if path.is_file() else path.name) for path in _cases()]
TARGET_CASES = [pytest.param(path, id=path.stem) for path in _cases(TARGETS_CORPUS)]


@pytest.mark.parametrize(("corpus", "least"), [(CORPUS, 40), (TARGETS_CORPUS, 10)])
def test_corpus_is_complete(corpus: Path, least: int) -> None:
    """Every case has its expectations, every expectation its case; enough cases."""
    cases = {p.stem if p.is_file() else p.name for p in _cases(corpus)}
    sidecars = {p.stem for p in corpus.glob("*.expected")}
    assert cases == sidecars
    assert len(cases) >= least
    for name in sidecars:
        assert _expected(corpus / f"{name}.expected"), name


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.delenv("SLOTKEEPER_MAX_MANIFEST_BYTES", raising=False)


def assert_clean(run: Run) -> None:
    assert "Traceback" not in run.out + run.err
    assert "Error" not in run.err or run.err.startswith("Error:"), run.err


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_is_refused_with_every_expected_error(
    sk: Sk, workdir: Path, case: Path
) -> None:
    """Each corpus case is refused by validate with exactly the errors its sidecar lists."""
    # The operator configures one target, github: references are checked against it.
    write_targets(target_document("github", type="github", token={"env": "GITHUB_TOKEN"}))
    assert_refused(sk, case, "-m", str(case))


@pytest.mark.parametrize("case", TARGET_CASES)
def test_targets_corpus_case_is_refused_with_every_expected_error(
    sk: Sk, workdir: Path, case: Path
) -> None:
    """A broken targets file is refused like a broken manifest: file, line, field, exit 1."""
    (workdir / "m").mkdir()
    (workdir / "m" / "envs.yaml").write_text(VALID)
    assert_refused(sk, case, "-m", "m", "--targets", str(case))


def assert_refused(sk: Sk, case: Path, *args: str) -> None:
    """``validate`` with ``args`` refuses with exactly the errors ``case``'s sidecar lists."""
    expected = _expected(case.parent / f"{case.stem if case.is_file() else case.name}.expected")

    human = sk("validate", *args)
    assert human.code == 1
    assert_clean(human)
    assert human.err.startswith("Error: ")
    lines = human.err.splitlines()
    for row in expected:
        where = f":{row.line}: " if row.line is not None else ": "
        field = f"{row.field}: " if row.field is not None else ""
        assert any(where in line and field in line and row.fragment in line for line in lines), (
            row,
            human.err,
        )

    machine = sk("validate", "--json", *args)
    assert machine.code == 1
    assert_clean(machine)
    errors = machine.json()["errors"]
    assert len(errors) == len(expected), errors
    for row in expected:
        assert any(
            e["line"] == row.line and e["field"] == row.field and row.fragment in e["message"]
            for e in errors
        ), (row, errors)
    for e in errors:
        assert Path(e["file"]).is_relative_to(case) or Path(e["file"]) == case


VALID = dedent("""\
    apiVersion: slotkeeper/v1
    kind: Environment
    metadata:
      name: production
    spec:
      repository: acme/web
      slots:
        api:
          artifact: &api
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/api
            version: v1.4.2
        worker:
          artifact:
            <<: *api
            name: ghcr.io/acme/worker
        canary:
          artifact: *api
    """)

APPLY_SUBSET = [
    "02-unknown-field-deep",
    "05-float-version",
    "16-duplicate-yaml-key",
    "17-duplicate-environment",
    "23-secret-path-dotdot",
    "33-empty-file",
    "36-non-utf8",
    "37-tab-indent",
    "38-alias-bomb",
    "39-deep-nesting",
    "46-impossible-date",
    "48-recursive-alias",
    "50-python-tag",
]


@pytest.mark.parametrize("name", APPLY_SUBSET)
def test_apply_refuses_and_leaves_the_ledger_untouched(sk: Sk, workdir: Path, name: str) -> None:
    """`apply` refuses a broken case with exit 1 and leaves the ledger exactly as it was."""
    ledger = workdir / "ledger.db"
    good = workdir / "good"
    good.mkdir()
    (good / "envs.yaml").write_text(VALID)
    first = sk("apply", "--yes", "-m", str(good), "--state", f"sqlite:///{ledger}")
    assert first.code == 0, first.err
    before = recorded_state(ledger)
    assert before.serial >= 1
    assert ("production", "canary") in before.deployed

    [case] = [p for p in _cases() if p.name.removesuffix(".yaml") == name]
    run = sk("apply", "--yes", "-m", str(case), "--state", f"sqlite:///{ledger}")
    assert run.code == 1
    assert_clean(run)
    assert "Apply complete" not in run.out
    after = recorded_state(ledger)
    assert after.serial == before.serial
    assert after == before


@dataclass
class Work:
    """What the YAML loader did in this process: characters of the texts handed to it, parser
    events its limit check read (aliases among them), values it built."""

    chars: int = 0
    events: int = 0
    aliases: int = 0
    nodes: int = 0


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    """Counts the loader's work (the CLI runs in-process): a bound on work says a hostile input
    is refused early on any machine, where a bound on seconds says how fast this one is."""
    done = Work()
    check_limits, build = yamlsource.check_limits, yamlsource._Loader.build

    class CountingParser(yamlsource._BaseLoader):
        def get_event(self) -> yaml.Event:
            event: yaml.Event = super().get_event()  # type: ignore[no-untyped-call]
            done.events += 1
            done.aliases += isinstance(event, yaml.AliasEvent)
            return event

    def counting_check(text: str) -> None:
        done.chars += len(text)
        check_limits(text)

    def counting_build(loader: yamlsource._Loader, node: yaml.Node, place: object) -> object:
        done.nodes += 1
        return build(loader, node, place)  # type: ignore[arg-type]

    monkeypatch.setattr(yamlsource, "_BaseLoader", CountingParser)
    monkeypatch.setattr(yamlsource, "check_limits", counting_check)
    monkeypatch.setattr(yamlsource._Loader, "build", counting_build)
    return done


def events_in(text: str) -> int:
    """How many parser events the whole of ``text`` makes (parsing composes and expands nothing)."""
    return sum(1 for _ in yaml.parse(text, Loader=yamlsource._BaseLoader))


def load(root: Path) -> DesiredState:
    return load_manifests(root)


def messages(root: Path, loader: Callable[[Path], object] = load_manifests) -> list[str]:
    with pytest.raises(ManifestErrors) as caught:
        loader(root)
    return [str(error) for error in caught.value.errors]


# -- aliases and nesting ----------------------------------------------------------------------


def test_normal_anchors_and_aliases_keep_working(workdir: Path) -> None:
    """Ordinary anchors, aliases and merge keys load as YAML says."""
    (workdir / "envs.yaml").write_text(VALID)
    desired = load(workdir / "envs.yaml")
    slots = desired.environments["production"].slots
    assert slots["canary"].artifact == slots["api"].artifact
    assert slots["worker"].artifact.name == "ghcr.io/acme/worker"


def _labels(count: int) -> str:
    labels = "".join(f"    k{i}: *v\n" for i in range(count))
    return (
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata:\n  name: production\n"
        f"  labels:\n    k: &v value\n{labels}spec: {{}}\n"
    )


def test_alias_count_bound(workdir: Path) -> None:
    """100 alias uses are fine; the 101st is refused at its line."""
    (workdir / "ok.yaml").write_text(_labels(100))
    assert len(load(workdir / "ok.yaml").environments) == 1
    (workdir / "ok.yaml").unlink()
    (workdir / "bad.yaml").write_text(_labels(101))
    assert messages(workdir) == [
        f"{workdir / 'bad.yaml'}:107: too many YAML aliases (alias bomb?): "
        "more than 100 uses or 10000 nodes expanded"
    ]


@pytest.mark.parametrize("levels", [9, 30])
def test_billion_laughs_is_refused_fast(sk: Sk, workdir: Path, work: Work, levels: int) -> None:
    """A billion-laughs bomb is refused by its aliases before any expansion, whatever its size."""
    text = 'lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels + 1):
        text += f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n"
    (workdir / "bomb.yaml").write_text(text)
    run = sk("validate", "-m", "bomb.yaml")
    assert run.code == 1
    assert_clean(run)
    assert "too many YAML aliases (alias bomb?)" in run.err
    # Refused by the event scan before the end of the text; no alias expanded, nothing built.
    assert work.aliases <= MAX_ALIASES + 1
    assert work.events < events_in(text)
    assert work.nodes == 0


def test_nesting_bound(workdir: Path) -> None:
    """64 levels are parsed (and judged on their merits); 65 are refused before building."""
    head = "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: production}\nspec: {}\n"
    (workdir / "a.yaml").write_text(head + "x: " + "[" * 63 + "]" * 63 + "\n")
    assert [m.split(": ", 1)[1] for m in messages(workdir)] == ["x: unknown field 'x'"]
    (workdir / "a.yaml").write_text(head + "x: " + "[" * 64 + "]" * 64 + "\n")
    assert [m.split(": ", 1)[1] for m in messages(workdir)] == ["nested deeper than 64 levels"]


def test_nesting_through_aliases_counts(workdir: Path) -> None:
    """Nesting reached through an alias counts toward the depth limit."""
    deep = "[" * 40 + "]" * 40
    (workdir / "a.yaml").write_text(f"a: &a {deep}\nb: {'[' * 30}*a{']' * 30}\n")
    assert "nested deeper than 64 levels" in messages(workdir)[0]


def test_very_deep_nesting_does_not_crash(sk: Sk, workdir: Path, work: Work) -> None:
    """libyaml's composer recurses in C: 200,000 levels would kill the process, not raise."""
    (workdir / "deep.yaml").write_text("[" * 200_000 + "]" * 200_000 + "\n")
    (workdir / "deep-map.yaml").write_text("{a: " * 100_000 + "1" + "}" * 100_000 + "\n")
    run = sk("validate", "-m", ".")
    assert run.code == 1
    assert_clean(run)
    assert run.err.count("nested deeper than 64 levels") == 2
    # Each file's scan stops past the limit (a key and a collection per level at most), before
    # anything is built.
    assert work.events <= 2 * (2 * MAX_DEPTH + 3)
    assert work.nodes == 0


# -- file size --------------------------------------------------------------------------------


def test_default_size_limit(sk: Sk, workdir: Path, work: Work) -> None:
    """A file over the default size limit is refused, naming the setting, before it is parsed."""
    (workdir / "big.yaml").write_text(VALID + "#" * DEFAULT_MAX_FILE_BYTES + "\n")
    run = sk("validate", "-m", "big.yaml")
    assert work.chars == 0  # refused before any of it is parsed
    assert run.code == 1
    assert_clean(run)
    assert f"over the limit of {DEFAULT_MAX_FILE_BYTES}" in run.err
    assert "SLOTKEEPER_MAX_MANIFEST_BYTES" in run.err


def test_size_limit_from_the_environment(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLOTKEEPER_MAX_MANIFEST_BYTES sets the size limit; an explicit argument wins over it."""
    (workdir / "envs.yaml").write_text(VALID)
    monkeypatch.setenv("SLOTKEEPER_MAX_MANIFEST_BYTES", "100")
    run = sk("validate", "--json", "-m", "envs.yaml")
    assert run.code == 1
    [error] = run.json()["errors"]
    assert error["line"] is None
    assert f"file is {len(VALID)} bytes, over the limit of 100" in error["message"]
    assert "SLOTKEEPER_MAX_MANIFEST_BYTES" in error["message"]

    monkeypatch.setenv("SLOTKEEPER_MAX_MANIFEST_BYTES", str(len(VALID)))
    assert sk("validate", "-m", "envs.yaml").code == 0

    # an explicit argument wins over the environment
    assert load_manifests(workdir / "envs.yaml", max_file_bytes=10**6).environments


@pytest.mark.parametrize("bad", ["lots", "0", "-5", "1.5", "4MiB"])
def test_bad_size_limit_setting_is_a_clear_error(
    sk: Sk, workdir: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """A size limit that is not a positive whole number is one clear error in every command."""
    (workdir / "envs.yaml").write_text(VALID)
    monkeypatch.setenv("SLOTKEEPER_MAX_MANIFEST_BYTES", bad)
    for args in (("validate",), ("validate", "--json"), ("plan",), ("apply", "--yes")):
        run = sk(*args, "-m", "envs.yaml")
        assert run.code == 1
        assert_clean(run)
        assert "SLOTKEEPER_MAX_MANIFEST_BYTES must be a positive whole number of bytes" in run.err


# -- symlinks ---------------------------------------------------------------------------------


def test_symlinks_inside_the_tree_are_followed(workdir: Path) -> None:
    """Symlinks to files and directories inside the tree, and a linked root, are followed."""
    root = workdir / "m"
    (root / ".store").mkdir(parents=True)
    (root / ".store" / "envs.yaml").write_text(VALID)
    (root / "envs.yaml").symlink_to(".store/envs.yaml")
    (root / ".releases" / "v1").mkdir(parents=True)
    (root / ".releases" / "v1" / "staging.yaml").write_text(
        VALID.replace("name: production", "name: staging")
    )
    (root / "current").symlink_to(".releases/v1", target_is_directory=True)
    assert set(load(root).environments) == {"production", "staging"}
    # the root itself may be a link
    (workdir / "link-to-m").symlink_to("m", target_is_directory=True)
    assert set(load(workdir / "link-to-m").environments) == {"production", "staging"}


def test_file_symlink_out_of_the_tree_is_refused(sk: Sk, workdir: Path) -> None:
    """A file symlink leading out of the manifest tree is refused by validate and apply."""
    (workdir / "outside.yaml").write_text(VALID.replace("name: production", "name: staging"))
    (workdir / "m").mkdir()
    (workdir / "m" / "envs.yaml").write_text(VALID)
    (workdir / "m" / "staging.yaml").symlink_to("../outside.yaml")
    run = sk("validate", "--json", "-m", "m")
    assert run.code == 1
    [error] = run.json()["errors"]
    assert error["file"] == "m/staging.yaml"
    assert "symlink leads out of the manifest tree" in error["message"]
    apply = sk("apply", "--yes", "-m", "m")
    assert apply.code == 1
    assert_clean(apply)


def test_directory_symlink_out_of_the_tree_is_refused(sk: Sk, workdir: Path) -> None:
    """Each directory symlink leading out of the manifest tree is refused by name."""
    (workdir / "elsewhere").mkdir()
    (workdir / "elsewhere" / "envs.yaml").write_text(VALID)
    (workdir / "m").mkdir()
    (workdir / "m" / "linked").symlink_to(workdir / "elsewhere", target_is_directory=True)
    (workdir / "m" / "etc").symlink_to("/etc", target_is_directory=True)
    run = sk("validate", "--json", "-m", "m")
    assert run.code == 1
    errors = run.json()["errors"]
    assert [e["file"] for e in errors] == ["m/etc", "m/linked"]
    assert all("symlink leads out of the manifest tree" in e["message"] for e in errors)


def test_broken_and_looping_symlinks(sk: Sk, workdir: Path) -> None:
    """Broken and looping manifest symlinks are errors; other links, and one to `.`, are not."""
    root = workdir / "m"
    root.mkdir()
    (root / "envs.yaml").write_text(VALID)
    (root / "gone.yaml").symlink_to("nowhere.yaml")
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    (root / "notes.txt").symlink_to("nowhere.txt")  # not a manifest: never read, not an error
    (root / "self").symlink_to(".", target_is_directory=True)  # inside: read once
    run = sk("validate", "--json", "-m", "m")
    assert run.code == 1
    assert_clean(run)
    errors = {e["file"]: e["message"] for e in run.json()["errors"]}
    assert set(errors) == {"m/gone.yaml", "m/a.yaml", "m/b.yaml"}
    assert "broken symlink" in errors["m/gone.yaml"]
    assert "symlink loop" in errors["m/a.yaml"]


# -- secret paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("../x", "would leave the secrets directory"),
        ("a/../../x", "would leave the secrets directory"),
        ("a//b", "empty parts"),
        (".", "would leave the secrets directory"),
        ("/etc/x", "must be a relative path"),
        ("~/x", "must be a relative path"),
        ("~root/x", "must be a relative path"),
        ("a\\\\..\\\\..\\\\x", "must be a relative path"),
        ("C:\\\\keys\\\\x", "must be a relative path"),
        ("key\\0", "must not contain a NUL character"),
        ("\\0", "must not contain a NUL character"),
    ],
)
def test_escaping_secret_paths_are_refused(workdir: Path, path: str, fragment: str) -> None:
    """A secret path that is absolute, escapes or holds NUL is refused at its line and field."""
    (workdir / "a.yaml").write_text(
        "apiVersion: slotkeeper/v1\nkind: Environment\nmetadata: {name: production}\n"
        "spec:\n  deployKeys:\n    - repository: acme/web\n      title: deployer\n"
        f'      secret:\n        file: "{path}"\n'
    )
    [message] = messages(workdir)
    assert "a.yaml:9: spec.deployKeys[0].secret.file: " in message
    assert fragment in message


# -- plain http -------------------------------------------------------------------------------


def _target(url: str, extra: str = "", kind: str = "github") -> str:
    if kind == "iftrue":
        spec = (
            f"type: iftrue, token: {{env: T}}, memberId: '1', baseUrl: 'https://api.iftrue.co', "
            f"repositoryUrl: '{url}'"
        )
    else:
        spec = f"type: {kind}, baseUrl: '{url}', token: {{env: T}}"
        if kind == "unkey":
            spec = spec.replace("token", "rootKey") + ", project: acme, app: api"
    return (
        f"apiVersion: slotkeeper/v1\nkind: Target\nmetadata: {{name: t}}\nspec: {{{spec}{extra}}}\n"
    )


@pytest.mark.parametrize("kind", ["github", "chainloop", "unkey", "iftrue"])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.3.4.5/api",
        "http://[::1]:9000/x",
        "http://localhost:1234",
        "http://LOCALHOST",
        "https://api.example.com",
        "https://10.0.0.1:8443/api/v3",
    ],
)
def test_loopback_http_and_https_are_allowed(workdir: Path, kind: str, url: str) -> None:
    """Every target type accepts https anywhere and plain http to loopback hosts."""
    (workdir / "t.yaml").write_text(_target(url, kind=kind))
    assert set(load_targets(workdir / "t.yaml").specs) == {"t"}


@pytest.mark.parametrize("kind", ["github", "chainloop", "unkey", "iftrue"])
@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "http://10.0.0.1:8080/api",
        "http://[::2]/",
        "http://localhost.evil.com",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:80",
    ],
)
def test_plain_http_elsewhere_needs_allow_insecure_http(workdir: Path, kind: str, url: str) -> None:
    """Plain http to a non-loopback host is refused at its line unless allowInsecureHttp is set."""
    (workdir / "t.yaml").write_text(_target(url, kind=kind))
    [message] = messages(workdir / "t.yaml", load_targets)
    field = "spec.repositoryUrl" if kind == "iftrue" else "spec.baseUrl"
    assert f"t.yaml:4: {field}: plain http:// is only allowed to loopback hosts" in message
    assert "use https:// or set allowInsecureHttp: true" in message

    (workdir / "t.yaml").write_text(_target(url, ", allowInsecureHttp: true", kind=kind))
    target = load_targets(workdir / "t.yaml").specs["t"]
    assert target.allow_insecure_http is True


def test_allow_insecure_http_defaults_to_false_and_is_in_the_schema(sk: Sk, workdir: Path) -> None:
    """allowInsecureHttp defaults to false, and each target type's schema has it as a boolean."""
    (workdir / "t.yaml").write_text(_target("https://api.github.com"))
    assert load_targets(workdir / "t.yaml").specs["t"].allow_insecure_http is False
    defs = sk("schema", "--targets").json()["$defs"]
    for spec in ("GithubTargetSpec", "ChainloopTargetSpec", "UnkeyTargetSpec", "IftrueTargetSpec"):
        assert defs[spec]["properties"]["allowInsecureHttp"]["type"] == "boolean"


# -- fuzz: the loader returns a DesiredState or raises ManifestErrors, nothing else ------------

YAMLISH = st.lists(
    st.sampled_from(
        [
            *"abcz019 -:[]{},&*!|>'\"#%@`?\n\t.\\/~<=",
            *["apiVersion", "slotkeeper/v1", "kind", "Environment", "Target", "metadata"],
            *["spec", "name", "slots", "artifact", "version", "digest", "---", "\n  ", "!!int"],
            *["!!binary", "!!timestamp", "2026-13-45", "<<", "&a", "*a", "\x00", "\x07"],
            *["\ufeff", "\u2028"],
        ]
    ),
    max_size=120,
).map("".join)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["slotkeeper/v1", "Environment", "Target", "github", "CONTAINER_IMAGE"])
)
KEYS = st.sampled_from(
    [
        *["apiVersion", "kind", "metadata", "spec", "name", "slots", "artifact", "version"],
        *["type", "token", "env", "file", "freeze", "start", "end", "cron", "duration"],
        *["deployKeys", "secret", "targets", "baseUrl", "allowInsecureHttp", "labels", "api"],
    ]
) | st.text(max_size=8)
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


def _document(spec: object, kind: str) -> object:
    return {
        "apiVersion": "slotkeeper/v1",
        "kind": kind,
        "metadata": {"name": "production"},
        "spec": spec,
    }


def _only_manifest_errors(content: bytes) -> None:
    """As manifests and as the operator's targets file: a result or ManifestErrors, nothing
    else."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "a.yaml"
        path.write_bytes(content)
        for loader, result_type in (
            (lambda p: load_manifests(p, max_file_bytes=DEFAULT_MAX_FILE_BYTES), DesiredState),
            (load_targets, OperatorTargets),
        ):
            try:
                result = loader(path)
            except ManifestErrors as exc:
                assert exc.errors
                for error in exc.errors:
                    assert error.message
                    assert error.line is None or error.line >= 1
            else:
                assert isinstance(result, result_type)


FUZZ = settings(max_examples=200, deadline=None)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(content: bytes) -> None:
    """Random bytes load as manifests and as targets, or fail as ManifestErrors, nothing else."""
    _only_manifest_errors(content)


@FUZZ
@given(YAMLISH)
def test_fuzz_yamlish_text(text: str) -> None:
    """YAML-like random text gives a result or ManifestErrors with lines, nothing else."""
    _only_manifest_errors(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(STRUCTURES, st.sampled_from(["", "Environment", "Target"]))
def test_fuzz_random_structures(data: object, kind: str) -> None:
    """Random structures, as documents or bare, give a result or ManifestErrors, nothing else."""
    document = _document(data, kind) if kind else data
    _only_manifest_errors(yaml.safe_dump(document, allow_unicode=True).encode())


@FUZZ
@given(st.integers(0, len(VALID)), st.integers(0, 40), YAMLISH)
def test_fuzz_mutated_valid_manifest(at: int, cut: int, insert: str) -> None:
    """A valid manifest with a random cut and insert gives a result or ManifestErrors, only."""
    text = VALID[:at] + insert + VALID[at + cut :]
    _only_manifest_errors(text.encode("utf-8", "surrogatepass"))


def test_fuzz_corpus_through_the_loader() -> None:
    """The corpora through the loaders directly: ManifestErrors only (oversize aside)."""
    for case in _cases():
        with pytest.raises(ManifestErrors):
            load_manifests(case, max_file_bytes=DEFAULT_MAX_FILE_BYTES)
    for case in _cases(TARGETS_CORPUS):
        with pytest.raises(ManifestErrors):
            load_targets(case)
