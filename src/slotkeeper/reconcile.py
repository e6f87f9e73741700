"""The whole pipeline in one place: load -> read -> refresh -> plan -> execute -> record.

The CLI's ``apply`` and (later) the daemon call :func:`reconcile`; ``confirm`` lets the CLI show
the plan and ask before anything is written, while the ledger's writer lock is held so the plan
it shows is the plan it applies. The targets are opened by ``slotkeeper.targets.registry``
(which wires each to the ledger: its HTTP cache, its write budget, its credentials); a target
that cannot be set up, or read, stands here as an :class:`UnusableTarget`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from slotkeeper import observability as obs
from slotkeeper.actions import targets_of
from slotkeeper.errors import (
    ConfigError,
    ManifestErrors,
    PlanFileError,
    SlotkeeperError,
    TargetError,
    TargetUnusable,
    TemporaryTargetError,
)
from slotkeeper.keys import SecretSink, key_file_problems
from slotkeeper.ledger import (
    LastGoodReads,
    LastGoodStore,
    PromotionReads,
    StateReads,
    StateStore,
    WriterLock,
)
from slotkeeper.manifests import (
    NO_TARGETS,
    PARSE_FORMAT,
    TARGETS_ENV,
    ManifestTree,
    OperatorTargets,
    ParseCache,
    check_refs,
    load_tolerant,
    parse,
    read_tree,
    storable,
)
from slotkeeper.model import (
    CommitInfo,
    DesiredState,
    Drift,
    ManifestStatus,
    RecordedState,
    RemoteState,
    Revision,
    Scope,
    SyncSubject,
    TargetSpecBase,
    TargetSync,
)
from slotkeeper.plan import Plan, PlanOptions, diff, promotion_candidates, recheck
from slotkeeper.scope import narrowed, removes
from slotkeeper.sources import commit_infos, commits_between, git_revision, is_work_tree
from slotkeeper.targets.base import (
    CommitSource,
    EnvironmentInfo,
    KeySubject,
    RecordSubject,
    Remote,
    Target,
    read_all,
)
from slotkeeper.targets.stores import TargetsLedger

if TYPE_CHECKING:  # a plan imports neither the executor nor the targets' clients
    from slotkeeper.execute import ApplyResult, Clock, Commits, ProgressHook
    from slotkeeper.notify.pipeline import Notifications


class PlanningLedger(StateReads, PromotionReads, TargetsLedger, LastGoodReads, Protocol):
    """What a plan uses: the recorded state and what promotion decides from, read, and the
    targets' part (a refresh)."""


class ApplyLedger(StateStore, PromotionReads, WriterLock, TargetsLedger, LastGoodReads, Protocol):
    """What applying a plan uses: the state, written under the writer lock, and the targets'."""


class ReconcileLedger(ApplyLedger, LastGoodStore, Protocol):
    """What a reconcile uses: an apply's roles, and the last good manifests it keeps."""


@dataclass(frozen=True)
class Reconciliation:
    plan: Plan
    result: ApplyResult | None


@dataclass(frozen=True)
class Snapshot:
    """One exact revision of the manifests, loaded: what to converge on."""

    desired: DesiredState
    revision: Revision | None
    #: where git history is read for changelogs
    git_dir: Path
    #: the manifest files by relative path: the last good set, once all of them are valid
    files: Mapping[str, bytes] = field(default_factory=dict)
    #: the load's parses, when it was made with the ledger's (what an apply stores next)
    parses: ParseCache | None = None
    #: the content digests of the manifest files
    digests: frozenset[str] = frozenset()


