"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
daemon on a temporary ledger. `make test` installs the chromium package when it is missing.

The screenshots land in ``.slotkeeper/screenshots/``; with ``SLOTKEEPER_UPDATE_SCREENSHOT=1``
(``make screenshot``) the matrix shot also replaces ``docs/dashboard.png``, the README's picture.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.bench.generate import Tree, write
from tests.daemon_support import Running, Ui, wait_for
from tests.fakes.github import FakeGitHub
from tests.helpers import deploy_key, environment, image, write_manifests_and_targets
from tests.test_github_target import target

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: what a closed network needs: no sandbox as root, no GPU, no calls home
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / ".slotkeeper" / "screenshots"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def manifests(root: Path, github: FakeGitHub, *, second: bool) -> None:
    """Three environments; the second revision supersedes production/api, removes a slot of
    protected production (held back), suspends a changed staging slot and removes dev's chart."""
    production_slots: dict[str, Any] = {
        "api": image(version="v2.1.0" if second else "v2.0.0", digest="sha256:" + "5e" * 32),
        "web": image("ghcr.io/acme/web", "v1.8.2", digest="sha256:" + "1c" * 32),
        "billing": image("ghcr.io/acme/billing", "v0.9.4"),
    }
    if not second:
        production_slots["worker"] = image("ghcr.io/acme/worker", "v3.1.0")
    staging = environment(
        "staging",
        {
            "api": image(version="v2.2.0-rc.1"),
            "web": image("ghcr.io/acme/web", "v1.9.0" if second else "v1.8.2"),
            "worker": image("ghcr.io/acme/worker", "v3.2.0"),
            "billing": image("ghcr.io/acme/billing", "v1.0.0-beta"),
        },
        repository="acme/web",
        targets=["github"],
    )
    if second:
        staging["spec"]["slots"]["web"]["suspend"] = True
    dev_slots: dict[str, Any] = {
        "api": image(version="v2.3.0-dev.7"),
        "worker": image("ghcr.io/acme/worker", "v3.3.0-dev.2"),
    }
    if not second:
        dev_slots["chart"] = {
            "kind": "HELM_CHART",
            "name": "oci://ghcr.io/acme/charts/web",
            "version": "4.0.0",
        }
    documents = [
        environment(
            "production",
            production_slots,
            repository="acme/web",
            production=True,
            protected=True,
            targets=["github"],
            deployKeys=[deploy_key("production-deployer", rotateAfter="30d")],
        ),
        staging,
        environment("dev", dev_slots),
        target(github),
    ]
    write_manifests_and_targets(root, *documents)
    path = root / "envs.yaml"
    text = path.read_text()
    for slot in ("api", "web", "worker", "billing"):
        text = text.replace(
            f"    {slot}:\n      artifact:", f"    {slot}:\n      ref: main\n      artifact:"
        )
    path.write_text(text)


def cell(page: Page, environment_name: str, slot: str) -> Any:
    return page.locator(f'td[data-environment="{environment_name}"][data-slot="{slot}"]')


