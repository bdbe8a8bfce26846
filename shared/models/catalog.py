"""The catalog's documents: environments, services, their configs, templates and images."""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from shared.ids import TemplateId
from shared.models.base import DnsLabel, EnvName, Model, has_controls, now
from shared.models.parameters import hidden_forms, masked, opened


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
    # Only versions that succeeded in this earlier environment are released here (a
    # rollback, restoring what ran here before, is not asked).
    requires_success_in: EnvName | None = None
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
    # Analysis templates (``shared.models.analysis``) that judge the step once it is
    # healthy: all passed, Fabu promotes it (after its pause, if it has one); one
    # failed, the release is aborted; inconclusive, it waits for a person.
    analysis: list[DnsLabel] = Field(default_factory=list, max_length=5)


class BlueGreen(Model):
    """A blue-green release: the new version runs at full size beside the old one behind
    a preview Service; once judged (by its analysis, its pause or a person) the active
    Service is switched to it; the old version stays ``scale_down_delay_s`` longer,
    then the main Deployment takes the new version and the preview goes away."""

    analysis: list[DnsLabel] = Field(default_factory=list, max_length=5)
    # Switch this long after the preview is healthy (and its analysis passed); None:
    # with analysis, as soon as it passes; without, when someone promotes it.
    pause_s: int | None = Field(default=None, ge=0, le=86400)
    scale_down_delay_s: int = Field(default=30, ge=0, le=86400)


class BaseParams(Model):
    """A service's base parameters in one environment (its release config): Fabu's own
    settings below, and beside them the values of the template's parameters, checked
    against the schema it declares (``shared.models.parameters``)."""

    model_config = ConfigDict(extra="allow")

    rollout_timeout_s: int | None = Field(default=None, ge=1, le=86400)
    # Roll back to the last good release when a release fails (None: as the environment says).
    auto_rollback: bool | None = None
    # Canary steps, in increasing weight; empty: a plain rolling update. After
    # the last step, promoting rolls the new version out to the main Deployment.
    canary: list[CanaryStep] = Field(default_factory=list, max_length=10)
    # Blue-green instead: never with canary steps.
    blue_green: BlueGreen | None = None

    @model_validator(mode="after")
    def _increasing(self) -> "BaseParams":
        weights = [step.weight for step in self.canary]
        if weights != sorted(set(weights)):
            raise ValueError("canary: step weights must increase, e.g. 10, 50")
        if self.canary and self.blue_green is not None:
            raise ValueError("blue_green: a release is either a canary or blue-green, not both")
        return self

    @property
    def steps(self) -> list[CanaryStep]:
        """The steps before the full rollout: the canary's, or a blue-green release's two
        (its preview, judged like a canary step with no traffic; then switched, the
        active Services on the preview's pods for ``scale_down_delay_s``)."""
        if self.blue_green is None:
            return self.canary
        bg = self.blue_green
        return [
            CanaryStep.model_construct(weight=0, pause_s=bg.pause_s, analysis=bg.analysis),
            CanaryStep.model_construct(weight=100, pause_s=bg.scale_down_delay_s, analysis=[]),
        ]

    def step_name(self, index: int) -> str:
        """A step in words, 0-based: ``canary step 2 of 3``, ``the preview``..."""
        total = len(self.steps)
        if index >= total:
            return "the full rollout"
        if self.blue_green is not None:
            return ("the preview", "the switch")[index]
        return f"canary step {index + 1} of {total}"

    def analysis_names(self) -> list[str]:
        """Every analysis template the canary steps or the blue-green preview name."""
        named = [n for step in self.canary for n in step.analysis]
        named += self.blue_green.analysis if self.blue_green else []
        return sorted(set(named))

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
