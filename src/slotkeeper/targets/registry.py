"""The one table from a target type to its adapter: how a configured target is opened.

A target type has one home: its spec class in ``slotkeeper.model`` (fields the operator sets,
capabilities the planner reads) and its adapter module here in ``slotkeeper.targets``. This
registry joins them: it maps each spec class to an *opener*, ``open(name, spec, context) ->
Target``, which reads the spec, resolves its credential and builds the adapter. Nothing else in
slotkeeper names a target type: the pipeline asks :func:`open_target`, the planner reads the
spec's capabilities.

The built-in types are listed in ``_OPENERS`` (their specs in ``model.TARGET_SPECS``). A type
defined elsewhere, such as a test's, is added at run time with :func:`register` (or
:func:`registered`, which undoes it afterwards): its spec becomes valid in targets files and its
opener is used from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from slotkeeper.credentials import resolve_secret
from slotkeeper.errors import ConfigError
from slotkeeper.model import (
    TARGET_SPECS,
    ChainloopTargetSpec,
    GithubApp,
    GithubTargetSpec,
    IftrueTargetSpec,
    SecretRef,
    TargetSpecBase,
    UnkeyTargetSpec,
    add_target_spec,
    remove_target_spec,
)
from slotkeeper.targets.base import Target
from slotkeeper.targets.chainloop import ChainloopTarget
from slotkeeper.targets.github import (
    GitHubSettings,
    GitHubTarget,
    Lane,
    Lanes,
    credential_digest,
    github_api,
    token_target,
)
from slotkeeper.targets.iftrue import IftrueTarget
from slotkeeper.targets.pacing import Window, WriteBudget
from slotkeeper.targets.stores import LedgerHttpCache, LedgerWriteLog, TargetsLedger
from slotkeeper.targets.unkey import UnkeyTarget

S = TypeVar("S", bound=TargetSpecBase)


@dataclass
class TargetContext:
    """What an opener may use beyond the spec: the ledger (where a target's HTTP cache and
    write log live), the clock, the writer check its HTTP client passes on, and the operator's
    credentials. One context opens all the
    targets of a run; :meth:`flush` stores what their write logs still hold."""

    ledger: TargetsLedger
    clock: Callable[[], datetime]
    #: whether this process may still write to targets (it holds the ledger's writer lock);
    #: every adapter's HTTP client checks it before each write request
    may_write: Callable[[], bool] | None = None
    write_logs: list[LedgerWriteLog] = field(default_factory=list)

    def credential(self, reference: SecretRef, *, owner: str, pem: bool = False) -> str:
        """The credential a spec references (``{env: ...}`` or ``{file: ...}``); ``owner`` names
        the field in messages, which never hold the value (a ConfigError when unusable).
        ``pem``: a private key in PEM, several lines."""
        return resolve_secret(reference, owner=owner, pem=pem)

    def write_log(self, target: str) -> LedgerWriteLog:
        """The ledger-kept log of ``target``'s writes, stored by :meth:`flush` at the latest."""
        log = LedgerWriteLog(self.ledger, target, self.clock)
        self.write_logs.append(log)
        return log

    def flush(self) -> None:
        for log in self.write_logs:
            log.flush()


#: how a spec becomes an adapter: ``opener(name, spec, context)``; raises ConfigError when the
#: target cannot be set up (a credential missing, ...)
Opener = Callable[[str, S, TargetContext], Target]


def _open_github(name: str, spec: GithubTargetSpec, context: TargetContext) -> Target:
    clock = context.clock
    settings = GitHubSettings(
        base_url=spec.base_url, timeout=spec.timeout_seconds, max_rate_wait=spec.max_wait_seconds
    )
    windows = [
        Window(spec.writes_per_minute, timedelta(minutes=1)),
        Window(spec.writes_per_hour, timedelta(hours=1)),
        *(Window(w.writes, timedelta(seconds=w.per_seconds)) for w in spec.write_limits),
    ]

    def budget(key: str) -> WriteBudget:
        """A write budget whose history is kept in the ledger under ``key``."""
        log = context.write_log(key)
        return WriteBudget(
            target=name,
            windows=windows,
            max_wait=spec.max_wait_seconds,
            clock=clock,
            history=context.ledger.recent_writes(key, since=clock() - max(w.span for w in windows)),
            on_write=log.note,
        )

    if spec.auth is None:
        assert spec.token is not None  # the spec holds exactly one of token and auth
        token = context.credential(spec.token, owner=f"target {name!r} token")
        return token_target(
            name=name,
            settings=settings,
            token=token,
            budget=budget(name),
            cache=LedgerHttpCache(context.ledger, name, credential_digest(token), clock),
            clock=clock,
            may_write=context.may_write,
        )
    lanes = _app_lanes(name, spec.auth.app, settings, budget, context)
    return GitHubTarget(name=name, lanes=lanes, clock=clock)