def shoot(page: Page, tmp_path: Path, name: str, *, matrix: bool = False) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, tmp_path / name)
    assert path.stat().st_size > 10_000  # a rendered page, not an empty canvas
    if matrix and os.environ.get("SLOTKEEPER_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(path, REPO / "docs" / "dashboard.png")
    return path


def test_the_dashboard_in_chromium(
    browser: Browser,
    workdir: Path,
    tmp_path: Path,
    github: FakeGitHub,
    running: Callable[..., Running],
) -> None:
    """In a real browser the page follows the daemon's applies; slot and key pages link right."""
    manifests(workdir / "m", github, second=False)
    daemon = running("-m", "m", "--resync-interval", "10m")
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(daemon.url + "/?refresh=1")

    # After the first apply: the right versions and statuses.
    expect(cell(page, "production", "api")).to_have_attribute("data-version", "v2.0.0")
    expect(cell(page, "production", "api")).to_have_attribute("data-state", "deployed")
    expect(cell(page, "dev", "chart")).to_have_attribute("data-state", "deployed")
    expect(cell(page, "production", "api").locator(".digest")).to_have_text("5e5e5e5")
    expect(page.locator("#last-reconcile .badge")).to_have_text("success")
    shoot(page, tmp_path, "matrix-first.png")

    # A new revision is applied by the daemon; the open page refreshes itself (no reload here).
    manifests(workdir / "m", github, second=True)
    expect(cell(page, "production", "api")).to_have_attribute(
        "data-version", "v2.1.0", timeout=WAIT_MS
    )
    expect(cell(page, "production", "worker")).to_have_attribute(
        "data-state", "blocked", timeout=WAIT_MS
    )
    expect(cell(page, "staging", "web")).to_have_attribute("data-state", "suspended")
    expect(cell(page, "dev", "chart")).to_have_attribute("data-state", "decommissioned")
    expect(page.locator("#blocked")).to_contain_text("production/worker")
    # only a person can let the protected removal through: listed with its command, cell marked
    expect(page.locator("#awaiting-approval code")).to_contain_text("slotkeeper approve")
    expect(page.locator("#awaiting-approval")).to_contain_text("production/worker")
    expect(cell(page, "production", "worker")).to_have_attribute("data-awaiting", "approval")
    expect(page.locator('th[data-environment="production"] .badge')).to_have_text(
        ["production", "protected"]
    )
    wait_for(lambda: github.deployments("acme", "web") != [], what="GitHub deployments")
    page.goto(daemon.url + "/?refresh=0")  # a still page for the picture
    shoot(page, tmp_path, "dashboard.png", matrix=True)

    # The slot page: the supersede chain, both ways, and each target's sync state.
    cell(page, "production", "api").locator("a").click()
    expect(page).to_have_url(daemon.url + "/slots/production/api")
    records = page.locator("#timeline > li")
    expect(records).to_have_count(2)
    newest, oldest = records.nth(0), records.nth(1)
    expect(newest).to_have_attribute("data-status", "DEPLOYED")
    expect(oldest).to_have_attribute("data-status", "SUPERSEDED")
    new_id = newest.get_attribute("data-record")
    old_id = oldest.get_attribute("data-record")
    expect(oldest.locator("a.superseded-by")).to_have_text(f"#{new_id}")
    expect(newest.locator("a.supersedes")).to_have_text(f"#{old_id}")
    expect(newest.locator("table.targets")).to_contain_text("github")
    oldest.locator("a.superseded-by").click()
    expect(page).to_have_url(daemon.url + f"/slots/production/api#record-{new_id}")
    shoot(page, tmp_path, "slot.png")

    # The deploy keys page.
    page.get_by_role("link", name="Deploy keys").click()
    expect(page.locator("#keys")).to_contain_text("production-deployer")
    expect(page.locator("#keys")).to_contain_text("SHA256:")
    shoot(page, tmp_path, "keys.png")

    # A phone: the matrix scrolls inside its box, the page itself does not overflow.
    phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    phone.goto(daemon.url + "/?refresh=0")
    expect(cell(phone, "production", "api")).to_have_attribute("data-version", "v2.1.0")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert phone.evaluate(
        "(() => { const box = document.querySelector('.scroll');"
        " return box.scrollWidth > box.clientWidth; })()"
    )
    shoot(phone, tmp_path, "phone.png")
    page.close()
    phone.close()


def test_the_matrix_of_10000_slots_stays_small_filters_and_updates_in_place(
    browser: Browser, workdir: Path, sk: Callable[..., Any], ui: Callable[..., Ui]
) -> None:
    """A ledger of 10,000 slots (200 environments of 50, applied through the CLI): `/` is a
    window of it under 500 KB whose legend counts the whole set; the filter form narrows it in
    the browser (an environment, then a slot and a state), the pager keeps the filter; with
    its script the open page updates in place (no reload: the page's own state survives)."""
    root = write(Tree(200, 50), workdir / "big")
    applied = sk("apply", "--yes", "--no-refresh", "-m", str(root), "--secrets-dir", "secrets")
    assert applied.code == 0, applied.err
    server = ui()
    whole = server.get("/")
    assert whole.status_code == 200 and len(whole.content) <= 500_000
    document = server.get("/status?env=env-0007").json()
    assert [column["name"] for column in document["matrix"]["columns"]] == ["env-0007"]
    assert sum(document["states"].values()) == 10_000  # the whole set, whatever the filter

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/?refresh=1")
    assert page.locator("td.cell").count() <= 500
    expect(page.locator("#legend")).to_contain_text("deployed 10000")
    page.evaluate("window.__kept = 'still here'")
    expect(page.locator("body")).to_have_attribute("data-updated", re.compile(r"\d+"))
    assert page.evaluate("window.__kept") == "still here"  # updated in place, not reloaded

    page.fill("input[name=env]", "env-0007")
    page.click("button[type=submit]")
    expect(page.locator("thead th[data-environment]")).to_have_count(1)
    expect(page.locator("thead th[data-environment]")).to_have_text("env-0007")
    page.fill("input[name=slot]", "api")
    page.select_option("select[name=state]", "deployed")
    page.click("button[type=submit]")
    slots = page.locator("tbody th[scope=row]").all_inner_texts()
    assert slots and all("api" in slot for slot in slots)
    assert "env=env-0007" in page.url and "state=deployed" in page.url
    page.goto(server.url + "/?slot=a&rows=10&page=2")
    expect(page.locator("#pager")).to_contain_text("slots 11\u201320 of 22")
    assert "slot=a" in (page.locator("a[rel=prev]").get_attribute("href") or "")
    page.close()
