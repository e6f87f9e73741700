"""The ledger's schema as numbered migrations, shared by every SQL backend.

Each migration is a list of statements in the SQL both SQLite and PostgreSQL accept; the only
dialect differences, the auto-numbered primary key and a column of the database's own clock
times, are the ``{id}`` and ``{timestamp}`` placeholders. A migration is
never edited once released: a change is a new, higher-numbered migration. Versions need not
be contiguous (branches may take numbers in parallel): the runner applies, in version order,
every migration a ledger has not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="records, deploy keys, environments, events, pending actions",
        statements=(
            """CREATE TABLE ledger (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                lineage TEXT NOT NULL,
                serial INTEGER NOT NULL,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE environments (
                name TEXT PRIMARY KEY,
                protected INTEGER NOT NULL,
                production INTEGER NOT NULL,
                repository TEXT,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE revisions (
                sha TEXT PRIMARY KEY,
                message TEXT NOT NULL,
                author TEXT NOT NULL,
                timestamp TEXT NOT NULL,
                branch TEXT
            )""",
            """CREATE TABLE records (
                id {id},
                environment TEXT NOT NULL,
                slot TEXT NOT NULL,
                artifact_kind TEXT NOT NULL,
                artifact_name TEXT NOT NULL,
                artifact_version TEXT,
                artifact_digest TEXT,
                ref TEXT,
                status TEXT NOT NULL
                    CHECK (status IN ('DEPLOYED', 'SUPERSEDED', 'DECOMMISSIONED')),
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                last_seen_at TEXT NOT NULL,
                superseded_by INTEGER REFERENCES records (id),
                revision TEXT,
                action_id TEXT NOT NULL
            )""",
            # The ledger's first invariant, enforced by the database itself.
            """CREATE UNIQUE INDEX records_one_deployed_per_slot
                ON records (environment, slot) WHERE status = 'DEPLOYED'""",
            "CREATE INDEX records_by_slot ON records (environment, slot, id)",
            """CREATE TABLE deploy_keys (
                id {id},
                environment TEXT NOT NULL,
                repository TEXT NOT NULL,
                title TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                public_key TEXT NOT NULL,
                read_only INTEGER NOT NULL,
                secret_file TEXT NOT NULL,
                rotate_after TEXT,
                status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'ROTATED', 'REVOKED')),
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                replaced_by INTEGER REFERENCES deploy_keys (id),
                revision TEXT,
                action_id TEXT NOT NULL
            )""",
            """CREATE UNIQUE INDEX deploy_keys_one_active
                ON deploy_keys (repository, title) WHERE status = 'ACTIVE'""",
            """CREATE TABLE events (
                seq {id},
                serial INTEGER NOT NULL,
                at TEXT NOT NULL,
                type TEXT NOT NULL,
                environment TEXT,
                slot TEXT,
                record_id INTEGER,
                key_id INTEGER,
                action_id TEXT,
                revision TEXT,
                actor TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
            "CREATE INDEX events_by_slot ON events (environment, slot, seq)",
            """CREATE TABLE pending (
                action_id TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                environment TEXT NOT NULL,
                slot TEXT,
                key TEXT,
                reason TEXT NOT NULL,
                blocked TEXT NOT NULL,
                serial INTEGER NOT NULL,
                at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        version=2,
        description="target sync state, HTTP cache, write budget log",
        statements=(
            "ALTER TABLE environments ADD COLUMN transient INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE environments ADD COLUMN targets TEXT NOT NULL DEFAULT '[]'",
            # One row per (target, record or key): what the target holds for it, and whether
            # that is what the ledger wants. Written before each remote write (the journal).
            """CREATE TABLE target_syncs (
                target TEXT NOT NULL,
                subject TEXT NOT NULL CHECK (subject IN ('record', 'key')),
                subject_id INTEGER NOT NULL,
                wanted TEXT NOT NULL,
                remote_id TEXT,
                remote_state TEXT,
                remote_updated_at TEXT,
                status TEXT NOT NULL CHECK (status IN ('synced', 'pending', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (target, subject, subject_id)
            )""",
            "CREATE INDEX target_syncs_unsettled ON target_syncs (status, subject)",
            # Conditional-request cache: a 304 costs no rate limit. ETags are per credential,
            # so the row is keyed by a one-way digest of it (never the credential itself).
            """CREATE TABLE http_cache (
                target TEXT NOT NULL,
                credential TEXT NOT NULL,
                url TEXT NOT NULL,
                etag TEXT NOT NULL,
                body TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (target, credential, url)
            )""",
            "CREATE TABLE target_writes (target TEXT NOT NULL, at TEXT NOT NULL)",
            "CREATE INDEX target_writes_by_time ON target_writes (target, at)",
        ),
    ),
    Migration(
        version=3,
        description="record annotations, remote detail of target syncs",
        statements=(
            "ALTER TABLE records ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE target_syncs ADD COLUMN remote_detail TEXT NOT NULL DEFAULT '{}'",
        ),
    ),
    Migration(
        version=4,
        description="reconcile requests, passed from any replica to the leader",
        statements=(
            """CREATE TABLE reconcile_requests (
                seq {id},
                at TEXT NOT NULL,
                reason TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        version=5,
        description="last good manifest files, and the manifest files that are broken",
        statements=(
            # The last manifest set that loaded whole: a broken file is read from here instead
            # (in any process, after any restart) so that its environments are never taken
            # for removed ones.
            """CREATE TABLE manifest_files (
                path TEXT PRIMARY KEY,
                digest TEXT NOT NULL,
                content TEXT NOT NULL,
                revision TEXT,
                stored_at TEXT NOT NULL
            )""",
            # One row while some manifest file is broken: which, why, and the revision held
            # back; `status`, /status and the dashboard read it.
            """CREATE TABLE manifest_status (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                at TEXT NOT NULL,
                revision TEXT,
                broken TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        version=6,
        description="where each target sync's remote copy lives",
        statements=(
            "ALTER TABLE target_syncs ADD COLUMN location TEXT NOT NULL DEFAULT '{}'",
            # Record syncs written before this knew only the environment's repository, which is
            # where their GitHub deployments were made unless it changed since: the best guess
            # there is (keys carry their own repository). Repositories match
            # ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$: nothing to escape in the JSON.
            """UPDATE target_syncs SET location = (
                SELECT '{"repository": "' || e.repository || '"}'
                FROM records r JOIN environments e ON e.name = r.environment
                WHERE r.id = target_syncs.subject_id
            )
            WHERE subject = 'record' AND EXISTS (
                SELECT 1 FROM records r JOIN environments e ON e.name = r.environment
                WHERE r.id = target_syncs.subject_id AND e.repository IS NOT NULL
            )""",
        ),
    ),
    Migration(
        version=7,
        description="webhook deliveries seen lately, so that a replay is refused after a restart",
        statements=(
            # By delivery id and by a digest of the body (never the body itself), pruned to a
            # window at every insert.
            """CREATE TABLE webhook_deliveries (
                key TEXT PRIMARY KEY,
                at TEXT NOT NULL
            )""",
            "CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (at)",
        ),
    ),
    Migration(
        version=8,
        description="a fixed reason beside each target sync's last error, for public pages",
        statements=(
            # What happened in words slotkeeper chose (status code and phrase): /status and the
            # dashboard show this, never last_error (which may quote the target). Rows written
            # before it stay NULL: the pages say "details in `slotkeeper status`" for them.
            "ALTER TABLE target_syncs ADD COLUMN error_reason TEXT",
        ),
    ),
    Migration(
        version=9,
        description="when a target that asked for a pause may be called again, per sync",
        statements=(
            # Set from a failure's retry-after (a rate limit): the planner holds the sync until
            # then. NULL for every row written before, and whenever no pause was asked for.
            "ALTER TABLE target_syncs ADD COLUMN not_before TEXT",
        ),
    ),
    Migration(
        version=10,
        description="the writer lease of a shared ledger: holder, fencing epoch and expiry",
        statements=(
            # One row, written only by PostgreSQL ledgers (an SQLite ledger's writer lock is a
            # file lock): times on the database's clock, the epoch only ever grows.
            """CREATE TABLE lease (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                holder TEXT NOT NULL,
                epoch BIGINT NOT NULL,
                acquired_at {timestamp} NOT NULL,
                renewed_at {timestamp} NOT NULL,
                expires_at {timestamp} NOT NULL
            )""",
        ),
    ),
    Migration(
        version=11,
        description="where each deploy key's private half is delivered, and what each place holds",
        statements=(
            # The places a key was declared with (JSON list of the manifests' secret entries),
            # so a revocation knows where to remove it after it left the manifests.
            "ALTER TABLE deploy_keys ADD COLUMN sinks TEXT NOT NULL DEFAULT '[]'",
            # One row per deploy key identity and place: the key the place is known to hold
            # (NULL until one is delivered), the place's version after that write (resource
            # version, updated_at) and the last failure. Keys are never deleted on GitHub while
            # a place may still hold them.
            """CREATE TABLE key_sinks (
                repository TEXT NOT NULL,
                title TEXT NOT NULL,
                sink TEXT NOT NULL,
                key_id INTEGER REFERENCES deploy_keys (id),
                fingerprint TEXT,
                version TEXT,
                delivered_at TEXT,
                last_error TEXT,
                failed_at TEXT,
                PRIMARY KEY (repository, title, sink)
            )""",
        ),
    ),
    Migration(
        version=12,
        description="operators' approvals and rejections of held actions",
        statements=(
            # One row per decision, never updated but to mark an approval used: the held
            # action's content digest (what the decision is about), its id and what it is for
            # display, who decided, why, until when, and the apply that used it.
            """CREATE TABLE approvals (
                id {id},
                digest TEXT NOT NULL,
                action_id TEXT NOT NULL,
                type TEXT NOT NULL,
                environment TEXT NOT NULL,
                subject TEXT NOT NULL,
                decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
                actor TEXT NOT NULL,
                reason TEXT NOT NULL,
                override_freeze INTEGER NOT NULL,
                at TEXT NOT NULL,
                expires_at TEXT,
                used_at TEXT,
                used_serial INTEGER
            )""",
            "CREATE INDEX approvals_by_digest ON approvals (digest, id)",
            # A held action's content digest, standing (awaiting, rejected) and the guards that
            # hold it (comma-separated), when it waits for a person: what `approve ACTION_ID`
            # and `approve ENV/SLOT` find.
            "ALTER TABLE pending ADD COLUMN digest TEXT",
            "ALTER TABLE pending ADD COLUMN approval TEXT",
            "ALTER TABLE pending ADD COLUMN guards TEXT",
        ),
    ),
    Migration(
        version=13,
        description="notifications: what was last told, and the outbox of messages to send",
        statements=(
            # One row: the audit events told up to (seq), how many times transitions were
            # looked for (numbers the messages), and what held at the last look (JSON).
            """CREATE TABLE notify_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                cursor BIGINT NOT NULL,
                generation BIGINT NOT NULL,
                conditions TEXT NOT NULL
            )""",
            # One row per message and notifier, written in the transaction that moves
            # notify_state (a crash or a failover loses or repeats none), sent by the leader:
            # the message (JSON, no credential), when it may go, tries, and how it ended.
            """CREATE TABLE outbox (
                id {id},
                notifier TEXT NOT NULL,
                message_id TEXT NOT NULL,
                event TEXT NOT NULL,
                environment TEXT,
                body TEXT NOT NULL,
                created_at TEXT NOT NULL,
                due_at TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                sent_at TEXT,
                failed_at TEXT,
                last_error TEXT,
                UNIQUE (notifier, message_id)
            )""",
            "CREATE INDEX outbox_due ON outbox (sent_at, failed_at, due_at)",
        ),
    ),
    Migration(
        version=14,
        description="the commits each deployment brought, for delivery metrics",
        statements=(
            # Recorded at deploy time (a branch ref moves later): one row per commit between
            # the superseded record's ref and the new one's (its own commit for a new slot).
            """CREATE TABLE record_commits (
                record_id INTEGER NOT NULL REFERENCES records (id),
                sha TEXT NOT NULL,
                authored_at TEXT NOT NULL,
                committed_at TEXT NOT NULL,
                subject TEXT NOT NULL,
                PRIMARY KEY (record_id, sha)
            )""",
            # 1 when the commits were found (possibly none), NULL when they could not be known
            "ALTER TABLE records ADD COLUMN commits_known INTEGER",
            # the delivery metrics read an environment's records of a period, each with the
            # record it superseded and its targets' reports: by index, at a million records
            "CREATE INDEX records_by_environment_time ON records (environment, created_at)",
            "CREATE INDEX records_by_successor ON records (superseded_by)",
            "CREATE INDEX target_syncs_by_subject ON target_syncs (subject, subject_id)",
        ),
    ),
    Migration(
        version=15,
        description="the failures targets reported of deployments, kept once reported",
        statements=(
            # A target's journal row changes with each sync (a retired deployment's status
            # becomes inactive); that a target once reported the deployment failed stays here,
            # first report kept, for the delivery metrics.
            """CREATE TABLE target_failures (
                record_id INTEGER NOT NULL REFERENCES records (id),
                target TEXT NOT NULL,
                status TEXT NOT NULL,
                reported_at TEXT NOT NULL,
                PRIMARY KEY (record_id, target)
            )""",
            # what the journal rows of earlier versions say now (the detail is sorted JSON)
            *(
                "INSERT INTO target_failures (record_id, target, status, reported_at) "
                f"SELECT subject_id, target, '{status}', updated_at FROM target_syncs "
                f"WHERE subject = 'record' AND remote_detail LIKE '%\"status\": \"{status}\"%'"
                for status in ("FAILED", "failure", "error")
            ),
        ),
    ),
    Migration(
        version=16,
        description="holds on artifacts rolled back in a slot, until an operator releases them",
        statements=(
            # Written in the apply that rolls a slot back (a deploy that puts back an artifact
            # the slot ran before): the artifact it replaced is not deployed in that slot again
            # while the hold stands; `release-hold` ends it, with who and why.
            """CREATE TABLE slot_holds (
                id {id},
                environment TEXT NOT NULL,
                slot TEXT NOT NULL,
                artifact_kind TEXT NOT NULL,
                artifact_name TEXT NOT NULL,
                artifact_version TEXT,
                artifact_digest TEXT,
                record_id INTEGER NOT NULL REFERENCES records (id),
                by_record INTEGER NOT NULL REFERENCES records (id),
                created_at TEXT NOT NULL,
                released_at TEXT,
                released_by TEXT,
                release_reason TEXT
            )""",
            "CREATE INDEX slot_holds_by_slot ON slot_holds (environment, slot, released_at)",
        ),
    ),
    Migration(
        version=17,
        description="each manifest file's parse, by content, so an unchanged file is not parsed",
        statements=(
            # Written by an apply for the manifest set it loaded whole; read by every plan and
            # apply, which validate a file whose content has one from it instead of parsing it.
            # `format` is the parser's and manifest model's version (a new one parses again).
            """CREATE TABLE manifest_parses (
                digest TEXT NOT NULL,
                format TEXT NOT NULL,
                parsed TEXT NOT NULL,
                PRIMARY KEY (digest, format)
            )""",
        ),
    ),
)

LATEST_VERSION = max(migration.version for migration in MIGRATIONS)
