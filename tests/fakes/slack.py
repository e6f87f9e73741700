"""A fake of Slack's incoming webhooks, ``POST /services/{T}/{B}/{secret}``, on loopback.

``FakeSlack`` serves the hooks a test adds with ``add_hook(name)`` (each a full URL,
``<base_url>/services/T0001/B0001/<24 random characters>``) over real HTTP on loopback (see
``server.py``), answering in plain text as Slack's documented incoming-webhook errors say:

- 200 ``ok``: delivered (``messages()``);
- 400 ``invalid_payload``: the body is not a JSON object (or ``text`` is not a string);
- 400 ``no_text``: neither a non-empty ``text`` nor any ``blocks``;
- 400 ``invalid_blocks``: ``blocks`` is not a list of objects each of a known Block Kit
  ``type``, or breaks one of the limits checked here (at most 50 blocks; a section's text
  object ``mrkdwn`` or ``plain_text`` of 1 to 3,000 characters; a context's 1 to 10 elements,
  each text at most 3,000 characters);
- 404 ``no_service``: an unknown hook, or one ``revoke``d as ``no_service``; 410
  ``channel_is_archived``: one revoked as that;
- 429 ``rate_limited`` with ``Retry-After: 1`` (``retry_after``; None sends the seconds until
  the window admits again): more than ``burst`` messages to one hook within ``burst /
  per_second`` seconds, a sliding window (about ``per_second`` a second, with bursts), by the
  fake's ``clock``. A rate-limited message is not delivered; ``rate_limited_count`` counts them.

The three 400s are appended to ``violations`` (the fixture demands none); revoked hooks and
rate limits are not, they are what a sender must cope with. Other methods are 405
``method_not_allowed`` (the fake's own word; Slack documents none). The error knob answers
500; every other knob of ``server.py`` works as there.

Observation: ``messages(url=None)`` (delivered bodies, oldest first), ``ids()`` (the
notification ids in their ``context`` block, ``slotkeeper · <id>``: a digest's own),
``duplicates()``, ``rate_limited_count``, ``violations``.
"""

from __future__ import annotations

import copy
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from tests.fakes.server import FakeServer, Incoming, JsonObject, Refusal, Reply, SlidingWindow

TEAM, BOT = "T0001", "B0001"
#: the answer of a revoked hook, by reason
REVOKED = {"no_service": 404, "channel_is_archived": 410}
#: Block Kit's block types (those a message may hold)
BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
MOST_BLOCKS = 50
TEXT_LIMIT = 3000
MOST_CONTEXT_ELEMENTS = 10
_ID_TEXT = re.compile(r"slotkeeper · (\S+)")
_ALNUM = string.ascii_letters + string.digits


def _text(status: int, word: str, **headers: str) -> Reply:
    return Reply(status, word.encode(), dict(headers))


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def block_errors(blocks: Any) -> list[str]:
    """Why ``blocks`` is not a list of blocks Slack accepts, one line each; [] when it is."""
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    problems: list[str] = []
    if len(blocks) > MOST_BLOCKS:
        problems.append(f"blocks: {len(blocks)} blocks (at most {MOST_BLOCKS})")
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict):
            problems.append(f"{where}: not an object")
        elif block.get("type") not in BLOCK_TYPES:
            problems.append(f"{where}.type: {block.get('type')!r} is not a block type")
        elif block["type"] == "section":
            if "text" in block:
                problems += _text_object_errors(block["text"], f"{where}.text")
            elif not block.get("fields"):
                problems.append(f"{where}: a section needs text or fields")
        elif block["type"] == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MOST_CONTEXT_ELEMENTS:
                problems.append(f"{where}.elements: 1 to {MOST_CONTEXT_ELEMENTS} elements")
            else:
                for at, element in enumerate(elements):
                    if not (isinstance(element, dict) and element.get("type") == "image"):
                        problems += _text_object_errors(element, f"{where}.elements[{at}]")
    return problems


def _text_object_errors(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict) or value.get("type") not in ("mrkdwn", "plain_text"):
        return [f"{where}: not a mrkdwn or plain_text text object"]
    text = value.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= TEXT_LIMIT:
        length = len(text) if isinstance(text, str) else "no"
        return [f"{where}.text: {length} characters (1 to {TEXT_LIMIT})"]
    return []


def payload_error(body: Any) -> tuple[str, str] | None:
    """Slack's word for a message it refuses and why, or None: ``body`` is the parsed JSON
    (None when it was not JSON)."""
    if not isinstance(body, dict):
        return "invalid_payload", "the body is not a JSON object"
    text, blocks = body.get("text"), body.get("blocks")
    if text is not None and not isinstance(text, str):
        return "invalid_payload", "text: not a string"
    if not text and not blocks:
        return "no_text", "neither text nor blocks"
    problems = [] if blocks is None else block_errors(blocks)
    if problems:
        return "invalid_blocks", "; ".join(problems)
    return None


