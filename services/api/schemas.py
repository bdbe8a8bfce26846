"""Request and response bodies of the JSON API."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.api.diff import ManifestDiff
from shared.errors import Invalid
from shared.ids import TemplateId
from shared.models.analysis import AnalysisTemplate, Metric
from shared.models.base import DnsLabel, EnvName
from shared.models.catalog import BaseParams, Environment, ServiceConfig, TemplateSource
from shared.models.plan import MAX_CONCURRENCY, MAX_ITEMS, OnFailure
from shared.models.release import Release, ReleaseKind
from shared.models.users import Grant, UserName
from shared.release.machine import ReleaseState

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TAG_RULE = "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"


def _tag(value: str) -> str:
    """An image tag as the distribution spec allows one; refused in words, not a pattern."""
    if not TAG.match(value):
        raise PydanticCustomError(
            "image_tag", "{value} is not an image tag: " + TAG_RULE, {"value": repr(value[:130])}
        )
    return value


ImageTag = Annotated[str, AfterValidator(_tag)]


class EnvironmentIn(Environment):
    """An environment to save; ``create_namespace``: Fabu creates its namespace in the
    cluster if it is missing (an admin's choice, audited), else a missing one is refused."""

    create_namespace: bool = False

    def environment(self) -> Environment:
        return Environment.model_validate(self.model_dump(exclude={"create_namespace"}))


class Problem(BaseModel):
    """Every error answer: what went wrong, naming the field or the cause. Request
    validation lists each problem with its location."""

    detail: str | list[dict[str, Any]]
    # The input the error is about, when it is about one (``version``).
    field: str | None = None
    # Each problem by the path it is about, when there are several (``params.owner``).
    errors: dict[str, str] | None = None


# The error answers every route may give, in the OpenAPI description.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": meaning}
    for status, meaning in (
        (400, "the body could not be read"),
        (401, "no caller, or a token or session that is not valid"),
        (403, "the caller may not do this"),
        (404, "a named object does not exist"),
        (409, "the object's state does not allow it now"),
        (422, "the input is not valid"),
        (413, "the body is larger than 1,000,000 bytes"),
        (503, "a component Fabu needs is unavailable; try again"),
    )
}


def zoned(**times: datetime | None) -> None:
    """422 naming the first of ``times`` given without a time zone."""
    for name, value in times.items():
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name}: give a time zone, e.g. 2026-01-31T08:00:00Z")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateIn(Body):
    """Either the content (a template kept in Fabu) or a source to read it from."""

    name: str = Field(min_length=1, max_length=100)
    content: str | None = Field(default=None, min_length=1, max_length=200_000)
    # The JSON Schema of its parameters (none: Fabu's base parameters); a template read
    # from a source has its own, in ``<file>.schema.json`` beside it.
    parameters: dict[str, Any] | None = None
    source: TemplateSource | None = None

    @model_validator(mode="after")
    def _one(self) -> "TemplateIn":
        if (self.content is None) == (self.source is None):
            raise ValueError("give either content or source")
        if self.source is not None and self.parameters is not None:
            raise ValueError(
                "parameters: a template read from a source declares them in "
                "<file>.schema.json beside it"
            )
        return self


class TemplateContentIn(Body):
    content: str = Field(min_length=1, max_length=200_000)
    # Left out: the parameters stay as they are; null: Fabu's base parameters.
    parameters: dict[str, Any] | None = None


class ImageIn(Body):
    """What CI says about an image it pushed. Left out, the repository is the service's
    and the digest is the one the registry holds for the tag now."""

    # Accepted for the body of the ``image.built`` message sent as it is.
    schema_version: Literal[1] = 1
    service: str = Field(default="", max_length=63)
    repository: str = Field(default="", max_length=255)
    tag: ImageTag
    digest: Annotated[str, StringConstraints(pattern=r"^(sha256:[0-9a-f]{64})?$")] = ""
    commit_sha: str = Field(default="", max_length=64)
    pipeline_url: str = Field(default="", max_length=2000)
    pushed_at: datetime | None = None

    @model_validator(mode="after")
    def _whose(self) -> "ImageIn":
        if not self.service and not self.repository:
            raise ValueError("repository: give the service or the repository")
        return self


class ConfigIn(Body):
    template_id: TemplateId
    # Fabu's settings (canary, rollout_timeout_s, auto_rollback) and the values of the
    # template's parameters; a secret given as the mask keeps its stored value.
    params: BaseParams = Field(default_factory=BaseParams)
    note: str = Field(default="", max_length=2000)


class AnalysisTemplateIn(Body):
    """A new analysis template (``shared.models.analysis``): who saved it and when are
    the server's to set."""

    name: DnsLabel
    description: str = Field(default="", max_length=1000)
    metrics: list[Metric] = Field(min_length=1, max_length=10)


class AnalysisTemplateChange(AnalysisTemplateIn):
    """An analysis template's next version, over the ``version`` read (409 when another
    change came first)."""

    version: int = Field(ge=1)


