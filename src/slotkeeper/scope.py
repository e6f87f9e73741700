"""Which part of the manifests a reconcile plans: every environment, or a scope of them.

The daemon reconciles after each edit. Most edits change one environment's file; planning all
10,000 slots to find the one that changed spends the time a person waits for on slots that
could not have changed. A :class:`Scope` names the environments an edit touched, and with them
every environment that shares a repository with one of them: a repository's deploy keys are
one set (by title) whoever declares them, so environments sharing a repository are planned
together or not at all.

A scoped plan compares only those environments' slots and keys with only their rows of the
ledger. What it cannot see (the rest of the manifests, the rest of the ledger) must never make
it remove anything, so the pipeline throws a scoped plan away and plans everything whenever the
scoped one holds a removal (:func:`removes`): the mass and protection guards always decide with
the whole picture. Time-driven work elsewhere (a key due for rotation, a retry) waits for the
next full reconcile, which the daemon runs on its resync interval.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from slotkeeper.actions import Action, ActionType
from slotkeeper.model import DesiredState, EnvironmentSpec, Scope

#: the actions a scoped plan may not decide: it is planned again, whole
REMOVALS = frozenset({ActionType.DECOMMISSION, ActionType.REVOKE_KEY})


def repositories_of(spec: EnvironmentSpec) -> set[str]:
    """The repositories an environment records deployments on or holds deploy keys of."""
    found = {key.repository for key in spec.deploy_keys}
    if spec.repository is not None:
        found.add(spec.repository)
    return found


def scope_of(changed: Iterable[str], desired: DesiredState) -> Scope | None:
    """The scope that plans the ``changed`` environments (closed over shared repositories), or
    None when that is every environment anyway or an environment is not declared (a removed
    one: only a full plan may remove)."""
    environments = desired.environments
    pending = set(changed)
    if not pending or not pending <= environments.keys():
        return None
    by_repository: dict[str, set[str]] = {}
    for name, spec in environments.items():
        for repository in repositories_of(spec):
            by_repository.setdefault(repository, set()).add(name)
    chosen: set[str] = set()
    repositories: set[str] = set()
    while pending:  # a name joins pending only while not chosen, so each is chosen once
        name = pending.pop()
        chosen.add(name)
        for repository in repositories_of(environments[name]) - repositories:
            repositories.add(repository)
            pending |= by_repository[repository] - chosen
    if len(chosen) == len(environments):
        return None
    return Scope(frozenset(chosen), frozenset(repositories))


def narrowed(desired: DesiredState, scope: Scope) -> DesiredState:
    """The manifests as a scoped plan sees them: the scope's environments, every target."""
    return desired.model_copy(
        update={
            "environments": {
                name: spec
                for name, spec in desired.environments.items()
                if name in scope.environments
            }
        }
    )


def removes(actions: Collection[Action]) -> bool:
    """Whether a plan decommissions or revokes anything (a scoped one is then planned whole)."""
    return any(action.type in REMOVALS for action in actions)