def context_ids(body: JsonObject) -> list[str]:
    """The ids a message names in its context blocks (``slotkeeper · <id>``)."""
    found: list[str] = []
    for block in body.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "context":
            for element in block.get("elements") or []:
                text = element.get("text") if isinstance(element, dict) else None
                match = _ID_TEXT.fullmatch(text) if isinstance(text, str) else None
                if match:
                    found.append(_unescape(match.group(1)))
    return found


@dataclass
class _Hook:
    name: str
    path: str
    revoked: str | None = None
    window: SlidingWindow = field(default_factory=SlidingWindow)


class FakeSlack(FakeServer):
    """Slack's incoming webhooks, in memory, over HTTP on loopback."""

    server_software: ClassVar[str] = "FakeSlack"
    content_type: ClassVar[str] = "text/plain; charset=utf-8"

    def __init__(
        self,
        *,
        per_second: float = 1.0,
        burst: int = 3,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("", seed=seed)
        # Knobs beyond the generic ones.
        self.per_second = per_second
        self.burst = burst
        #: the Retry-After of a 429; None: the seconds until the window admits again
        self.retry_after: int | None = 1
        #: the fake's clock (the rate windows, ``Date``): a test may pass one it moves itself
        self.clock = clock

        #: why each message was refused as a bad request, one line each
        self.violations: list[str] = []
        self.rate_limited_count = 0
        self._secrets = random.Random(f"slack-hooks:{seed}")
        self._hooks: dict[str, _Hook] = {}  # by path
        self._delivered: list[tuple[str, JsonObject]] = []  # (hook path, body)

    # -- hooks -------------------------------------------------------------------------------

    def add_hook(self, name: str) -> str:
        """A new incoming webhook (``name``: its channel, for the test's eyes); its full URL."""
        with self._lock:
            secret = "".join(self._secrets.choice(_ALNUM) for _ in range(24))
            path = f"/services/{TEAM}/{BOT}/{secret}"
            self._hooks[path] = _Hook(name=name, path=path)
        return f"{self.base_url}{path}"

    def revoke(self, url: str, reason: str = "no_service") -> None:
        """From now on, POSTs to the hook answer ``reason`` (``no_service`` 404,
        ``channel_is_archived`` 410); ``KeyError`` for a hook never added."""
        if reason not in REVOKED:
            raise ValueError(f"reason is one of {sorted(REVOKED)}, not {reason!r}")
        with self._lock:
            self._hooks[urlsplit(url).path].revoked = reason

    def hook_name(self, url: str) -> str:
        """The name a hook was added with."""
        with self._lock:
            return self._hooks[urlsplit(url).path].name

    # -- observation -------------------------------------------------------------------------

    def messages(self, url: str | None = None) -> list[JsonObject]:
        """The delivered bodies, oldest first: of every hook, or of the one at ``url``."""
        path = None if url is None else urlsplit(url).path
        with self._lock:
            return [copy.deepcopy(b) for p, b in self._delivered if path is None or p == path]

    def ids(self, url: str | None = None) -> list[str]:
        """The notification ids of the delivered messages, oldest first (a digest's own)."""
        return [id_ for body in self.messages(url) for id_ in context_ids(body)]

    def duplicates(self, url: str | None = None) -> dict[str, int]:
        """Each id delivered more than once, with how many times."""
        return {id_: count for id_, count in Counter(self.ids(url)).items() if count > 1}

    # -- admission and errors ----------------------------------------------------------------

    def _now(self) -> float:
        return self.clock()

    def _admit(self, incoming: Incoming) -> Reply | None:
        """Method (405), hook (404), revoked (404/410), then the hook's rate limit (429)."""
        if incoming.method != "POST":
            return _text(405, "method_not_allowed")
        hook = self._hooks.get(incoming.path)
        if hook is None:
            return _text(404, "no_service")
        if hook.revoked is not None:
            return _text(REVOKED[hook.revoked], hook.revoked)
        limit = (self.burst, self.burst / self.per_second)
        now = self._now()
        if not hook.window.admit(limit, now):
            self.rate_limited_count += 1
            wait = self.retry_after
            if wait is None:
                wait = hook.window.reset_after(limit, now)
            return _text(429, "rate_limited", **{"Retry-After": str(wait)})
        return None

    def _unauthorized(self, incoming: Incoming) -> Reply:  # pragma: no cover - no credential
        return _text(403, "invalid_token")

    def _server_error(self) -> Reply:
        return _text(500, "internal_error")

    def _internal_error(self, exc: Exception) -> Reply:
        return _text(500, f"fake internal error: {exc!r}")

    # -- the route ---------------------------------------------------------------------------

    def _route(self, incoming: Incoming) -> Reply:
        body = self._check(incoming)
        self._delivered.append((incoming.path, body))
        return _text(200, "ok")

    def _check(self, incoming: Incoming) -> JsonObject:
        """The message; ``Refusal`` (400, a violation) when Slack would refuse it."""
        try:
            body: Any = incoming.json()
        except ValueError:
            body = None
        refused = payload_error(body)
        if refused is not None:
            word, problem = refused
            self.violations.append(f"POST {incoming.path}: {word}: {problem}")
            raise Refusal(_text(400, word))
        return copy.deepcopy(dict(body))