class AnalysisTemplateView(AnalysisTemplate):
    # The current release configs that name it, as ``service/environment``.
    used_by: list[str] = Field(default_factory=list)


class ConfigView(ServiceConfig):
    """A release config with what it means for its template now."""

    # The template's parameter schema in force, and the values a release renders with
    # (the config's, with the schema's defaults filled in; secrets masked).
    parameters: dict[str, Any]
    effective: dict[str, Any]
    # Why the values do not fit the template's current version, by path (empty: they do).
    problems: dict[str, str] = Field(default_factory=dict)


class Preview(BaseModel):
    manifest: str
    template_id: str
    template_version: int
    config_version: int
    diff: ManifestDiff


class ServiceImpact(BaseModel):
    service: str
    environment: str
    # The version it would release: its latest release's, None if never released.
    version: str | None
    # The manifest rendered with the old version against the new one.
    diff: str
    error: str = ""
    # Why its config does not fit the new version, by path: releasing it is refused.
    problems: dict[str, str] = {}
    # What releasing the new version would prune: objects the old one had, the new not.
    prune: list[str] = []


class Impact(BaseModel):
    template_id: str
    from_version: int
    to_version: int
    services: list[ServiceImpact]


class Queued(BaseModel):
    service: str
    environment: str
    release_id: str | None
    error: str = ""


OverrideReason = Annotated[
    str,
    Field(
        default="",
        max_length=2000,
        description="During a freeze window, an admin's written reason to release anyway",
    ),
]


class ReleaseIn(Body):
    service: DnsLabel
    environment: EnvName
    version: ImageTag
    description: str = Field(default="", max_length=2000)
    override_reason: OverrideReason = ""


class ActionIn(Body):
    description: str = Field(default="", max_length=2000)
    override_reason: OverrideReason = ""
    # Redeploying a version that failed, was aborted or was rejected: the person saw so.
    confirmed: bool = False


class DecisionIn(Body):
    comment: str = Field(default="", max_length=2000)
    # Approving during a freeze window: an admin's written reason.
    override_reason: OverrideReason = ""


class ReleaseAccepted(BaseModel):
    id: str
    state: ReleaseState


class Cancelled(BaseModel):
    id: str
    state: ReleaseState
    # The state it was cancelled in: only an ``applied`` release had reached the cluster.
    was: ReleaseState
    message: str


class ReleaseSummary(BaseModel):
    id: str
    service: str
    environment: str
    version: str
    kind: ReleaseKind
    description: str
    operator: str
    state: ReleaseState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    source_release_id: str | None
    template_id: str
    template_version: int
    config_version: int
    reason: str
    # A canary release's step (len(params.canary): its full rollout); None otherwise.
    canary_step: int | None

    @classmethod
    def of(cls, release: Release) -> "ReleaseSummary":
        return cls(**release.model_dump(include=set(cls.model_fields)))


class ReleasePage(BaseModel):
    items: list[ReleaseSummary]
    # Give as ``cursor`` for the older page, as ``back`` for the newer one (None: none).
    next_cursor: str | None
    previous_cursor: str | None = None
    # With ``count=true``: how many match, and how many newer ones come before this page.
    total: int | None = None
    offset: int | None = None


class PlanItemIn(Body):
    service: DnsLabel
    version: ImageTag
    # Its wave (0 first), or the items it waits for, or both (the later wins).
    wave: int = Field(default=0, ge=0, le=MAX_ITEMS)
    after: list[DnsLabel] = Field(default_factory=list, max_length=MAX_ITEMS)


class PlanOptions(Body):
    """What every plan is asked with, whichever way its items are chosen."""

    name: str = Field(default="", max_length=100)
    description: str = Field(default="", max_length=2000)
    # How many items of a wave run at once.
    concurrency: int = Field(default=5, ge=1, le=MAX_CONCURRENCY)
    on_failure: OnFailure = OnFailure.STOP
    # When to start (with a time zone); none: as soon as it may.
    scheduled_at: datetime | None = None
    override_reason: OverrideReason = ""


class PlanIn(PlanOptions):
    environment: EnvName
    items: list[PlanItemIn] = Field(min_length=1, max_length=MAX_ITEMS)


class PromoteIn(PlanOptions):
    """Promote what runs healthy in ``source`` to ``environment``: the ``services``
    named, or every service of ``team`` configured in both."""

    source: EnvName
    environment: EnvName
    services: list[DnsLabel] = Field(default_factory=list, max_length=MAX_ITEMS)
    team: str = Field(default="", max_length=100)
    # The order, as a plan's ``after``: service → the services it waits for.
    after: dict[DnsLabel, list[DnsLabel]] = Field(default_factory=dict)


Password = Annotated[str, Field(min_length=10, max_length=1000)]


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class UserIn(BaseModel):
    name: UserName
    # None: the user cannot log in with a password (a CI account using tokens).
    password: Password | None = None
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)
    grants: list[Grant] = Field(default_factory=list, max_length=200)
