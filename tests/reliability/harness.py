"""The reliability scenarios and the invariants they check, shared by the quick pytest module
and the full ``python -m tests.reliability`` run.

Both scenarios drive the real CLI (``python -m slotkeeper``) as subprocesses against a
``RecordingGitHub`` on loopback, the manifests living in a throw-away git work tree so every
change set has a revision:

- :func:`crash_scenario`: revision A (``environments`` x ``slots``), then alternately the
  change set A -> B (``changed`` slots superseded, ``removed`` decommissioned, ``added`` new, and
  every environment's deploy key rotated by flipping ``readOnly``) and back B -> A. Every
  round's first apply is SIGKILLed after a seeded random number of writes reached the fake
  (sometimes the first re-apply too), then applies run until converged.
- :func:`faults_scenario`: the same shapes with 5xx, timeouts, dropped connections, a secondary
  rate limit and a primary exhaustion switched on; it counts the reconciles until converged.

After every run the ledger and the fake are checked (:meth:`Harness.check`); after every
convergence the stricter converged invariants too. Problems go to ``Figures.failures``, counted
identities (duplicated records, lost records, leaked secrets) to the sets behind the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes.github import FakeGitHub, key_blob
from tests.fakes.server import ALL_METHODS, WRITE_METHODS, Decision, Incoming
from tests.helpers import deploy_key, environment, image, write_manifests

TOKEN = "ghp_testtoken0123456789"
TRACEBACK = "Traceback (most recent call last)"
MAX_RECONCILES = 15
REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "tests" / "corpus"
_KEYS_PATH = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/keys(?:/\d+)?")
_MANAGED = "slotkeeper:"
#: the kinds of faults a faults run must have injected at least once
FAULT_KINDS = frozenset(
    {
        "5xx",
        "timeout (stalled answer)",
        "dropped connection",
        "secondary limit 403",
        "primary limit exhausted",
    }
)
#: the kinds the fake draws at random, and the knob (a rate) that draws each
RANDOM_FAULT_KNOBS = {
    "5xx": "error_rate",
    "timeout (stalled answer)": "stall_rate",
    "dropped connection": "drop_rate",
}


# -- the fake -------------------------------------------------------------------------------


class RecordingGitHub(FakeGitHub):
    """The fake GitHub with a cheap write counter (for the killer), a count of the faults it
    injected by kind, a trace of the managed deploy keys per repository after every key write
    it processed, a one-shot primary rate-limit exhaustion after a given write, and ``forced``:
    random fault kinds to inject for sure, each on the next write admitted, before any is left
    to chance (a small run may otherwise draw none of a kind)."""

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(TOKEN, seed=seed, rate_limit=10**9)
        self.write_count = 0
        self.faults: Counter[str] = Counter()
        #: (repository, method, status or None when dropped, managed keys held after the call)
        self.key_trace: list[tuple[str, str, int | None, int]] = []
        #: when set, the write with this number exhausts the primary limit for a few seconds
        self.exhaust_at: int | None = None
        self.exhaust_seconds = 3
        #: random fault kinds (keys of RANDOM_FAULT_KNOBS) still to inject, in this order
        self.forced: list[str] = []

    def start(self) -> Self:
        super().start()
        server = self._server
        if server is not None:
            report = server.handle_error

            def handle_error(request: Any, client_address: Any) -> None:
                # A SIGKILLed client resets its connections: expected here, not worth a trace.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    report(request, client_address)

            server.handle_error = handle_error  # type: ignore[method-assign]
        return self

    def managed_keys(self, repository: str) -> list[dict[str, Any]]:
        owner, repo = repository.split("/")
        return [k for k in self.keys(owner, repo) if str(k["title"]).startswith(_MANAGED)]

    def _decide(self, incoming: Incoming) -> Decision:
        if not self.forced or incoming.method not in WRITE_METHODS:
            return self._decide_and_count(incoming)
        # Callers hold the lock, and the knobs are read only here: this write alone sees the
        # forced kind's rate at 1 and the others at 0. A write refused before the knobs (a rate
        # limit) leaves the kind for the next one.
        kind = self.forced[0]
        rates = {knob: getattr(self, knob) for knob in RANDOM_FAULT_KNOBS.values()}
        for knob in rates:
            setattr(self, knob, 1.0 if knob == RANDOM_FAULT_KNOBS[kind] else 0.0)
        before = self.faults[kind]
        try:
            decision = self._decide_and_count(incoming)
        finally:
            for knob, rate in rates.items():
                setattr(self, knob, rate)
        if self.faults[kind] > before:
            self.forced.pop(0)
        return decision

    def _decide_and_count(self, incoming: Incoming) -> Decision:
        decision = super()._decide(incoming)
        reply = decision.reply
        if decision.processed and incoming.method in WRITE_METHODS:
            self.write_count += 1
            match = _KEYS_PATH.fullmatch(incoming.path)
            if match is not None:
                repo_key = (match["owner"].lower(), match["repo"].lower())
                held = sum(
                    1
                    for key in self._keys.values()
                    if key.repo == repo_key and str(key.body["title"]).startswith(_MANAGED)
                )
                status = None if decision.drop else reply.status
                self.key_trace.append(("/".join(repo_key), incoming.method, status, held))
            if self.exhaust_at is not None and self.write_count >= self.exhaust_at:
                self.exhaust_at = None
                self.rate_limit_remaining = 0
                self.rate_limit_reset = int(self.clock()) + self.exhaust_seconds
                self.faults["primary limit exhausted"] += 1
        elif not decision.processed:
            message = str((reply.body or {}).get("message", "")) if reply.body else ""
            if reply.status in (502, 503):
                self.faults["5xx"] += 1
            elif reply.status == 403 and "retry-after" in reply.headers:
                self.faults["secondary limit 403"] += 1
            elif reply.status == 403 and "rate limit exceeded" in message:
                self.faults["primary limit 403"] += 1
        if decision.drop:
            self.faults["dropped connection"] += 1
        if decision.stall:
            self.faults["timeout (stalled answer)"] += 1
        return decision


# -- the manifests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Revision A: ``environments`` x ``slots`` (one repository and one deploy key each).
    Revision B: the first ``changed`` slots get a new version, the last ``removed`` leave,
    ``added`` new slots arrive, and each deploy key flips ``readOnly`` (a rotation)."""

    environments: int
    slots: int
    changed: int
    removed: int
    added: int

    def change_actions(self) -> int:
        """Actions of the smaller of the two change sets (A -> B and B -> A)."""
        per_env = self.changed + min(self.removed, self.added) * 2 + 1
        return self.environments * per_env

    def documents(self, side: str, base_url: str, **target: Any) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for e in range(self.environments):
            slots: dict[str, dict[str, Any]] = {}
            for s in range(self.slots):
                if side == "B" and s >= self.slots - self.removed:
                    continue
                version = "v2" if side == "B" and s < self.changed else "v1"
                slots[f"s{s:03d}"] = image(f"ghcr.io/acme/svc{e}-s{s}", version)
            if side == "B":
                for s in range(self.added):
                    slots[f"n{s:03d}"] = image(f"ghcr.io/acme/svc{e}-n{s}", "v1")
            key = deploy_key(
                "deployer",
                repository=f"acme/svc{e}",
                readOnly=side == "A",
                secret={"file": f"env{e}/deployer"},
            )
            docs.append(
                environment(
                    f"env{e}",
                    slots,
                    repository=f"acme/svc{e}",
                    refFrom="version",  # deployed at the version's tag (see Harness.__init__)
                    targets=["github"],
                    production=e == 0,
                    deployKeys=[key],
                )
            )
        spec = {
            "type": "github",
            "baseUrl": base_url,
            "token": {"env": "GITHUB_TOKEN"},
            "writesPerMinute": 10_000,
            "writesPerHour": 100_000,
            **target,
        }
        docs.append(
            {
                "apiVersion": "slotkeeper/v1",
                "kind": "Target",
                "metadata": {"name": "github"},
                "spec": spec,
            }
        )
        return docs

    def declared(self, side: str) -> dict[tuple[str, str], str]:
        """(environment, slot) -> the version revision ``side`` declares."""
        found: dict[tuple[str, str], str] = {}
        for e in range(self.environments):
            for s in range(self.slots):
                if side == "B" and s >= self.slots - self.removed:
                    continue
                found[(f"env{e}", f"s{s:03d}")] = "v2" if side == "B" and s < self.changed else "v1"
            if side == "B":
                for s in range(self.added):
                    found[(f"env{e}", f"n{s:03d}")] = "v1"
        return found


