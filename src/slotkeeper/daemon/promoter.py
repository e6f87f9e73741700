"""Auto-promotion: after a reconcile, the leader proposes every promotion that is ready into an
environment that asks for it (``spec.promotion.auto``) as a pull request on the manifests
repository, never a push to the branch it follows.

One pull request per slot: the branch ``slotkeeper/promote/ENV/SLOT`` holds one commit on top
of the followed branch with that slot's artifact moved; a newer artifact ready later replaces
that commit (a force-push of the proposal branch) and updates the pull request's title and
body, so a slot never has two. Nothing is pushed when the branch already holds exactly that
change, and nothing is proposed that the planner would hold (the same rule: see
:mod:`slotkeeper.promotion`). Where the pull request goes (the GitHub target, the repository)
is the operator's choice (``--promotion-target``, ``--promotion-repository``), never the
manifests'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from slotkeeper import observability as obs
from slotkeeper.errors import SlotkeeperError
from slotkeeper.ledger import Ledger
from slotkeeper.model import DesiredState
from slotkeeper.promote import edit, message
from slotkeeper.promotion import Move, behind, candidates, decide
from slotkeeper.reconcile import open_targets
from slotkeeper.sources import PROPOSAL_PREFIX, DirectorySource, GitSource
from slotkeeper.targets.base import Proposer

AUTHOR = ("slotkeeper", "slotkeeper@users.noreply.github.com")


@dataclass(frozen=True)
class PromotionSettings:
    """Where auto-promotion proposes: the operator's GitHub target and the manifests'
    repository on it, and the branch the pull requests go into (the one the daemon follows)."""

    target: str
    repository: str
    base: str


@dataclass(frozen=True)
class Proposal:
    """One pull request proposed (or found up to date) for one move."""

    move: Move
    branch: str
    number: int | None
    url: str | None
    pushed: bool


class Promoter:
    """Proposes ready promotions after each reconcile of the leader."""

    def __init__(
        self,
        settings: PromotionSettings | None,
        source: DirectorySource | GitSource | None,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
        may_write: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._source = source
        self._ledger = ledger
        self._clock = clock
        self._may_write = may_write
        self._warned = False
        self._log = obs.get_logger()

    def ready(self, desired: DesiredState) -> list[Move]:
        """The moves into environments with ``promotion.auto`` that the manifests do not ask
        for yet and the policy lets through now."""
        auto = {
            name
            for name, spec in desired.environments.items()
            if spec.promotion is not None and spec.promotion.auto
        }
        if not auto:
            return []
        deployed = self._ledger.read_state().deployed
        moves = [
            move
            for move in behind(desired.environments, deployed)
            if move.environment in auto
            and desired.environments[move.environment].slots[move.slot].artifact != move.artifact
        ]
        if not moves:
            return []
        facts = self._ledger.promotion_evidence(candidates(moves))
        decided = decide(moves, desired.environments, facts, self._clock())
        for move in decided:
            if move.held is not None:
                self._log.info(
                    "promotion.held",
                    environment=move.environment,
                    slot=move.slot,
                    reason=move.held,
                )
        return [move for move in decided if move.held is None]

    def propose(self, desired: DesiredState) -> list[Proposal]:
        """Open or update a pull request for each ready move; errors are logged, per move."""
        moves = self.ready(desired)
        if not moves or not self._may_write():
            return []
        if self._settings is None or not isinstance(self._source, GitSource):
            if not self._warned:
                self._log.warning(
                    "promotion.unconfigured",
                    message="an environment asks for auto-promotion, but the daemon has no "
                    "--promotion-target (or follows a directory, not a git remote)",
                )
                self._warned = True
            return []
        settings, source = self._settings, self._source
        proposals: list[Proposal] = []
        with open_targets(
            desired, self._ledger, clock=self._clock, strict=False, may_write=self._may_write
        ) as targets:
            target = targets.get(settings.target)
            if not isinstance(target, Proposer):
                self._log.error(
                    "promotion.unconfigured",
                    message=f"--promotion-target {settings.target!r} is not a GitHub target of "
                    "the targets file",
                )
                return []
            for move in moves:
                try:
                    proposals.append(self._one(desired, move, source, target, settings))
                except SlotkeeperError as exc:
                    self._log.error(
                        "promotion.failed",
                        environment=move.environment,
                        slot=move.slot,
                        error=str(exc),
                    )
        return proposals

    def _one(
        self,
        desired: DesiredState,
        move: Move,
        source: GitSource,
        target: Proposer,
        settings: PromotionSettings,
    ) -> Proposal:
        change = edit(desired, [move])
        branch = f"{PROPOSAL_PREFIX}promote/{move.environment}/{move.slot}"
        upstream = move.upstream or "upstream"
        text = message("promote", f"{upstream} -> {move.environment}", [move])
        pushed = source.push_change(
            branch, {path: after for path, (_, after) in change.files.items()}, text, author=AUTHOR
        )
        title = text.splitlines()[0]
        body = (
            "Proposed by slotkeeper's auto-promotion: the artifact ran in "
            f"{upstream} as long as the promotion policy asks, without being rolled back or "
            "fixed there.\n\n" + "\n".join(text.splitlines()[2:])
        )
        found = target.propose(
            settings.repository, head=branch, base=settings.base, title=title, body=body
        )
        self._log.info(
            "promotion.proposed",
            environment=move.environment,
            slot=move.slot,
            branch=branch,
            pull_request=found.number,
            created=found.created,
            pushed=pushed is not None,
        )
        return Proposal(move, branch, found.number, found.url, pushed is not None)
