"""One home per target type: the capabilities each spec declares (which the planner reads, never a
type name) and the registry that opens a configured target as its type's adapter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import TypeAdapter

from slotkeeper.actions import ActionType
from slotkeeper.errors import ConfigError
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.model import (
    TARGET_SPECS,
    ArtifactKind,
    ChainloopTargetSpec,
    DesiredState,
    EnvironmentSpec,
    GithubTargetSpec,
    HttpTargetSpec,
    IftrueTargetSpec,
    RecordedState,
    TargetSpec,
    TargetSpecBase,
    UnkeyTargetSpec,
    add_target_spec,
    remove_target_spec,
    target_types,
)
from slotkeeper.plan import PlanOptions, diff
from slotkeeper.targets.registry import TargetContext, known_types, open_target
from tests.helpers import deploy_key, image

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGE = frozenset({ArtifactKind.CONTAINER_IMAGE})
EVERY_KIND = frozenset(ArtifactKind)
SPECS: dict[str, dict[str, Any]] = {
    "github": {"type": "github", "token": {"env": "GH"}},
    "chainloop": {"type": "chainloop", "token": {"env": "CL"}},
    "unkey": {"type": "unkey", "rootKey": {"env": "UK"}, "project": "acme", "app": "api"},
    "iftrue": {
        "type": "iftrue",
        "token": {"env": "IT"},
        "memberId": "42",
        "repositoryUrl": "https://github.com/acme/web",
    },
}


def spec(kind: str, **extra: Any) -> TargetSpecBase:
    adapter: TypeAdapter[Any] = TypeAdapter(TargetSpec)
    parsed: TargetSpecBase = adapter.validate_python({**SPECS[kind], **extra})
    return parsed


@pytest.mark.parametrize(
    ("spec_class", "name", "kinds", "git_ref", "keys", "supersedes", "order"),
    [
        (GithubTargetSpec, "github", EVERY_KIND, True, True, False, 0),
        (ChainloopTargetSpec, "chainloop", EVERY_KIND, False, False, True, 1),
        (UnkeyTargetSpec, "unkey", IMAGE, False, False, False, 2),
        (IftrueTargetSpec, "iftrue", EVERY_KIND, False, False, False, 3),
    ],
)
def test_each_target_type_declares_its_capabilities(
    spec_class: type[TargetSpecBase],
    name: str,
    kinds: frozenset[ArtifactKind],
    git_ref: bool,
    keys: bool,
    supersedes: bool,
    order: int,
) -> None:
    """The table the planner reads: kinds deployable (Unkey: images only), git ref needed
    (GitHub), deploy keys held (GitHub), superseding by itself (Chainloop), call order."""
    assert spec_class.type_name() == name
    assert (
        spec_class.artifact_kinds,
        spec_class.needs_git_ref,
        spec_class.holds_deploy_keys,
        spec_class.supersedes_itself,
        spec_class.sync_order,
    ) == (kinds, git_ref, keys, supersedes, order)


def test_only_chainloop_asks_for_a_heartbeat() -> None:
    """Chainloop re-records DEPLOYED records every heartbeatInterval; the others never."""
    assert spec("chainloop", heartbeatInterval="2h").heartbeat() == timedelta(hours=2)
    assert [spec(kind).heartbeat() for kind in ("github", "unkey", "iftrue")] == [None] * 3


def test_every_known_spec_has_an_adapter_in_the_spec_lists_order() -> None:
    """The spec list, the type names in messages and the registry's openers agree."""
    assert target_types() == ("github", "chainloop", "unkey", "iftrue")
    assert list(known_types()) == list(target_types())
    assert list(known_types().values()) == TARGET_SPECS


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TargetContext]:
    """A context on a fresh SQLite ledger, every built-in type's credential set."""
    for variable in ("GH", "CL", "UK", "IT"):
        monkeypatch.setenv(variable, f"{variable.lower()}-secret-value")
    ledger: Ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.db", now=NOW)
    yield TargetContext(ledger=ledger, clock=lambda: NOW)
    ledger.close()


@pytest.mark.parametrize("kind", list(SPECS))
def test_the_registry_opens_each_type_as_its_adapter(context: TargetContext, kind: str) -> None:
    """A configured target comes back as its own type's adapter, named as configured."""
    target = open_target("mine", spec(kind), context)
    try:
        assert target.name == "mine"
        assert target.spec_class is type(spec(kind))
    finally:
        target.close()