# -- figures --------------------------------------------------------------------------------


@dataclass
class Figures:
    """What the runs did and found; ``ok`` when every invariant held."""

    runs: int = 0
    applies: int = 0
    kills: int = 0
    #: kills of a change set's first apply (the others hit the re-apply after a kill)
    first_kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    change_set_actions: list[int] = field(default_factory=list)
    reconciles: list[int] = field(default_factory=list)
    checks: int = 0
    duplicates: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    leaks: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad_inputs_tried(self) -> int:
        """Cases of the hostile-input corpus (tests/corpus/: one per ``.expected`` sidecar,
        exercised by tests/test_hostile_input.py)."""
        if not CORPUS.is_dir():
            return 0
        return sum(1 for path in CORPUS.glob("*.expected"))

    @property
    def ok(self) -> bool:
        return not (self.failures or self.duplicates or self.lost or self.leaks)

    def fail(self, message: str) -> None:
        if message not in self.failures:
            self.failures.append(message)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "runs": self.runs,
            "applies": self.applies,
            "kills": self.kills,
            "kills_of_a_change_set_first_apply": self.first_kills,
            "faults_injected": dict(sorted(self.faults.items())),
            "faults_injected_total": sum(self.faults.values()),
            "bad_inputs_tried": self.bad_inputs_tried,
            "duplicates_found": len(self.duplicates),
            "records_lost": len(self.lost),
            "secrets_leaked": len(self.leaks),
            "change_set_actions": self.change_set_actions,
            "reconciles_to_converge": self.reconciles,
            "max_reconciles": max(self.reconciles, default=0),
            "invariant_checks": self.checks,
            "failures": self.failures,
            "duplicates": sorted(self.duplicates),
            "lost": sorted(self.lost),
            "leaks": sorted(self.leaks),
            "seconds": round(self.seconds, 1),
        }

    def table(self) -> str:
        data = self.as_json()
        rows: list[tuple[str, str]] = [
            ("runs (slotkeeper processes)", str(data["runs"])),
            ("  of which applies", str(data["applies"])),
            ("kills (SIGKILL mid-apply)", str(data["kills"])),
            ("  of a change set's first apply", str(data["kills_of_a_change_set_first_apply"])),
            ("faults injected", str(data["faults_injected_total"])),
        ]
        rows += [(f"  {kind}", str(n)) for kind, n in data["faults_injected"].items()]
        rows += [
            ("bad inputs tried (tests/corpus)", str(data["bad_inputs_tried"])),
            ("change set actions", ", ".join(map(str, data["change_set_actions"])) or "-"),
            ("reconciles to converge (max)", str(data["max_reconciles"])),
            ("invariant checks", str(data["invariant_checks"])),
            ("duplicates found", str(data["duplicates_found"])),
            ("records lost", str(data["records_lost"])),
            ("secrets leaked", str(data["secrets_leaked"])),
            ("invariant failures", str(len(data["failures"]))),
            ("seconds", str(data["seconds"])),
            ("result", "PASS" if data["ok"] else "FAIL"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{'figure'.ljust(width)}  value", f"{'-' * width}  -----"]
        lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
        for message in data["failures"][:20]:
            lines.append(f"FAILED: {message}")
        return "\n".join(lines)


class Section(Protocol):
    """Figures of another section of the run (the HA one), reported under a key of its own."""

    @property
    def ok(self) -> bool: ...

    def as_json(self) -> dict[str, Any]: ...


def write_report(
    figures: Figures, path: Path, sections: Mapping[str, Section] | None = None
) -> None:
    """The figures as JSON, each of ``sections`` under its key; ``ok`` only when every part
    is."""
    sections = sections or {}
    data = figures.as_json()
    for key, section in sections.items():
        data[key] = section.as_json()
    data["ok"] = figures.ok and all(section.ok for section in sections.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# -- driving the CLI ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


class Harness:
    """One scratch git work tree with manifests under ``m/`` and the default ledger."""

    def __init__(
        self,
        root: Path,
        gh: RecordingGitHub,
        shape: Shape,
        figures: Figures,
        *,
        target: dict[str, Any] | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.root = root
        self.gh = gh
        self.shape = shape
        self.figures = figures
        self.target = target or {}
        self.say = say
        self.db = root / ".slotkeeper" / "state.db"
        self.secrets = root / ".slotkeeper" / "secrets"
        self.logs = root / "logs"
        self.side = ""
        self.outputs: list[str] = []  # every run's stdout and stderr, scanned for secrets
        self.private_markers: set[str] = set()
        self.seen_records: set[int] = set()
        #: repositories whose deploy key is meant to go (its environment was removed)
        self.keyless_ok: set[str] = set()
        self._serial = 0
        for e in range(shape.environments):
            for version in ("v1", "v2"):  # every version either revision declares
                gh.add_tag(f"acme/svc{e}", version)
        root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        (root / ".gitignore").write_text(".slotkeeper/\nlogs/\n")
        for args in (
            ("init", "-q", "-b", "main"),
            ("config", "user.name", "Reliability"),
            ("config", "user.email", "reliability@example.com"),
            ("config", "commit.gpgsign", "false"),
        ):
            self._git(*args)

    def _git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True)

    @property
    def targets_file(self) -> Path:
        """The operator's targets file: beside the repository, never in the manifests."""
        return self.root.with_name(f"{self.root.name}-targets.yaml")

    def write_targets(self, documents: list[dict[str, Any]]) -> None:
        self.targets_file.write_text(yaml.safe_dump_all(documents, sort_keys=False))

    def declare(self, side: str) -> None:
        """Write revision ``side`` and commit it."""
        self.side = side
        documents = self.shape.documents(side, self.gh.base_url, **self.target)
        write_manifests(self.root / "m", *(d for d in documents if d["kind"] != "Target"))
        self.write_targets([d for d in documents if d["kind"] == "Target"])
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", f"revision {side}")

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SLOTKEEPER_STATE", "SLOTKEEPER_SECRETS_DIR", "PYTEST_CURRENT_TEST")
        }
        env.update(
            GITHUB_TOKEN=TOKEN,
            NO_COLOR="1",
            SLOTKEEPER_ACTOR="reliability",
            SLOTKEEPER_TARGETS=str(self.targets_file),
        )
        return env

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        self._serial += 1
        out = self.logs / f"{self._serial:05d}.out"
        err = self.logs / f"{self._serial:05d}.err"
        command = [sys.executable, "-m", "slotkeeper", "--log-format", "json", *args]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                command, cwd=self.root, env=self._env(), stdout=stdout, stderr=stderr
            )
        self.figures.runs += 1
        if args and args[0] == "apply":
            self.figures.applies += 1
        return process, out, err

    def _collect(self, code: int, out: Path, err: Path, args: tuple[str, ...]) -> Run:
        run = Run(code, out.read_text(errors="replace"), err.read_text(errors="replace"))
        self.outputs.append(run.out + run.err)
        for where, text in (("stdout", run.out), ("stderr", run.err)):
            if TRACEBACK in text:
                self.figures.fail(f"a Python traceback in the {where} of `{' '.join(args)}`")
        for line in run.err.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                self.figures.fail(f"a non-JSON log line from `{' '.join(args)}`: {line[:120]}")
                continue
            if isinstance(entry, dict) and ("exception" in entry or "exc_info" in entry):
                self.figures.fail(f"a logged exception from `{' '.join(args)}`: {line[:200]}")
        out.unlink()
        err.unlink()
        return run

    def run(self, *args: str, timeout: float = 600) -> Run:
        process, out, err = self.start(*args)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
            self.figures.fail(f"`{' '.join(args)}` did not finish within {timeout:.0f}s")
        return self._collect(code, out, err, args)

    def apply_args(self) -> tuple[str, ...]:
        return ("apply", "--yes", "-m", "m", "--allow-mass-decommission", "--lock-timeout", "30")

    def kill_after(self, writes: int) -> bool:
        """Start an apply and SIGKILL it once the fake processed ``writes`` more writes;
        True when it was killed (False: it finished first)."""
        args = self.apply_args()
        start = self.gh.write_count
        process, out, err = self.start(*args)
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if self.gh.write_count - start >= writes:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung apply
            process.kill()
            code = process.wait()
        run = self._collect(code, out, err, args)
        if code == -signal.SIGKILL:
            self.figures.kills += 1
            return True
        if code != 0:
            self.figures.fail(f"an apply meant to be killed exited {code}: {run.out[-300:]}")
        return False

    def plan_code(self) -> int:
        return self.run("plan", "-m", "m", "--allow-mass-decommission", "--detailed-exitcode").code

    def count_actions(self) -> int:
        run = self.run("plan", "-m", "m", "--allow-mass-decommission", "--json")
        if run.code != 0:
            self.figures.fail(f"plan --json failed: {run.err[-300:]}")
            return 0
        plan = json.loads(run.out)
        blocked = [a for a in plan["actions"] if a.get("blocked")]
        if blocked:
            self.figures.fail(f"{len(blocked)} actions blocked: {blocked[0].get('blocked')}")
        return len(plan["actions"])

    def converge(self, limit: int) -> int | None:
        """Apply until an apply finds nothing to do; the number of applies, None past limit."""
        for n in range(1, limit + 1):
            run = self.run(*self.apply_args())
            self.check()
            if run.code == 0 and "No changes." in run.out:
                return n
        return None

    # -- invariants -------------------------------------------------------------------------

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        # One short-lived connection per query, always closed: a connection left open in this
        # process would lose its POSIX locks when another one closes, and could then read a
        # WAL that slotkeeper checkpointed and removed meanwhile.
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            return db.execute(sql).fetchall()

    def _deployments(self) -> dict[int, list[dict[str, Any]]]:
        """Ledger record id -> the fake's deployments carrying it, over every repository."""
        found: dict[int, list[dict[str, Any]]] = {}
        for e in range(self.shape.environments):
            for deployment in self.gh.deployments("acme", f"svc{e}"):
                identity = (deployment.get("payload") or {}).get("slotkeeper") or {}
                record_id = identity.get("record_id")
                if not isinstance(record_id, int):
                    self.figures.fail(f"deployment {deployment['id']} carries no record id")
                    continue
                found.setdefault(record_id, []).append(deployment)
        return found

    def check(self) -> None:
        """What must hold after any run, killed or not."""
        figures = self.figures
        figures.checks += 1
        if not self.db.exists():
            return
        [(integrity,)] = self._query("PRAGMA integrity_check")
        if integrity != "ok":
            figures.fail(f"PRAGMA integrity_check: {integrity}")
        seqs = [seq for (seq,) in self._query("SELECT seq FROM events ORDER BY seq")]
        if seqs != list(range(1, len(seqs) + 1)):
            missing = sorted(set(range(1, (seqs[-1] if seqs else 0) + 1)) - set(seqs))
            figures.fail(f"event log has a gap: missing seq {missing[:10]}")
        records = self._query(
            "SELECT id, environment, slot, status, superseded_by FROM records ORDER BY id"
        )
        ids = {row[0] for row in records}
        for record_id in self.seen_records - ids:
            figures.lost.add(f"record {record_id} disappeared from the ledger")
        self.seen_records |= ids
        by_slot: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for row in records:
            by_slot.setdefault((row[1], row[2]), []).append(row)
        for (env, slot), rows in by_slot.items():
            deployed = [r for r in rows if r[3] == "DEPLOYED"]
            if len(deployed) > 1:
                figures.duplicates.add(f"{env}/{slot}: {len(deployed)} DEPLOYED records")
            for index, row in enumerate(rows):
                if row[3] != "SUPERSEDED":
                    continue
                successor = rows[index + 1][0] if index + 1 < len(rows) else None
                if row[4] is None or row[4] != successor:
                    figures.fail(
                        f"record {row[0]} ({env}/{slot}) is SUPERSEDED by {row[4]}, "
                        f"but its successor is {successor}"
                    )
        for record_id, items in self._deployments().items():
            if len(items) > 1:
                figures.duplicates.add(f"record {record_id}: {len(items)} GitHub deployments")
            if record_id not in ids:
                figures.lost.add(f"GitHub deployment of record {record_id} not in the ledger")
        first_key: set[str] = set()
        for repository, method, status, held in self.gh.key_trace:
            if held > 0:
                first_key.add(repository)
            elif repository in first_key and repository not in self.keyless_ok:
                figures.fail(
                    f"{repository} was left without a managed deploy key "
                    f"(after {method} answered {status})"
                )
        self._collect_private_keys()

    def check_converged(self) -> None:
        """What must hold once an apply found nothing left to do."""
        figures = self.figures
        gh = self.gh
        declared = self.shape.declared(self.side)
        deployed = {
            (env, slot): (record_id, version)
            for record_id, env, slot, version in self._query(
                "SELECT id, environment, slot, artifact_version FROM records "
                "WHERE status = 'DEPLOYED'"
            )
        }
        for where, version in declared.items():
            if where not in deployed:
                figures.lost.add(f"declared slot {'/'.join(where)} has no DEPLOYED record")
            elif deployed[where][1] != version:
                figures.fail(
                    f"{'/'.join(where)} is DEPLOYED at {deployed[where][1]}, not {version}"
                )
        for where in set(deployed) - set(declared):
            figures.fail(f"{'/'.join(where)} is DEPLOYED but no longer declared")
        syncs = {
            (subject, subject_id): (status, remote_id)
            for subject, subject_id, status, remote_id in self._query(
                "SELECT subject, subject_id, status, remote_id FROM target_syncs "
                "WHERE target = 'github'"
            )
        }
        [(lineage,)] = self._query("SELECT lineage FROM ledger")
        remote = self._deployments()
        for record_id, env, slot, status in self._query(
            "SELECT id, environment, slot, status FROM records"
        ):
            sync = syncs.get(("record", record_id))
            if sync is None or sync[0] != "synced":
                figures.fail(f"record {record_id} ({env}/{slot}) is not synced: {sync}")
                continue
            items = remote.get(record_id, [])
            if not items:
                figures.lost.add(f"synced record {record_id} has no GitHub deployment")
                continue
            deployment = items[0]
            if str(deployment["id"]) != str(sync[1]):
                figures.fail(f"record {record_id}: remote id {sync[1]} != {deployment['id']}")
            if deployment["payload"]["slotkeeper"].get("lineage") not in (None, lineage):
                figures.fail(f"deployment {deployment['id']} carries another ledger lineage")
            want = "success" if status == "DEPLOYED" else "inactive"
            state = gh.latest_state(deployment["id"])
            if state != want:
                figures.fail(f"record {record_id} is {status} but its deployment is {state}")
        keys = self._query(
            "SELECT id, repository, title, status, public_key, read_only, secret_file "
            "FROM deploy_keys"
        )
        active: dict[str, set[str]] = {}
        for key_id, repository, title, status, public_key, read_only, secret_file in keys:
            blob = key_blob(public_key)
            held = {k["key"] for k in gh.managed_keys(repository)}
            if status == "ACTIVE":
                active.setdefault(repository, set()).add(blob)
                if blob not in held:
                    figures.fail(f"active key {repository}/{title} is not on GitHub")
                if syncs.get(("key", key_id), ("missing",))[0] != "synced":
                    figures.fail(f"active key {repository}/{title} is not synced")
                self._check_secret(repository, title, public_key, secret_file)
                wanted_read_only = self.side == "A"
                if bool(read_only) != wanted_read_only:
                    figures.fail(f"active key {repository}/{title} has read_only={read_only}")
            elif blob in held:
                figures.fail(f"{status} key {key_id} of {repository} is still on GitHub")
        for e in range(self.shape.environments):
            repository = f"acme/svc{e}"
            for key in gh.managed_keys(repository):
                if key["key"] not in active.get(repository, set()):
                    figures.duplicates.add(f"{repository}: managed key {key['id']} not in ledger")
        for record_id in remote.keys() - {r for (r,) in self._query("SELECT id FROM records")}:
            figures.lost.add(f"GitHub deployment of record {record_id} not in the ledger")

    def _check_secret(self, repository: str, title: str, public_key: str, name: str) -> None:
        path = self.secrets / name
        if not path.is_file():
            self.figures.fail(f"secret file of {repository}/{title} is missing")
            return
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != 0o600:
            self.figures.fail(f"secret file of {repository}/{title} has mode {mode:o}")
        private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        derived = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        if key_blob(derived.decode()) != key_blob(public_key):
            self.figures.fail(f"secret file of {repository}/{title} holds another key")

    def _collect_private_keys(self) -> None:
        """Remember what identifies every private key written so far (for the leak scan)."""
        if not self.secrets.exists():
            return
        for path in self.secrets.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if b"PRIVATE KEY" not in data:
                continue
            lines = [line.strip() for line in data.decode(errors="replace").splitlines()]
            body = [line for line in lines if line and not line.startswith("-----")]
            # Lines past the second hold the private half; the first two only the fixed
            # header and the public key.
            self.private_markers.update(line for line in body[2:] if len(line) >= 60)
            try:
                private = serialization.load_ssh_private_key(data, password=None)
            except ValueError:
                continue
            if isinstance(private, Ed25519PrivateKey):
                raw = private.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
                self.private_markers.add(raw.hex())

    def scan_for_leaks(self) -> None:
        """The token and any private key in outputs, the ledger files or request bodies."""
        self._collect_private_keys()
        places: list[tuple[str, str]] = [
            (f"output of run {i + 1}", text) for i, text in enumerate(self.outputs)
        ]
        for path in sorted(self.db.parent.glob("state.db*")):
            places.append((path.name, path.read_bytes().decode("latin-1")))
        bodies = "\n".join(r.body.decode("latin-1") for r in self.gh.requests)
        places.append(("request bodies sent to GitHub", bodies))
        for where, text in places:
            if TOKEN in text:
                self.figures.leaks.add(f"the token in {where}")
            if "PRIVATE KEY" in text:
                self.figures.leaks.add(f"a PEM private key header in {where}")
            for marker in self.private_markers:
                if marker in text:
                    self.figures.leaks.add(f"private key material in {where}")
                    break
        self.outputs.clear()


# -- the scenarios --------------------------------------------------------------------------


def crash_scenario(
    root: Path,
    shape: Shape,
    *,
    kills: int,
    seed: int,
    figures: Figures,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Kill ``kills`` applies of a large change set at seeded random writes; re-apply each time
    until converged; check every invariant after every run."""
    rng = random.Random(seed)
    with RecordingGitHub(seed=seed) as gh:
        harness = Harness(root, gh, shape, figures, say=say)
        harness.declare("A")
        if harness.converge(limit=5) is None:
            figures.fail("revision A did not converge")
        harness.check_converged()
        # One clean pass each way: how many writes each change set makes, and its size.
        writes: dict[str, int] = {}
        for side in ("B", "A"):
            harness.declare(side)
            figures.change_set_actions.append(harness.count_actions())
            before = gh.write_count
            if harness.converge(limit=5) is None:
                figures.fail(f"the clean change set to {side} did not converge")
            writes[side] = gh.write_count - before
            harness.check_converged()
            say(f"change set to {side}: {writes[side]} writes")
        side = "B"
        round_ = 0
        while figures.first_kills < kills and round_ < kills * 2:
            round_ += 1
            harness.declare(side)
            at = rng.randint(1, max(1, writes[side] - 3))
            killed = harness.kill_after(at)
            harness.check()
            if killed:
                figures.first_kills += 1
            else:
                figures.fail(f"round {round_}: the apply finished before write {at}")
            if killed and harness.plan_code() != 2:
                figures.fail(f"round {round_}: the plan after a kill at write {at} had no work")
            if killed and rng.random() < 0.3:  # sometimes kill the first re-apply as well
                harness.kill_after(rng.randint(1, 25))
                harness.check()
            applied = harness.converge(limit=5)
            if applied is None:
                figures.fail(f"round {round_}: no convergence within 5 applies after a kill")
            harness.check_converged()
            if harness.plan_code() != 0:
                figures.fail(f"round {round_}: the plan is not empty after convergence")
            harness.scan_for_leaks()
            gh.reset_log()
            say(
                f"round {round_}: killed at write {at} of {writes[side]} -> {side}, "
                f"converged in {applied} applies; kills so far {figures.kills}"
            )
            side = "A" if side == "B" else "B"
        figures.faults.update(gh.faults)


def faults_scenario(
    root: Path,
    shape: Shape,
    *,
    seed: int,
    figures: Figures,
    secondary_limit: tuple[int, float] = (20, 2.0),
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Revision A then the change set to B with every fault knob on; count the reconciles.
    Each revision's first writes get one fault of every random kind, in a seeded order, before
    the rates draw the rest: every kind of ``FAULT_KINDS`` is injected, or the run fails."""
    rng = random.Random(seed)
    with RecordingGitHub(seed=seed) as gh:
        target = {"timeoutSeconds": 1, "maxWaitSeconds": 10}
        harness = Harness(root, gh, shape, figures, target=target, say=say)

        def knobs(on: bool) -> None:
            gh.error_rate = 0.10 if on else 0.0
            gh.stall_rate = 0.05 if on else 0.0
            gh.stall_seconds = 1.5
            gh.drop_rate = 0.02 if on else 0.0
            gh.knob_methods = set(ALL_METHODS)
            gh.secondary_limit = secondary_limit if on else None
            gh.forced = (
                rng.sample(sorted(RANDOM_FAULT_KNOBS), k=len(RANDOM_FAULT_KNOBS)) if on else []
            )

        for side in ("A", "B"):
            harness.declare(side)
            if side == "B":
                figures.change_set_actions.append(harness.count_actions())
            knobs(True)
            gh.exhaust_at = gh.write_count + 5
            started = time.monotonic()
            reconciles = harness.converge(limit=MAX_RECONCILES)
            knobs(False)
            if reconciles is None:
                figures.fail(f"revision {side} did not converge within {MAX_RECONCILES} reconciles")
            else:
                figures.reconciles.append(reconciles)
            if harness.plan_code() != 0:
                figures.fail(f"revision {side}: the plan is not empty once faults stopped")
            harness.check()
            harness.check_converged()
            harness.scan_for_leaks()
            say(
                f"faults, revision {side}: {reconciles} reconciles in "
                f"{time.monotonic() - started:.1f}s"
            )
        figures.faults.update(gh.faults)
        check_fault_kinds(gh.faults, figures)


def check_fault_kinds(faults: Counter[str], figures: Figures) -> None:
    """A faults run that never injected some kind of ``FAULT_KINDS`` proved nothing about it:
    a failure naming the kinds missing."""
    missing = sorted(kind for kind in FAULT_KINDS if not faults[kind])
    if missing:
        figures.fail(f"no fault of kind {', '.join(missing)} was injected: {dict(faults)}")


# -- the operations corpus -------------------------------------------------------------------


class Operations:
    """Revision A of ``shape`` written one file per environment (the targets to the operator's
    targets file), so that one file can break alone, and the operations operators actually do,
    each followed by the invariants it must keep: nothing retired that is still wanted, every
    ACTIVE key's private file present and holding its key, no repository without a managed
    key."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.documents = harness.shape.documents("A", harness.gh.base_url)
        self.extra: list[dict[str, Any]] = []

    def write(self, *, skip: tuple[str, ...] = (), message: str = "operation") -> None:
        root = self.h.root / "m"
        for old in root.glob("*.yaml"):
            old.unlink()
        root.mkdir(exist_ok=True)
        targets = []
        for document in [*self.documents, *self.extra]:
            name = document["metadata"]["name"]
            if name in skip:
                continue
            if document["kind"] == "Target":
                targets.append(document)
            else:
                (root / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        self.h.write_targets(targets)
        self.h._git("add", "-A")
        self.h._git("commit", "-q", "--allow-empty", "-m", message)

    def environment(self, name: str) -> dict[str, Any]:
        return next(d for d in self.documents if d["metadata"]["name"] == name)

    def apply(self, *extra: str) -> Run:
        run = self.h.run(*self.h.apply_args(), *extra)
        self.h.check()
        return run

    def converge(self, what: str) -> None:
        run = Run(1, "", "")
        for _ in range(5):
            run = self.apply()
            if run.code == 0 and "No changes." in run.out:
                self.keys_hold()
                return
        self.h.figures.fail(f"{what}: no convergence within 5 applies: {run.out[-1500:]!r}")

    def deployed(self) -> dict[tuple[str, str], str]:
        return {
            (env, slot): version
            for env, slot, version in self.h._query(
                "SELECT environment, slot, artifact_version FROM records WHERE status = 'DEPLOYED'"
            )
        }

    def active_keys(self) -> set[tuple[str, str]]:
        return {
            (repository, title)
            for repository, title in self.h._query(
                "SELECT repository, title FROM deploy_keys WHERE status = 'ACTIVE'"
            )
        }

    def keys_hold(self) -> None:
        """Every ACTIVE key has its private file, holding that key (a file in use is never
        deleted; a lost one is repaired)."""
        self.h.figures.checks += 1
        for repository, title, public_key, secret_file in self.h._query(
            "SELECT repository, title, public_key, secret_file FROM deploy_keys "
            "WHERE status = 'ACTIVE'"
        ):
            self.h._check_secret(repository, title, public_key, secret_file)

    def unchanged(self, what: str, deployed: dict[tuple[str, str], str], keys: set[Any]) -> None:
        self.h.figures.checks += 1
        if self.deployed() != deployed:
            lost = sorted(set(deployed) - set(self.deployed()))
            self.h.figures.fail(f"{what}: records changed (retired: {lost[:5]})")
        if self.active_keys() != keys:
            self.h.figures.fail(f"{what}: keys changed: {sorted(keys ^ self.active_keys())}")
        self.keys_hold()


def operations_scenario(
    root: Path,
    shape: Shape,
    *,
    seed: int,
    figures: Figures,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Restart with a broken file, key renames and swaps, an empty checkout, a target removed
    with its environment, a saved plan across a freeze, a target down during an apply."""
    with RecordingGitHub(seed=seed) as gh:
        harness = Harness(root, gh, shape, figures, say=say)
        for e in range(shape.environments):
            for version in ("v7", "v9"):  # the versions the operations below deploy
                gh.add_tag(f"acme/svc{e}", version)
        ops = Operations(harness)
        first, second, last = "env0", "env1", f"env{shape.environments - 1}"
        # The last environment is mirrored through a target of its own.
        ops.extra = [{**ops.documents[-1], "metadata": {"name": "spare"}}]
        ops.environment(last)["spec"]["targets"] = ["spare"]
        ops.write(message="revision A")
        ops.converge("revision A")

        # A fresh process (`run --once`) over a broken file retires nothing and exits 1.
        before, keys = ops.deployed(), ops.active_keys()
        broken = root / "m" / f"{second}.yaml"
        broken.write_text(broken.read_text().replace("version:", "versoin:", 1))
        (root / "m" / f"{first}.yaml").unlink()  # and a file deleted beside it
        harness._git("add", "-A")
        harness._git("commit", "-q", "-m", "a typo")
        run = harness.run("run", "--once", "-m", "m", "--allow-mass-decommission")
        harness.check()
        if run.code != 1:
            figures.fail(f"run --once over a broken file exited {run.code}")
        ops.unchanged("restart with a broken file", before, keys)
        ops.write(message="fixed")
        ops.converge("after the broken file")
        say("operations: broken file held")

        # Key renamed, keeping its file; then two keys swap their files.
        key = ops.environment(first)["spec"]["deployKeys"][0]
        key["title"] = "deployer-renamed"
        ops.write(message="rename a key")
        ops.converge("key rename")
        one = ops.environment(first)["spec"]["deployKeys"][0]["secret"]
        two = ops.environment(second)["spec"]["deployKeys"][0]["secret"]
        one["file"], two["file"] = two["file"], one["file"]
        ops.write(message="swap key files")
        ops.converge("key swap")
        say("operations: key rename and swap")

        # An empty checkout removes nothing without --allow-empty.
        before, keys = ops.deployed(), ops.active_keys()
        ops.write(skip=tuple(d["metadata"]["name"] for d in ops.documents), message="empty")
        ops.apply()
        ops.unchanged("empty checkout", before, keys)
        ops.write(message="restored")
        ops.converge("after the empty checkout")
        say("operations: empty checkout held")

        # An environment removed while the operator removes the only target it used.
        before, keys = ops.deployed(), ops.active_keys()
        ops.write(skip=(last, "spare"), message="environment and target removed")
        ops.apply()
        ops.unchanged("environment removed with its target", before, keys)
        ops.write(skip=(last,), message="the target restored")
        harness.keyless_ok.add(f"acme/svc{shape.environments - 1}")  # its key goes, as meant
        ops.converge("target restored")
        if any(env == last for env, _ in ops.deployed()):
            figures.fail("the removed environment was not decommissioned once its target returned")
        ops.write(message="environment back")
        ops.converge("environment back")
        # From here on its new key must never go missing again: forget the meant gap.
        gone = f"acme/svc{shape.environments - 1}"
        gh.key_trace = [entry for entry in gh.key_trace if entry[0] != gone]
        harness.keyless_ok.discard(gone)
        say("operations: target removed with its environment held")

        # A plan saved before a freeze is not applied during it.
        before = ops.deployed()
        slots = ops.environment(first)["spec"]["slots"]
        for slot in slots.values():
            slot["artifact"]["version"] = "v9"
        ops.write(message="v9")
        harness.run("plan", "-m", "m", "--out", "saved.plan")
        ops.environment(first)["spec"]["freeze"] = [
            {"start": "2000-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"}
        ]
        ops.write(message="freeze")
        harness.run("apply", "saved.plan")
        harness.check()
        frozen = {w: v for w, v in ops.deployed().items() if w[0] == first}
        if any(version == "v9" for version in frozen.values()):
            figures.fail("a saved plan deployed into a frozen environment")
        del ops.environment(first)["spec"]["freeze"]
        ops.write(message="thaw")
        ops.converge("after the freeze")
        say("operations: saved plan across a freeze held")

        # The target is down during an apply: the ledger still records every change.
        for slot in ops.environment(second)["spec"]["slots"].values():
            slot["artifact"]["version"] = "v7"
        ops.write(message="v7 while GitHub is down")
        gh.error_rate, gh.knob_methods = 1.0, set(ALL_METHODS)
        run = ops.apply()
        gh.error_rate = 0.0
        if run.code != 1:
            figures.fail(f"an apply with the target down exited {run.code}")
        recorded = {w: v for w, v in ops.deployed().items() if w[0] == second}
        if set(recorded.values()) != {"v7"}:
            figures.fail(f"with the target down the ledger did not record: {recorded}")
        ops.converge("target back")
        harness.scan_for_leaks()
        say("operations: target down contained")
        figures.faults.update(gh.faults)
