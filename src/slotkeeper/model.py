"""The domain's types: what manifests declare and what the ledger records.

Manifest documents (``EnvironmentDocument``, ``TargetDocument``) are validated strictly: unknown
fields, wrong types and malformed names are errors. Their field names on the wire are camelCase
(``deployKeys``, ``rotateAfter``) as in the YAML. Everything here is an immutable value; nothing
here does I/O or reads the clock.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property, reduce
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import CoreSchema

API_VERSION = "slotkeeper/v1"

SLUG_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$"
DURATION_PATTERN = r"^[1-9][0-9]{0,4}[mhdw]$"
KEY_TITLE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
Repository = Annotated[str, StringConstraints(pattern=REPOSITORY_PATTERN)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=512)]

_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def timestamp(moment: datetime) -> str:
    """A time as every JSON document writes it (and the ledger stores it): RFC 3339 in UTC with
    microseconds and ``Z``, e.g. ``2026-11-30T09:45:34.000000Z``. One fixed width: such times
    sort as text, and a reader needs one format. A naive time is taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: a datetime field written with ``timestamp`` in JSON (documents, plan files)
Timestamp = Annotated[datetime, PlainSerializer(timestamp, when_used="json")]


def parse_duration(text: str, *, seconds: bool = False) -> timedelta:
    """Turn ``30d``, ``12h``, ``2w`` or ``90m`` into a timedelta: the one parser of durations
    (manifests, ``--at +30d``, and with ``seconds`` the command line's intervals, which also
    take ``90``, ``90s`` or ``0.5``: seconds)."""
    text = text.strip()
    if match := re.fullmatch(r"([0-9]+)([mhdw])", text):
        return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
    if seconds and (match := re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)s?", text)):
        return timedelta(seconds=float(match.group(1)))
    examples = "30s, 5m, 1h" if seconds else "30d, 12h, 2w, 90m"
    raise ValueError(f"not a duration: {text!r} (expected e.g. {examples})")


class _Strict(BaseModel):
    """Manifest parts: unknown fields are errors, types are not coerced, values are frozen."""

    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )


#: the base of manifest parts declared outside this module (the operator's notifiers)
Strict = _Strict


class ArtifactKind(StrEnum):
    """What an artifact is: a container image or a Helm chart."""

    CONTAINER_IMAGE = "CONTAINER_IMAGE"
    HELM_CHART = "HELM_CHART"


class Artifact(_Strict):
    """What sits in a slot: identified by name plus version and/or digest."""

    kind: ArtifactKind = Field(
        strict=False,
        description="`CONTAINER_IMAGE` or `HELM_CHART` (Unkey deploys container images only).",
    )
    name: NonEmpty = Field(
        description="The image or chart as it is pulled, without version or digest: "
        "`ghcr.io/acme/api`, `oci://ghcr.io/acme/charts/web`."
    )
    version: NonEmpty | None = Field(
        None,
        description='The version, a string: quote numbers (`"1.4"`: an unquoted 1.4 is a '
        "number, which is an error). At least one of version and digest.",
    )
    digest: Digest | None = Field(
        None,
        description="The content digest, `sha256:` and 64 lowercase hex digits (quote it). At "
        "least one of version and digest.",
    )

    @model_validator(mode="after")
    def _version_or_digest(self) -> Artifact:
        if self.version is None and self.digest is None:
            raise ValueError("an artifact needs a version, a digest or both")
        return self

    def describe(self) -> str:
        """A short human form: ``name version@sha256:abcdef123456``."""
        parts = [self.name]
        if self.version:
            parts.append(self.version)
        text = " ".join(parts)
        if self.digest:
            text += f"@{self.digest[:19]}"
        return text


