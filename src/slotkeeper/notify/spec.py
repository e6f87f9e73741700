"""The ``Notifier`` document of the operator's targets file: where messages go and which.

A notifier belongs to the operator, like a target: its URL (a Slack incoming webhook's URL is
itself a credential) and its signing secret come from the operator's files and environment,
never from the manifests, which anyone who can push writes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from slotkeeper.model import (
    DURATION_PATTERN,
    HttpUrl,
    Metadata,
    SecretRef,
    Slug,
    Strict,
    check_url,
    parse_duration,
)
from slotkeeper.notify.message import EVENTS, EventName


class _NotifierBase(Strict):
    environments: list[Slug] = Field(
        default_factory=list,
        description="Only events of these environments (default: every environment; events "
        "of no environment, such as manifests-invalid, always pass).",
    )
    events: list[EventName] = Field(
        default_factory=list,
        description="Only these events (default: all): " + ", ".join(EVENTS) + ".",
    )
    digest: Annotated[str, Field(pattern=DURATION_PATTERN)] | None = Field(
        None,
        description="Gather an environment's events over this long (5m, 1h) into one message "
        "(default: one message per event).",
    )
    rate_per_minute: Annotated[int, Field(ge=1, le=6000)] | None = Field(
        None,
        description="At most this many messages a minute (default 60 for Slack, 300 for a "
        "webhook); a 429's Retry-After is honoured too.",
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=60)] = Field(
        10, description="The timeout of one request (default 10)."
    )

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def wants(self, event: str, environment: str | None) -> bool:
        """Whether an ``event`` of ``environment`` (None: of no environment) passes the
        filters."""
        if self.events and event not in self.events:
            return False
        return not (self.environments and environment is not None) or (
            environment in self.environments
        )


class WebhookNotifierSpec(_NotifierBase):
    """A JSON POST per message to an HTTP endpoint (the body's JSON Schema:
    ``docs/schemas/notification.schema.json``)."""

    type: Literal["webhook"] = Field(description="`webhook`.")
    url: HttpUrl = Field(
        description="The endpoint (https://; plain http:// only to loopback unless "
        "allowInsecureHttp)."
    )
    format: Literal["json", "cloudevents"] = Field(
        "json",
        description="`json` (the body is the message) or `cloudevents` (CloudEvents 1.0 "
        "structured mode, the message in `data`).",
    )
    secret: SecretRef | None = Field(
        None,
        description="A key to sign each body with: `X-Slotkeeper-Signature: sha256=<HMAC-SHA256 "
        "of the body, hex>`.",
    )
    allow_insecure_http: bool = Field(
        False,
        description="Allow a plain http:// URL to a host other than loopback (default false).",
    )

    @field_validator("url", mode="after")
    @classmethod
    def _secure_url(cls, value: str, info: ValidationInfo) -> str:
        return check_url(value, bool(info.data.get("allow_insecure_http", False)))

    @model_validator(mode="before")
    @classmethod
    def _insecure_first(cls, data: Any) -> Any:
        """Read ``allowInsecureHttp`` before ``url`` is judged, wherever it is written."""
        if isinstance(data, dict) and "allowInsecureHttp" in data:
            data = {"allowInsecureHttp": data["allowInsecureHttp"], **data}
        return data


class SlackNotifierSpec(_NotifierBase):
    """A Slack incoming webhook: ``{text, blocks}`` per message."""

    type: Literal["slack"] = Field(description="`slack`.")
    url: SecretRef = Field(
        description="The incoming webhook's URL, which is itself a credential: {env: NAME} or "
        "{file: PATH}, never inline."
    )


#: the notifier types, as ``type`` names them
NOTIFIER_TYPES = ("webhook", "slack")

NotifierSpec = Annotated[WebhookNotifierSpec | SlackNotifierSpec, Field(discriminator="type")]


class NotifierDocument(Strict):
    """One notifier of the operator's targets file: where messages about transitions go."""

    api_version: Literal["slotkeeper/v1"] = Field(
        description="The manifest format: `slotkeeper/v1`."
    )
    kind: Literal["Notifier"] = Field(description="`Notifier`.")
    metadata: Metadata = Field(description="The notifier's name.")
    spec: NotifierSpec = Field(description="Where messages go (`type`: webhook or slack).")