def test_a_missing_credential_is_a_configuration_error(
    context: TargetContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An opener that cannot read its credential says which target and field, never a value."""
    monkeypatch.delenv("UK")
    with pytest.raises(ConfigError, match=r"target 'mine' rootKey") as caught:
        open_target("mine", spec("unkey"), context)
    assert "secret-value" not in str(caught.value)


class UnregisteredSpec(HttpTargetSpec):
    """A spec class no opener is registered for."""

    type: Literal["unregistered"]


def test_a_spec_without_an_adapter_is_refused_by_name(context: TargetContext) -> None:
    """Opening a spec of a type the registry does not know is a clear configuration error."""
    orphan = UnregisteredSpec.model_validate({"type": "unregistered"})
    with pytest.raises(ConfigError, match="no adapter is registered for type 'unregistered'"):
        open_target("mine", orphan, context)


def planned(targets: dict[str, TargetSpecBase], **environment: Any) -> list[Any]:
    body = {"targets": list(targets), **environment}
    desired = DesiredState(
        environments={"production": EnvironmentSpec.model_validate(body)}, targets=targets
    )
    recorded = RecordedState(lineage="l", serial=0)
    return list(diff(desired, recorded, now=NOW, options=PlanOptions()).actions)


def test_a_new_records_targets_are_called_in_their_types_sync_order() -> None:
    """GitHub first (iftrue sends its deployment's node id), then Chainloop, Unkey, iftrue,
    whatever the names or the order the environment lists them in."""
    targets = {
        "a-iftrue": spec("iftrue"),
        "b-unkey": spec("unkey"),
        "c-chainloop": spec("chainloop"),
        "d-github": spec("github"),
    }
    [deploy] = planned(targets, slots={"api": {"artifact": image()}})
    assert deploy.targets == ("d-github", "c-chainloop", "b-unkey", "a-iftrue")


def test_a_chart_goes_only_to_the_types_that_deploy_charts() -> None:
    """A Helm chart skips the Unkey target, with a note saying why; the others take it."""
    chart = {"kind": "HELM_CHART", "name": "oci://c/web", "version": "1.0.0"}
    targets = {"cl": spec("chainloop"), "uk": spec("unkey")}
    [deploy] = planned(targets, slots={"web": {"artifact": chart}})
    assert deploy.targets == ("cl",)
    assert deploy.notes == ("uk: a HELM_CHART is not deployable on unkey, not sent",)


def test_deploy_keys_go_only_to_the_types_that_hold_them() -> None:
    """A declared key is created on the GitHub target alone, not on Chainloop's."""
    targets = {"cl": spec("chainloop"), "gh": spec("github")}
    [create] = planned(targets, repository="acme/web", deployKeys=[deploy_key("deployer")])
    assert create.type is ActionType.CREATE_KEY
    assert create.targets == ("gh",)


class SelfOrderingSpec(HttpTargetSpec):
    """A type that asks to be told before GitHub, and deploys charts only."""

    artifact_kinds: ClassVar[frozenset[ArtifactKind]] = frozenset({ArtifactKind.HELM_CHART})
    sync_order: ClassVar[int] = -1

    type: Literal["early"]


@pytest.fixture
def early_type() -> Iterator[None]:
    """``SelfOrderingSpec`` known to the model (no adapter: the planner needs none)."""
    add_target_spec(SelfOrderingSpec)
    yield
    remove_target_spec(SelfOrderingSpec)


@pytest.mark.usefixtures("early_type")
def test_the_planner_reads_capabilities_from_the_spec_not_its_type_name() -> None:
    """A spec class the planner has never heard of is ordered and filtered by what it says."""
    early = SelfOrderingSpec.model_validate({"type": "early"})
    targets: dict[str, TargetSpecBase] = {"gh": spec("github"), "z": early}
    chart = {"kind": "HELM_CHART", "name": "oci://c/web", "version": "1.0.0"}
    [deploy] = planned(targets, slots={"web": {"artifact": chart}}, refFrom="version")
    assert deploy.targets == ("z", "gh")
    [image_deploy] = planned(targets, slots={"api": {"artifact": image()}}, refFrom="version")
    assert image_deploy.targets == ("gh",)


class ImpostorSpec(HttpTargetSpec):
    """A second spec class claiming GitHub's type name."""

    type: Literal["github"]


def test_a_type_name_belongs_to_one_spec() -> None:
    """A spec claiming a known type's name is refused; the known types stay as they were."""
    with pytest.raises(ValueError, match="a target type named 'github' is already known"):
        add_target_spec(ImpostorSpec)
    assert target_types() == ("github", "chainloop", "unkey", "iftrue")
