"""The documents Fabu keeps, as pydantic models (the repositories map them to MongoDB)."""

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StringConstraints,
    computed_field,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from shared.ids import ReleaseId, TemplateId
from shared.parameters import hidden_forms, masked, opened
from shared.secrets import MASK

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


class FreezeWindow(Model):
    """A time when only an admin may release here, and only with a written reason."""

    name: str = Field(min_length=1, max_length=100)
    start: datetime
    end: datetime
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _order(self) -> "FreezeWindow":
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("give start and end a time zone, e.g. 2026-01-31T08:00:00Z")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


# The levels of the Pod Security Standards (the namespace label pod-security.kubernetes.io/enforce).
PodSecurity = Literal["privileged", "baseline", "restricted"]


class Environment(Model):
    name: EnvName
    namespace: EnvName
    # A kubeconfig file in the operator's FABU_KUBECONFIG_DIR: its name there (or
    # a path inside it), readable by the API, the deployer and the tracker; None
    # with in_cluster means the service account Fabu runs as.
    kubeconfig: str | None = Field(default=None, max_length=255)
    in_cluster: bool = False
    rollout_timeout_s: int = Field(default=300, ge=1, le=86400)
    # Releases here wait in ``awaiting_approval`` until someone else approves them.
    approval_required: bool = False
    freeze_windows: list[FreezeWindow] = Field(default_factory=list, max_length=100)
    # A release that fails after reaching the cluster is rolled back to the last good
    # one by Fabu itself (a release config's ``auto_rollback`` decides for its service).
    auto_rollback: bool = False
    # What a release here may hold: pods within this level of Kubernetes' Pod Security
    # Standards, and Roles and RoleBindings only when ``allow_rbac`` (never a binding
    # to a ClusterRole): see shared/podsecurity.py.
    pod_security: PodSecurity = "baseline"
    allow_rbac: bool = False
    # Retired: kept with its history, hidden from lists and forms, released to no more.
    archived_at: datetime | None = None

    def frozen_by(self, at: datetime) -> FreezeWindow | None:
        """The freeze window in force at ``at``, if any."""
        return next((w for w in self.freeze_windows if w.start <= at < w.end), None)


