"""Every message on NATS, as frozen pydantic models.

The rule: a message carries identifiers only, what names the thing it is about and
nothing a consumer could read instead from MongoDB, which holds the truth. A release
message is its release's id and, for a canary, the step it is about (each step renders,
applies and tracks again, and a stage drops a message for a step that is not the
release's own). ``event_id`` is the JetStream de-duplication key (``Nats-Msg-Id``): one
per release, message and step, so a stage that publishes twice after a crash publishes
one message.
"""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.ids import ReleaseId

SCHEMA_VERSION: Literal[1] = 1


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    # A field a message no longer has is ignored: one from an older Fabu may still be in
    # the stream during an upgrade.
    model_config = ConfigDict(frozen=True, extra="ignore")

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
    """A release waits for approval."""


class ReleaseRequested(Event):
    """A release is handed to the renderer."""


class ReleaseRendered(Event):
    """A release's manifest is rendered: the deployer applies it."""


class ReleasePromoted(Event):
    """A paused canary goes on: ``step`` is the step to apply (after the last, the full
    rollout)."""


class ReleaseApplied(Event):
    """A release (or a canary step) is applied: the tracker follows its rollout."""


class ReleaseCompleted(Event):
    """A release's rollout finished healthy."""


class ReleasePaused(Event):
    """A canary step is healthy and waits to be promoted."""


class ReleaseFailed(Event):
    """A release failed: its reason is on the release."""


class ReleaseCancelled(Event):
    """A release was cancelled or its canary aborted: whoever follows it stops."""


# The message on each release subject, by the subject's name in ``Subjects``.
RELEASE_MESSAGES: dict[str, type[Event]] = {
    "awaiting": ReleaseAwaiting,
    "requested": ReleaseRequested,
    "rendered": ReleaseRendered,
    "promoted": ReleasePromoted,
    "applied": ReleaseApplied,
    "completed": ReleaseCompleted,
    "paused": ReleasePaused,
    "failed": ReleaseFailed,
    "cancelled": ReleaseCancelled,
}


class PlanMessage(BaseModel):
    """A release plan started (its first wave) or ended: its id, and which."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = SCHEMA_VERSION
    plan_id: str
    what: Literal["started", "ended"]
    occurred_at: datetime = Field(default_factory=_now)

    @property
    def event_id(self) -> str:
        return f"plan:{self.plan_id}:{self.what}"


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
