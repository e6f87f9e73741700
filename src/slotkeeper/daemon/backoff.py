"""Back-off per failing environment: after a failed action, that environment's actions wait
(held in the plan, with the time they wait for) for a delay that doubles with each failure in a
row, while the other environments go on. The delay is a pure function of the failure count
(``BackOffPolicy.delay``); ``EnvironmentBackOff`` keeps the counts and deadlines that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from slotkeeper import observability as obs
from slotkeeper.plan import Plan

#: doublings at most: 2**64 times any base is beyond every maximum, and a float of 2**1024
#: would overflow (a week of failures at a 10-minute maximum is about a thousand in a row)
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class BackOffPolicy:
    """``base`` seconds after a first failure, twice as long after each next one, never more
    than ``maximum`` seconds."""

    base: float = 5.0
    maximum: float = 600.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (none after none)."""
        if failures <= 0:
            return 0.0
        return min(self.base * 2.0 ** min(failures - 1, _MAX_DOUBLINGS), self.maximum)


class EnvironmentBackOff:
    """Failures in a row and the time to retry, per environment (the loop thread's alone)."""

    def __init__(self, policy: BackOffPolicy, *, clock: Callable[[], datetime]) -> None:
        self._policy = policy
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, datetime] = {}
        self._log = obs.get_logger()

    def block(self, plan: Plan) -> Plan:
        """``plan`` with the actions of environments still waiting blocked, saying until when
        (an action already held keeps its own reason)."""
        now = self._clock()
        waiting = {env for env, until in self._retry_at.items() if until > now}
        if not waiting:
            return plan
        actions = tuple(
            a.model_copy(
                update={
                    "blocked": f"backing off after failures until "
                    f"{self._retry_at[a.environment].strftime('%H:%M:%SZ')}"
                }
            )
            if a.environment in waiting and a.blocked is None
            else a
            for a in plan.actions
        )
        return plan.model_copy(update={"actions": actions})

    def record(self, environments: Iterable[str], failed: set[str]) -> None:
        """After a reconcile that planned for ``environments``: each one in ``failed`` waits
        longer; one that is done waiting and did not fail again starts afresh."""
        now = self._clock()
        for env in set(environments) | set(self._failures):
            if env in failed:
                count = self._failures.get(env, 0) + 1
                self._failures[env] = count
                delay = self._policy.delay(count)
                self._retry_at[env] = now + timedelta(seconds=delay)
                self._log.warning(
                    "environment.backing_off", environment=env, failures=count, retry_in_s=delay
                )
            elif env in self._failures and not self._retry_at.get(env, now) > now:
                self._failures.pop(env, None)
                self._retry_at.pop(env, None)

    def failures(self, environment: str) -> int:
        """Failures in a row of ``environment`` (0: not backing off)."""
        return self._failures.get(environment, 0)