def snapshot(
    manifests: Path,
    operator: OperatorTargets = NO_TARGETS,
    *,
    keep_files: bool = True,
    stored: LastGoodReads | None = None,
) -> Snapshot:
    """Load and validate the manifests at ``manifests`` against the ``operator``'s targets
    (raises ``ManifestErrors``), each GitHub slot with a decidable ref: never a 422 at apply.
    ``keep_files``: with the files' contents (what an apply keeps as the last good set; a plan
    does not need them). ``stored``: the ledger whose stored parses spare parsing the files
    whose content an earlier apply stored (see ``manifests.ParseCache``)."""
    tree = read_tree(manifests)
    revision = git_revision(manifests)
    digests = frozenset(hashlib.sha256(content).hexdigest() for content in tree.files.values())
    cache = ParseCache(stored.stored_parses(digests, PARSE_FORMAT)) if stored is not None else None
    desired = parse(tree.files, errors=tree.errors, targets=operator, parse_cache=cache)
    if cache is not None and obs.enabled("debug"):
        obs.get_logger().debug(
            "manifests.loaded", files=len(tree.files), parsed=cache.misses, stored=cache.hits
        )
    if errors := check_refs(desired, revision):
        raise ManifestErrors(errors)
    files = _by_name(tree) if keep_files else {}
    return Snapshot(desired, revision, manifests, files, parses=cache, digests=digests)


def tolerant_snapshot(
    manifests: Path,
    ledger: LastGoodReads,
    operator: OperatorTargets = NO_TARGETS,
    parse_cache: ParseCache | None = None,
) -> Snapshot:
    """Load the manifests even when some files are broken: a broken file is replaced by its
    last good version from the ledger (or left out), and listed in ``desired.broken`` so the
    planner blocks removals it cannot be sure of (see ``manifests.load_tolerant``). With a
    ``parse_cache`` (the daemon's), files whose content did not change are not parsed again."""
    tree = read_tree(manifests)
    revision = git_revision(manifests)
    desired = load_tolerant(
        tree,
        ledger.last_good_manifests,
        check=lambda loaded: check_refs(loaded, revision),
        targets=operator,
        parse_cache=parse_cache,
    )
    if parse_cache is not None:
        from slotkeeper import metrics  # not imported by a plan: see slotkeeper.metrics

        reused, parsed = parse_cache.forget_unused()
        metrics.MANIFEST_FILES.labels("reused").inc(reused)
        metrics.MANIFEST_FILES.labels("parsed").inc(parsed)
    if desired.broken:
        obs.get_logger().error(
            "manifests.invalid",
            errors=[error for broken in desired.broken for error in broken.errors],
            held_at_last_good=[b.file for b in desired.broken if b.last_good],
            left_out=[b.file for b in desired.broken if not b.last_good],
            message="broken manifest files keep their last good version and nothing outside "
            "the environments of valid files is removed; fix them",
        )
    return Snapshot(desired, revision, manifests, _by_name(tree))


def _by_name(tree: ManifestTree) -> dict[str, bytes]:
    return {tree.relative(path): content for path, content in tree.files.items()}


def remember_manifests(ledger: LastGoodStore, shot: Snapshot, *, at: datetime) -> None:
    """Keep a manifest set that loaded whole as the last good one, or record which files are
    broken (``status``, ``/status`` and the dashboard show it)."""
    sha = shot.revision.sha if shot.revision else None
    if shot.desired.broken:
        ledger.remember_broken(ManifestStatus(at=at, revision=sha, broken=shot.desired.broken))
    else:
        # an empty checkout is no version worth keeping
        kept = shot.files if shot.desired.environments else None
        ledger.remember_whole(kept, revision=sha, at=at)
        if shot.parses is not None and kept is not None:
            ledger.store_parses(storable(shot.parses), keep=shot.digests, format=PARSE_FORMAT)


@dataclass(frozen=True)
class RunOptions:
    """How to reconcile, beyond what to plan."""

    refresh: bool = True
    concurrency: int = 4
    lock_timeout: float = 10.0
    #: fail the whole run when a target cannot be set up (CLI), or only that target (daemon)
    strict_targets: bool = True


