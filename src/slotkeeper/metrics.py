"""The metrics slotkeeper exports on ``/metrics``, in a registry of its own (no process
defaults). A module of their own: the metrics library is imported by what records them (an
apply, the daemon, the web server), not by a command that only reads (``plan``, ``status``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
MANIFEST_FILES = Counter(
    "slotkeeper_manifest_files",
    "Manifest files a reconcile loaded: parsed, or reused unchanged from the last load.",
    ["how"],
    registry=REGISTRY,
)
RECONCILES = Counter(
    "slotkeeper_reconciles", "Reconciles run, by result.", ["result"], registry=REGISTRY
)
PLANS = Counter(
    "slotkeeper_plans",
    "Plans a reconcile made: of every environment (whole), or of the environments an edit "
    "changed (scoped).",
    ["scope"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "slotkeeper_reconcile_duration_seconds",
    "How long a reconcile took, by result.",
    ["result"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
ACTIONS = Counter(
    "slotkeeper_actions",
    "Plan actions and target calls carried out, by type, environment, target and result.",
    ["type", "environment", "target", "result"],
    registry=REGISTRY,
)
TARGET_REQUESTS = Counter(
    "slotkeeper_target_requests",
    "HTTP requests sent to targets, by target and status code (0: no answer).",
    ["target", "code"],
    registry=REGISTRY,
)
#: a slot's newest record is DEPLOYED or DECOMMISSIONED, never SUPERSEDED (its successor is newer)
SLOT_STATUSES = ("DEPLOYED", "DECOMMISSIONED")
SLOTS = Gauge(
    "slotkeeper_slots",
    "Environment slots by the status of their newest record (DEPLOYED or DECOMMISSIONED).",
    ["status"],
    registry=REGISTRY,
)
KEY_AGE = Gauge(
    "slotkeeper_deploy_key_age_seconds",
    "Age of each active deploy key.",
    ["repository", "title"],
    registry=REGISTRY,
)
CREDENTIAL_EXPIRY = Gauge(
    "slotkeeper_credential_expiry_seconds",
    "Seconds until the soonest-expiring short-lived credential of a target expires (a GitHub "
    "App's installation tokens; minted again 5 minutes before): alert when it stays low.",
    ["target"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "slotkeeper_last_successful_reconcile_timestamp_seconds",
    "When the last reconcile without failures finished (Unix time).",
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "slotkeeper_notifications",
    "Notification messages by notifier and outcome (sent, retry, wait, gone, refused, given_up).",
    ["notifier", "outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_QUEUED = Gauge(
    "slotkeeper_notifications_queued",
    "Notification messages in the ledger's outbox that are due and not yet sent.",
    registry=REGISTRY,
)
#: delivery metrics per environment over the last 7 and 30 days (``window``), refreshed by the
#: daemon every few minutes; a series is absent while it has no data
DORA_DEPLOYMENTS = Gauge(
    "slotkeeper_dora_deployments",
    "Deployments (records made DEPLOYED) in the window.",
    ["environment", "window"],
    registry=REGISTRY,
)
DORA_LEAD_TIME = Gauge(
    "slotkeeper_dora_lead_time_seconds",
    "Lead time for changes (deployment time minus commit time), median and p90.",
    ["environment", "window", "quantile"],
    registry=REGISTRY,
)
DORA_FAILURE_RATE = Gauge(
    "slotkeeper_dora_change_failure_rate",
    "Share of the window's deployments that failed (rolled back, fixed, or a target failed).",
    ["environment", "window"],
    registry=REGISTRY,
)
DORA_RECOVERY = Gauge(
    "slotkeeper_dora_recovery_time_seconds",
    "Failed deployment recovery time, median and p90.",
    ["environment", "window", "quantile"],
    registry=REGISTRY,
)
DORA_REWORK_RATE = Gauge(
    "slotkeeper_dora_rework_rate",
    "Share of the window's deployments that were rollbacks or fix/hotfix deployments.",
    ["environment", "window"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "slotkeeper_leader", "1 when this replica is the one that writes.", registry=REGISTRY
)
LEADER_EPOCH = Gauge(
    "slotkeeper_leader_epoch",
    "The fencing epoch of the writer lease this replica holds or held last (PostgreSQL).",
    registry=REGISTRY,
)
LEADER_TAKEOVERS = Counter(
    "slotkeeper_leader_takeovers",
    "Times this replica became the leader (acquired the writer lease).",
    registry=REGISTRY,
)
TAKEOVER_SECONDS = Histogram(
    "slotkeeper_leader_takeover_seconds",
    "At each takeover: seconds from the previous leader's last lease renewal (or release) to "
    "this replica's acquisition, on the database's clock: how long the ledger had no writer.",
    buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
LEASE_RENEWALS = Counter(
    "slotkeeper_lease_renewals",
    "Writer lease renewal attempts by result: renewed, failed (no answer in time: tried "
    "again until the renew deadline) or lost (the lease expired or was taken).",
    ["result"],
    registry=REGISTRY,
)
FENCED_WRITES = Counter(
    "slotkeeper_ledger_fenced_writes",
    "Writes refused because this process no longer held the writer lease: by the local renew "
    "deadline (before reaching the database), by the ledger (the epoch moved on), or before "
    "a remote write to a target.",
    ["by"],
    registry=REGISTRY,
)
LEDGER_COMMITS = Counter(
    "slotkeeper_ledger_commits",
    "Ledger transactions committed (batched where one transaction is safe).",
    registry=REGISTRY,
)
MANIFESTS_INVALID = Gauge(
    "slotkeeper_manifests_invalid",
    "Manifest files that do not validate at the last reconcile (their last good version is "
    "used, and removals outside the environments of valid files are held): alert when > 0.",
    registry=REGISTRY,
)
