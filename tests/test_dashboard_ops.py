"""The dashboard's day-two operations view: what awaits approval and the command that lets it
through, the held action on a slot's page, the version a held slot waits to deploy (a first
deploy too), the environments' order and badges, and links to the repositories.

Ledgers are built by applying manifests with the real CLI; the documents are read through the
view functions and the pages through `slotkeeper ui` over HTTP or the dashboard's own routes."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slotkeeper.dashboard.links import commit_url, https_base, ref_url, web_url
from slotkeeper.dashboard.pages import Dashboard
from slotkeeper.dashboard.view import overview, slot_history
from slotkeeper.ledger import Ledger, open_ledger
from slotkeeper.manifests import load_manifests
from slotkeeper.web.app import answer
from tests.daemon_support import Ui
from tests.helpers import DIGEST_B, Run, environment, image, write_manifests
from tests.test_dashboard import cells_of

Sk = Callable[..., Run]
STATE = "sqlite:///.slotkeeper/state.db"
FOREVER = [{"start": "2000-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"}]
FOUR = {
    "api": image(),
    "web": image("ghcr.io/acme/web"),
    "db": image("ghcr.io/acme/db"),
    "jobs": image("ghcr.io/acme/jobs"),
}
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def opened(workdir: Path) -> Iterator[Callable[[], Ledger]]:
    """Opens the test's SQLite ledger (after the CLI has written it), closed at the end."""
    ledgers: list[Ledger] = []

    def open_() -> Ledger:
        ledgers.append(open_ledger(STATE, now=datetime.now(UTC)))
        return ledgers[-1]

    yield open_
    for ledger in ledgers:
        ledger.close()