class UnusableTarget:
    """A target that could not be set up (e.g. its credential is missing) or reached: every
    call fails with why, so its syncs fail and stay pending while the ledger and the other
    targets go on. ``cause``, the error that left it unreachable, is what the failures say
    happened on public pages (a missing credential: a configuration error)."""

    def __init__(
        self,
        name: str,
        spec_class: type[TargetSpecBase],
        reason: str,
        *,
        cause: TargetError | None = None,
    ) -> None:
        self.name = name
        self.spec_class = spec_class
        self._reason = reason
        self._cause = cause

    def _fail(self) -> TargetUnusable:
        error = TargetUnusable(f"{self.name}: not usable: {self._reason}")
        error.__cause__ = self._cause
        return error

    def sync_record(
        self, subject: RecordSubject, *, want: RemoteState, current: TargetSync | None
    ) -> Remote:
        raise self._fail()

    def add_key(self, subject: KeySubject) -> Remote:
        raise self._fail()

    def delete_key(
        self, repository: str, remote_id: str, location: dict[str, str] | None = None
    ) -> Remote:
        raise self._fail()

    def refresh(self, **_: object) -> list[Drift]:
        raise self._fail()

    def close(self) -> None:
        return None


@contextmanager
def open_targets(
    desired: DesiredState,
    ledger: TargetsLedger,
    *,
    clock: Clock,
    strict: bool = True,
    may_write: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Target]]:
    """Adapters for every Target document, as the registry opens them, closed afterwards.
    ``strict`` (the CLI) fails on a target that cannot be set up; otherwise (the daemon) that
    target alone fails its calls. ``may_write``: the writer lock's check, made before every
    write request (a process that lost the lock sends nothing more)."""
    if not desired.targets:  # nothing to open: the clients are not even imported
        yield {}
        return
    from slotkeeper.targets.registry import TargetContext, open_target

    opened: dict[str, Target] = {}
    context = TargetContext(ledger=ledger, clock=clock, may_write=may_write)
    try:
        for name, spec in sorted(desired.targets.items()):
            try:
                opened[name] = open_target(name, spec, context)
            except ConfigError as exc:
                if strict:
                    raise
                obs.get_logger().error("target.unusable", target=name, error=str(exc))
                opened[name] = UnusableTarget(name, type(spec), str(exc))
        yield opened
    finally:
        context.flush()
        for target in opened.values():
            target.close()


@dataclass(frozen=True)
class Refreshed:
    """What the targets reported, and which of them could not be asked (and why)."""

    drift: list[Drift]
    failed: dict[str, TargetError]

    def warnings(self) -> tuple[str, ...]:
        return tuple(
            f"{name}: not refreshed, what it holds is unknown: {error}"
            for name, error in sorted(self.failed.items())
        )


def refresh(
    desired: DesiredState, recorded: RecordedState, targets: Mapping[str, Target]
) -> Refreshed:
    """Ask every target what it holds for the records and keys it was told about (the targets
    at the same time). A target that cannot be asked is reported, never the end of the run."""

    def ask(name: str) -> list[Drift] | TargetError:
        try:
            return _ask(name)
        except TargetError as exc:
            obs.get_logger().error("target.refresh_failed", target=name, error=str(exc))
            return exc

    def _ask(name: str) -> list[Drift]:
        target = targets[name]
        records = []
        for record in recorded.deployed.values():
            sync = recorded.syncs.get((name, SyncSubject.RECORD, record.id))
            if sync is None or sync.remote_id is None:
                continue
            known = recorded.environments.get(record.environment)
            spec = desired.environments.get(record.environment)
            environment = EnvironmentInfo(
                name=record.environment,
                repository=spec.repository if spec else known.repository if known else None,
                production=spec.production if spec else bool(known and known.production),
                transient=spec.transient if spec else bool(known and known.transient),
            )
            records.append(
                (
                    RecordSubject(record=record, environment=environment, lineage=recorded.lineage),
                    sync,
                )
            )
        keys = []
        titles: dict[str, set[str]] = {}
        if target.spec_class.holds_deploy_keys:
            for key in recorded.keys.values():
                # Only keys this target was told about: another target (a second GitHub
                # Target document) manages its own, and they are no orphans of this one.
                sync = recorded.syncs.get((name, SyncSubject.KEY, key.id))
                if sync is None:
                    continue
                titles.setdefault(key.repository, set()).add(key.title)
                if sync.remote_id is not None:
                    keys.append((KeySubject(key=key), sync))
            for key in recorded.retired_keys.values():
                # A rotated or revoked key still to be deleted is the ledger's: no orphan
                # (which would be deleted a second time); its title is managed no longer.
                sync = recorded.syncs.get((name, SyncSubject.KEY, key.id))
                if sync is not None and sync.remote_id is not None:
                    keys.append((KeySubject(key=key), sync))
            for spec in desired.environments.values():
                if name in spec.targets:
                    for declared in spec.deploy_keys:
                        titles.setdefault(declared.repository, set()).add(declared.title)
        return target.refresh(records=records, keys=keys, managed_titles=titles)

    names = sorted(targets)
    drift: list[Drift] = []
    failed: dict[str, TargetError] = {}
    for name, found in zip(names, read_all(ask, names), strict=True):
        if isinstance(found, TargetError):
            failed[name] = found
        else:
            drift.extend(found)
    return Refreshed(drift, failed)


