"""The dashboard's routes: HTML pages and their JSON twins, and the stylesheet.

``Dashboard.get(path, query)`` answers a GET or returns None for paths it does not serve, so the
daemon can mount it beside its own endpoints and ``slotkeeper ui`` can serve it alone. Every
page is rendered from the same document its JSON twin returns (``/`` and ``/keys`` from
``/status``, a slot page from ``/status/slots/ENV/SLOT``). Templates escape everything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape

from slotkeeper.dashboard.delivery import delivery, slot_failures
from slotkeeper.dashboard.view import (
    STATES,
    WHOLE,
    DashboardLedger,
    View,
    keys_overview,
    overview,
    slot_history,
)
from slotkeeper.model import DesiredState, timestamp
from slotkeeper.pipelineview import pipeline_document
from slotkeeper.promote import read_pipelines
from slotkeeper.render import duration

#: how often an open page reloads itself unless ``?refresh=N`` says otherwise (seconds)
DEFAULT_REFRESH = 10
HTML = "text/html; charset=utf-8"
JSON = "application/json"
CSS = "text/css; charset=utf-8"
SCRIPT = "text/javascript; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


def _ago(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(text: str | None) -> str:
    if not text:
        return "—"
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%SZ")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _unconfirmed(targets: dict[str, str], errors: dict[str, str] | None = None) -> str:
    """``github (failed): HTTP 403: permission denied, unkey (pending)``: the targets that have
    not confirmed a record, with their fixed error reason when they failed."""
    return ", ".join(
        f"{name} ({state})" + (f": {(errors or {})[name]}" if (errors or {}).get(name) else "")
        for name, state in targets.items()
        if state != "synced"
    )


def _with_query(query: str, **changes: object) -> str:
    """The page's own query string with ``changes`` made: a pager link keeps the filters."""
    values = {name: found[0] for name, found in parse_qs(query).items() if found}
    values.update({name: str(value) for name, value in changes.items()})
    return "?" + urlencode(values)


