"""The release record: one release of a service's version to an environment."""

from datetime import datetime
from enum import StrEnum

from pydantic import (
    Field,
    computed_field,
    field_serializer,
)

from shared.ids import ReleaseId, TemplateId
from shared.models.analysis import AnalysisTemplate, Measurement
from shared.models.base import Model, now
from shared.models.catalog import BaseParams, Environment, ServiceConfig, Template
from shared.models.notifications import Delivery
from shared.models.release_parts import (
    CanaryEvent,
    Decision,
    Diagnosis,
    FreezeOverride,
    HookRun,
    Owned,
    PodTimeline,
    ReplicaSetCount,
    TranscriptLine,
    Workload,
)
from shared.release.machine import ReleaseState
from shared.secrets import MASK


class ReleaseKind(StrEnum):
    DEPLOY = "deploy"
    # Restores an earlier release whole: its image, base parameters and template version.
    ROLLBACK = "rollback"
    # The latest release again with the current base parameters, pods restarted.
    REDEPLOY = "redeploy"


class StateChange(Model):
    at: datetime
    state: ReleaseState
    actor: str


class Release(Model):
    id: ReleaseId
    service: str
    environment: str
    version: str
    image: str
    description: str = ""
    operator: str = ""
    kind: ReleaseKind = ReleaseKind.DEPLOY
    # The release a rollback restores or a redeploy repeats.
    source_release_id: ReleaseId | None = None
    # An automatic rollback: the failed release it recovers from; and on that failed
    # release, the automatic rollback Fabu started (kept apart, read with the detail).
    rollback_of: ReleaseId | None = None
    rolled_back_by: ReleaseId | None = None
    # The release plan it is an item of.
    plan_id: str | None = None
    state: ReleaseState = ReleaseState.REQUESTED
    created_at: datetime = Field(default_factory=now)
    # When the deployer sent the first object to the cluster.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    template_id: TemplateId
    template_version: int = 1
    config_version: int
    params: BaseParams
    namespace: str
    # The manifest as shown: its secrets masked. With secrets, the manifest the cluster
    # gets is kept sealed beside it (``sealed_manifest``, see ``Secrets.manifest``).
    manifest: str = ""
    sealed_manifest: str = ""
    manifest_sha256: str = ""
    # The Deployment a canary acts on (and, for older records, the one followed).
    deployment: str = ""
    # Every workload the release waits for.
    workloads: list[Workload] = Field(default_factory=list)
    # Every object it applies, and those of earlier releases it deleted ("Kind/name").
    inventory: list[Owned] = Field(default_factory=list)
    pruned: list[str] = Field(default_factory=list)
    generation: int | None = None
    revision: str = ""
    reason: str = ""
    transcript: list[TranscriptLine] = Field(default_factory=list)
    events: list[StateChange] = Field(default_factory=list)
    pods: list[PodTimeline] = Field(default_factory=list)
    replica_sets: list[ReplicaSetCount] = Field(default_factory=list)
    diagnosis: Diagnosis | None = None
    notifications: dict[str, Delivery] = Field(default_factory=dict)
    decision: Decision | None = None
    freeze_override: FreezeOverride | None = None
    # A canary release: the step it is at (len(params.steps): the full
    # rollout), and what happened at each; None for a plain rolling update.
    canary_step: int | None = None
    canary: list[CanaryEvent] = Field(default_factory=list)
    # The analysis templates its canary steps or blue-green preview name, as they were
    # when it started, and every measurement taken of them (kept beside the release).
    analyses: list[AnalysisTemplate] = Field(default_factory=list)
    measurements: list[Measurement] = Field(default_factory=list)
    # The hook Job it runs now (or ran last), kept beside it with its pods while it runs.
    hook: HookRun | None = None

    @field_serializer("sealed_manifest", when_used="json")
    def _sealed_shown(self, sealed: str) -> str:
        return MASK if sealed else ""

    def again(
        self,
        release_id: ReleaseId,
        kind: ReleaseKind,
        description: str,
        namespace: str,
        template: "Template | None" = None,
        config: ServiceConfig | None = None,
    ) -> "Release":
        """A new release of this one's image: with ``template`` and ``config`` when given
        (their current versions), else with exactly what this one used."""
        return Release(
            id=release_id,
            service=self.service,
            environment=self.environment,
            version=self.version,
            image=self.image,
            kind=kind,
            source_release_id=self.id if kind is not ReleaseKind.DEPLOY else None,
            description=description,
            template_id=template.id if template else self.template_id,
            template_version=template.version if template else self.template_version,
            config_version=config.version if config else self.config_version,
            params=config.params if config else self.params,
            namespace=namespace,
        )

    def rolls_back_in(self, env: Environment) -> bool:
        """Whether this failed release is to be rolled back by Fabu itself: its config or
        its environment asks for it, it reached the cluster (a canary step's failure
        leaves the main workloads untouched), and it is no automatic rollback itself
        (never more than one in a row)."""
        asked = self.params.auto_rollback
        wanted = env.auto_rollback if asked is None else asked
        return (
            wanted
            and self.state is ReleaseState.FAILED
            and self.started_at is not None
            and not self.in_canary
            and self.rollback_of is None
        )

    @property
    def applied_whole(self) -> bool:
        """Whether the release changed the workloads themselves (not only a canary's)."""
        if self.started_at is None or self.generation is None:
            return False
        return self.canary_step is None or not self.in_canary

    @property
    def in_canary(self) -> bool:
        """Whether the release is at a canary step (not yet the full rollout)."""
        return self.canary_step is not None and self.canary_step < len(self.params.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float | None:
        """From the first object sent to the cluster (else from the request) to the end."""
        if self.finished_at is None:
            return None
        return (self.finished_at - (self.started_at or self.created_at)).total_seconds()
