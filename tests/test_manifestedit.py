"""Byte-preserving edits of a slot's artifact in a manifest (``slotkeeper.manifestedit``).

The golden cases under ``tests/golden/manifestedit`` are compared byte for byte: each
``<case>.in.yaml`` edited as ``CASES`` says must give ``<case>.out.yaml``. Refusals are literal
texts (``dedent``) so that the expected line numbers can be read off the text: line 1 is the first
line after the opening quotes.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from slotkeeper.errors import SlotkeeperError
from slotkeeper.manifestedit import EditRefused, set_artifact
from slotkeeper.model import Artifact, ArtifactKind
from slotkeeper.yamlsource import LineDict, parse_documents

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "manifestedit"

D1 = "sha256:5f1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
D2 = "sha256:9a8b7c6d5e4f30211203f4e5d6c7b8a90f1e2d3c4b5a69788796a5b4c3d2e1f0"
API = "ghcr.io/acme/api"


def image(name: str = API, version: str | None = None, digest: str | None = None) -> Artifact:
    """A container image artifact."""
    return Artifact(kind=ArtifactKind.CONTAINER_IMAGE, name=name, version=version, digest=digest)


CHART = Artifact(
    kind=ArtifactKind.HELM_CHART, name="oci://ghcr.io/acme/charts/web", version="2.3.0"
)

#: each golden case: the edits (environment, slot, artifact) made one after the other
CASES: dict[str, list[tuple[str, str, Artifact]]] = {
    "block-comments": [("production", "api", image(version="v1.4.3", digest=D2))],
    "flow-compact": [("staging", "api", image(version="v1.5.0"))],
    "flow-spaced": [("staging", "api", image(version="v1.5.0", digest=D2))],
    "quoted-single": [("production", "api", image(name="ghcr.io/acme/o'api", version="1.10"))],
    "quoted-double": [("production", "api", image(version='v1.4.3 "final"\tbuild'))],
    "plain": [("production", "api", image(name="ghcr.io/acme/api-v2", version="v1.4.3"))],
    "version-needs-quotes": [("production", "api", image(version="1.10"))],
    "digest-insert-block": [
        ("production", "worker", image(name="ghcr.io/acme/worker", version="v2.0.1", digest=D1))
    ],
    "digest-insert-flow": [("staging", "api", image(version="v1.5.0-rc.1", digest=D1))],
    "digest-remove-block": [("production", "api", image(version="v1.4.3"))],
    "digest-remove-flow": [
        ("staging", "api", image(version="v1.5.0-rc.1")),
        ("staging", "web-chart", CHART),
    ],
    "multi-document": [("production", "api", image(version="v1.4.2", digest=D1))],
    "crlf": [("production", "api", image(version="v1.4.3", digest=D2))],
    "no-final-newline": [("production", "api", image(version="v1.4.3", digest=D2))],
    "no-final-newline-remove": [("production", "api", image(version="v1.4.3"))],
    "anchor-elsewhere": [("production", "api", image(version="v1.4.3", digest=D1))],
    "quickstart-production": [("production", "api", image(version="v1.4.3", digest=D2))],
    "quickstart-staging": [("staging", "api", image(version="v1.5.0", digest=D1))],
}


def golden(name: str) -> str:
    """A golden file's text exactly as stored: line endings and final newline as they are."""
    return (GOLDEN / name).read_bytes().decode("utf-8")


def edit(text: str, environment: str, slot: str, artifact: Artifact) -> str:
    """``set_artifact`` on a text named ``m.yaml``."""
    return set_artifact(text, file="m.yaml", environment=environment, slot=slot, artifact=artifact)


def refusal(text: str, environment: str, slot: str, artifact: Artifact) -> EditRefused:
    """The refusal of an edit (the test fails if the edit is made)."""
    with pytest.raises(EditRefused) as caught:
        edit(text, environment, slot, artifact)
    return caught.value