# An image repository as the distribution spec writes one: [host[:port]/]path, lowercase.
IMAGE_REPOSITORY = (
    r"^(?:[a-zA-Z0-9]+(?:[.-][a-zA-Z0-9]+)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class Service(Model):
    name: DnsLabel
    image_repository: str = Field(min_length=1, max_length=255, pattern=IMAGE_REPOSITORY)
    team: str = Field(min_length=1, max_length=100)
    # The GitLab project (id or path) that builds its image: its pipeline and
    # job webhooks register the images they pushed.
    gitlab_project: str = Field(default="", max_length=255)
    # Retired: kept with its history, hidden from lists and forms, released no more.
    archived_at: datetime | None = None


class CanaryStep(Model):
    """One step of a canary release: the share of pods (and ingress traffic) on the new
    version, and how long to hold it before going on (None: until someone promotes)."""

    weight: int = Field(ge=1, le=99)
    pause_s: int | None = Field(default=None, ge=0, le=86400)


class BaseParams(Model):
    """A service's base parameters in one environment (its release config): Fabu's own
    settings below, and beside them the values of the template's parameters, checked
    against the schema it declares (``shared.parameters``)."""

    model_config = ConfigDict(extra="allow")

    rollout_timeout_s: int | None = Field(default=None, ge=1, le=86400)
    # Roll back to the last good release when a release fails (None: as the environment says).
    auto_rollback: bool | None = None
    # Canary steps, in increasing weight; empty: a plain rolling update. After
    # the last step, promoting rolls the new version out to the main Deployment.
    canary: list[CanaryStep] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _increasing(self) -> "BaseParams":
        weights = [step.weight for step in self.canary]
        if weights != sorted(set(weights)):
            raise ValueError("canary: step weights must increase, e.g. 10, 50")
        return self

    @model_serializer(mode="wrap")
    def _shown(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        """As JSON (every API answer, the audit log), a sealed secret is shown masked."""
        data = handler(self)
        return masked(data) if info.mode_is_json() else data

    def template_values(self) -> dict[str, Any]:
        """The values of the template's parameters (everything but Fabu's settings)."""
        return dict(self.model_extra or {})

    def hidden(self, open_: Callable[[str], str]) -> list[str]:
        """What to hide wherever this config's secrets could show (``hidden_forms``)."""
        return hidden_forms(opened(self.template_values(), open_)[1])

    def with_values(self, values: dict[str, Any]) -> "BaseParams":
        settings = self.model_dump(include=set(type(self).model_fields))
        return BaseParams.model_validate({**settings, **values})


class ServiceConfig(Model):
    """A version of a service's release config in one environment; every save is a new one."""

    service: DnsLabel
    environment: EnvName
    template_id: TemplateId
    params: BaseParams
    version: int = 1
    updated_at: datetime = Field(default_factory=now)
    author: str = ""
    # What this version changed, field by field ("replicas: 2 → 3"), and why.
    change: list[str] = Field(default_factory=list)
    note: str = ""


def has_controls(text: str, *, space: bool = False) -> bool:
    """Whether ``text`` holds an ASCII control character (or, with ``space``, a space)."""
    return any(ord(c) < 32 or ord(c) == 127 or (space and c == " ") for c in text)


# The URL schemes a Git source may name; FABU_GIT_PROTOCOLS narrows them further.
GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
# scp's form of an ssh URL, user@host:path; neither part may start with - (an option to ssh).
SCP_LIKE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9.-]*:[^/-][^:]*$")


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not a ref name ``git check-ref-format --allow-onelevel`` accepts
    (or starts with ``-``, which git would read as an option); None when it is one."""
    if ref.startswith("-"):
        return "must not start with -"
    if ref == "@" or "@{" in ref:
        return "must not be @ or hold @{"
    if has_controls(ref) or any(c in " ~^:?*[\\" for c in ref):
        return "must not hold spaces, control characters or any of ~ ^ : ? * [ \\"
    if ref.startswith("/") or ref.endswith(("/", ".")) or "//" in ref or ".." in ref:
        return "must not start or end with / or end with ., nor hold // or .."
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return "no part may start with . or end with .lock"
    return None


class TemplateSource(Model):
    """Where a template's file lives: a GitLab project, or any Git repository by URL."""

    type: Literal["gitlab", "git"]
    # GitLab: the project's id or its path with namespace ("platform/templates").
    project: str = Field(default="", max_length=255)
    # Git: a URL git can clone (https://, ssh://, and where the operator allows them
    # http://, git://, file://).
    url: str = Field(default="", max_length=1000)
    path: str = Field(min_length=1, max_length=1000)
    ref: str = Field(default="main", min_length=1, max_length=255)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if not url:
            return url
        # git@host:group/repo.git, which git reads as ssh.
        scp = SCP_LIKE.match(url)
        scheme, found, rest = url.partition("://")
        if not scp and (not found or scheme not in GIT_SCHEMES):
            raise ValueError(
                f"give a URL starting with one of {', '.join(GIT_SCHEMES)}:// "
                "(or user@host:path for ssh)"
            )
        if has_controls(url, space=True):
            raise ValueError("must not hold spaces or control characters")
        if scp:
            return url
        # ssh://-oProxyCommand=… would be an option to ssh.
        host = rest.split("/", 1)[0].rpartition("@")[2]
        if rest.startswith("-") or host.startswith("-"):
            raise ValueError("the user and host must not start with -")
        return url

    @field_validator("ref")
    @classmethod
    def _ref(cls, ref: str) -> str:
        problem = ref_problem(ref)
        if problem:
            raise ValueError(f"not a branch, tag or commit name: {problem}")
        return ref

    @field_validator("project")
    @classmethod
    def _project(cls, project: str) -> str:
        if has_controls(project):
            raise ValueError("must not hold control characters")
        return project

    @model_validator(mode="after")
    def _where(self) -> "TemplateSource":
        parts = self.path.split("/")
        if (
            self.path.startswith(("/", "-"))
            or ".." in parts
            or "" in parts
            or "\\" in self.path
            or has_controls(self.path)
        ):
            raise ValueError(
                "path: give a path inside the repository, without .., empty parts, "
                "control characters or a leading / or -"
            )
        if self.type == "gitlab" and not self.project:
            raise ValueError("a gitlab source needs project")
        if self.type == "git" and not self.url:
            raise ValueError("a git source needs url")
        return self


class Template(Model):
    id: TemplateId
    # Every stored change is a new version; releases name the version they used.
    version: int = Field(default=1, ge=1)
    name: str = Field(min_length=1, max_length=100)
    content: str = Field(min_length=1, max_length=200_000)
    # The JSON Schema of its parameters (None: Fabu's base parameters, DEFAULT_SCHEMA).
    parameters: dict[str, Any] | None = None
    # This version's: when it was stored, and by whom (a person, or the source's sync).
    created_at: datetime = Field(default_factory=now)
    author: str = ""
    source: TemplateSource | None = None  # None: written through the API
    commit_sha: str = ""
    synced_at: datetime | None = None
    # The last sync that could not be used, and why; the version above stays in use.
    error: str = ""
    error_sha: str = ""


class Image(Model):
    """An image CI built: one record per repository and digest, whatever the tags."""

    repository: str
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    service: str = ""
    tags: list[str] = Field(default_factory=list)
    commit_sha: str = ""
    pipeline_url: str = ""
    pushed_at: datetime | None = None
    # Who told us: "api", "nats", "gitlab", "harbor".
    sources: list[str] = Field(default_factory=list)
    registered_at: datetime = Field(default_factory=now)


class ReleaseState(StrEnum):
    # Waiting for someone other than the operator to approve (or reject) it.
    AWAITING_APPROVAL = "awaiting_approval"
    REQUESTED = "requested"
    RENDERED = "rendered"
    APPLIED = "applied"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # A canary step is healthy; waiting to be promoted (by someone, or after its pause).
    PAUSED = "paused"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    # A canary stopped by someone: its objects removed, the main Deployment untouched.
    ABORTED = "aborted"

    @property
    def final(self) -> bool:
        return self in (
            ReleaseState.SUCCEEDED,
            ReleaseState.FAILED,
            ReleaseState.CANCELLED,
            ReleaseState.REJECTED,
            ReleaseState.ABORTED,
        )


class ReleaseKind(StrEnum):
    DEPLOY = "deploy"
    # Restores an earlier release whole: its image, base parameters and template version.
    ROLLBACK = "rollback"
    # The latest release again with the current base parameters, pods restarted.
    REDEPLOY = "redeploy"


class TranscriptLine(Model):
    at: datetime
    text: str


class StateChange(Model):
    at: datetime
    state: ReleaseState
    actor: str


NotifyEvent = Literal["started", "succeeded", "failed", "canary_paused", "approval_needed"]
ChannelType = Literal["email", "dingtalk", "wecom", "feishu", "webhook"]


def _result_events() -> list[NotifyEvent]:
    return ["succeeded", "failed"]


class Channel(Model):
    """Where one kind of notification goes. ``url`` and ``secret`` are sealed at rest."""

    type: ChannelType
    url: str = Field(default="", max_length=2000)
    recipients: list[Email] = Field(default_factory=list, max_length=100)
    # DingTalk: the mobiles to @ in the group.
    mobiles: list[Annotated[str, StringConstraints(pattern=r"^\+?[0-9-]{5,20}$")]] = Field(
        default_factory=list, max_length=50
    )
    secret: str = Field(default="", max_length=500)
    events: list[NotifyEvent] = Field(default_factory=_result_events)
    language: Literal["en", "zh-CN"] = "en"

    @model_validator(mode="after")
    def _target(self) -> "Channel":
        for name, value in (("url", self.url), ("secret", self.secret)):
            if has_controls(value):
                raise ValueError(
                    f"{name}: control characters (such as line breaks) are not allowed"
                )
        if self.type == "email" and not self.recipients:
            raise ValueError("an email channel needs recipients")
        if self.type != "email" and not self.url.startswith(("http://", "https://", "fernet:")):
            raise ValueError(f"a {self.type} channel needs an http(s) url")
        return self

    def key(self, url: str) -> str:
        """A stable name for the channel in delivery records (from its plain url)."""
        target = url or ",".join(sorted(self.recipients))
        return f"{self.type}-{hashlib.sha256(target.encode()).hexdigest()[:10]}"


class Attempt(Model):
    at: datetime = Field(default_factory=now)
    outcome: str


class Delivery(Model):
    """What happened to one notification of a release (event and channel)."""

    # "sending" (claimed), "sent", "failed" (will retry), "refused" (will not),
    # or "unknown" (a notifier died while sending: not sent again).
    state: str
    attempts: int = 0
    last_error: str = ""
    at: datetime = Field(default_factory=now)
    history: list[Attempt] = Field(default_factory=list)


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
    # A canary release: the step it is at (len(params.canary): the full
    # rollout), and what happened at each; None for a plain rolling update.
    canary_step: int | None = None
    canary: list[CanaryEvent] = Field(default_factory=list)
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
        return self.canary_step is not None and self.canary_step < len(self.params.canary)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float | None:
        """From the first object sent to the cluster (else from the request) to the end."""
        if self.finished_at is None:
            return None
        return (self.finished_at - (self.started_at or self.created_at)).total_seconds()


class Role(StrEnum):
    # Reads everything but the audit log and the users.
    VIEWER = "viewer"
    # Releases (and rolls back, redeploys, cancels, approves) where granted.
    RELEASER = "releaser"
    # Templates, services, base parameters and notification channels.
    CONFIG_ADMIN = "config_admin"
    # Users, roles, environments (their clusters, approvals, freeze windows), audit.
    ADMIN = "admin"


ANY = "*"
UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")]


class Grant(Model):
    """A role, and for a releaser where it holds: an environment and a service or a team."""

    role: Role
    environment: str = Field(default=ANY, min_length=1, max_length=63)
    service: str = Field(default=ANY, min_length=1, max_length=53)
    team: str = Field(default=ANY, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _scope(self) -> "Grant":
        scoped = (self.environment, self.service, self.team) != (ANY, ANY, ANY)
        if scoped and self.role is not Role.RELEASER:
            raise ValueError(f"only a releaser grant has a scope; {self.role} holds everywhere")
        if ANY not in (self.service, self.team):
            raise ValueError("grant a service or a team, not both")
        return self

    def covers(self, environment: str | None, service: Service | None) -> bool:
        """Whether this grant reaches ``service`` in ``environment`` (None: any)."""
        if environment is not None and self.environment not in (ANY, environment):
            return False
        if service is None:
            return True
        if self.service != ANY:
            return self.service == service.name
        return self.team in (ANY, service.team)


class User(Model):
    name: UserName
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)
    grants: list[Grant] = Field(default_factory=list, max_length=200)
    disabled: bool = False
    # "local" (a password here) or "oidc" (signs in through the identity provider).
    source: Literal["local", "oidc"] = "local"
    # The UI's language: "en", "zh-CN", or "" for the browser's.
    language: Literal["", "en", "zh-CN"] = ""
    created_at: datetime = Field(default_factory=now)


class ApiToken(Model):
    """A token for CI and the command line; only its hash is stored."""

    id: str
    name: str = Field(min_length=1, max_length=100)
    user: str
    created_at: datetime = Field(default_factory=now)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class AuditEntry(Model):
    """One change: who made it, what it was, when, and the object before and after."""

    id: str
    at: datetime = Field(default_factory=now)
    actor: str
    action: str  # "environment.update", "release.approve", "token.create", ...
    target: str  # "environment/production", "release/6651…"
    before: Any = None
    after: Any = None
    note: str = ""
