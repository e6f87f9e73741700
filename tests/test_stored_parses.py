"""An apply keeps each manifest file's parse in the ledger, by content; a later plan or apply
validates a file whose content has one from it instead of parsing the YAML again, and loads
exactly what a parse gives: the same environments, slots, lines and errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from slotkeeper.errors import ManifestErrors
from slotkeeper.ledger import open_ledger
from slotkeeper.manifests import (
    NO_TARGETS,
    PARSE_FORMAT,
    OperatorTargets,
    ParseCache,
    load_targets,
    parse,
    storable,
)
from tests.helpers import Run, deploy_key, environment, image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def put(root: Path, name: str, *documents: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def files_of(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*.yaml"))}


def stored_of(files: dict[Path, bytes], targets: OperatorTargets = NO_TARGETS) -> dict[str, str]:
    """Parse ``files`` as an apply does, and what it would store."""
    cache = ParseCache({})
    parse(files, parse_cache=cache, targets=targets)
    return storable(cache)


@pytest.mark.parametrize(
    ("tree", "operator"),
    [
        ("quickstart/1-initial", None),
        ("quickstart/2-next", None),
        ("github/manifests", "github/targets.yaml"),
        ("all-targets/manifests", "all-targets/targets.yaml"),
    ],
)
def test_a_stored_parse_loads_what_the_parse_loads(tree: str, operator: str | None) -> None:
    """Every example tree, loaded from its stored parses, is the same desired state (slots,
    their lines, environments' locations) as parsed, and no file is parsed again."""
    targets = load_targets(EXAMPLES / operator) if operator else NO_TARGETS
    files = files_of(EXAMPLES / tree)
    stored = stored_of(files, targets)
    assert len(stored) == len(files)
    again = ParseCache(stored)
    assert parse(files, parse_cache=again, targets=targets) == parse(files, targets=targets)
    assert (again.hits, again.misses) == (len(files), 0)


def test_errors_across_files_name_the_same_lines_from_a_stored_parse(tmp_path: Path) -> None:
    """A file loaded from its stored parse takes part in the checks across files as parsed: an
    environment or deploy key declared again in a new file is reported at the same lines."""
    key = deploy_key("deployer", secret={"file": "shared"})
    first = put(tmp_path, "a", environment("prod", {"api": image()}, deployKeys=[key]))
    stored = stored_of({first: first.read_bytes()})
    second = put(tmp_path, "b", environment("prod", {"web": image()}, deployKeys=[key]))
    files = files_of(tmp_path)

    with pytest.raises(ManifestErrors) as parsed:
        parse(files)
    with pytest.raises(ManifestErrors) as from_store:
        parse(files, parse_cache=ParseCache(stored))
    assert str(from_store.value) == str(parsed.value)
    assert "already declared" in str(parsed.value) and str(second) in str(parsed.value)


def test_a_stored_parse_that_no_longer_validates_is_parsed_instead(tmp_path: Path) -> None:
    """A stored parse the manifest model refuses (another version wrote it, or it was edited)
    is ignored: the file is parsed, the load is the same."""
    path = put(tmp_path, "a", environment("prod", {"api": image()}))
    files = files_of(tmp_path)
    stored = stored_of(files)
    ((digest, text),) = stored.items()
    broken = json.loads(text)
    broken[0]["document"]["spec"]["slots"]["api"]["artifact"]["kind"] = "NOT_A_KIND"
    cache = ParseCache({digest: json.dumps(broken)})
    assert parse(files, parse_cache=cache) == parse(files)
    assert (cache.hits, cache.misses) == (0, 1)
    assert path.exists()


def _loaded(run: Run) -> dict[str, Any]:
    """The ``manifests.loaded`` event of a run: its files, how many parsed, how many stored."""
    events = [json.loads(line) for line in run.err.splitlines() if line.startswith("{")]
    return next(event for event in events if event["event"] == "manifests.loaded")


def test_a_plan_after_an_apply_parses_only_the_changed_file(
    sk: Callable[..., Run], workdir: Path, ledger_url: str
) -> None:
    """Through the command line, on SQLite and PostgreSQL: an apply stores each file's parse; a
    plan of the same tree parses none and finds nothing to do; an edit of one file is parsed
    alone, and planned; the next apply stores it and drops the parse of its old content."""
    root = workdir / "m"
    for name in ("a", "b", "c"):
        put(root, name, environment(name, {"api": image()}))
    log = ("--log-format", "json", "--log-level", "debug")
    state = ("-m", "m", "--state", ledger_url)
    applied = sk(*log, "apply", "--yes", *state)
    assert applied.code == 0, applied.err
    assert (_loaded(applied)["files"], _loaded(applied)["parsed"]) == (3, 3)

    plan = sk(*log, "plan", *state, "--detailed-exitcode")
    assert plan.code == 0 and "No changes" in plan.out
    assert (_loaded(plan)["parsed"], _loaded(plan)["stored"]) == (0, 3)

    put(root, "b", environment("b", {"api": image(version="v2")}))
    plan = sk(*log, "plan", *state, "--detailed-exitcode")
    assert plan.code == 2 and "b/api" in plan.out and "a/api" not in plan.out
    assert (_loaded(plan)["parsed"], _loaded(plan)["stored"]) == (1, 2)

    assert sk("apply", "--yes", *state).code == 0
    ledger = open_ledger(ledger_url, now=datetime.now(UTC))
    try:
        digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.glob("*.yaml")}
        kept = ledger.stored_parses(digests | {"0" * 64}, PARSE_FORMAT)
        assert set(kept) == digests  # the new content's stored, the old content's dropped
        assert ledger.stored_parses(digests, "another-format") == {}
    finally:
        ledger.close()
