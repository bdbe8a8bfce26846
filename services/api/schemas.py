"""Request and response bodies of the JSON API."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.ids import TemplateId
from shared.models import BaseParams, DnsLabel, EnvName, Release, ReleaseKind, ReleaseState

ImageTag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateIn(Body):
    name: str = Field(min_length=1, max_length=100)
    content: str = Field(min_length=1, max_length=200_000)


class ConfigIn(Body):
    template_id: TemplateId
    params: BaseParams = Field(default_factory=BaseParams)


class ReleaseIn(Body):
    service: DnsLabel
    environment: EnvName
    version: ImageTag
    description: str = Field(default="", max_length=2000)


class ActionIn(Body):
    description: str = Field(default="", max_length=2000)


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

    @classmethod
    def of(cls, release: Release) -> "ReleaseSummary":
        return cls(
            **release.model_dump(include=set(cls.model_fields) - {"duration_s"}),
            duration_s=release.duration_s,
        )


class ReleaseDetail(Release):
    """A release with everything recorded about it."""

    duration_s: float | None

    @classmethod
    def of(cls, release: Release) -> "ReleaseDetail":
        return cls(**release.model_dump(), duration_s=release.duration_s)


class ReleasePage(BaseModel):
    items: list[ReleaseSummary]
    next_cursor: str | None