def cells(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The matrix cells of an overview, by (environment, slot)."""
    return {
        (cell["environment"], cell["slot"]): cell
        for row in document["matrix"]["rows"]
        for cell in row["cells"]
        if cell
    }


def section(page: str, ident: str) -> str:
    """The HTML of the element with ``id="ident"`` up to the end of its section."""
    found = re.search(rf'<section[^>]*id="{ident}".*?</section>', page, re.S)
    assert found, ident
    return found.group(0)


def headers(page: str) -> list[tuple[str, str]]:
    """The matrix's column headers: (environment, their text with tags removed)."""
    return [
        (name, " ".join(re.sub(r"<[^>]+>", " ", text).split()))
        for name, text in re.findall(
            r'<th scope="col" data-environment="([^"]+)">(.*?)</th>', page, re.S
        )
    ]


def test_held_removals_await_approval_on_the_matrix_and_the_slot_page(
    sk: Sk, workdir: Path, ui: Callable[..., Ui]
) -> None:
    """Two decommissions in a protected environment await approval: /status lists them with
    their commands, the matrix page lists them in a counted panel with each command in <code>
    and marks their cells blocked and awaiting approval; each slot's page and JSON show the
    held action, and a rejection is shown with the command that lets it through after all."""
    write_manifests(workdir / "m", environment("production", FOUR, protected=True))
    assert sk("apply", "--yes", "-m", "m").code == 0
    kept = {"api": FOUR["api"], "jobs": FOUR["jobs"]}
    write_manifests(workdir / "m", environment("production", kept, protected=True))
    assert sk("apply", "--yes", "-m", "m").code == 0

    server = ui("-m", "m")
    status = server.get("/status").json()
    awaiting = {item["subject"]: item for item in status["awaiting_approval"]}
    assert set(awaiting) == {"web", "db"}
    for item in awaiting.values():
        assert item["command"] == f"slotkeeper approve {item['action_id']}"
        assert item["action"] == "decommission" and "is protected" in item["blocked"]

    page = server.get("/").text
    panel = section(page, "awaiting-approval")
    assert "Awaiting approval (2)" in panel
    for item in awaiting.values():
        assert f"<code>{item['command']}</code>" in panel
        assert f'href="/slots/production/{item["subject"]}"' in panel
    shown = cells_of(page).cells
    for slot in ("web", "db"):
        assert shown["production", slot]["data-state"] == "blocked"
        assert shown["production", slot]["data-awaiting"] == "approval"
        assert cells(status)["production", slot]["awaiting_approval"] is True
    assert "data-awaiting" not in shown["production", "api"]
    assert 'title="awaiting approval: slotkeeper approve' in page
    assert "<script>" not in page  # no inline script: the matrix's one is its own file

    web = server.get("/status/slots/production/web").json()
    assert web["pending"] == {
        "action": "decommission",
        "action_id": awaiting["web"]["action_id"],
        "reason": "slot removed from manifests",
        "blocked": awaiting["web"]["blocked"],
        "approval": "awaiting",
        "command": awaiting["web"]["command"],
        "at": awaiting["web"]["at"],
    }
    assert server.get("/status/slots/production/api").json()["pending"] is None
    held = section(server.get("/slots/production/web").text, "pending")
    assert f"<code>{awaiting['web']['command']}</code>" in held
    assert "decommission" in held and "awaiting approval" in held and "is protected" in held
    assert 'id="pending"' not in server.get("/slots/production/api").text
    server.stop()

    assert sk("reject", "production/web", "--reason", "keep it").code == 0
    assert sk("apply", "--yes", "-m", "m").code == 0
    server = ui("-m", "m")
    assert [i["subject"] for i in server.get("/status").json()["awaiting_approval"]] == ["db"]
    assert "Awaiting approval (1)" in server.get("/").text
    rejected = server.get("/status/slots/production/web").json()["pending"]
    assert rejected["approval"] == "rejected" and "keep it" in rejected["blocked"]
    held = section(server.get("/slots/production/web").text, "pending")
    assert 'data-approval="rejected"' in held and ">rejected<" in held
    assert f"<code>{rejected['command']}</code>" in held
    # nothing awaits a person: no panel at all
    assert sk("apply", "--yes", "-m", "m", "--allow-decommission").code == 0
    server = ui("-m", "m")
    assert server.get("/status").json()["awaiting_approval"] == []
    assert 'id="awaiting-approval"' not in server.get("/").text


def test_a_held_slot_shows_the_version_it_waits_to_deploy(
    sk: Sk, workdir: Path, ui: Callable[..., Ui], opened: Callable[[], Ledger]
) -> None:
    """In a frozen environment a changed slot stays at its recorded version and shows the one it
    waits for (a digest when there is no version), a suspended slot too, and a new slot whose
    first deploy is held gets a cell with no version; without the manifests the ledger's held
    actions still show (blocked), but what they wait to deploy is unknown."""
    write_manifests(
        workdir / "m",
        environment("production", {"api": image(version="v1"), "web": image("ghcr.io/w")}),
        environment("staging", {"api": image(version="v1")}),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    staging = environment("staging", {"api": image(version="v2")})
    staging["spec"]["slots"]["api"]["suspend"] = True
    write_manifests(
        workdir / "m",
        environment(
            "production",
            {
                "api": image(version="v2"),
                "web": image("ghcr.io/w", version=None, digest=DIGEST_B),
                "jobs": image("ghcr.io/acme/jobs", "n1"),
            },
            freeze=FOREVER,
        ),
        staging,
    )
    assert sk("apply", "--yes", "-m", "m").code == 0

    ledger = opened()
    desired = load_manifests(workdir / "m")
    known = overview(ledger, now=datetime.now(UTC), desired=desired)
    shown = cells(known)
    api = shown["production", "api"]
    assert (api["state"], api["version"], api["waiting"]) == (
        "frozen",
        "v1",
        {"version": "v2", "digest": None},
    )
    assert api["awaiting_approval"] is True  # an approval that overrides the freeze would do
    assert shown["production", "web"]["waiting"] == {"version": None, "digest": "b" * 12}
    assert shown["staging", "api"]["state"] == "suspended"
    assert shown["staging", "api"]["waiting"] == {"version": "v2", "digest": None}
    assert shown["staging", "api"]["awaiting_approval"] is False
    jobs = shown["production", "jobs"]
    assert {k: jobs[k] for k in ("record_id", "status", "state", "version", "artifact")} == {
        "record_id": None,
        "status": None,
        "state": "frozen",
        "version": None,
        "artifact": "ghcr.io/acme/jobs",
    }
    assert jobs["waiting"] == {"version": "n1", "digest": None}
    assert jobs["blocked"]["reason"] == "new slot" and jobs["awaiting_approval"] is True
    assert known["states"]["frozen"] == 3 and known["states"]["suspended"] == 1

    alone = cells(overview(ledger, now=datetime.now(UTC)))
    assert alone["production", "api"]["state"] == "blocked"
    assert alone["production", "jobs"]["state"] == "blocked"
    assert all(cell["waiting"] is None for cell in alone.values())
    first = slot_history(ledger, "production", "jobs")
    assert first is not None and first["records"] == []
    assert first["pending"]["action"] == "deploy" and first["pending"]["approval"] == "awaiting"
    assert slot_history(ledger, "production", "nothing") is None

    server = ui("-m", "m")
    page = server.get("/").text
    on_page = cells_of(page).cells
    assert on_page["production", "api"]["data-version"] == "v1"
    assert on_page["production", "api"]["data-waiting"] == "v2"
    assert on_page["production", "web"]["data-waiting"] == "bbbbbbb"
    assert on_page["production", "jobs"]["data-version"] == ""
    assert on_page["production", "jobs"]["data-state"] == "frozen"
    assert (
        '<span class="waiting">→ v2</span>' in page and '<span class="waiting">→ n1</span>' in page
    )
    assert re.search(r'data-slot="jobs".*?<span class="version">—</span>', page, re.S)
    new_slot = server.get("/slots/production/jobs")
    assert new_slot.status_code == 200
    held = section(new_slot.text, "pending")
    assert "new slot" in held and "--override-freeze</code>" in held
    assert 'id="timeline"' not in new_slot.text


def test_in_a_freeze_only_what_needs_a_person_anyway_shows_blocked(
    sk: Sk, workdir: Path, opened: Callable[[], Ledger]
) -> None:
    """In a frozen protected environment both held actions await approval: a deploy the freeze
    alone holds shows frozen (the window ending lets it through too), a decommission the
    protection holds as well shows blocked; both are marked awaiting approval."""
    three = {"api": image(), "web": image("ghcr.io/acme/web"), "db": image("ghcr.io/acme/db")}
    write_manifests(workdir / "m", environment("production", three, protected=True))
    assert sk("apply", "--yes", "-m", "m").code == 0
    changed = {"api": image(version="v2"), "web": three["web"]}
    write_manifests(
        workdir / "m", environment("production", changed, protected=True, freeze=FOREVER)
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    ledger = opened()
    desired = load_manifests(workdir / "m")
    shown = cells(overview(ledger, now=datetime.now(UTC), desired=desired))
    assert {slot: shown["production", slot]["state"] for slot in three} == {
        "api": "frozen",
        "web": "frozen",
        "db": "blocked",
    }
    assert shown["production", "api"]["awaiting_approval"] is True
    assert shown["production", "db"]["awaiting_approval"] is True
    assert shown["production", "web"]["awaiting_approval"] is False


def test_columns_follow_the_order_and_carry_badges(
    sk: Sk, workdir: Path, opened: Callable[[], Ledger]
) -> None:
    """Without the manifests, production environments come last, each group by name, with the
    production and protected badges the ledger remembers; with them, by their order first,
    the badges as they declare them. matrix.environments stays the list of names."""
    write_manifests(
        workdir / "m",
        environment("production", {"api": image()}, production=True, protected=True),
        environment("canary", {"api": image()}, production=True),
        environment("staging", {"api": image()}, protected=True),
        environment("dev", {"api": image()}),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    ledger = opened()
    matrix = overview(ledger, now=datetime.now(UTC))["matrix"]
    assert matrix["environments"] == ["dev", "staging", "canary", "production"]
    assert matrix["columns"] == [
        {"name": "dev", "production": False, "protected": False, "order": None},
        {"name": "staging", "production": False, "protected": True, "order": None},
        {"name": "canary", "production": True, "protected": False, "order": None},
        {"name": "production", "production": True, "protected": True, "order": None},
    ]
    page = answer(Dashboard(ledger, clock=lambda: datetime.now(UTC)), "/").body.decode()
    assert headers(page) == [
        ("dev", "dev"),
        ("staging", "staging protected"),
        ("canary", "canary production"),
        ("production", "production production protected"),
    ]

    write_manifests(
        workdir / "o",
        environment("production", {"api": image()}, production=True, protected=True, order=30),
        environment("canary", {"api": image()}, production=True),
        environment("staging", {"api": image()}, order=20),
        environment("dev", {"api": image()}, order=10),
        environment("qa", {}, order=15),
    )
    desired = load_manifests(workdir / "o")
    matrix = overview(ledger, now=datetime.now(UTC), desired=desired)["matrix"]
    assert matrix["environments"] == ["dev", "qa", "staging", "production", "canary"]
    assert [(c["name"], c["order"], c["protected"]) for c in matrix["columns"]] == [
        ("dev", 10, False),
        ("qa", 15, False),
        ("staging", 20, False),  # the manifests say so now, whatever the ledger remembers
        ("production", 30, True),
        ("canary", None, False),
    ]
    assert [len(row["cells"]) for row in matrix["rows"]] == [5]
    assert matrix["rows"][0]["cells"][1] is None  # qa holds no api
    dashboard = Dashboard(ledger, clock=lambda: datetime.now(UTC), desired=lambda: desired)
    page = answer(dashboard, "/").body.decode()
    assert [name for name, _ in headers(page)] == matrix["environments"]
    assert [k for k, _ in cells_of(page).cells] == ["dev", "staging", "production", "canary"]


def records_of(dashboard: Dashboard, environment_name: str, slot: str) -> list[dict[str, Any]]:
    """The records a slot's document shows (the slot must be known)."""
    found = dashboard.slot(environment_name, slot)
    assert found is not None, (environment_name, slot)
    return list(found["records"])


def git_manifests(root: Path) -> str:
    """Commit the manifests at ``root`` in a new git repository; the commit's sha."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    who = ["-c", "user.name=t", "-c", "user.email=t@x"]
    subprocess.run(["git", "-C", str(root), *who, "commit", "-qm", "deploy api"], check=True)
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def test_refs_and_revisions_link_to_their_repositories(
    sk: Sk, workdir: Path, opened: Callable[[], Ledger]
) -> None:
    """A record's ref links to the environment's GitHub repository (a commit for a full sha, a
    tree for a branch), and no link without a repository; the manifests revision links to the
    manifests repository's page when one is given, never from a URL with credentials, and only
    to https pages; every link says rel="noopener noreferrer"."""
    write_manifests(
        workdir / "repo",
        environment(
            "production", {"api": image(), "web": image("ghcr.io/w")}, repository="acme/web"
        ),
        environment("staging", {"api": image()}),
    )
    path = workdir / "repo" / "envs.yaml"
    text = path.read_text()
    text = text.replace("    api:\n      artifact:", "    api:\n      ref: main\n      artifact:")
    text = text.replace(
        "    web:\n      artifact:", f"    web:\n      ref: '{SHA}'\n      artifact:"
    )
    path.write_text(text)
    sha = git_manifests(workdir / "repo")
    assert sk("apply", "--yes", "-m", "repo").code == 0
    ledger = opened()

    dashboard = Dashboard(
        ledger, clock=lambda: datetime.now(UTC), manifests_url="git@github.com:acme/deploy.git"
    )
    [api] = records_of(dashboard, "production", "api")
    assert api["ref_url"] == "https://github.com/acme/web/tree/main"
    assert api["revision_url"] == f"https://github.com/acme/deploy/commit/{sha}"
    [web] = records_of(dashboard, "production", "web")
    assert web["ref_url"] == f"https://github.com/acme/web/commit/{SHA}"
    [staged] = records_of(dashboard, "staging", "api")
    assert staged["ref"] == "main" and staged["ref_url"] is None  # no repository, no link

    page = answer(dashboard, "/slots/production/api").body.decode()
    assert (
        '<a class="out ref" href="https://github.com/acme/web/tree/main" '
        'rel="noopener noreferrer">main</a>'
    ) in page
    assert f'href="https://github.com/acme/deploy/commit/{sha}" rel="noopener noreferrer"' in page
    staging_page = answer(dashboard, "/slots/staging/api").body.decode()
    assert '<span class="ref">main</span>' in staging_page
    assert "tree/main" not in staging_page
    status = dashboard.status()
    assert status["manifests_url"] == "https://github.com/acme/deploy"
    assert status["last_revision_url"] == f"https://github.com/acme/deploy/commit/{sha}"
    matrix = answer(dashboard, "/").body.decode()
    assert f'href="https://github.com/acme/deploy/commit/{sha}" rel="noopener noreferrer"' in (
        section(matrix, "last-reconcile")
    )

    # The manifests name another repository now: the links follow them.
    moved = load_manifests(workdir / "repo")
    assert moved.environments["production"].repository == "acme/web"
    text = path.read_text().replace("repository: acme/web", "repository: acme/site")
    path.write_text(text)
    moved = load_manifests(workdir / "repo")
    found = slot_history(ledger, "production", "api", desired=moved)
    assert found is not None and found["records"][0]["ref_url"].startswith(
        "https://github.com/acme/site/"
    )

    for unsafe in (
        "https://x-access-token:s3cr3t-tok@github.com/acme/deploy.git",
        "https://s3cr3t-tok@github.com/acme/deploy",
        "http://github.com/acme/deploy",
        "/srv/git/deploy.git",
    ):
        plain = Dashboard(ledger, clock=lambda: datetime.now(UTC), manifests_url=unsafe)
        assert plain.status()["manifests_url"] is None
        assert records_of(plain, "production", "api")[0]["revision_url"] is None
        for where in ("/", "/slots/production/api", "/status", "/status/slots/production/api"):
            body = answer(plain, where).body.decode()
            assert "s3cr3t-tok" not in body and "github.com/acme/deploy" not in body, where


@pytest.mark.parametrize(
    ("remote", "page"),
    [
        ("https://github.com/acme/deploy.git", "https://github.com/acme/deploy"),
        ("https://github.com/acme/deploy", "https://github.com/acme/deploy"),
        ("git@github.com:acme/deploy.git", "https://github.com/acme/deploy"),
        ("github.com:acme/deploy", "https://github.com/acme/deploy"),
        ("ssh://git@ghe.example.com/acme/deploy.git", "https://ghe.example.com/acme/deploy"),
        ("ssh://git@ghe.example.com:2222/acme/deploy.git", "https://ghe.example.com/acme/deploy"),
        (
            "https://git.example.com:8443/group/sub/deploy.git/",
            "https://git.example.com:8443/group/sub/deploy",
        ),
        ("  https://GitHub.com/acme/deploy.git\n", "https://github.com/acme/deploy"),
        ("http://git.internal/acme/deploy.git", "http://git.internal/acme/deploy"),
        ("https://x-access-token:SECRET@github.com/acme/deploy.git", None),
        ("https://SECRET@github.com/acme/deploy.git", None),
        ("https://:SECRET@github.com/acme/deploy.git", None),
        ("ssh://git:SECRET@github.com/acme/deploy.git", None),
        ("git:SECRET@github.com:acme/deploy.git", None),
        ("https://github.com/acme/deploy.git?access_token=SECRET", None),
        ("https://github.com/acme/deploy.git#SECRET", None),
        ("https://github.com/acme/deploy?", None),
        ("file:///srv/git/deploy.git", None),
        ("/srv/git/deploy.git", None),
        ("./deploy", None),
        ("../acme/deploy.git", None),
        ("C:/repos/acme/deploy", None),
        ("C:\\repos\\acme\\deploy", None),
        ("git://github.com/acme/deploy.git", None),
        ("ftp://github.com/acme/deploy.git", None),
        ("javascript:alert(1)//acme/deploy", None),
        ("https://github.com/deploy.git", None),
        ("https://github.com/acme/../deploy", None),
        ("https://github.com/acme/de%2Fploy", None),
        ("https://github.com/acme/<b>", None),
        ('https://github.com/acme/"x', None),
        ("https://github.com:notaport/acme/deploy", None),
        ("https://[::1]/acme/deploy", None),
        ("https:///acme/deploy", None),
        ("", None),
    ],
)
def test_web_url_turns_a_remote_into_its_page_or_refuses(remote: str, page: str | None) -> None:
    """https, scp-like and ssh remotes give the repository's page (an ssh port dropped, an https
    one kept); credentials, queries, fragments, paths, other schemes and odd paths give None."""
    assert web_url(remote) == page


def test_link_helpers_build_only_what_they_checked() -> None:
    """A full sha links to the commit, a branch or tag to its tree (quoted); no repository, no
    ref or a malformed repository give no link; revisions link only as full commit ids and
    only under an https page."""
    assert ref_url("acme/web", SHA.upper()) == f"https://github.com/acme/web/commit/{SHA}"
    assert ref_url("acme/web", "release/1.2") == "https://github.com/acme/web/tree/release/1.2"
    assert ref_url("acme/web", "refs/tags/v1.0") == "https://github.com/acme/web/tree/v1.0"
    assert ref_url("acme/web", "a#b?c") == "https://github.com/acme/web/tree/a%23b%3Fc"
    assert ref_url("acme/web", SHA[:12]) == f"https://github.com/acme/web/tree/{SHA[:12]}"
    assert ref_url(None, "main") is None and ref_url("acme/web", None) is None
    for repository in ("acme", "acme/web/x", "../web", "acme/..", "a b/c", "evil.com@x/y"):
        assert ref_url(repository, "main") is None, repository
    assert ref_url("acme/web", "../../x") is None
    assert commit_url("https://h/a/b", SHA) == f"https://h/a/b/commit/{SHA}"
    assert commit_url("https://h/a/b", SHA[:12]) is None and commit_url(None, SHA) is None
    assert https_base("git@github.com:acme/deploy.git") == "https://github.com/acme/deploy"
    assert https_base("http://git.internal/acme/deploy") is None and https_base(None) is None