def y(text: str) -> str:
    """A dedented YAML text."""
    return dedent(text)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_case_is_byte_identical(case: str) -> None:
    """Each golden input, edited as its case says, gives its golden output byte for byte:
    comments, blank lines, key order, quoting, flow style, anchors, line endings and a missing
    final newline all kept, only the values that differ changed."""
    text = golden(f"{case}.in.yaml")
    for environment, slot, artifact in CASES[case]:
        text = edit(text, environment, slot, artifact)
    assert text.encode() == (GOLDEN / f"{case}.out.yaml").read_bytes()


@pytest.mark.parametrize("case", sorted(CASES))
def test_editing_the_output_again_changes_nothing(case: str) -> None:
    """An edit whose artifact is already there returns the text unchanged: nothing is touched
    when no value differs."""
    text = golden(f"{case}.out.yaml")
    for environment, slot, artifact in CASES[case]:
        assert edit(text, environment, slot, artifact) == text


def test_every_golden_case_has_its_files() -> None:
    """The golden directory holds exactly an input and an output for every case."""
    names = sorted(path.name for path in GOLDEN.iterdir())
    assert names == sorted(f"{case}.{part}.yaml" for case in CASES for part in ("in", "out"))


def test_promoting_the_quickstart_gives_the_next_quickstart() -> None:
    """Promoting the API in the quickstart's first production manifest writes exactly the
    manifest of its next step, which people wrote by hand."""
    before = (ROOT / "examples/quickstart/1-initial/production.yaml").read_bytes()
    assert golden("quickstart-production.in.yaml").encode() == before
    after = (ROOT / "examples/quickstart/2-next/production.yaml").read_bytes()
    assert golden("quickstart-production.out.yaml").encode() == after


def test_crlf_golden_files_keep_their_line_endings() -> None:
    """The CRLF case really is CRLF on disk, every line of it, in and out (an editor or a git
    setting that rewrote it would make the case prove nothing)."""
    for part in ("in", "out"):
        data = (GOLDEN / f"crlf.{part}.yaml").read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 10


def test_no_final_newline_golden_files_end_without_one() -> None:
    """The no-final-newline cases end without a line break, in and out."""
    for case in ("no-final-newline", "no-final-newline-remove"):
        for part in ("in", "out"):
            assert not (GOLDEN / f"{case}.{part}.yaml").read_bytes().endswith(b"\n")


# -- scalars keep their style ------------------------------------------------------------------

BLOCK = y("""\
    kind: Environment
    metadata:
      name: production
    spec:
      slots:
        api:
          artifact:
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/api
            version: v1.4.2  # note
    """)

FLOW = y("""\
    kind: Environment
    metadata: {name: staging}
    spec:
      slots:
        api:
          artifact: {kind: CONTAINER_IMAGE, name: ghcr.io/acme/api, version: v1.4.2}
    """)


@pytest.mark.parametrize(
    ("version", "written"),
    [
        ("v1.4.3", "v1.4.3"),
        ("1.4.3", "1.4.3"),
        ("2026.01.30-abc", "2026.01.30-abc"),
        ("1.10", '"1.10"'),
        ("1", '"1"'),
        ("1e3", '"1e3"'),
        ("0x1F", '"0x1F"'),
        ("yes", '"yes"'),
        ("off", '"off"'),
        ("null", '"null"'),
        ("~", '"~"'),
        ("2026-01-30", '"2026-01-30"'),
        ("a: b", '"a: b"'),
        ("a #b", '"a #b"'),
        ("#a", '"#a"'),
        ("- a", '"- a"'),
        ("*a", '"*a"'),
        ("&a", '"&a"'),
        ("!a", '"!a"'),
        ("'a'", "\"'a'\""),
        ('"a"', '"\\"a\\""'),
        (" a", '" a"'),
        ("a ", '"a "'),
        ("a\nb", '"a\\nb"'),
        ("a\u2028b", '"a\\Lb"'),
        ("é", "é"),
    ],
)
def test_a_plain_value_stays_plain_only_when_it_reads_back_the_same(
    version: str, written: str
) -> None:
    """A plain scalar stays plain when the new value reads back as that very string; else it
    becomes double-quoted (numbers, booleans, null, dates, ``: ``, `` #``, indicators, leading
    or trailing spaces, line breaks escaped). The comment beside it stays."""
    out = edit(BLOCK, "production", "api", image(version=version))
    assert out == BLOCK.replace("version: v1.4.2  # note", f"version: {written}  # note")
    assert yaml.safe_load(out)["spec"]["slots"]["api"]["artifact"]["version"] == version


