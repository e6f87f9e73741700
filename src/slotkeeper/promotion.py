"""Promotion: whether an artifact may enter a slot of an environment that is promoted from
another (``spec.promotion``), decided from what the ledger knows of it upstream.

Pure, like the planner that asks: the shell reads the :class:`Evidence` (the artifact's stints
in the upstream slot, the holds standing on it here) and passes ``now``. The same answer holds
a deploy in a plan, refuses ``slotkeeper promote`` and keeps auto-promotion from opening a pull
request, so the three can never disagree.

The rules, each a sentence of the docs (docs/promotion.md):

- the artifact must have been DEPLOYED in the upstream environment's slot of the same name for
  at least the soak time (``promotion.soak``, a slot's own ``promotion.soak`` over it), counted
  from its record's creation to its replacement there (or now), and each of the
  ``requireTargets`` must hold that record settled;
- a stint that ended badly disqualifies the artifact until a later stint of it soaks fully: it
  was rolled back (its successor put back an artifact the slot ran before), superseded by a fix
  (its successor is marked ``fix``/``hotfix``), or a target reported it failed;
- an artifact rolled back in this environment's slot is held there until an operator releases
  the hold (``slotkeeper release-hold ENV/SLOT``), whatever upstream says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from slotkeeper.model import Artifact, EnvironmentSpec, Record, parse_duration


def identity(artifact: Artifact) -> tuple[str, str, str]:
    """What "the same artifact" means: the same name and digest, or the same name and version
    when there is no digest."""
    return (
        artifact.name,
        "digest" if artifact.digest else "version",
        artifact.digest or artifact.version or "",
    )


@dataclass(frozen=True)
class Rule:
    """The promotion rule of one slot: where from, how long, which upstream targets."""

    upstream: str
    soak: timedelta
    require_targets: tuple[str, ...]


def rule_for(spec: EnvironmentSpec, slot: str) -> Rule | None:
    """The rule ``slot`` of the environment ``spec`` is promoted by, or None (no policy, or the
    slot is exempt)."""
    policy = spec.promotion
    if policy is None:
        return None
    own = spec.slots[slot].promotion if slot in spec.slots else None
    if own is not None and own.exempt:
        return None
    soak = own.soak if own is not None and own.soak is not None else policy.soak
    required = (
        own.require_targets
        if own is not None and own.require_targets is not None
        else policy.require_targets
    )
    return Rule(
        upstream=policy.from_,
        soak=parse_duration(soak),
        require_targets=tuple(sorted(required)),
    )


@dataclass(frozen=True)
class Stint:
    """One record of the artifact in the upstream slot: when it came, when it left (None: it is
    still there) and whether it ended badly (``failure``: the words of the reason)."""

    record: int
    deployed_at: datetime
    ended_at: datetime | None = None
    replaced_by: int | None = None
    failure: str | None = None
    settled: frozenset[str] = frozenset()

    def soaked(self, now: datetime) -> timedelta:
        return (self.ended_at or now) - self.deployed_at


@dataclass(frozen=True)
class SlotHold:
    """An artifact rolled back in a slot: not deployed there again until released."""

    id: int
    environment: str
    slot: str
    artifact: Artifact
    record: int
    by_record: int
    at: datetime


@dataclass(frozen=True)
class Evidence:
    """What the ledger knows that decides one artifact's entry into one slot."""

    upstream: tuple[Stint, ...] = ()
    holds: tuple[SlotHold, ...] = ()


#: evidence by (environment, slot, artifact identity), as the shell reads it
Facts = Mapping[tuple[str, str, tuple[str, str, str]], Evidence]


def hold_reason(
    rule: Rule,
    environment: str,
    slot: str,
    artifact: Artifact,
    evidence: Evidence | None,
    now: datetime,
) -> str | None:
    """Why ``artifact`` may not enter ``environment``/``slot`` now, or None when it may."""
    what = artifact.describe()
    evidence = evidence or Evidence()
    if evidence.holds:
        hold = evidence.holds[-1]
        return (
            f"{what} was rolled back in {environment} (#{hold.record}, by #{hold.by_record}) "
            f"and is held there: slotkeeper release-hold {environment}/{slot}"
        )
    stints = evidence.upstream
    if not stints:
        return f"{what} was never deployed in {rule.upstream}"
    required = set(rule.require_targets)
    ready = False
    failed: Stint | None = None
    for stint in stints:
        if stint.failure is not None:
            ready, failed = False, stint
        elif stint.soaked(now) >= rule.soak and required <= stint.settled:
            ready, failed = True, None
    if ready:
        return None
    if failed is not None and failed is stints[-1]:
        return f"{what} {failed.failure} in {rule.upstream}"
    latest = stints[-1]
    soaked = latest.soaked(now)
    if soaked < rule.soak:
        left = (
            f" before #{latest.replaced_by} replaced it" if latest.replaced_by is not None else ""
        )
        return f"{what} soaked {span(soaked)} of {span(rule.soak)} in {rule.upstream}{left}"
    missing = ", ".join(sorted(required - latest.settled))
    return f"{what} has not settled on {missing} in {rule.upstream}"


def span(length: timedelta) -> str:
    """A soak time for people: ``42 m``, ``2 h``, ``1 h 30 m``, ``3 d 4 h``."""
    minutes = int(length.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} m")
    return " ".join(parts) or "0 m"


