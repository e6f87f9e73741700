"""What ``slotkeeper run`` was started with: the operator's flags, read once."""

from __future__ import annotations

from dataclasses import dataclass

from slotkeeper.daemon.promoter import PromotionSettings
from slotkeeper.keys import SecretSink
from slotkeeper.manifests import NO_TARGETS, OperatorTargets
from slotkeeper.plan import PlanOptions
from slotkeeper.reconcile import RunOptions
from slotkeeper.sources import DirectorySource, GitSource


@dataclass(frozen=True)
class DaemonSettings:
    source: DirectorySource | GitSource
    options: PlanOptions
    run: RunOptions
    sink: SecretSink
    actor: str
    poll_interval: float = 60.0
    resync_interval: float = 300.0
    listen: tuple[str, int] = ("0.0.0.0", 8080)
    webhook_secret: bytes | None = None
    #: the ``Host`` names answered (None: any, e.g. kubelet probes by pod IP)
    allowed_hosts: frozenset[str] | None = None
    #: the branch followed (``--branch``): a push webhook for any other ref triggers nothing,
    #: whatever the source (a watched directory is taken to be a checkout of this branch)
    branch: str = "main"
    backoff_base: float = 5.0
    backoff_max: float = 600.0
    #: how often a follower tries to become the leader
    election_interval: float = 1.0
    #: the operator's targets (``--targets``), read at start: the manifests only name them
    targets: OperatorTargets = NO_TARGETS
    #: where auto-promotion proposes (``--promotion-target``); None: it does not
    promotion: PromotionSettings | None = None