@pytest.mark.parametrize(
    ("version", "written"),
    [("v1.5.0", "v1.5.0"), ("a,b", '"a,b"'), ("a]", '"a]"'), ("{a}", '"{a}"'), ("1.10", '"1.10"')],
)
def test_a_plain_value_in_a_flow_mapping_is_judged_there(version: str, written: str) -> None:
    """In a flow mapping a plain value must also survive the flow indicators (``,``, brackets,
    braces): such values are double-quoted."""
    out = edit(FLOW, "staging", "api", image(version=version))
    assert out == FLOW.replace("version: v1.4.2}", f"version: {written}}}")
    assert yaml.safe_load(out)["spec"]["slots"]["api"]["artifact"]["version"] == version


@pytest.mark.parametrize(
    ("version", "written"),
    [("it's", "'it''s'"), ("1.10", "'1.10'"), ("a\tb", '"a\\tb"'), ("a\nb", '"a\\nb"')],
)
def test_a_single_quoted_value_stays_single_quoted_when_it_can(version: str, written: str) -> None:
    """A single-quoted scalar stays single-quoted, quotes doubled; a value such a scalar cannot
    show on one line (a tab, a line break) is double-quoted with escapes instead."""
    text = BLOCK.replace("version: v1.4.2", "version: 'v1.4.2'")
    out = edit(text, "production", "api", image(version=version))
    assert out == text.replace("version: 'v1.4.2'", f"version: {written}")
    assert yaml.safe_load(out)["spec"]["slots"]["api"]["artifact"]["version"] == version