def _plan(
    shot: Snapshot,
    ledger: PlanningLedger,
    targets: Mapping[str, Target],
    *,
    options: PlanOptions,
    clock: Clock,
    refreshing: bool,
    sink: SecretSink | None,
    scope: Scope | None = None,
) -> tuple[Plan, Refreshed, Scope | None]:
    """Read, refresh and plan: the whole manifests, or only a ``scope`` of them (see
    :mod:`slotkeeper.scope`), which is planned whole after all when it would remove anything;
    with the scope the plan has (None: every environment)."""
    desired = shot.desired if scope is None else narrowed(shot.desired, scope)
    recorded = ledger.read_state(scope)
    refreshed = refresh(desired, recorded, targets) if refreshing and targets else Refreshed([], {})
    # The private key files are part of what a refresh looks at: `--no-refresh` (a plan in CI
    # for a pull request, far from the secrets directory) does not read them either.
    key_files = (
        key_file_problems(recorded.keys.values(), sink) if sink is not None and refreshing else {}
    )
    sinks = {}
    if refreshing and targets:
        from slotkeeper.sinks.delivery import Deliveries, observe_sinks

        deliveries = Deliveries(targets=targets)
        try:
            sinks = observe_sinks(desired, recorded, deliveries)
        finally:
            deliveries.close()
    candidates = promotion_candidates(desired, recorded)
    plan = diff(
        desired,
        recorded,
        now=clock(),
        options=options,
        revision=shot.revision,
        drift=refreshed.drift,
        key_files=key_files,
        sinks=sinks,
        promotion=ledger.promotion_evidence(candidates) if candidates else {},
    )
    if scope is not None and removes(plan.actions):
        obs.get_logger().info(
            "reconcile.unscoped",
            environments=sorted(scope.environments),
            message="the scoped plan removes something: planning every environment",
        )
        return _plan(
            shot, ledger, targets, options=options, clock=clock, refreshing=refreshing, sink=sink
        )
    return (
        plan.model_copy(
            update={"manifests": str(shot.git_dir.absolute()), "warnings": refreshed.warnings()}
        ),
        refreshed,
        scope,
    )


def make_plan(
    manifests: Path,
    ledger: PlanningLedger,
    *,
    options: PlanOptions,
    clock: Clock,
    run: RunOptions = RunOptions(),
    sink: SecretSink | None = None,
    operator: OperatorTargets = NO_TARGETS,
) -> Plan:
    """Load the manifests and the recorded state (and refresh), and plan: no lock, no change.

    Without refresh no target is set up, so no credential is needed (a pull request from a
    fork gets none); a target that cannot be set up or asked is a warning on the plan."""
    shot = snapshot(manifests, operator, keep_files=False, stored=ledger)
    desired = shot.desired if run.refresh else DesiredState(environments={}, targets={})
    with open_targets(desired, ledger, clock=clock, strict=False) as targets:
        plan, _, _ = _plan(
            shot,
            ledger,
            targets,
            options=options,
            clock=clock,
            refreshing=run.refresh,
            sink=sink,
        )
    return plan