@dataclass(frozen=True)
class Move:
    """One artifact to write into one slot's manifest (a promotion or a rollback), and the
    reason the planner would hold it (None: it would go through)."""

    environment: str
    slot: str
    artifact: Artifact
    previous: Artifact | None
    #: where it comes from, for people: ``staging #12`` (a record upstream) or ``#9``
    source: str
    #: the upstream environment whose record of the artifact decides (None: no policy)
    upstream: str | None = None
    held: str | None = None


def moves_between(
    desired: Mapping[str, EnvironmentSpec],
    deployed: Mapping[tuple[str, str], Record],
    source: str,
    target: str,
    slots: Sequence[str] = (),
) -> list[Move]:
    """What promoting ``source`` into ``target`` writes: for each slot the target's manifest
    declares (or each of ``slots``) whose artifact deployed in ``source`` differs from the one
    the manifest asks for, that artifact. Holds are not decided here (see :func:`decide`)."""
    spec = desired[target]
    found = []
    for slot in slots or sorted(spec.slots):
        upstream = deployed.get((source, slot))
        if upstream is None or slot not in spec.slots:
            continue
        wanted = spec.slots[slot].artifact
        if upstream.artifact == wanted:
            continue
        found.append(
            Move(
                environment=target,
                slot=slot,
                artifact=upstream.artifact,
                previous=wanted,
                source=f"{source} #{upstream.id}",
                upstream=source,
            )
        )
    return found


def candidates(moves: Sequence[Move]) -> list[tuple[str, str, str, Artifact]]:
    """The evidence a ledger reads for ``moves`` (see :func:`decide`)."""
    return [
        (move.environment, move.slot, move.upstream, move.artifact)
        for move in moves
        if move.upstream is not None
    ]


def decide(
    moves: Sequence[Move],
    desired: Mapping[str, EnvironmentSpec],
    facts: Facts,
    now: datetime,
) -> list[Move]:
    """``moves`` with the reason the planner would hold each (the same rule, the same words)."""
    decided = []
    for move in moves:
        rule = rule_for(desired[move.environment], move.slot)
        held = (
            hold_reason(
                rule,
                move.environment,
                move.slot,
                move.artifact,
                facts.get((move.environment, move.slot, identity(move.artifact))),
                now,
            )
            if rule is not None
            else None
        )
        decided.append(replace(move, held=held))
    return decided


def order(desired: Mapping[str, EnvironmentSpec]) -> list[str]:
    """The environments in promotion order: each after the one it is promoted from (those
    promoted from nothing first), then by name."""

    def depth(name: str) -> int:
        seen = {name}
        steps = 0
        policy = desired[name].promotion
        while policy is not None and policy.from_ in desired and policy.from_ not in seen:
            seen.add(policy.from_)
            steps += 1
            policy = desired[policy.from_].promotion
        return steps

    return sorted(desired, key=lambda name: (depth(name), name))


@dataclass(frozen=True)
class Stage:
    """One environment of a slot's pipeline: what it holds, and for an environment promoted
    from another whether it is behind and what would be promoted next."""

    environment: str
    artifact: Artifact | None
    record: int | None
    since: datetime | None
    upstream: str | None = None
    behind: bool = False
    #: the move a promotion would make now (its ``held`` says whether the planner lets it in)
    next: Move | None = None


def _involved(desired: Mapping[str, EnvironmentSpec]) -> list[str]:
    """The environments in a promotion (promoted, or promoted from), in promotion order."""
    names = set()
    for name, spec in desired.items():
        if spec.promotion is not None and spec.promotion.from_ in desired:
            names |= {name, spec.promotion.from_}
    return [name for name in order(desired) if name in names]


def _upstream(desired: Mapping[str, EnvironmentSpec], name: str) -> str | None:
    policy = desired[name].promotion
    return policy.from_ if policy is not None and policy.from_ in desired else None


def behind(
    desired: Mapping[str, EnvironmentSpec], deployed: Mapping[tuple[str, str], Record]
) -> list[Move]:
    """Every slot of a promoted environment whose deployed artifact differs from the one its
    upstream slot holds: the move a promotion would make (undecided)."""
    found = []
    for name in _involved(desired):
        upstream = _upstream(desired, name)
        if upstream is None:
            continue
        for slot in sorted(desired[name].slots):
            ahead = deployed.get((upstream, slot))
            current = deployed.get((name, slot))
            if ahead is not None and (current is None or current.artifact != ahead.artifact):
                found.append(
                    Move(
                        environment=name,
                        slot=slot,
                        artifact=ahead.artifact,
                        previous=current.artifact if current else None,
                        source=f"{upstream} #{ahead.id}",
                        upstream=upstream,
                    )
                )
    return found


def pipelines(
    desired: Mapping[str, EnvironmentSpec],
    deployed: Mapping[tuple[str, str], Record],
    decided: Sequence[Move],
) -> dict[str, list[Stage]]:
    """Per slot of the environments in a promotion, its stages in promotion order, each
    promoted stage with the move a promotion would make now (``decided``: :func:`behind`'s
    moves as :func:`decide` left them)."""
    moves = {(move.environment, move.slot): move for move in decided}
    ordered = _involved(desired)
    found: dict[str, list[Stage]] = {}
    for slot in sorted({slot for name in ordered for slot in desired[name].slots}):
        stages = []
        for name in ordered:
            if slot not in desired[name].slots:
                continue
            current = deployed.get((name, slot))
            move = moves.get((name, slot))
            stages.append(
                Stage(
                    environment=name,
                    artifact=current.artifact if current else None,
                    record=current.id if current else None,
                    since=current.created_at if current else None,
                    upstream=_upstream(desired, name),
                    behind=move is not None,
                    next=move,
                )
            )
        if len(stages) > 1:
            found[slot] = stages
    return found
