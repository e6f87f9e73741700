"""The read-only dashboard over HTTP: `slotkeeper ui` and the daemon's `/`; the pages and
`/status` agree, pages escape what they show, and nothing secret or remote is in them."""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from tests.daemon_support import Running, Ui, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import Run, deploy_key, environment, image, write_manifests_and_targets
from tests.test_github_target import TOKEN, target

Sk = Callable[..., Run]


class Cells(HTMLParser):
    """The matrix cells of a page: (environment, slot) -> their data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], dict[str, str]] = {}
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "td" and "data-slot" in found:
            self.cells[found["data-environment"], found["data-slot"]] = found
        for name in ("src", "href"):
            if name in found:
                self.sources.append(found[name])


def cells_of(html: str) -> Cells:
    parser = Cells()
    parser.feed(html)
    return parser


def two_revisions(sk: Sk, workdir: Path) -> None:
    """production: api v1 then v2 (a supersede), worker removed (blocked: protected);
    staging: api v1, chart removed in the second revision (decommissioned)."""
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"api": image(version="v1"), "worker": image("ghcr.io/acme/worker", "w1")},
            protected=True,
            deployKeys=[deploy_key("prod-deployer", rotateAfter="30d")],
        ),
        environment("staging", {"api": image(version="v1"), "chart": image("ghcr.io/c", "c1")}),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"api": image(version="v2", digest="sha256:" + "ab" * 32)},
            protected=True,
            deployKeys=[deploy_key("prod-deployer", rotateAfter="30d")],
        ),
        environment("staging", {"api": image(version="v1")}),
    )
    assert sk("apply", "--yes", "-m", "m").code == 0


def test_ui_shows_the_matrix_as_status_says(sk: Sk, workdir: Path, ui: Callable[..., Ui]) -> None:
    """The page shows /status's matrix cell for cell, serves its own assets, refreshes as asked."""
    two_revisions(sk, workdir)
    server = ui("-m", "m")
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    cells = cells_of(page.text).cells
    status = server.get("/status").json()
    # The page is rendered from /status: every cell there is a cell here, with its values.
    from_api = {
        (cell["environment"], cell["slot"]): cell
        for row in status["matrix"]["rows"]
        for cell in row["cells"]
        if cell
    }
    assert from_api.keys() == cells.keys()
    for where, cell in from_api.items():
        assert cells[where]["data-state"] == cell["state"]
        assert cells[where]["data-version"] == (cell["version"] or "")
    assert cells["production", "api"]["data-version"] == "v2"
    assert cells["production", "api"]["data-state"] == "deployed"
    assert cells["production", "worker"]["data-state"] == "blocked"
    assert cells["staging", "chart"]["data-state"] == "decommissioned"
    assert status["states"]["blocked"] == 1 and status["states"]["deployed"] == 2
    assert "abababababab"[:7] in page.text  # the short digest
    assert "decommission" in page.text and "protected" in page.text  # what is held back, why
    assert status["last_apply"]["result"] == "success"
    # Everything the page needs is served by slotkeeper itself.
    assert all(not s.startswith(("http:", "https:", "//")) for s in cells_of(page.text).sources)
    css = server.get("/static/dashboard.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert '<meta http-equiv="refresh" content="10">' in page.text
    assert '<meta http-equiv="refresh" content="2">' in server.get("/?refresh=2").text
    assert 'http-equiv="refresh"' not in server.get("/?refresh=0").text


def test_ui_slot_page_keys_page_and_errors(sk: Sk, workdir: Path, ui: Callable[..., Ui]) -> None:
    """A slot page links its records both ways, the keys page dates rotations, unknowns are 404."""
    two_revisions(sk, workdir)
    server = ui()
    slot = server.get("/slots/production/api")
    assert slot.status_code == 200
    history = server.get("/status/slots/production/api").json()
    newest, oldest = history["records"]
    assert newest["supersedes"] == oldest["id"] and oldest["superseded_by"] == newest["id"]
    assert f'href="#record-{newest["id"]}"' in slot.text  # the old record links to the new
    assert f'href="#record-{oldest["id"]}"' in slot.text
    assert "SUPERSEDED" in slot.text and newest["actor"] in slot.text
    keys = server.get("/keys").text
    [key] = server.get("/status").json()["keys"]
    assert key["fingerprint"] in keys and key["rotate_after"] == "30d"
    due = datetime.fromisoformat(key["next_rotation"])
    assert abs(due - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert due.strftime("%Y-%m-%d") in keys
    assert server.get("/slots/production/nope").status_code == 404
    assert server.get("/status/slots/nope/api").status_code == 404
    assert server.get("/elsewhere").status_code == 404
    assert httpx.post(server.url + "/", timeout=5).status_code == 405
    code, err = server.stop()
    assert code in (0, -15) and "Traceback" not in err


def test_slot_page_tells_an_image_and_a_chart_apart(
    sk: Sk, workdir: Path, ui: Callable[..., Ui]
) -> None:
    """The slot page shows each record's kind when the slot held an image and a chart."""
    chart = {"kind": "HELM_CHART", "name": "ghcr.io/acme/api", "version": "v1"}
    write_manifests_and_targets(
        workdir / "m", environment("production", {"api": image(), "web": image()})
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    write_manifests_and_targets(
        workdir / "m", environment("production", {"api": chart, "web": image()})
    )
    assert sk("apply", "--yes", "-m", "m").code == 0
    server = ui()
    page = server.get("/slots/production/api").text
    heads = [
        " ".join(html.unescape(re.sub(r"<[^>]+>|#\d+", " ", head)).split())
        for head in re.findall(r'<div class="record-head">(.*?)</div>', page, re.S)
    ]
    assert heads == [
        "DEPLOYED HELM_CHART ghcr.io/acme/api v1",
        "SUPERSEDED CONTAINER_IMAGE ghcr.io/acme/api v1",
    ]
    assert "CONTAINER_IMAGE" not in server.get("/slots/production/web").text


def test_ui_without_a_ledger_is_a_clear_error(sk: Sk, workdir: Path) -> None:
    """`ui` without a ledger is one clear error, with no traceback, and creates nothing."""
    run = sk("ui", "--state", "sqlite:///nowhere/state.db")
    assert run.code == 1
    assert "no ledger at nowhere/state.db" in run.err and "Traceback" not in run.err
    assert not (workdir / "nowhere").exists()


def test_pages_escape_what_they_show(sk: Sk, workdir: Path, ui: Callable[..., Ui]) -> None:
    """A commit message is shown on the slot page: markup in it is text, never markup."""
    root = workdir / "repo"
    write_manifests_and_targets(root, environment("production", {"api": image(version="v1")}))
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    message = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@x",
            "commit",
            "-qm",
            message,
        ],
        check=True,
    )
    assert sk("apply", "--yes", "-m", "repo").code == 0
    page = ui().get("/slots/production/api").text
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img" in page


def test_no_secret_reaches_the_pages(
    workdir: Path, github: FakeGitHub, running: Callable[..., Running]
) -> None:
    """The daemon serves the dashboard at / ; a target's token is nowhere in it, and a slot
    whose target has not confirmed it is marked."""
    github.forbidden = True  # every call refused: nothing is confirmed
    write_manifests_and_targets(
        workdir / "m",
        environment(
            "production",
            {"api": {**image(version="v1")}},
            repository="acme/web",
            targets=["github"],
        ),
        target(github),
    )
    path = workdir / "m" / "envs.yaml"
    path.write_text(path.read_text().replace("    api:\n", "    api:\n      ref: main\n"))
    daemon = running("-m", "m", "--resync-interval", "10m")
    page = daemon.get("/").text
    cell = cells_of(page).cells["production", "api"]
    assert cell["data-state"] == "pending"
    assert 'class="unconfirmed"' in page and "github (failed)" in page
    for path_ in ("/", "/keys", "/slots/production/api", "/status", "/status/slots/production/api"):
        body = daemon.get(path_).text
        assert TOKEN not in body, path_
    # The slot page shows each target's sync state and why it failed, in fixed words (the
    # fake's refusal text is GitHub's to choose: only `slotkeeper status` shows it).
    [record] = daemon.get("/status/slots/production/api").json()["records"]
    assert "last_error" not in record["targets"]["github"]
    error = record["targets"]["github"]["error_reason"]
    assert error == "HTTP 403: permission denied"
    assert html.escape(error, quote=True) in daemon.get("/slots/production/api").text


def test_daemon_shows_suspended_and_frozen_slots(
    workdir: Path, running: Callable[..., Running]
) -> None:
    """What only the manifests say is shown from the daemon's last snapshot."""
    now = datetime.now(UTC)
    write_manifests_and_targets(
        workdir / "m",
        environment("production", {"api": image(version="v1")}),
        environment("staging", {"api": image(version="v1"), "web": image("ghcr.io/w", "w1")}),
    )
    daemon = running("-m", "m", "--resync-interval", "10m")
    wait_for(lambda: len(daemon.status()["slots"]) == 3, what="the first apply")
    production = environment(
        "production",
        {"api": image(version="v2")},
        freeze=[
            {
                "start": (now - timedelta(hours=1)).isoformat(),
                "end": (now + timedelta(hours=1)).isoformat(),
            }
        ],
    )
    staging = environment("staging", {"api": image(version="v1"), "web": image("ghcr.io/w", "w2")})
    staging["spec"]["slots"]["web"]["suspend"] = True
    write_manifests_and_targets(workdir / "m", production, staging)

    def states() -> dict[Any, str]:
        return {k: v["data-state"] for k, v in cells_of(daemon.get("/").text).cells.items()}

    wait_for(
        lambda: (
            states()
            == {
                ("production", "api"): "frozen",
                ("staging", "api"): "deployed",
                ("staging", "web"): "suspended",
            }
        ),
        what="frozen and suspended cells",
    )
    # The page shows what is recorded: v1 stays until the freeze ends.
    assert cells_of(daemon.get("/").text).cells["production", "api"]["data-version"] == "v1"
