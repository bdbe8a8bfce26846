"""The documents Fabu keeps, as pydantic models (the repositories map them to MongoDB)."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.ids import ReleaseId, TemplateId

# Kubernetes object names: RFC 1123 labels, as Services and Deployments need.
DnsLabel = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=53)
]
EnvName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


def now() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Environment(Model):
    name: EnvName
    namespace: EnvName
    # A path to a kubeconfig file readable by the deployer and tracker; None
    # with in_cluster means the service account Fabu runs as.
    kubeconfig: str | None = None
    in_cluster: bool = False
    rollout_timeout_s: int = Field(default=300, ge=1, le=86400)


class Service(Model):
    name: DnsLabel
    image_repository: str = Field(min_length=1, max_length=255)
    team: str = Field(min_length=1, max_length=100)


class BaseParams(Model):
    """A service's base parameters in one environment (its release config)."""

    replicas: int = Field(default=1, ge=0, le=1000)
    container_port: int = Field(default=8080, ge=1, le=65535)
    health_path: str = Field(default="/healthz", pattern=r"^/")
    labels: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, dict[str, str]] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    rollout_timeout_s: int | None = Field(default=None, ge=1, le=86400)
    notify_emails: list[Email] = Field(default_factory=list)


class ServiceConfig(Model):
    service: DnsLabel
    environment: EnvName
    template_id: TemplateId
    params: BaseParams
    version: int = 1
    updated_at: datetime = Field(default_factory=now)


class Template(Model):
    id: TemplateId
    name: str = Field(min_length=1, max_length=100)
    content: str = Field(min_length=1, max_length=200_000)
    created_at: datetime = Field(default_factory=now)


class ReleaseState(StrEnum):
    REQUESTED = "requested"
    RENDERED = "rendered"
    APPLIED = "applied"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (ReleaseState.SUCCEEDED, ReleaseState.FAILED)


class TranscriptLine(Model):
    at: datetime
    text: str


class StateChange(Model):
    at: datetime
    state: ReleaseState
    actor: str


class Delivery(Model):
    """What happened to one notification of a release (channel and event)."""

    state: str  # "sending", "sent", "failed" (will retry) or "refused" (will not)
    attempts: int = 0
    last_error: str = ""
    at: datetime = Field(default_factory=now)


class Release(Model):
    id: ReleaseId
    service: str
    environment: str
    version: str
    image: str
    description: str = ""
    operator: str = "anonymous"
    kind: str = "deploy"
    state: ReleaseState = ReleaseState.REQUESTED
    created_at: datetime = Field(default_factory=now)
    # When the deployer sent the first object to the cluster.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    template_id: TemplateId
    config_version: int
    params: BaseParams
    namespace: str
    manifest: str = ""
    manifest_sha256: str = ""
    deployment: str = ""
    generation: int | None = None
    revision: str = ""
    reason: str = ""
    transcript: list[TranscriptLine] = Field(default_factory=list)
    events: list[StateChange] = Field(default_factory=list)
    notifications: dict[str, Delivery] = Field(default_factory=dict)
