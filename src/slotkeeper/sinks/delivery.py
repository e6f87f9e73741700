"""Delivering a deploy key's private half to the places its consumers read it from, beyond the
secrets directory: Kubernetes Secrets and GitHub Actions secrets.

What is true of a place is read from the place when it can be (a Kubernetes Secret's private key
has a fingerprint) and from the ledger when it cannot (an Actions secret's value cannot be read
back: its ``updated_at`` after our write is what the ledger keeps). From that, :meth:`observe`
says, at plan time, whether slotkeeper may write there (:attr:`SinkFinding.refused`: a Secret or an
Actions secret it does not own) and whether someone changed or deleted what it delivered
(:attr:`SinkFinding.drift`: repaired by a rotation, since a private key is never kept to be written
again).

The GitHub target that writes an Actions secret, and whose ``GET /meta`` gives Flux's
``known_hosts``, is the first GitHub target of the key's environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from slotkeeper import observability as obs
from slotkeeper.errors import PermanentTargetError, SinkRefused, SlotkeeperError
from slotkeeper.keys import KeyPair
from slotkeeper.model import DesiredState, KeySecret, RecordedState, SinkFinding, SinkHolding
from slotkeeper.targets.base import Target
from slotkeeper.targets.github import GitHubTarget
from slotkeeper.targets.githubsecrets import ActionsPlace, ActionsSecrets, git_host, known_hosts

if TYPE_CHECKING:  # lightkube is imported only when a Kubernetes place is used
    from slotkeeper.sinks.kubernetes import KubernetesSecrets, SecretPlace


def default_kubernetes() -> KubernetesSecrets:
    """The operator's Kubernetes API: the pod's service account in a cluster, else the
    kubeconfig of ``KUBECONFIG`` or ``~/.kube/config`` (lightkube's own discovery)."""
    from slotkeeper.sinks.kubernetes import KubernetesSecrets, client_for

    return KubernetesSecrets(client_for())


def kubernetes_place(sink: KeySecret, repository: str, host: str) -> SecretPlace:
    from slotkeeper.sinks.kubernetes import SecretPlace

    assert sink.kubernetes is not None
    spec = sink.kubernetes
    url = spec.url
    if spec.format == "argocd" and url is None:
        url = f"ssh://git@{host}/{repository}.git"
    return SecretPlace(spec.namespace, spec.name, spec.format, url)


def actions_place(sink: KeySecret) -> ActionsPlace:
    assert sink.github_actions is not None
    spec = sink.github_actions
    return ActionsPlace(spec.repository, spec.name.upper(), spec.environment)


class Deliveries:
    """The places beyond the secrets directory, for one apply or refresh."""

    def __init__(
        self,
        *,
        targets: Mapping[str, Target],
        kubernetes: Callable[[], KubernetesSecrets] = default_kubernetes,
    ) -> None:
        self._targets = targets
        self._make_kubernetes = kubernetes
        self._kubernetes: KubernetesSecrets | None = None
        self._known_hosts: dict[str, str] = {}

    def close(self) -> None:
        if self._kubernetes is not None:
            self._kubernetes.close()

    def _kube(self) -> KubernetesSecrets:
        """The Kubernetes API, connected on first use (a ConfigError when none is set up)."""
        if self._kubernetes is None:
            self._kubernetes = self._make_kubernetes()
        return self._kubernetes

    def github(self, targets: Sequence[str], label: str) -> GitHubTarget:
        for name in targets:
            target = self._targets.get(name)
            if isinstance(target, GitHubTarget):
                return target
        raise PermanentTargetError(
            f"{label}: the key's environment lists no GitHub target (it writes Actions secrets "
            "and gives the Git host's keys)"
        )

    def deliver(
        self,
        identity: tuple[str, str],
        sink: KeySecret,
        pair: KeyPair,
        targets: Sequence[str],
        holding: SinkHolding | None,
    ) -> str | None:
        """Write ``pair``'s private half to ``sink``, confirmed; the place's version after it."""
        repository, title = identity
        github = self.github(targets, sink.label)
        if sink.kubernetes is not None:
            place = kubernetes_place(sink, repository, git_host(github.base_url))
            hosts = ""
            if place.format == "flux":
                hosts = self._known_hosts.get(github.name) or known_hosts(github, repository)
                self._known_hosts[github.name] = hosts
            written = self._kube().write(place, f"{repository}/{title}", pair, known_hosts=hosts)
            return written.resource_version
        secrets = ActionsSecrets(github)
        where = actions_place(sink)
        if (holding is None or holding.key_id is None) and secrets.observe(where).exists:
            raise SinkRefused(
                f"{sink.label}: an Actions secret of that name exists and slotkeeper did not "
                "write it: it is never overwritten"
            )
        return secrets.write(where, pair.private_key).updated_at

    def observe(
        self,
        identity: tuple[str, str],
        sink: KeySecret,
        *,
        current: int | None,
        holding: SinkHolding | None,
        targets: Sequence[str],
    ) -> SinkFinding:
        """What ``sink`` says of the key ``identity`` whose ACTIVE key is ``current`` (None:
        not created yet), given what the ledger knows the place holds. Ownership: a Secret's
        mark, an Actions secret's ledger row (any key of this identity was written there).
        Drift is judged only where the place is known to hold the current key: one behind is
        rotated anyway (``plan.behind_places``)."""
        repository, title = identity
        github = self.github(targets, sink.label)
        if sink.kubernetes is not None:
            place = kubernetes_place(sink, repository, git_host(github.base_url))
            seen = self._kube().observe(place)
            owner = f"{repository}/{title}"
            if seen.exists and seen.owner is None:
                return SinkFinding(
                    refused=(
                        f"{sink.label}: a Secret of that name exists and slotkeeper does not "
                        "manage it: it is never overwritten",
                    )
                )
            if seen.exists and seen.owner != owner:
                return SinkFinding(
                    refused=(f"{sink.label}: the Secret holds deploy key {seen.owner}",)
                )
            if current is None or holding is None or holding.key_id != current:
                return SinkFinding()
            if not seen.exists:
                return SinkFinding(drift=(f"{sink.label}: the Secret was deleted",))
            if seen.fingerprint != holding.fingerprint:
                return SinkFinding(drift=(f"{sink.label}: the Secret holds another key",))
            return SinkFinding()
        actions = ActionsSecrets(github).observe(actions_place(sink))
        if holding is None or holding.key_id is None:
            if actions.exists:
                return SinkFinding(
                    refused=(
                        f"{sink.label}: an Actions secret of that name exists and slotkeeper did "
                        "not write it: it is never overwritten",
                    )
                )
            return SinkFinding()
        if holding.key_id != current:
            return SinkFinding()
        if not actions.exists:
            return SinkFinding(drift=(f"{sink.label}: the Actions secret was deleted",))
        if actions.updated_at != holding.version:
            return SinkFinding(
                drift=(f"{sink.label}: the Actions secret was changed by someone else",)
            )
        return SinkFinding()

    def remove(
        self,
        identity: tuple[str, str],
        sink: KeySecret,
        holding: SinkHolding,
        targets: Sequence[str],
    ) -> str:
        """Take the key of ``holding`` out of ``sink``, if it is still there and ours."""
        repository, title = identity
        github = self.github(targets, sink.label)
        if sink.kubernetes is not None:
            place = kubernetes_place(sink, repository, git_host(github.base_url))
            return self._kube().remove(place, f"{repository}/{title}", holding.fingerprint or "")
        secrets = ActionsSecrets(github)
        where = actions_place(sink)
        seen = secrets.observe(where)
        if seen.exists and seen.updated_at != holding.version:
            return "left in place (someone else changed it since)"
        return secrets.remove(where)


def observe_sinks(
    desired: DesiredState, recorded: RecordedState, deliveries: Deliveries
) -> dict[tuple[str, str], dict[str, SinkFinding]]:
    """What every declared place beyond the secrets directory says, by deploy key and place
    (those that say nothing are left out). A place that cannot be asked is logged and left
    out: its write checks again before anything is written."""
    found: dict[tuple[str, str], dict[str, SinkFinding]] = {}
    for name in sorted(desired.environments):
        environment = desired.environments[name]
        for spec in environment.deploy_keys:
            identity = (spec.repository, spec.title)
            current = recorded.keys.get(identity)
            holdings = recorded.sinks.get(identity, {})
            for sink in spec.sinks:
                if sink.file is not None:
                    continue
                try:
                    finding = deliveries.observe(
                        identity,
                        sink,
                        current=current.id if current is not None else None,
                        holding=holdings.get(sink.label),
                        targets=environment.targets,
                    )
                except SlotkeeperError as exc:
                    obs.get_logger().warning("key.sink_unobserved", sink=sink.label, error=str(exc))
                    continue
                if finding.refused or finding.drift:
                    found.setdefault(identity, {})[sink.label] = finding
    return found
