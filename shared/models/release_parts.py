"""The parts a release record is made of that need no state: what it saw of the cluster,
its transcript, its canary's history and the decisions taken on it."""

from datetime import datetime
from typing import Literal

from pydantic import (
    Field,
)

from shared.models.base import Model, now


class TranscriptLine(Model):
    at: datetime
    text: str


class Workload(Model):
    """A Deployment, StatefulSet or DaemonSet a release waits for, and the generation its
    apply produced (0 until applied)."""

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    name: str
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


class Owned(Model):
    """An object a release applied: what it owns in its namespace (its inventory)."""

    api_version: str
    kind: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


class HookRun(Model):
    """A hook Job of a release as it runs: the page counts down from ``started_at`` to
    ``started_at + timeout_s`` (what is left of the release's rollout timeout)."""

    job: str
    when: str  # pre-rollout, post-rollout
    started_at: datetime
    timeout_s: float
    # running, then succeeded, failed or stopped (the release was cancelled).
    state: str = "running"
    finished_at: datetime | None = None
    # Why its pods cannot finish, as the last poll saw it ("" for nothing known).
    cause: str = ""


class PodTimeline(Model):
    """One pod of the Deployment as the tracker saw it during the release."""

    name: str
    replica_set: str
    new: bool  # of the release's ReplicaSet (else an older one)
    node: str = ""
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    ready_at: datetime | None = None
    # When its deletion was requested (the pod is terminating or gone).
    terminated_at: datetime | None = None
    # Container waiting/terminated reasons seen while tracked, first seen first.
    reasons: list[str] = Field(default_factory=list)
    # As last seen: Ready, the containers' restarts, and what keeps it from Ready.
    ready: bool = False
    restarts: int = 0
    cause: str = ""


class ReplicaSetCount(Model):
    name: str
    revision: str
    new: bool
    desired: int
    replicas: int
    ready: int
    available: int


class ContainerDiagnosis(Model):
    name: str
    ready: bool
    restart_count: int
    state: str  # "waiting: CrashLoopBackOff: back-off restarting failed container"
    last_state: str  # "terminated: Error (exit code 1)" or ""
    log: str  # tail of the current container's log
    previous_log: str  # tail of the previous (crashed) container's log


class PodDiagnosis(Model):
    name: str
    phase: str
    node: str
    # Its Ready condition: "Ready=False ContainersNotReady: containers with unready status: [app]".
    ready: str = ""
    containers: list[ContainerDiagnosis]
    # Reasons the tracker saw during the rollout: a crash loop alternates between
    # CrashLoopBackOff and running, so the state at the end may not show it.
    reasons_seen: list[str] = Field(default_factory=list)


class KubeEvent(Model):
    object: str  # "Pod/web-5d9c7-abcde"
    type: str
    reason: str
    message: str
    count: int
    last_seen: datetime | None = None


class Diagnosis(Model):
    """Why a rollout failed, gathered from the cluster when it did."""

    condition: str
    # What is wrong, in one sentence: "CrashLoopBackOff: container app exited 1, 3 restarts".
    summary: str = ""
    pods: list[PodDiagnosis] = Field(default_factory=list)
    events: list[KubeEvent] = Field(default_factory=list)
    # Failing pods beyond the ones shown.
    pods_not_shown: int = 0
    # What could not be gathered, and why (the cluster may have been unreachable).
    errors: list[str] = Field(default_factory=list)
    collected_at: datetime = Field(default_factory=now)


class CanaryEvent(Model):
    """What happened to a canary step: ``applied``, ``healthy``, ``promoted``,
    ``failed`` or ``aborted``, when, and by whom."""

    step: int  # 0-based; the step after the last is the full rollout
    weight: int  # 100 for the full rollout
    what: str
    at: datetime = Field(default_factory=now)
    by: str = ""
    replicas: int | None = None
    detail: str = ""


class Decision(Model):
    """An approval or rejection, by whom and why."""

    approved: bool
    by: str
    at: datetime = Field(default_factory=now)
    comment: str = ""


class FreezeOverride(Model):
    """An admin releasing during a freeze window: the window, who, and their reason."""

    window: str
    by: str
    reason: str
    at: datetime = Field(default_factory=now)
