"""Every message on NATS, as frozen pydantic models.

Messages carry identifiers only; MongoDB holds the truth. ``event_id`` is the
JetStream de-duplication key (``Nats-Msg-Id``): one per release and stage, so
a stage that publishes twice after a crash publishes one message.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shared.ids import ReleaseId

SCHEMA_VERSION: Literal[1] = 1


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    release_id: ReleaseId
    occurred_at: datetime = Field(default_factory=_now)
    # A canary release's step: each step renders, applies and tracks again.
    step: int = 0

    @property
    def event_id(self) -> str:
        step = f":{self.step}" if self.step else ""
        return f"{self.release_id}:{type(self).__name__}{step}"


class ReleaseAwaiting(Event):
    pass


class ReleaseRequested(Event):
    pass


class ReleaseRendered(Event):
    manifest_sha256: str


class ReleasePromoted(Event):
    """A paused canary goes on: ``step`` is the step to apply (after the last, the full
    rollout)."""

    manifest_sha256: str


class ReleaseApplied(Event):
    generation: int


class ReleaseCompleted(Event):
    pass


class ReleasePaused(Event):
    """A canary step is healthy and waits to be promoted."""


# The stage a release failed in, named as its actor is in the release's state changes
# (messages from before read "render", "apply", "track").
OLD_STAGES = {"render": "renderer", "apply": "deployer", "track": "tracker"}
Stage = Annotated[
    Literal["renderer", "deployer", "tracker"],
    BeforeValidator(lambda v: OLD_STAGES.get(v, v)),
]


class ReleaseFailed(Event):
    stage: Stage
    reason: str


class ReleaseCancelled(Event):
    # The state the release was cancelled in: only an ``applied`` one had
    # reached the cluster.
    was: str
    actor: str


class TemplateChanged(BaseModel):
    """Templates to read again from their sources: published by the GitLab webhook and by
    ``POST /templates/sync``; the renderer's ``templates`` consumer stores new versions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    # GitLab push or merge: the project (its id and path), the branch and the
    # commit; ``paths`` the files the commits touched (None: every template).
    project_id: str = ""
    project_path: str = ""
    ref: str = ""
    sha: str = ""
    paths: list[str] | None = None
    # ``POST /templates/sync``: every template from every source.
    everything: bool = False
    occurred_at: datetime = Field(default_factory=_now)

    @property
    def event_id(self) -> str:
        # A webhook GitLab sends again is one message; every full sync is its own.
        if self.everything:
            return f"templates:all:{self.occurred_at.isoformat()}"
        return f"template:{self.project_id}:{self.ref}:{self.sha}"


class ImageBuilt(BaseModel):
    """``image.built``: CI pushed an image. Registered once per repository and digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    service: str = ""
    repository: str = Field(min_length=1, max_length=255)
    tag: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    commit_sha: str = Field(default="", max_length=64)
    pipeline_url: str = Field(default="", max_length=2000)
    pushed_at: datetime | None = None

    @property
    def event_id(self) -> str:
        return f"image:{self.repository}@{self.digest}:{self.tag}"