def _app_lanes(
    name: str,
    app_spec: GithubApp,
    settings: GitHubSettings,
    budget: Callable[[str], WriteBudget],
    context: TargetContext,
) -> Lanes:
    """A GitHub App's lanes: one per installation, each its own write budget (kept in the
    ledger as ``NAME@installation-ID``) and conditional-request cache. The App's module (and
    the key cryptography it loads) is imported only for a target that authenticates as one."""
    from slotkeeper.targets.githubapp import (
        App,
        AppKey,
        InstallationAuth,
        InstallationLanes,
        JwtAuth,
    )

    owner = f"target {name!r} auth.app.privateKey"
    pem = context.credential(app_spec.private_key, owner=owner, pem=True)
    key = AppKey(app_spec.issuer, pem, owner=owner)
    app = App(
        target=name,
        key=key,
        api=github_api(name, settings, auth=JwtAuth(key, context.clock), clock=context.clock),
        installation_id=app_spec.installation_id,
        clock=context.clock,
    )

    def lane(installation: int) -> Lane:
        api = github_api(
            name,
            settings,
            auth=InstallationAuth(app, installation),
            budget=budget(f"{name}@installation-{installation}"),
            clock=context.clock,
            may_write=context.may_write,
        )
        digest = credential_digest(f"{app.key} installation {installation}")
        return Lane(api, LedgerHttpCache(context.ledger, name, digest, context.clock))

    return InstallationLanes(app, lane)


def _open_chainloop(name: str, spec: ChainloopTargetSpec, context: TargetContext) -> Target:
    return ChainloopTarget(
        name=name,
        base_url=spec.base_url,
        token=context.credential(spec.token, owner=f"target {name!r} token"),
        timeout=spec.timeout_seconds,
        max_rate_wait=spec.max_wait_seconds,
        clock=context.clock,
        may_write=context.may_write,
    )


def _open_unkey(name: str, spec: UnkeyTargetSpec, context: TargetContext) -> Target:
    return UnkeyTarget(
        name=name,
        base_url=spec.base_url,
        root_key=context.credential(spec.root_key, owner=f"target {name!r} rootKey"),
        project=spec.project,
        app=spec.app,
        keyspace_id=spec.keyspace_id,
        poll_timeout=spec.poll_timeout_seconds,
        timeout=spec.timeout_seconds,
        max_rate_wait=spec.max_wait_seconds,
        clock=context.clock,
        may_write=context.may_write,
    )


def _open_iftrue(name: str, spec: IftrueTargetSpec, context: TargetContext) -> Target:
    return IftrueTarget(
        name=name,
        base_url=spec.base_url,
        token=context.credential(spec.token, owner=f"target {name!r} token"),
        member_id=spec.member_id,
        repository_url=spec.repository_url,
        timeout=spec.timeout_seconds,
        max_rate_wait=spec.max_wait_seconds,
        clock=context.clock,
        may_write=context.may_write,
    )


#: the opener of every known target type, by spec class: the built-in ones, and those added
#: with :func:`register`
_OPENERS: dict[type[TargetSpecBase], Opener[Any]] = {
    GithubTargetSpec: _open_github,
    ChainloopTargetSpec: _open_chainloop,
    UnkeyTargetSpec: _open_unkey,
    IftrueTargetSpec: _open_iftrue,
}


def open_target(name: str, spec: TargetSpecBase, context: TargetContext) -> Target:
    """The adapter of the target ``name``, as its type's opener builds it from ``spec``."""
    opener = _OPENERS.get(type(spec))
    if opener is None:
        raise ConfigError(f"target {name!r}: no adapter is registered for type {spec.type!r}")
    return opener(name, spec, context)


def known_types() -> dict[str, type[TargetSpecBase]]:
    """Every target type that can be opened, by ``type`` name, in ``TARGET_SPECS`` order."""
    return {spec.type_name(): spec for spec in TARGET_SPECS if spec in _OPENERS}


def register(spec_class: type[S], opener: Opener[S]) -> None:
    """Add a target type: targets files may name it (its spec joins ``model.TARGET_SPECS``) and
    :func:`open_target` opens it with ``opener``. Undone by :func:`unregister`."""
    if spec_class in _OPENERS:
        raise ValueError(f"target type {spec_class.type_name()!r} is already registered")
    add_target_spec(spec_class)
    _OPENERS[spec_class] = opener


def unregister(spec_class: type[TargetSpecBase]) -> None:
    """Remove a target type added with :func:`register`."""
    del _OPENERS[spec_class]
    remove_target_spec(spec_class)


@contextmanager
def registered(spec_class: type[S], opener: Opener[S]) -> Iterator[None]:
    """A target type known for the duration of a ``with`` block (a test's, for instance)."""
    register(spec_class, opener)
    try:
        yield
    finally:
        unregister(spec_class)