@pytest.mark.parametrize(
    ("version", "written"),
    [
        ("v1", '"v1"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("bell\a", '"bell\\a"'),
        ("nul\0", '"nul\\0"'),
        ("del\x7f", '"del\\x7F"'),
        ("bom\ufeff", '"bom\\uFEFF"'),
        ("emoji \U0001f680", '"emoji \U0001f680"'),
    ],
)
def test_a_double_quoted_value_stays_double_quoted_and_escaped(version: str, written: str) -> None:
    """A double-quoted scalar stays double-quoted, with quotes, backslashes and characters that
    may not stand as themselves escaped."""
    text = BLOCK.replace("version: v1.4.2", 'version: "v1.4.2"')
    out = edit(text, "production", "api", image(version=version))
    assert out == text.replace('version: "v1.4.2"', f"version: {written}")
    assert yaml.safe_load(out)["spec"]["slots"]["api"]["artifact"]["version"] == version


def test_an_inserted_version_is_plain_when_safe_and_quoted_otherwise() -> None:
    """A version added where there was none is written plain when that reads back the same,
    double-quoted otherwise; an added digest is always double-quoted."""
    text = BLOCK.replace("version: v1.4.2  # note", f'digest: "{D1}"')
    plain = edit(text, "production", "api", image(version="v2", digest=D1))
    assert plain == text + "        version: v2\n"
    quoted = edit(text, "production", "api", image(version="2.0", digest=D1))
    assert quoted == text + '        version: "2.0"\n'
    digest = edit(FLOW, "staging", "api", image(version="v1.4.2", digest=D2))
    assert digest == FLOW.replace("v1.4.2}", f'v1.4.2, digest: "{D2}"}}')


def test_a_changed_field_can_be_inserted_and_another_removed_at_once() -> None:
    """A rollback to a digest-only artifact removes the version and adds the digest: the digest
    takes the place after the last remaining field, in block and flow mappings."""
    block = edit(BLOCK, "production", "api", image(digest=D2))
    assert block == BLOCK.replace("version: v1.4.2  # note", f'digest: "{D2}"')
    flow = edit(FLOW, "staging", "api", image(digest=D2))
    assert flow == FLOW.replace("version: v1.4.2}", f'digest: "{D2}"}}')


def test_an_empty_value_gets_its_value_after_the_colon() -> None:
    """A field written without a value (``version:``, which reads as null) gets the value after
    its colon, one space between."""
    text = BLOCK.replace("version: v1.4.2  # note", "version:")
    assert edit(text, "production", "api", image(version="v2")) == BLOCK.replace(
        "v1.4.2  # note", "v2"
    )


def test_an_anchor_on_a_changed_value_aliased_nowhere_is_kept() -> None:
    """A changed value may carry an anchor that nothing aliases (nor a ``!!str`` tag): the
    anchor and tag stay, only the scalar after them changes."""
    text = BLOCK.replace("version: v1.4.2", "version: &v !!str v1.4.2")
    out = edit(text, "production", "api", image(version="1.10"))
    assert out == text.replace("&v !!str v1.4.2", '&v !!str "1.10"')


def test_a_byte_order_mark_is_kept() -> None:
    """A file starting with a byte order mark keeps it (libyaml does not count it in its
    offsets: the edit still lands on the right bytes)."""
    out = edit("\ufeff" + BLOCK, "production", "api", image(version="v2"))
    assert out == "\ufeff" + BLOCK.replace("v1.4.2", "v2")


def test_non_ascii_text_before_the_value_does_not_shift_the_edit() -> None:
    """Offsets are characters, not bytes: accents, CJK and emoji in comments and values before
    the changed one do not move where the edit lands."""
    text = BLOCK.replace("kind: Environment", "kind: Environment  # é 環境 🚀").replace(
        "name: ghcr.io/acme/api", "name: ghcr.io/acme/ápi"
    )
    out = edit(text, "production", "api", image(name="ghcr.io/acme/ápi", version="v2"))
    assert out == text.replace("v1.4.2", "v2")


# -- refusals ----------------------------------------------------------------------------------

ALIASED_ARTIFACT = y("""\
    kind: Environment
    metadata:
      name: production
    spec:
      slots:
        api:
          artifact: &api
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/api
            version: v1.4.2
        api-canary:
          artifact: *api
    """)

ALIASED_VERSION = y("""\
    kind: Environment
    metadata:
      name: production
    spec:
      slots:
        api:
          artifact:
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/api
            version: &release v1.4.2
        worker:
          artifact:
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/worker
            version: *release
    """)

MERGED = y("""\
    kind: Environment
    metadata:
      name: production
    spec:
      slots:
        api:
          artifact: &base
            kind: CONTAINER_IMAGE
            name: ghcr.io/acme/api
            version: v1.4.2
        cron:
          artifact:
            <<: *base
            version: v1.0.0
    """)


def test_an_artifact_that_is_an_alias_is_refused_at_its_line() -> None:
    """An artifact written as an alias (``artifact: *api``) is refused where the alias is:
    changing it would change the mapping it refers to."""
    refused = refusal(ALIASED_ARTIFACT, "production", "api-canary", image(version="v2"))
    assert (refused.file, refused.line) == ("m.yaml", 12)
    assert "is an alias (*api) of the node at line 7" in refused.message
    assert str(refused) == f"m.yaml:12: {refused.message}"
    assert isinstance(refused, SlotkeeperError)


def test_an_artifact_whose_anchor_is_aliased_is_refused_at_its_line() -> None:
    """An artifact carrying an anchor that another place aliases is refused: changing it would
    change that place too."""
    refused = refusal(ALIASED_ARTIFACT, "production", "api", image(version="v2"))
    assert refused.line == 7
    assert "carries an anchor (&api) that is aliased elsewhere" in refused.message


def test_a_version_anchored_and_aliased_is_refused_where_it_is_changed() -> None:
    """Changing a version that carries an anchor aliased elsewhere is refused at its line, and
    so is changing the alias of it."""
    anchored = refusal(ALIASED_VERSION, "production", "api", image(version="v2"))
    assert anchored.line == 10
    assert "version carries an anchor (&release)" in anchored.message
    aliased = refusal(
        ALIASED_VERSION, "production", "worker", image(name="ghcr.io/acme/worker", version="v2")
    )
    assert aliased.line == 15
    assert "version is an alias (*release) of the node at line 10" in aliased.message


def test_an_aliased_value_that_does_not_change_is_left_alone() -> None:
    """An alias or anchor on a field whose value stays is no obstacle: adding a digest next to
    an aliased version works and keeps the alias."""
    worker = image(name="ghcr.io/acme/worker", version="v1.4.2", digest=D1)
    out = edit(ALIASED_VERSION, "production", "worker", worker)
    assert out == ALIASED_VERSION + f'        digest: "{D1}"\n'


def test_removing_a_value_whose_anchor_is_aliased_is_refused() -> None:
    """Removing a field whose anchor is aliased elsewhere would leave a dangling alias: refused
    at its line."""
    text = ALIASED_VERSION.replace("version: &release v1.4.2", f'digest: &d "{D1}"').replace(
        "version: *release", "digest: *d"
    )
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 10
    assert "digest carries an anchor (&d)" in refused.message


def test_a_merge_key_in_the_artifact_is_refused_at_its_line() -> None:
    """An artifact built with a merge key (``<<: *base``) is refused at the merge key: its
    fields come from another mapping."""
    refused = refusal(MERGED, "production", "cron", image(version="v2"))
    assert refused.line == 13
    assert "merge key" in refused.message


def test_a_slot_that_may_come_from_a_merge_key_is_refused() -> None:
    """A slot not written in ``slots`` but which a merge key may bring is refused at the merge
    key, not reported missing."""
    text = y("""\
        kind: Environment
        metadata: {name: production}
        spec:
          slots:
            <<: {api: {artifact: {kind: CONTAINER_IMAGE, name: x, version: v1}}}
        """)
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 5
    assert "merge key" in refused.message


def test_shared_slots_are_refused() -> None:
    """A mapping on the way to the artifact shared through an alias (here the whole slot) is
    refused: the artifact under it belongs to both places."""
    text = y("""\
        kind: Environment
        metadata: {name: production}
        spec:
          slots:
            api: &slot
              artifact: {kind: CONTAINER_IMAGE, name: x, version: v1}
            api-copy: *slot
        """)
    refused = refusal(text, "production", "api-copy", image(name="x", version="v2"))
    assert refused.line == 7
    assert "spec.slots.api-copy is an alias (*slot)" in refused.message


def test_an_unknown_slot_is_refused_at_the_slots_line() -> None:
    """A slot the environment does not have is refused at its ``slots:`` line, naming the
    slots it has."""
    refused = refusal(golden("quickstart-production.in.yaml"), "production", "db", image("x", "1"))
    assert refused.line == 10
    assert refused.message == "environment 'production' has no slot 'db' (its slots: api, worker)"


def test_an_unknown_environment_is_refused_without_a_line() -> None:
    """An environment the file does not hold is refused with no line (there is none to point
    at), naming the environments the file has."""
    refused = refusal(golden("multi-document.in.yaml"), "qa", "api", image(version="v2"))
    assert refused.line is None
    assert refused.message == (
        "no Environment document named 'qa' in this file (it has: production, staging)"
    )
    assert str(refused) == f"m.yaml: {refused.message}"


def test_two_documents_for_one_environment_are_refused() -> None:
    """A file with two Environment documents of the same name is refused at the second one's
    name: which one to edit is ambiguous."""
    text = golden("plain.in.yaml") + "---\n" + golden("plain.in.yaml")
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 17
    assert "(the first is at line 4)" in refused.message


def test_invalid_yaml_is_refused_at_its_line() -> None:
    """A file that is not valid YAML is refused at the line of the problem, as the manifest
    loader words it."""
    text = BLOCK.replace("name: ghcr.io/acme/api", "name: [ghcr.io/acme/api")
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 9
    assert refused.message.startswith("invalid YAML: unclosed flow sequence")


@pytest.mark.parametrize("style", ["|", ">", "|-"])
def test_a_block_scalar_field_is_refused(style: str) -> None:
    """A changed field written as a block scalar is refused at its line."""
    text = BLOCK.replace("version: v1.4.2  # note", f"version: {style}\n          v1.4.2")
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 10
    assert "block scalar" in refused.message


def test_an_explicit_tag_on_a_changed_field_is_refused() -> None:
    """A changed field carrying an explicit tag other than ``!!str`` is refused: the new text
    under that tag would not read as a string."""
    text = BLOCK.replace("version: v1.4.2", "version: !!float 1.4")
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 10
    assert "explicit tag (!!float)" in refused.message


def test_an_unknown_artifact_field_is_refused() -> None:
    """An artifact with a field slotkeeper does not know is refused at that field: the result
    could not read back as the requested artifact."""
    text = BLOCK.replace("version: v1.4.2  # note", "version: v1.4.2\n        tag: latest")
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 11
    assert "'tag'" in refused.message


def test_a_duplicate_slot_key_is_refused() -> None:
    """A slot written twice in one mapping is refused at the second: a loader keeps only one."""
    text = BLOCK + "    api:\n      artifact: {kind: CONTAINER_IMAGE, name: x, version: v1}\n"
    refused = refusal(text, "production", "api", image(version="v2"))
    assert refused.line == 11
    assert "duplicate key 'api' (also at line 6)" in refused.message


# -- random artifacts into the quickstart manifests --------------------------------------------

#: values that YAML reads as something else, or that need quoting or escaping somewhere
TRICKY = [
    *("1.10", "1", "yes", "No", "null", "~", "1e3", "0x1F", "2026-01-30", ".inf", "=", "<<"),
    *("a: b", "a #b", "#a", "- a", "-", "?", ":", "a:", "*a", "&a", "!a", "|", ">", "%a", "@a"),
    *("`a", "'", '"', "'a'", '"a"', "a,b", "[a]", "{a}", "a\nb", " a", "a ", "\t", "\\"),
    *("\x85", "\u2028", "\ufeff", "\0", "é", "\U0001f680", "---", "...", "a\r\nb"),
]
VALUES = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=24))
DIGESTS = st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__)