def _templates() -> Environment:
    environment = Environment(
        loader=PackageLoader("slotkeeper.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        ago=_ago,
        when=_when,
        seconds=_seconds,
        span=duration,
        unconfirmed=_unconfirmed,
        with_query=_with_query,
    )
    return environment


class Dashboard:
    """Read-only pages over a ledger (and, when known, the manifests)."""

    def __init__(
        self,
        ledger: DashboardLedger,
        *,
        clock: Callable[[], datetime],
        desired: Callable[[], DesiredState | None] = lambda: None,
        last_reconcile: Callable[[], dict[str, Any] | None] = lambda: None,
        extra: Callable[[], dict[str, Any]] = dict,
        source: str | None = None,
        manifests_url: str | None = None,
    ) -> None:
        """``manifests_url``: the web page of the manifests' repository (or its git remote
        URL), which revisions link to; see ``view.overview``."""
        self._ledger = ledger
        self._clock = clock
        self._desired = desired
        self._last_reconcile = last_reconcile
        self._extra = extra
        self._source = source
        self._manifests_url = manifests_url
        self._templates = _templates()
        static = files("slotkeeper.dashboard").joinpath("static")
        self._css = static.joinpath("dashboard.css").read_bytes()
        self._script = static.joinpath("refresh.js").read_bytes()

    def status(self, view: View = WHOLE, *, slots: bool = True) -> dict[str, Any]:
        """The ``/status`` document: what the matrix, keys and reconcile panels show, the
        matrix as ``view`` filters and windows it (``slots``: with every slot's status row)."""
        return overview(
            self._ledger,
            now=self._clock(),
            desired=self._desired(),
            last_reconcile=self._last_reconcile(),
            extra=self._extra(),
            manifests_url=self._manifests_url,
            view=view,
            slots=slots,
        )

    def slot(self, environment: str, slot: str) -> dict[str, Any] | None:
        """The ``/status/slots/ENV/SLOT`` document a slot's page shows, or None."""
        found = slot_history(
            self._ledger,
            environment,
            slot,
            desired=self._desired(),
            manifests_url=self._manifests_url,
        )
        if found is not None:
            found["failures"] = slot_failures(self._ledger, environment, slot, now=self._clock())
        return found

    def delivery(self) -> dict[str, Any]:
        """The ``/status/dora`` document the delivery page shows."""
        return delivery(self._ledger, now=self._clock())

    def promotion(self) -> dict[str, Any]:
        """The ``/status/promotion`` document the promotion page shows: each slot's pipeline
        (``manifests`` false when the policies, which are in the manifests, are not known)."""
        desired = self._desired()
        if desired is None:
            return {"manifests": False, "slots": []}
        now = self._clock()
        found = read_pipelines(desired.environments, self._ledger, now)
        return {"manifests": True, **pipeline_document(found, now)}

    def get(self, path: str, query: str = "") -> Answer | None:
        """The answer to ``GET path?query``, or None when the dashboard does not serve path."""
        parts = [unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if path == "/static/dashboard.css":
            return Answer(200, self._css, CSS)
        if path == "/static/refresh.js":
            return Answer(200, self._script, SCRIPT)
        if parts == ["status"]:
            return _json(200, self.status(_view(query, whole=True)))
        if parts == ["status", "dora"]:
            return _json(200, self.delivery())
        if parts == ["status", "promotion"]:
            return _json(200, self.promotion())
        if len(parts) == 4 and parts[:2] == ["status", "slots"]:
            found = self.slot(parts[2], parts[3])
            return _json(200, found) if found else _json(404, {"error": "no such slot"})
        refresh = _refresh(query)
        if not parts:
            doc = self.status(_view(query, whole=False), slots=False)
            return self._page(
                200, "matrix.html", doc, refresh, page="matrix", query=query, live=True
            )
        if parts == ["keys"]:
            keys = keys_overview(self._ledger, now=self._clock())
            return self._page(200, "keys.html", keys, refresh, page="keys")
        if parts == ["dora"]:
            return self._page(200, "dora.html", self.delivery(), refresh, page="dora")
        if parts == ["promotion"]:
            return self._page(200, "promotion.html", self.promotion(), refresh, page="promotion")
        if len(parts) == 3 and parts[0] == "slots":
            found = self.slot(parts[1], parts[2])
            if found is None:
                message = (
                    f"The ledger has no record of {parts[1]}/{parts[2]} and holds nothing there."
                )
                return self._page(404, "missing.html", {}, 0, page="", message=message)
            return self._page(200, "slot.html", found, refresh, page="slot")
        return None

    def _page(
        self, status: int, template: str, doc: dict[str, Any], refresh: int, **context: Any
    ) -> Answer:
        html = self._templates.get_template(template).render(
            doc=doc,
            refresh=refresh,
            generated_at=timestamp(self._clock()),
            ledger=self._ledger.url.split("?")[0],
            source=self._source,
            **context,
        )
        return Answer(status, html.encode(), HTML)


#: the most a page shows at once, whatever the query asks (rows of slots, environments)
MAX_ROWS, MAX_COLUMNS = 500, 50


def _view(query: str, *, whole: bool) -> View:
    """The matrix's filters and window from the query string (``env``, ``slot``, ``state``,
    ``page``, ``rows``, ``window``, ``columns``); ``whole``: without any of them, everything
    (``/status``, as before), else the page's default window."""
    values = {name: found[0] for name, found in parse_qs(query).items() if found}
    if whole and not values.keys() & {"env", "slot", "state", "page", "rows", "window", "columns"}:
        return WHOLE

    def number(name: str, default: int, most: int) -> int:
        try:
            return min(max(1, int(values.get(name, default))), most)
        except ValueError:
            return default

    state = values.get("state", "")
    return View(
        environment=values.get("env", "")[:100],
        slot=values.get("slot", "")[:100],
        state=state if state in STATES else "",
        page=number("page", 1, 1_000_000),
        rows=number("rows", View.rows, MAX_ROWS),
        window=number("window", 1, 1_000_000),
        columns=number("columns", View.columns, MAX_COLUMNS),
    )


def _refresh(query: str) -> int:
    """``?refresh=N``: reload every N seconds (1 to 3600); 0 turns reloading off."""
    values = parse_qs(query).get("refresh")
    try:
        wanted = int(values[0]) if values else DEFAULT_REFRESH
    except ValueError:
        return DEFAULT_REFRESH
    return 0 if wanted <= 0 else min(wanted, 3600)


def _json(status: int, document: Any) -> Answer:
    return Answer(status, json.dumps(document).encode(), JSON)