class SecretRef(_Strict):
    """Where a target's credential comes from: an environment variable or a file, never inline."""

    env: Annotated[str, StringConstraints(pattern=ENV_VAR_PATTERN)] | None = Field(
        None,
        description="The environment variable that holds the credential. Exactly one of env "
        "and file.",
    )
    file: NonEmpty | None = Field(
        None,
        description="The file that holds the credential: a regular file (not a final symlink), "
        "at most 64 KiB, one line of text. Exactly one of env and file.",
    )

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            # Never echo the value: it is likely the secret itself.
            raise ValueError(
                "inline secrets are not allowed: reference it as {env: NAME} or {file: PATH}"
            )
        return value

    @field_validator("file")
    @classmethod
    def _plain_path(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


#: a Kubernetes namespace (an RFC 1123 label)
K8S_NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: a Kubernetes object name (an RFC 1123 subdomain)
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
#: an Actions secret's name: letters, digits and ``_``, not starting with a digit
ACTIONS_SECRET_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"


class KubernetesSecretSink(_Strict):
    """A Kubernetes Secret that a GitOps controller reads the deploy key from."""

    namespace: Annotated[str, StringConstraints(pattern=K8S_NAMESPACE_PATTERN)] = Field(
        description="The Secret's namespace; the operator allows namespaces with "
        "`--secret-namespaces` (SLOTKEEPER_SECRET_NAMESPACES)."
    )
    name: Annotated[str, StringConstraints(pattern=K8S_NAME_PATTERN)] = Field(
        description="The Secret's name. An existing Secret slotkeeper does not manage is never "
        "overwritten."
    )
    format: Literal["flux", "argocd", "opaque"] = Field(
        description="What reads it: `flux` (identity, identity.pub, known_hosts), `argocd` (a "
        "repository Secret: type, url, sshPrivateKey) or `opaque` (identity, identity.pub)."
    )
    url: NonEmpty | None = Field(
        None,
        description="The repository URL Argo CD clones (`argocd` only; default "
        "`ssh://git@HOST/OWNER/REPO.git` of the key's repository).",
    )

    @model_validator(mode="after")
    def _url_for_argocd(self) -> KubernetesSecretSink:
        if self.url is not None and self.format != "argocd":
            raise ValueError("url is read by Argo CD only: give it with format: argocd")
        return self


class ActionsSecretSink(_Strict):
    """A GitHub Actions secret a workflow reads the deploy key from (repository-wide, or of
    one deployment environment), written through the environment's GitHub target."""

    repository: Repository = Field(
        description="The `owner/repo` of the secret; the operator allows repositories with "
        "`--secret-repositories` (SLOTKEEPER_SECRET_REPOSITORIES)."
    )
    name: Annotated[str, StringConstraints(pattern=ACTIONS_SECRET_PATTERN)] = Field(
        description="The secret's name: letters, digits and `_`, not starting with a digit or "
        "`GITHUB_`. An existing secret slotkeeper did not write is never overwritten."
    )
    environment: NonEmpty | None = Field(
        None, description="A deployment environment's secret instead of the repository's."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.upper().startswith("GITHUB_"):
            raise ValueError("names starting with GITHUB_ are GitHub's own")
        return value


class KeySecret(_Strict):
    """One place a deploy key's private half is delivered to: a file under the secrets
    directory, a Kubernetes Secret or a GitHub Actions secret (exactly one)."""

    file: NonEmpty | None = Field(
        None,
        description="A file (mode 0600), relative to the secrets directory (`--secrets-dir`): no "
        "absolute path, no `..`.",
    )
    kubernetes: KubernetesSecretSink | SkipJsonSchema[None] = Field(
        None, description="A Kubernetes Secret: `{namespace, name, format: flux|argocd|opaque}`."
    )
    github_actions: ActionsSecretSink | SkipJsonSchema[None] = Field(
        None,
        description="A GitHub Actions secret: `{repository, name, environment?}`.",
    )
    keep_on_revoke: bool = Field(
        False,
        description="Leave the secret in place when the key is revoked or stops listing this "
        "place (default false: slotkeeper removes what it wrote, if it still holds the key).",
    )

    @field_validator("file")
    @classmethod
    def _inside_secrets_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
        path = PurePosixPath(value)
        if path.is_absolute() or value.startswith("~") or "\\" in value:
            raise ValueError("must be a relative path inside the secrets directory")
        if any(part in ("..", "") for part in value.split("/")) or value in (".", "./"):
            raise ValueError(
                "must not contain '..' or empty parts: it would leave the secrets directory"
            )
        normal = normalize_secret_path(value)
        if not normal:
            raise ValueError("must name a file inside the secrets directory")
        return normal

    @model_validator(mode="after")
    def _exactly_one(self) -> KeySecret:
        given = [self.file, self.kubernetes, self.github_actions]
        if sum(place is not None for place in given) != 1:
            raise ValueError("give exactly one of file, kubernetes and githubActions")
        return self

    @property
    def label(self) -> str:
        """The sink's identity: ``file:PATH``, ``kubernetes:NS/NAME`` or
        ``githubActions:OWNER/REPO[/ENVIRONMENT]/NAME``."""
        if self.kubernetes is not None:
            return f"kubernetes:{self.kubernetes.namespace}/{self.kubernetes.name}"
        if self.github_actions is not None:
            actions = self.github_actions
            where = actions.repository
            if actions.environment is not None:
                where += f"/{actions.environment}"
            return f"githubActions:{where}/{actions.name.upper()}"
        return f"file:{self.file}"


SECRET_NAMESPACES_ENV = "SLOTKEEPER_SECRET_NAMESPACES"
SECRET_REPOSITORIES_ENV = "SLOTKEEPER_SECRET_REPOSITORIES"


@dataclass(frozen=True)
class SinkPolicy:
    """Where the operator lets deploy keys be delivered beyond the secrets directory: the
    Kubernetes namespaces and the repositories (``owner/repo`` or ``owner/*``) whose Actions
    secrets slotkeeper may write. Nothing is allowed unless the operator says so: a manifest
    (anyone who can push) must not be able to put a key into ``kube-system``, or replace another
    team's Actions secret."""

    namespaces: frozenset[str] = frozenset()
    repositories: tuple[str, ...] = ()

    def refusals(self, sink: KeySecret) -> list[str]:
        """Why ``sink`` may not be written (empty when it may)."""
        if sink.kubernetes is not None and sink.kubernetes.namespace not in self.namespaces:
            allowed = ", ".join(sorted(self.namespaces)) or "none"
            return [
                f"namespace {sink.kubernetes.namespace!r} is not one the operator lets slotkeeper "
                f"write Secrets to (allowed: {allowed}; --secret-namespaces or "
                f"{SECRET_NAMESPACES_ENV})"
            ]
        if sink.github_actions is not None and not self.allows_repository(
            sink.github_actions.repository
        ):
            allowed = ", ".join(self.repositories) or "none"
            return [
                f"repository {sink.github_actions.repository!r} is not one whose Actions secrets "
                f"the operator lets slotkeeper write (allowed: {allowed}; --secret-repositories "
                f"or {SECRET_REPOSITORIES_ENV})"
            ]
        return []

    def allows_repository(self, repository: str) -> bool:
        owner = repository.split("/", 1)[0].lower()
        return any(
            allowed.lower() == repository.lower() or allowed.lower() == f"{owner}/*"
            for allowed in self.repositories
        )


def normalize_secret_path(path: str) -> str:
    """One spelling per secret file (``./a/./b`` is ``a/b``), so two names of the same file are
    never taken for two files: one key's file must never be deleted as another's."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


class FreezeWindow(_Strict):
    """A time with no deploys or decommissions: fixed (``start``/``end``) or recurring (a cron
    expression in UTC and a ``duration``)."""

    start: datetime | None = Field(
        default=None,
        strict=False,
        description="A fixed window's start, an RFC 3339 time (UTC when it names no offset).",
    )
    end: datetime | None = Field(
        default=None, strict=False, description="A fixed window's end, after its start."
    )
    cron: NonEmpty | None = Field(
        None,
        description="When a recurring window opens: a cron expression in UTC "
        "(`0 18 * * 5`: Fridays at 18:00).",
    )
    duration: Duration | None = Field(
        None, description="How long a recurring window stays open: `90m`, `12h`, `30d`, `2w`."
    )
    reason: NonEmpty | None = Field(
        None, description="Why the window exists, for whoever reads the manifests."
    )

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> FreezeWindow:
        fixed = self.start is not None or self.end is not None
        recurring = self.cron is not None or self.duration is not None
        if fixed == recurring:
            raise ValueError("give either start and end, or cron and duration")
        if fixed:
            if self.start is None or self.end is None:
                raise ValueError("a fixed window needs both start and end")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        else:
            if self.cron is None or self.duration is None:
                raise ValueError("a recurring window needs both cron and duration")
            try:
                CronSim(self.cron, datetime(2000, 1, 1, tzinfo=UTC))
            except CronSimError as exc:
                raise ValueError(f"not a cron expression: {exc}") from exc
        return self

    def frozen_until(self, now: datetime) -> datetime | None:
        """When the window that contains ``now`` ends, or None outside every window."""
        if self.start is not None and self.end is not None:
            return self.end if self.start <= now < self.end else None
        assert self.cron is not None and self.duration is not None
        length = parse_duration(self.duration)
        # The first firing after (now - length) is the only one whose window can hold now.
        fired = next(iter(CronSim(self.cron, now - length - timedelta(seconds=1))))
        return fired + length if fired <= now else None


#: the placeholder a ``refFrom`` template may hold (and the whole of the rule ``version``)
VERSION_PLACEHOLDER = "{version}"


def ref_name_problem(ref: str) -> str | None:
    """Why ``ref`` cannot name a branch, tag or commit (git's check-ref-format rules, plus no
    leading '-'), or None when it can."""
    if not ref:
        return "is empty"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in " ~^:?*[\\" for c in ref):
        return "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if ".." in ref or "@{" in ref or "//" in ref or ref == "@":
        return "must not contain '..', '@{' or '//', nor be '@'"
    if ref.startswith(("-", "/")) or ref.endswith(("/", ".")):
        return "must not start with '-' or '/', nor end with '/' or '.'"
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return "no part between slashes may start with '.' or end with '.lock'"
    return None


def _check_ref(value: str | None) -> str | None:
    if value is not None and (problem := ref_name_problem(value)) is not None:
        raise ValueError(f"is not a git ref name: it {problem}")
    return value


def _check_ref_rule(value: str | None) -> str | None:
    """``version``, or a template whose only placeholder is ``{version}`` (``v{version}``)."""
    if value is None or value == "version":
        return value
    if VERSION_PLACEHOLDER not in value:
        raise ValueError(
            "must be 'version' or a template holding {version}, e.g. 'v{version}' "
            "(a fixed ref is declared as `ref` on the slot)"
        )
    rest = value.replace(VERSION_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise ValueError("the only placeholder allowed is {version}")
    problem = ref_name_problem(value.replace(VERSION_PLACEHOLDER, "1.0.0"))
    if problem is not None:
        raise ValueError(f"does not make a git ref name: it {problem}")
    return value


def render_ref_rule(rule: str, version: str) -> str:
    """The ref a ``refFrom`` rule gives for an artifact version."""
    return version if rule == "version" else rule.replace(VERSION_PLACEHOLDER, version)


class SlotPromotion(_Strict):
    """A slot's own promotion rule, over its environment's ``promotion``."""

    soak: Duration | None = Field(
        None, description="This slot's soak time upstream, over the environment's."
    )
    require_targets: list[Slug] | None = Field(
        None, description="This slot's required upstream targets, over the environment's."
    )
    exempt: bool = Field(
        False,
        description="The slot is not promoted from upstream (it exists here only): the policy "
        "does not hold its deploys.",
    )


class PromotionPolicy(_Strict):
    """How artifacts reach this environment: from the upstream environment ``from``, once they
    ran there long enough without being rolled back or fixed."""

    from_: Slug = Field(
        alias="from", description="The upstream environment this one is promoted from."
    )
    soak: Duration = Field(
        "0m",
        description="How long the artifact must have been DEPLOYED upstream, not rolled back "
        "nor superseded by a fix there: `30m`, `2h`, `1d`.",
    )
    require_targets: list[Slug] = Field(
        default_factory=list,
        description="Upstream targets whose sync of the artifact must have settled (e.g. Unkey "
        "READY); each must be one of the upstream environment's targets.",
    )
    auto: bool = Field(
        False,
        description="The daemon opens a pull request on the manifests repository for each "
        "artifact ready to promote here (see the operator's --promotion-* settings).",
    )


class SlotSpec(_Strict):
    """A place in an environment that holds exactly one artifact at a time."""

    artifact: Artifact = Field(description="What belongs in this slot.")
    ref: NonEmpty | None = Field(
        None,
        description="The git ref GitHub deploys: a branch, tag or commit of the environment's "
        "repository. Wins over any refFrom.",
    )
    ref_from: NonEmpty | None = Field(
        None,
        description="This slot's own rule for its git ref, over the environment's: `version` "
        "(the artifact's version is the ref) or a template holding `{version}` "
        "(`api-{version}`).",
    )
    suspend: bool = Field(
        False,
        description="No changes in this slot while set: its actions stay in the plan, blocked, "
        "and status shows them pending.",
    )
    annotations: dict[NonEmpty, str] = Field(
        default_factory=dict,
        description='Free-form notes carried on the record; `fix: "true"` / `hotfix: "true"` '
        "mark the deployment as a fix for iftrue (DORA tracking). A change here alone deploys "
        "nothing: it describes the slot's next deployment.",
    )
    promotion: SlotPromotion | SkipJsonSchema[None] = Field(
        None,
        description="This slot's promotion rule over the environment's `promotion` (soak, "
        "requireTargets, or exempt).",
    )

    _ref = field_validator("ref")(_check_ref)
    _ref_from = field_validator("ref_from")(_check_ref_rule)


class DeployKeySpec(_Strict):
    """An SSH deploy key slotkeeper creates on a repository, rotates and revokes."""

    repository: Repository = Field(description="The `owner/repo` the key is registered on.")
    title: Annotated[str, StringConstraints(pattern=KEY_TITLE_PATTERN)] = Field(
        description="The key's name: letters, digits, `.`, `_` and `-`, up to 80 characters. "
        "On GitHub the key is titled `slotkeeper:<title>:<date>`."
    )
    read_only: bool = Field(
        True, description="Whether the key may only read (default true). A change rotates it."
    )
    rotate_after: Duration | None = Field(
        None,
        description="Rotate the key once it is older than this: `90m`, `12h`, `30d`, `2w` "
        "(absent: never for its age).",
    )
    secret: KeySecret | SkipJsonSchema[None] = Field(
        None,
        description="Where the private half is delivered: `{file: PATH}`, `{kubernetes: ...}` or "
        "`{githubActions: ...}`. Exactly one of secret and secrets.",
    )
    secrets: Annotated[list[KeySecret], Field(max_length=10)] = Field(
        [],
        description="Several places the private half is delivered to (at most one file). A "
        "rotation deletes the old key on GitHub only once every one holds the new key.",
    )

    @model_validator(mode="after")
    def _delivered(self) -> DeployKeySpec:
        if (self.secret is None) == (not self.secrets):
            raise ValueError("give exactly one of secret and secrets")
        labels = [sink.label for sink in self.sinks]
        if len(set(labels)) != len(labels):
            raise ValueError("a place is listed twice under secrets")
        if sum(sink.file is not None for sink in self.sinks) > 1:
            raise ValueError("at most one file per key under secrets")
        return self

    @property
    def sinks(self) -> tuple[KeySecret, ...]:
        """Every place the private half goes, in the order declared."""
        return (self.secret,) if self.secret is not None else tuple(self.secrets)

    @property
    def secret_file(self) -> str:
        """The file the private half is written to, or "" when it goes to no file."""
        return next((sink.file for sink in self.sinks if sink.file is not None), "")


class EnvironmentSpec(_Strict):
    """What an environment holds, how it is guarded and where it is mirrored."""

    repository: Repository | None = Field(
        None,
        description="The `owner/repo` where the GitHub deployments (and refs) of this "
        "environment live.",
    )
    ref_from: NonEmpty | None = Field(
        None,
        description="How the slots' git refs follow from their artifacts' versions: `version` "
        "(image v1.4.2 is deployed at the tag v1.4.2) or a template holding `{version}` "
        "(`v{version}`). A slot's own refFrom or ref wins.",
    )
    production: bool = Field(
        False, description="GitHub's `production_environment` on its deployments (default false)."
    )
    transient: bool = Field(
        False,
        description="GitHub's `transient_environment`: a preview environment (default false).",
    )
    protected: bool = Field(
        False,
        description="Guards removals, not deploys: decommissions and deploy-key revocations "
        "here need `--allow-decommission` or an approval (default false).",
    )
    order: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Where the environment is shown among the others (dashboard columns, "
        "lower first), e.g. 10 dev, 20 staging, 30 production. Without it, production "
        "environments come after the others, each group by name.",
    )
    suspend: bool = Field(
        False,
        description="No changes in this environment while set: its actions stay in the plan, "
        "blocked, and status shows them pending.",
    )
    freeze: list[FreezeWindow] = Field(
        default_factory=list,
        description="Windows with no deploys or decommissions (key rotations and target syncs of "
        "what is recorded go on).",
    )
    promotion: PromotionPolicy | SkipJsonSchema[None] = Field(
        None,
        description="Artifacts come here from an upstream environment: a deploy of an artifact "
        "that did not soak there, was rolled back or fixed there, or was rolled back here, is "
        "held with the reason (approvable).",
    )
    targets: list[Slug] = Field(
        default_factory=list,
        description="Names of the operator's targets (in the targets file) this environment is "
        "mirrored to. The ledger always records.",
    )
    slots: dict[Slug, SlotSpec] = Field(
        default_factory=dict,
        description="Slot name (a lowercase name of a-z, 0-9 and `-`) to what belongs there.",
    )
    deploy_keys: list[DeployKeySpec] = Field(
        default_factory=list,
        description="Deploy keys slotkeeper creates, rotates on schedule and revokes when they "
        "leave this list.",
    )

    _ref_from = field_validator("ref_from")(_check_ref_rule)

    def frozen_until(self, now: datetime) -> datetime | None:
        """When the freeze windows open at ``now`` end (the latest of them), or None."""
        ends = [end for window in self.freeze if (end := window.frozen_until(now)) is not None]
        return max(ends, default=None)


class Metadata(_Strict):
    """A document's name, and labels for people and tools."""

    name: Slug = Field(
        description="The name: 1 to 63 characters of a-z, 0-9 and `-`, starting and ending "
        "with a letter or digit."
    )
    labels: dict[NonEmpty, NonEmpty] = Field(
        default_factory=dict,
        description="Free-form labels (name to text) for people and tools; slotkeeper reads "
        "none of them.",
    )


class EnvironmentDocument(_Strict):
    """One environment of the manifests: which artifact belongs in each of its slots."""

    api_version: Literal["slotkeeper/v1"] = Field(
        description="The manifest format: `slotkeeper/v1`."
    )
    kind: Literal["Environment"] = Field(
        description="`Environment` (targets belong to the operator's targets file)."
    )
    metadata: Metadata = Field(description="The environment's name.")
    spec: EnvironmentSpec = Field(description="What the environment holds.")


HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$")]


_LOOPBACK_NAMES = frozenset({"localhost"})


def check_url(value: str, allow_insecure_http: bool) -> str:
    """A URL with a host; plain http:// only to a loopback host unless explicitly allowed."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from exc
    if not host:
        raise ValueError("is not a valid URL: it names no host")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(host):
        raise ValueError(
            "plain http:// is only allowed to loopback hosts; use https:// or set "
            "allowInsecureHttp: true"
        )
    return value


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TargetSpecBase(_Strict):
    """What every type of target is: its ``type`` name, and what it can do, as data.

    The capabilities are class variables that a target type's spec sets for itself; the pure
    planner (and the manifests' checks) read them from the spec of each configured target, never
    from its type name. So a target type has one home: its spec class here, its adapter module in
    ``slotkeeper.targets``, joined by ``slotkeeper.targets.registry``.
    """

    if TYPE_CHECKING:
        #: the name targets files give the type: each spec declares it as one literal (declared
        #: here for type checkers only, so that every spec's schema keeps its own field order)
        type: str

    #: the artifact kinds this type of target can deploy; a record of another kind is not sent
    #: there, and the plan says so
    artifact_kinds: ClassVar[frozenset[ArtifactKind]] = frozenset(ArtifactKind)
    #: whether a record sent to this type of target needs a git ref of the environment's
    #: repository (decided before anything is sent: see ``decide_ref``)
    needs_git_ref: ClassVar[bool] = False
    #: whether this type of target holds repository deploy keys (created, rotated, revoked)
    holds_deploy_keys: ClassVar[bool] = False
    #: whether the target retires a slot's previous record by itself when a new one is
    #: recorded there: a superseded record is then never sent again
    supersedes_itself: ClassVar[bool] = False
    #: where this type comes among a new record's targets, lowest first: a target that others
    #: refer to (GitHub's deployment, whose node id iftrue sends) is told first
    sync_order: ClassVar[int] = 9

    @classmethod
    def type_name(cls) -> str:
        """The ``type`` this spec class stands for (its literal), without an instance."""
        names = get_args(cls.model_fields["type"].annotation)
        if len(names) != 1 or not isinstance(names[0], str):
            raise TypeError(f"{cls.__name__}.type must be one Literal string")
        return names[0]

    def heartbeat(self) -> timedelta | None:
        """How often a DEPLOYED record is sent again though nothing changed (None: never)."""
        return None


class HttpTargetSpec(TargetSpecBase):
    """The connection settings every target reached over HTTP has, and the rule for its URLs."""

    allow_insecure_http: bool = Field(
        False,
        description="Allow a plain http:// URL to a host other than loopback (default false).",
    )
    max_wait_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        60,
        description="The longest wait, in seconds, for a rate limit's retry-after (or the write "
        "budget) before the work is left pending for the next reconcile (default 60).",
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        10, description="The timeout of one request, in seconds (default 10)."
    )

    @field_validator("base_url", "repository_url", mode="after", check_fields=False)
    @classmethod
    def _secure_url(cls, value: str, info: ValidationInfo) -> str:
        if "allow_insecure_http" not in info.data:
            return value  # itself invalid, and reported: judge the URL once it is fixed
        return check_url(value, bool(info.data["allow_insecure_http"]))


class WriteLimit(_Strict):
    """At most ``writes`` content-creating requests in any ``perSeconds`` seconds."""

    writes: Annotated[int, Field(ge=1, le=100_000)] = Field(
        description="How many content-creating requests the window allows."
    )
    per_seconds: Annotated[int, Field(ge=1, le=86_400)] = Field(
        description="The window's length, in seconds."
    )


class GithubApp(_Strict):
    """A GitHub App slotkeeper authenticates as: a JWT signed with the App's private key buys
    short-lived installation tokens, one per installation (organisation or user)."""

    client_id: NonEmpty | None = Field(
        None,
        description="The App's client ID (`Iv23...`), the JWT's issuer. Give clientId or appId.",
    )
    app_id: Annotated[int, Field(ge=1)] | None = Field(
        None, description="The App's numeric ID, still accepted as the issuer by GitHub."
    )
    private_key: SecretRef = Field(
        description="The App's private key (PEM), from an environment variable or a file "
        "(`{file: /run/secrets/github-app.pem}`)."
    )
    installation_id: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="The installation to use for every repository (absent: looked up per "
        "repository, `GET /repos/{owner}/{repo}/installation`, and cached).",
    )

    @model_validator(mode="after")
    def _issuer(self) -> GithubApp:
        if self.client_id is None and self.app_id is None:
            raise ValueError("give clientId (or appId): the App the JWT is issued by")
        return self

    @property
    def issuer(self) -> str:
        """The JWT's ``iss``: the client ID when given (GitHub's advice), else the App ID."""
        return self.client_id if self.client_id is not None else str(self.app_id)


class GithubAuth(_Strict):
    """How the GitHub target authenticates, when not with a token."""

    app: GithubApp = Field(description="A GitHub App: clientId (or appId) and privateKey.")


class GithubTargetSpec(HttpTargetSpec):
    needs_git_ref: ClassVar[bool] = True  # GitHub refuses a deployment of an unknown ref (422)
    holds_deploy_keys: ClassVar[bool] = True
    sync_order: ClassVar[int] = 0  # first: iftrue sends the node id of its deployment

    type: Literal["github"] = Field(
        description="`github`: GitHub Deployments and the repositories' deploy keys."
    )
    base_url: HttpUrl = Field(
        "https://api.github.com",
        description="The API: `https://api.github.com`, or `https://HOST/api/v3` for GitHub "
        "Enterprise Server.",
    )
    token: SecretRef | SkipJsonSchema[None] = Field(
        None,
        description="A token: Deployments (write) and, for deploy keys, Administration "
        "(write) on the repositories (classic tokens: `repo`). Exactly one of token and auth.",
    )
    auth: GithubAuth | SkipJsonSchema[None] = Field(
        None,
        description="Authenticate as a GitHub App instead of with a token: "
        "`{app: {clientId, privateKey: {file: ...}}}`. Exactly one of token and auth.",
    )
    writes_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        80,
        description="Write budget per minute (GitHub's documented secondary limit for "
        "content-creating requests: 80).",
    )
    writes_per_hour: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        500, description="Write budget per hour (GitHub's documented secondary limit: 500)."
    )
    write_limits: Annotated[list[WriteLimit], Field(max_length=10)] = Field(
        [],
        description="More windows of the write budget, all of which apply too (e.g. a GitHub "
        "Enterprise Server's own limits): `[{writes: 20, perSeconds: 10}]`.",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> GithubTargetSpec:
        if (self.token is None) == (self.auth is None):
            raise ValueError("give exactly one of token and auth (a GitHub App)")
        return self


class ChainloopTargetSpec(HttpTargetSpec):
    supersedes_itself: ClassVar[bool] = True  # recording a new artifact supersedes the old one
    sync_order: ClassVar[int] = 1

    type: Literal["chainloop"] = Field(description="`chainloop`: Chainloop deployment records.")
    base_url: HttpUrl = Field(
        "https://api.app.chainloop.dev", description="The Chainloop API's URL."
    )
    token: SecretRef = Field(description="The Chainloop API token.")
    heartbeat_interval: Duration = Field(
        "1h",
        description="A DEPLOYED record not recorded within this interval is recorded again, so "
        "Chainloop's last_seen_at stays true: `90m`, `12h`, `30d`, `2w` (default 1h).",
    )

    def heartbeat(self) -> timedelta | None:
        return parse_duration(self.heartbeat_interval)


class UnkeyTargetSpec(HttpTargetSpec):
    artifact_kinds: ClassVar[frozenset[ArtifactKind]] = frozenset({ArtifactKind.CONTAINER_IMAGE})
    sync_order: ClassVar[int] = 2

    type: Literal["unkey"] = Field(description="`unkey`: Unkey deployments of container images.")
    base_url: HttpUrl = Field("https://api.unkey.com", description="The Unkey API's URL.")
    root_key: SecretRef = Field(description="The Unkey root key.")
    project: Slug = Field(description="The Unkey project's slug.")
    app: Slug = Field(description="The Unkey app's slug.")
    keyspace_id: NonEmpty | None = Field(
        None, description="Sent as `keyspaceId` with each deployment, when set."
    )
    poll_timeout_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        300,
        description="How long one apply polls a deployment for a final status, in seconds; "
        "then it stays pending until the next reconcile (default 300).",
    )


class IftrueTargetSpec(HttpTargetSpec):
    sync_order: ClassVar[int] = 3

    type: Literal["iftrue"] = Field(description="`iftrue`: DORA tracking, one event per deploy.")
    base_url: HttpUrl = Field("https://api.iftrue.co", description="The iftrue API's URL.")
    token: SecretRef = Field(description="The iftrue API token (a JWT).")
    member_id: NonEmpty = Field(description="Sent as `member_id` with each deployment event.")
    repository_url: HttpUrl = Field(
        description="Sent as `repository_url` with each deployment event."
    )


#: Every target type's spec class, in the order messages list their names: the one list that the
#: ``TargetSpec`` union and the known type names are built from. A new target type adds its
#: spec here (and its adapter to ``slotkeeper.targets.registry``); a test-only one is added and
#: removed at run time with ``add_target_spec`` / ``remove_target_spec``.
TARGET_SPECS: list[type[TargetSpecBase]] = [
    GithubTargetSpec,
    ChainloopTargetSpec,
    UnkeyTargetSpec,
    IftrueTargetSpec,
]


def target_types() -> tuple[str, ...]:
    """The ``type`` names of the known target types, in ``TARGET_SPECS`` order."""
    return tuple(spec.type_name() for spec in TARGET_SPECS)


class _KnownTargetSpecs:
    """Validates a target spec as the union of ``TARGET_SPECS`` tagged by ``type``: the union is
    read when a model's schema is built, so the models holding it are rebuilt when it changes."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        if len(TARGET_SPECS) == 1:
            return handler.generate_schema(TARGET_SPECS[0])
        union: Any = reduce(operator.or_, TARGET_SPECS)
        tagged: Any = Annotated[union, Field(discriminator="type")]
        return handler.generate_schema(tagged)


#: a target's spec: one of ``TARGET_SPECS``, chosen by its ``type`` (typed as their base: code
#: reads its capabilities, never its type name)
TargetSpec = Annotated[TargetSpecBase, _KnownTargetSpecs()]


class TargetDocument(_Strict):
    """One target of the operator's targets file: where it is and which credential it carries."""

    api_version: Literal["slotkeeper/v1"] = Field(
        description="The manifest format: `slotkeeper/v1`."
    )
    kind: Literal["Target"] = Field(description="`Target`.")
    metadata: Metadata = Field(
        description="The target's name, which environments list in `spec.targets`."
    )
    spec: TargetSpec = Field(
        description="The target: `type` (github, chainloop, unkey or iftrue) says which fields "
        "it has."
    )


class Location(BaseModel):
    """Where a document was declared, for messages."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Revision(BaseModel):
    """The git commit the manifests were read at (``dirty`` when the work tree had changes)."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    sha: str
    message: str
    author: str
    timestamp: Timestamp
    branch: str | None
    dirty: bool = False
    #: ``owner/repo`` of the manifests' own repository (from its origin URL), when known
    repository: str | None = None


class BrokenFile(BaseModel):
    """A manifest file that does not validate, and whether its last good version stands in."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    file: str
    errors: tuple[str, ...]
    last_good: bool = False


class ManifestStatus(BaseModel):
    """Broken manifest files as last seen by a reconcile: what is held back, and since when."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    at: datetime
    #: the revision whose broken files are not applied
    revision: str | None
    broken: tuple[BrokenFile, ...]


@dataclass(frozen=True)
class Scope:
    """The environments a reconcile plans (see :mod:`slotkeeper.scope`), and the repositories
    whose deploy keys they hold: the ledger reads only their rows."""

    environments: frozenset[str]
    repositories: frozenset[str]


class DesiredState(BaseModel):
    """Everything the manifests declare, validated and cross-checked.

    A tolerant load (the daemon, ``run --once``) may leave broken files out: they are listed in
    ``broken``, and the environments only their last good versions declare in ``stand_ins``.
    Nothing is removed outside the environments of valid files while anything is broken."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    environments: dict[str, EnvironmentSpec]
    targets: dict[str, TargetSpec]
    #: where each environment (by name) and target (``target/NAME``) is declared
    locations: dict[str, Location] = Field(default_factory=dict)
    #: the line of each slot (by environment and slot) in its environment's file
    slot_lines: dict[tuple[str, str], int] = Field(default_factory=dict)
    broken: tuple[BrokenFile, ...] = ()
    stand_ins: frozenset[str] = frozenset()
    #: where the operator lets deploy keys be delivered beyond the secrets directory
    sink_policy: SinkPolicy = Field(default_factory=SinkPolicy)

    def declared_by_valid_file(self, environment: str) -> bool:
        return environment in self.environments and environment not in self.stand_ins

    def deploy_key(self, repository: str, title: str) -> DeployKeySpec | None:
        """The deploy key the manifests declare for ``repository``/``title``, if any."""
        for spec in self.environments.values():
            for key in spec.deploy_keys:
                if (key.repository, key.title) == (repository, title):
                    return key
        return None

    def slot_location(self, environment: str, slot: str) -> Location | None:
        """Where a slot is declared; else where its environment is; else None."""
        declared = self.locations.get(environment)
        line = self.slot_lines.get((environment, slot))
        if declared is None or line is None:
            return declared
        return Location(file=declared.file, line=line)


def add_target_spec(spec: type[TargetSpecBase]) -> None:
    """Make a target type's spec known: targets files may name its ``type`` from now on.

    For a type that lives outside this list (a test's); ``slotkeeper.targets.registry.register``
    calls it together with registering the type's adapter."""
    name = spec.type_name()
    if name in target_types():
        raise ValueError(f"a target type named {name!r} is already known")
    TARGET_SPECS.append(spec)
    _rebuild_target_models()


def remove_target_spec(spec: type[TargetSpecBase]) -> None:
    """Forget a target type added with :func:`add_target_spec`."""
    TARGET_SPECS.remove(spec)
    _rebuild_target_models()


def _rebuild_target_models() -> None:
    """The models that hold a ``TargetSpec`` validate against the union as it is now."""
    for model in (TargetDocument, DesiredState):
        model.model_rebuild(force=True)


@dataclass(frozen=True)
class DecidedRef:
    """The git ref a slot's records are deployed at (``ref``), or why there is none."""

    ref: str | None
    #: the rule that gave it (``ref``, ``refFrom`` or ``commit``), or what is wrong and what to
    #: declare instead
    reason: str


def decide_ref(
    slot: SlotSpec, environment: EnvironmentSpec, revision: Revision | None
) -> DecidedRef:
    """The git ref a new record of ``slot`` is deployed at, decided before anything is sent.

    In order: the slot's ``ref``; else its ``refFrom`` rule, else the environment's, applied to
    the artifact's version; else the manifests' commit, but only when the manifests live in the
    environment's own repository (GitHub knows no commit of another repository: 422); else none.
    Pure: ``revision`` is the manifests' git revision, or None outside git.
    """
    if slot.ref is not None:
        return DecidedRef(slot.ref, "ref")
    rule = slot.ref_from or environment.ref_from
    if rule is not None:
        where = "on the slot" if slot.ref_from is not None else "on the environment"
        if slot.artifact.version is None:
            return DecidedRef(
                None,
                f"refFrom: {rule} ({where}) needs the artifact's version, and "
                f"{slot.artifact.name} has only a digest: add its version, or declare ref on "
                "the slot",
            )
        ref = render_ref_rule(rule, slot.artifact.version)
        if (problem := ref_name_problem(ref)) is not None:
            return DecidedRef(
                None,
                f"refFrom: {rule} ({where}) makes {ref!r}, which is not a git ref name (it "
                f"{problem}): declare ref on the slot",
            )
        return DecidedRef(ref, "refFrom")
    repository = environment.repository
    if revision is None:
        why = "they are not in a git work tree"
    elif revision.repository is None:
        why = "their git origin names no hosted repository"
    elif repository is not None and revision.repository.lower() == repository.lower():
        return DecidedRef(revision.sha, "commit")
    else:
        why = f"they live in {revision.repository}"
    return DecidedRef(
        None,
        f"no git ref of {repository or 'the environment (it names no repository)'} to deploy "
        f"on GitHub: the manifests' commit is not one of its commits ({why}); declare "
        "refFrom: version (or a template such as v{version}) on the environment or the slot, "
        "or ref on the slot",
    )


class RecordStatus(StrEnum):
    DEPLOYED = "DEPLOYED"
    SUPERSEDED = "SUPERSEDED"
    DECOMMISSIONED = "DECOMMISSIONED"


class KeyStatus(StrEnum):
    ACTIVE = "ACTIVE"
    ROTATED = "ROTATED"
    REVOKED = "REVOKED"


class CommitInfo(BaseModel):
    """A commit a deployment brought: when it was written and committed, and its subject."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    sha: str
    authored_at: Timestamp
    committed_at: Timestamp
    subject: str


_FIX = re.compile(r"^(fix|hotfix)(\([^)]*\))?!?:", re.IGNORECASE)


def fix_kind(subject: str) -> str | None:
    """``fix`` or ``hotfix`` for a conventional-commit subject with that prefix."""
    match = _FIX.match(subject)
    return match.group(1).lower() if match else None


def is_fix(annotations: dict[str, str]) -> bool:
    """A record its slot's annotations mark as a fix or a hotfix."""
    return annotations.get("fix") == "true" or annotations.get("hotfix") == "true"


class Record(BaseModel):
    """One row of the ledger: an artifact deployed into a slot."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    id: int
    environment: str
    slot: str
    artifact: Artifact
    ref: str | None = None
    status: RecordStatus
    created_at: Timestamp
    updated_at: Timestamp
    last_seen_at: Timestamp
    superseded_by: int | None = None
    revision: str | None = None
    action_id: str
    annotations: dict[str, str] = Field(default_factory=dict)


class KeyRecord(BaseModel):
    """One deploy key slotkeeper created; the private half lives only in the secret sink."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    id: int
    environment: str
    repository: str
    title: str
    fingerprint: str
    public_key: str
    read_only: bool
    secret_file: str
    rotate_after: str | None
    status: KeyStatus
    created_at: Timestamp
    updated_at: Timestamp
    replaced_by: int | None = None
    #: where the private half was declared to go (the file among them)
    sinks: tuple[KeySecret, ...] = ()


class SinkFinding(BaseModel):
    """What a place of a deploy key said when the targets were refreshed."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    #: why slotkeeper may not write there (the key's action is held)
    refused: tuple[str, ...] = ()
    #: what someone else changed or deleted (a rotation repairs it)
    drift: tuple[str, ...] = ()


class SinkHolding(BaseModel):
    """What one place (a file, a Kubernetes Secret, an Actions secret) of a deploy key is known
    to hold: the key last delivered there, and the last failure to deliver one."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    repository: str
    title: str
    sink: str
    key_id: int | None = None
    fingerprint: str | None = None
    version: str | None = None
    delivered_at: Timestamp | None = None
    last_error: str | None = None
    failed_at: Timestamp | None = None


class Decision(StrEnum):
    """What an operator decided about one held action."""

    APPROVED = "approved"
    REJECTED = "rejected"


#: how long an approval lets its action through, unless ``approve --expires-in`` says otherwise
APPROVAL_TTL = timedelta(hours=24)


class Approval(BaseModel):
    """An operator's decision about one held action (``slotkeeper approve`` / ``reject``),
    bound to the action's content digest: an action that changed is another action.

    An approval lets exactly that action through the guards that wait for a person (a
    protected environment, the mass guard; a freeze window only with ``override_freeze``) until
    ``expires_at``, once: applying the action uses it up. A rejection keeps the action held and
    stops asking for an approval, until someone approves it after all."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    id: int
    digest: str
    action_id: str
    decision: Decision
    actor: str
    reason: str = ""
    override_freeze: bool = False
    at: Timestamp
    expires_at: Timestamp | None = None
    used_at: Timestamp | None = None

    def valid(self, now: datetime) -> bool:
        """An approval that may still be used at ``now`` (a rejection never is)."""
        return (
            self.decision is Decision.APPROVED
            and self.used_at is None
            and (self.expires_at is None or now < self.expires_at)
        )


class EnvironmentRecord(BaseModel):
    """What the ledger remembers of an environment, so guards hold and targets can still be
    told about its records after it leaves the manifests."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    name: str
    protected: bool
    production: bool
    repository: str | None
    transient: bool = False
    targets: tuple[str, ...] = ()


class SyncSubject(StrEnum):
    RECORD = "record"
    KEY = "key"


class SyncStatus(StrEnum):
    SYNCED = "synced"
    PENDING = "pending"
    FAILED = "failed"


class RemoteState(StrEnum):
    """What a target should hold for a subject: a record's deployment active or inactive, a
    key present or absent."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    PRESENT = "present"
    ABSENT = "absent"


#: what public pages show for a failure recorded before its fixed reason was kept
UNEXPLAINED_ERROR = "failed (details in `slotkeeper status`)"


class TargetSync(BaseModel):
    """What one target holds for one record or key, as last confirmed (or attempted)."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    target: str
    subject: SyncSubject
    subject_id: int
    wanted: RemoteState
    remote_id: str | None = None
    remote_state: RemoteState | None = None
    remote_updated_at: str | None = None
    status: SyncStatus
    attempts: int = 0
    #: the last failure as the target adapter told it (it may quote the target's answer): for
    #: operators (``slotkeeper status``, ``history``), never on a page anyone can read
    last_error: str | None = None
    #: the same failure in a short fixed text (``errors.public_reason``: status code and phrase,
    #: nothing the target wrote): what ``/status`` and the dashboard show; None on rows written
    #: before it was kept
    error_reason: str | None = None
    updated_at: Timestamp
    #: what the target said about it beyond an id (e.g. Unkey's status and steps, GitHub's
    #: node id), shown by ``history``
    remote_detail: dict[str, Any] = Field(default_factory=dict)
    #: where the remote copy lives (e.g. GitHub's base URL and repository), as the target said
    #: when it created or last changed it: retirements go there, wherever the target points now
    location: dict[str, str] = Field(default_factory=dict)
    #: not to be tried again before this time: the target's answer asked for a pause (a rate
    #: limit's retry-after, journaled with the failure); the planner holds the sync until then
    not_before: Timestamp | None = None

    @property
    def settled(self) -> bool:
        return self.status is SyncStatus.SYNCED and self.remote_state is self.wanted

    @property
    def public_error(self) -> str | None:
        """The last failure as pages anyone can read show it: the fixed ``error_reason``, or
        for a row written before that was kept, a pointer to where the details are."""
        if self.error_reason is not None:
            return self.error_reason
        return UNEXPLAINED_ERROR if self.last_error else None

    @property
    def shown_status(self) -> SyncStatus:
        """The status as shown to people: synced only once the target holds what is wanted."""
        return (
            SyncStatus.PENDING
            if self.status is SyncStatus.SYNCED and not self.settled
            else (self.status)
        )


class Drift(BaseModel):
    """A difference a target reported between what it holds and what the ledger says.

    ``observed`` is ``missing`` (deleted remotely), ``orphan`` (a managed key the ledger does not
    know, left by an interrupted rotation) or the remote state seen (e.g. ``inactive``).
    """

    model_config = ConfigDict(defer_build=True, frozen=True)

    target: str
    subject: SyncSubject
    subject_id: int | None
    observed: str
    remote_id: str | None = None
    repository: str | None = None
    detail: str = ""
    #: the target reports the deployment failed (set there by someone else, e.g. the workflow
    #: that rolled it out): a fact to record, never a difference to overwrite
    failure: bool = False
    #: the target's own time of what was observed (to read nothing again till it changes)
    updated_at: str | None = None


#: what a target reports of a deployment that failed: Unkey's status, GitHub's states
TARGET_FAILURES = frozenset({"FAILED", "failure", "error"})


class RecordedState(BaseModel):
    """What the ledger says is deployed right now: the planner's second input."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    lineage: str
    serial: int
    deployed: dict[tuple[str, str], Record] = Field(default_factory=dict)
    keys: dict[tuple[str, str], KeyRecord] = Field(default_factory=dict)
    environments: dict[str, EnvironmentRecord] = Field(default_factory=dict)
    #: target syncs by (target, subject, subject id)
    syncs: dict[tuple[str, SyncSubject, int], TargetSync] = Field(default_factory=dict)
    #: retired records and keys some target still has to be told about, by id
    retired_records: dict[int, Record] = Field(default_factory=dict)
    retired_keys: dict[int, KeyRecord] = Field(default_factory=dict)
    #: what each place of each deploy key holds, by (repository, title) and place
    sinks: dict[tuple[str, str], dict[str, SinkHolding]] = Field(default_factory=dict)
    #: the latest unused decision about each held action, by the action's content digest
    approvals: dict[str, Approval] = Field(default_factory=dict)

    @cached_property
    def syncs_by_subject(self) -> dict[tuple[SyncSubject, int], list[TargetSync]]:
        """The sync rows of each record or key (an index over ``syncs``)."""
        index: dict[tuple[SyncSubject, int], list[TargetSync]] = {}
        for (_, subject, subject_id), sync in sorted(self.syncs.items()):
            index.setdefault((subject, subject_id), []).append(sync)
        return index