@st.composite
def artifacts(draw: st.DrawFn) -> Artifact:
    """Any valid artifact: every kind, any name and version, with or without a digest."""
    version = draw(st.none() | VALUES)
    digest = draw(DIGESTS) if version is None else draw(st.none() | DIGESTS)
    kind = draw(st.sampled_from(list(ArtifactKind)))
    return Artifact(kind=kind, name=draw(VALUES), version=version, digest=digest)


def slot_artifact(text: str, slot: str) -> LineDict:
    """The artifact of ``slot`` in the one document of ``text``, as the manifest loader reads
    it (with the line of each key)."""
    documents, problems = parse_documents(text)
    assert problems == []
    [document] = documents
    found = document.data["spec"]["slots"][slot]["artifact"]
    assert isinstance(found, LineDict)
    return found


def expected(artifact: Artifact) -> dict[str, Any]:
    """The artifact as a manifest's mapping holds it."""
    return artifact.model_dump(mode="json", exclude_none=True)


@given(
    manifest=st.sampled_from(
        [
            ("quickstart-production", "production", "api"),
            ("quickstart-production", "production", "worker"),
            ("quickstart-staging", "staging", "api"),
            ("quickstart-staging", "staging", "web-chart"),
        ]
    ),
    artifact=artifacts(),
)
def test_random_artifacts_read_back_and_change_only_their_lines(
    manifest: tuple[str, str, str], artifact: Artifact
) -> None:
    """Any artifact written into the quickstart's manifests (block and flow artifacts) reads
    back as exactly that artifact, through the manifest loader; every line not holding a
    changed field is byte-identical to the input (same lines, same order); writing it again
    changes nothing."""
    case, environment, slot = manifest
    text = golden(f"{case}.in.yaml")
    out = edit(text, environment, slot, artifact)
    before, after = slot_artifact(text, slot), slot_artifact(out, slot)
    assert dict(after) == expected(artifact)
    assert Artifact.model_validate(dict(after)) == artifact
    changed_before = {
        before.key_lines[field] for field in before if before[field] != after.get(field)
    }
    changed_after = {after.key_lines[field] for field in after if after[field] != before.get(field)}
    kept_before = [
        line for number, line in enumerate(text.split("\n"), 1) if number not in changed_before
    ]
    kept_after = [
        line for number, line in enumerate(out.split("\n"), 1) if number not in changed_after
    ]
    assert kept_after == kept_before
    assert edit(out, environment, slot, artifact) == out
