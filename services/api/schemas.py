"""Request and response bodies of the JSON API."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.ids import TemplateId
from shared.models import BaseParams, DnsLabel, EnvName, Release, ReleaseState

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


class ReleaseAccepted(BaseModel):
    id: str
    state: ReleaseState


class ReleaseSummary(BaseModel):
    id: str
    service: str
    environment: str
    version: str
    kind: str
    description: str
    operator: str
    state: ReleaseState
    created_at: str
    started_at: str | None
    finished_at: str | None
    reason: str

    @classmethod
    def of(cls, release: Release) -> "ReleaseSummary":
        return cls(
            id=release.id,
            service=release.service,
            environment=release.environment,
            version=release.version,
            kind=release.kind,
            description=release.description,
            operator=release.operator,
            state=release.state,
            created_at=release.created_at.isoformat(),
            started_at=release.started_at.isoformat() if release.started_at else None,
            finished_at=release.finished_at.isoformat() if release.finished_at else None,
            reason=release.reason,
        )


class ReleasePage(BaseModel):
    items: list[ReleaseSummary]
    next_cursor: str | None