def reconcile(
    source: Path | Snapshot,
    ledger: ReconcileLedger,
    *,
    options: PlanOptions,
    clock: Clock,
    actor: str,
    sink: SecretSink,
    run: RunOptions = RunOptions(),
    confirm: Callable[[Plan], bool] = lambda _: True,
    select: Callable[[Plan], Plan] = lambda p: p,
    on_result: ProgressHook | None = None,
    stop: Callable[[], bool] | None = None,
    operator: OperatorTargets = NO_TARGETS,
    notifications: Notifications | None = None,
    scope: Scope | None = None,
) -> Reconciliation:
    """Converge the ledger and the targets on the manifests; ``select`` may narrow the plan,
    ``stop`` ends the apply early (between actions) when it turns true. The ``operator``'s
    targets are used when ``source`` is a path to load. With ``notifications`` (a one-shot
    apply's), what changed is queued and sent while the writer lock is still held."""
    # load: a bad manifest stops here, nothing written (the daemon loads tolerantly itself)
    shot = source if isinstance(source, Snapshot) else snapshot(source, operator, stored=ledger)
    desired = shot.desired
    with (
        ledger.writer(timeout=run.lock_timeout),
        open_targets(
            desired, ledger, clock=clock, strict=run.strict_targets, may_write=ledger.leading
        ) as opened,
    ):
        planned, refreshed, scope = _plan(  # read, refresh, plan
            shot,
            ledger,
            opened,
            options=options,
            clock=clock,
            refreshing=run.refresh,
            sink=sink,
            scope=scope,
        )
        from slotkeeper import metrics

        metrics.PLANS.labels("whole" if scope is None else "scoped").inc()
        plan = select(planned)
        if not confirm(plan):
            return Reconciliation(plan, None)
        _notify(notifications, lambda n: n.prime(desired))
        targets = _without_unreachable(opened, refreshed)
        from slotkeeper.execute import execute

        result = execute(  # execute and record
            plan,
            ledger,
            clock=clock,
            actor=actor,
            sink=sink,
            targets=targets,
            concurrency=run.concurrency,
            history=partial(commits_between, shot.git_dir),
            commits=_commits(shot.git_dir, desired, targets),
            on_result=on_result,
            stop=_stops(ledger, stop),
            scope=scope,
        )
        remember_manifests(ledger, shot, at=clock())
        _read_back(desired, ledger, targets, plan, refreshing=run.refresh, scope=scope)
        _notify(notifications, lambda n: n.tell(desired, within=FLUSH_SECONDS))
    problems = (*plan.warnings, *(f"{b.file}: invalid" for b in desired.broken))
    return Reconciliation(plan, result.model_copy(update={"problems": problems}))


#: how long a one-shot apply waits to send its notifications (pacing, a 429) before leaving
#: the rest in the outbox for the next apply or the daemon
FLUSH_SECONDS = 5.0


def _notify(notifications: Notifications | None, step: Callable[[Notifications], None]) -> None:
    """A notifications step of a one-shot apply: a failure is logged, never the apply's."""
    if notifications is None or not notifications.configured:
        return
    try:
        step(notifications)
    except SlotkeeperError as exc:
        obs.get_logger().warning("notify.failed", error=str(exc))


