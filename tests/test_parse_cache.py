"""The daemon parses only the manifest files that changed: each file's parse and validation is
kept by its content, reused while the content stays, and the load is the same as a fresh one
(errors, names declared twice across files, references) whatever was reused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from slotkeeper.errors import ManifestErrors
from slotkeeper.manifests import ParseCache, parse
from tests.daemon_support import Running, wait_for
from tests.helpers import environment, image


def put(root: Path, name: str, document: dict[str, Any]) -> None:
    """Write one manifest file, leaving the others as they are."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def files_of(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.glob("*.yaml"))}


def test_unchanged_files_are_reused_and_the_load_is_the_same(tmp_path: Path) -> None:
    """Three files: the second load reuses all three and equals the first; after one edit it
    parses that one alone and sees the edit; a deleted file's entry is dropped."""
    for name in ("a", "b", "c"):
        put(tmp_path, name, environment(name, {"api": image()}))
    cache = ParseCache()
    first = parse(files_of(tmp_path), parse_cache=cache)
    assert cache.forget_unused() == (0, 3)
    again = parse(files_of(tmp_path), parse_cache=cache)
    assert cache.forget_unused() == (3, 0)
    assert again == first
    put(tmp_path, "b", environment("b", {"api": image(version="v2")}))
    edited = parse(files_of(tmp_path), parse_cache=cache)
    assert cache.forget_unused() == (2, 1)
    assert edited.environments["b"].slots["api"].artifact.version == "v2"
    assert edited == parse(files_of(tmp_path))  # the same as a load without a cache


def test_errors_and_cross_file_rules_hold_with_reused_files(tmp_path: Path) -> None:
    """A broken file is reported at every load, reused or not; an environment declared in two
    files is refused although both files were reused from the cache."""
    put(tmp_path, "a", environment("prod", {"api": image()}))
    put(tmp_path, "b", environment("prod", {"web": image()}))
    (tmp_path / "c.yaml").write_text("apiVersion: slotkeeper/v1\nkind: Environment\nspec: [\n")
    cache = ParseCache()
    for round_ in range(2):
        with pytest.raises(ManifestErrors) as caught:
            parse(files_of(tmp_path), parse_cache=cache)
        text = str(caught.value)
        assert "environment 'prod' is already declared" in text, round_
        assert "c.yaml:" in text, round_
        assert cache.forget_unused() == ((0, 3) if round_ == 0 else (3, 0))


def parsed_files(daemon: Running) -> dict[str, float]:
    return daemon.counted("slotkeeper_manifest_files", "how")


def test_the_daemon_parses_only_the_file_that_changed(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """A daemon over three files parses the three once; an edit of one is applied by a
    reconcile that parses that file alone and reuses the other two."""
    for name in ("a", "b", "c"):
        put(workdir / "m", name, environment(name, {"api": image()}))
    daemon = running("-m", "m", "--resync-interval", "10m")
    wait_for(lambda: parsed_files(daemon).get("parsed") == 3, what="the first load")
    put(workdir / "m", "b", environment("b", {"api": image(version="v2")}))

    def applied() -> bool:
        rows = daemon.status()["slots"]
        return any(
            row["environment"] == "b" and (row["artifact"] or {}).get("version") == "v2"
            for row in rows
        )

    wait_for(applied, what="the edit applied")
    counted = parsed_files(daemon)
    assert counted["parsed"] == 4 and counted["reused"] >= 2