def _commits(manifests: Path, desired: DesiredState, targets: Mapping[str, Target]) -> Commits:
    """Where a deploy's commits are found: the manifests' git repository when the refs resolve
    there (a monorepo, whose refs are the application's), else a target of the environment
    that can tell (GitHub's compare API on the environment's ``repository``)."""
    local = partial(commit_infos, manifests) if is_work_tree(manifests) else None

    def find(environment: str, base: str | None, head: str) -> tuple[CommitInfo, ...] | None:
        found = local(base, head) if local is not None else None
        spec = desired.environments.get(environment)
        if found is not None or spec is None or spec.repository is None:
            return found
        for name in spec.targets:
            target = targets.get(name)
            if isinstance(target, CommitSource):
                found = target.commits_between(spec.repository, base, head)
                if found is not None:
                    return found
        return None

    return find


def _stops(lock: WriterLock, stop: Callable[[], bool] | None) -> Callable[[], bool]:
    """When an apply stops between two actions: asked to (``stop``), or the writer lock was
    lost (a lease not renewed in time): then nothing more is written."""
    return lambda: (stop is not None and stop()) or not lock.leading()


def _without_unreachable(targets: Mapping[str, Target], refreshed: Refreshed) -> dict[str, Target]:
    """The targets to write to: one that could not even be read this run (down, timing out)
    fails its writes at once instead of retrying each of them; they stay pending."""
    usable = dict(targets)
    for name, error in refreshed.failed.items():
        if isinstance(error, TemporaryTargetError):
            usable[name] = UnusableTarget(
                name, targets[name].spec_class, f"unreachable: {error}", cause=error
            )
    return usable


def _read_back(
    desired: DesiredState,
    ledger: StateReads,
    targets: Mapping[str, Target],
    applied: Plan,
    *,
    refreshing: bool,
    scope: Scope | None = None,
) -> None:
    """After writing to targets, read back what they hold: it confirms the writes, and the
    ETags it caches let the next reconcile's refresh be answered with 304s (no rate limit)."""
    if not refreshing or not any(targets_of(action) for action in applied.applicable):
        return
    if scope is not None:
        desired = narrowed(desired, scope)
    for drift in refresh(desired, ledger.read_state(scope), targets).drift:
        obs.get_logger().warning(
            "target.drift_after_apply",
            target=drift.target,
            subject=drift.subject.value,
            subject_id=drift.subject_id,
            observed=drift.observed,
        )


def apply_saved(
    plan: Plan,
    manifests: Path,
    ledger: ApplyLedger,
    *,
    clock: Clock,
    actor: str,
    sink: SecretSink,
    run: RunOptions = RunOptions(),
    on_result: ProgressHook | None = None,
    operator: OperatorTargets = NO_TARGETS,
    show: Callable[[Plan], None] | None = None,
) -> ApplyResult:
    """Apply a saved plan exactly; refused as stale when the ledger moved since it was made.
    ``show`` is given the plan as it is applied (its holds decided now) before it runs.

    The manifests are read again (they must be valid) for what is decided at apply time (the
    holds: suspend and freeze windows; and protection), which turns actions of the saved plan
    into blocked ones. Where and how to reach the targets is the ``operator``'s, never the
    plan's: a target the plan needs that the operator does not configure refuses the apply."""
    shot = snapshot(manifests, operator, stored=ledger)
    missing = [name for name in plan.targets if name not in shot.desired.targets]
    if missing:
        raise PlanFileError(
            f"the saved plan needs target{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, which the operator's targets file does not configure: "
            f"apply it with --targets (or {TARGETS_ENV}) naming the file it was made with"
        )
    with ledger.writer(timeout=run.lock_timeout):
        checked = recheck(plan, shot.desired, now=clock(), approvals=ledger.read_state().approvals)
        if show is not None:
            show(checked)
        with open_targets(shot.desired, ledger, clock=clock, may_write=ledger.leading) as targets:
            from slotkeeper.execute import execute

            result = execute(
                checked,
                ledger,
                clock=clock,
                actor=actor,
                sink=sink,
                targets=targets,
                concurrency=run.concurrency,
                history=partial(commits_between, manifests),
                commits=_commits(manifests, shot.desired, targets),
                on_result=on_result,
                stop=_stops(ledger, None),
            )
            _read_back(shot.desired, ledger, targets, checked, refreshing=run.refresh)
            return result
