"""Starting a release: the one way every endpoint that releases does it.

Freeze windows and approvals are decided here, so a deploy, a rollback, a
redeploy and a template rollout all meet the same rules.
"""

from dataclasses import dataclass
from datetime import datetime

from services.api.access import Principal
from services.api.schemas import ReleaseAccepted
from shared.errors import Conflict, Forbidden, Invalid
from shared.messaging.bus import Bus
from shared.models.analysis import AnalysisTemplate
from shared.models.base import now
from shared.models.catalog import BaseParams, Environment, Service, ServiceConfig, Template
from shared.models.parameters import told
from shared.models.release import Release, ReleaseKind
from shared.models.release_parts import Decision, FreezeOverride
from shared.models.users import Role
from shared.release import lifecycle
from shared.release.lifecycle import Actor
from shared.release.machine import REQUEST, REQUEST_APPROVAL
from shared.secrets import Secrets
from shared.store.audit import Audit
from shared.store.catalog import Catalog
from shared.store.releases import Releases
from shared.templating.render import ReleaseParams
from shared.templating.versions import misfits


@dataclass(frozen=True)
class InPlan:
    """A release started as an item of a plan: the plan's approval and freeze override
    stand for its own."""

    plan_id: str
    decision: Decision | None
    freeze_override: FreezeOverride | None


@dataclass(frozen=True)
class Starter:
    """What starting a release needs: the stores, the bus, and who asks."""

    releases: Releases
    bus: Bus
    audit: Audit
    principal: Principal
    catalog: Catalog


async def analyses(catalog: Catalog, params: BaseParams) -> list[AnalysisTemplate]:
    """The analysis templates the config names, as they are now (422 naming one gone)."""
    names = params.analysis_names()
    found = await catalog.analyses(names) if names else []
    missing = sorted(set(names) - {a.name for a in found})
    if missing:
        raise Invalid(
            f"params: the config names analysis template {missing[0]!r}, which does not exist",
            field="params",
        )
    return found


def freeze_check(
    env: Environment, principal: Principal, override_reason: str, at: datetime | None = None
) -> FreezeOverride | None:
    """Nothing outside a freeze window (now, or at ``at``); inside one, an admin's written
    override, or 403/422."""
    window = env.frozen_by(at or now())
    if window is None:
        return None
    frozen = (
        f"environment {env.name} is frozen until {window.end.isoformat()} ({window.name}"
        + (f": {window.reason}" if window.reason else "")
        + ")"
    )
    if not principal.has(Role.ADMIN):
        raise Forbidden(f"{frozen}; only an admin can release now, with a written reason")
    if not override_reason.strip():
        raise Invalid(
            f"override_reason: {frozen}; write why this release cannot wait",
            field="override_reason",
        )
    return FreezeOverride(window=window.name, by=principal.name, reason=override_reason.strip())


def retired(service: Service, env: Environment) -> None:
    """409 when the service or the environment is archived: nothing is released to it."""
    for what, name, at in (
        ("service", service.name, service.archived_at),
        ("environment", env.name, env.archived_at),
    ):
        if at is not None:
            raise Conflict(
                f"{what} {name} is archived (since {at:%Y-%m-%d}): it is released no more; "
                f"restore it first to release"
            )


async def upstream(releases: Releases, env: Environment, service: str, version: str) -> None:
    """422 when ``env`` releases only versions that succeeded in an earlier environment
    and this one has not."""
    earlier = env.requires_success_in
    if earlier and not await releases.succeeded_in(service, earlier, version):
        raise Invalid(
            f"version: {service} {version} has not succeeded in {earlier}; "
            f"{env.name} releases only versions that succeeded there first",
            field="version",
        )


async def start(
    release: Release,
    env: Environment,
    service: Service,
    starter: Starter,
    override_reason: str = "",
    in_plan: InPlan | None = None,
) -> ReleaseAccepted:
    """Check the caller may release here now, store the release (taking its service's
    lock), and hand it to the renderer, or to an approver when the environment needs one
    (an item of a plan: the plan was approved, and its freeze override stands)."""
    principal = starter.principal
    principal.must_release(env.name, service)
    retired(service, env)
    if release.kind is not ReleaseKind.ROLLBACK:
        await upstream(starter.releases, env, release.service, release.version)
    if in_plan is None:
        release.freeze_override = freeze_check(env, principal, override_reason)
        how = REQUEST_APPROVAL if env.approval_required else REQUEST
    else:
        release.plan_id = in_plan.plan_id
        release.decision = in_plan.decision
        release.freeze_override = in_plan.freeze_override
        how = REQUEST
    # A rollback restores what ran before whole; a release or a redeploy goes through
    # the config's canary steps.
    if release.kind is not ReleaseKind.ROLLBACK and release.params.steps:
        release.canary_step = 0
    if release.kind is not ReleaseKind.ROLLBACK:
        release.analyses = await analyses(starter.catalog, release.params)
    release = await lifecycle.start(
        starter.releases, starter.bus, release, how, Actor.person(principal.name)
    )
    await starter.audit.record(
        principal.name,
        f"release.{release.kind}",
        f"release/{release.id}",
        after={
            "service": release.service,
            "environment": release.environment,
            "version": release.version,
            "state": release.state,
            "source_release_id": release.source_release_id,
            "freeze_override": release.freeze_override,
            "plan_id": release.plan_id,
        },
        note=release.description,
    )
    return ReleaseAccepted(id=release.id, state=release.state)


def sample_params(
    service: str,
    image_repository: str,
    environment: str,
    namespace: str,
    version: str = "0.0.0-preview",
) -> ReleaseParams:
    """Release parameters for rendering outside a release (validation, previews)."""
    return ReleaseParams(
        release_id="preview",
        service=service,
        version=version,
        image=f"{image_repository}:{version}",
        environment=environment,
        namespace=namespace,
    )


async def config_template(
    catalog: Catalog, config: ServiceConfig, secrets: Secrets, version: int | None = None
) -> Template:
    """The current version (or ``version``) of the template a release config names: 422 if
    it is gone or the config's values do not fit its parameters (a release of it is
    refused)."""
    template = await catalog.template(config.template_id, version)
    if template is None:
        which = f" version {version}" if version is not None else ""
        raise Invalid(
            f"template {config.template_id!r}{which} of the release config no longer exists"
        )
    fitting(template, config, secrets)
    return template


def fitting(template: Template, config: ServiceConfig, secrets: Secrets) -> None:
    """422 naming each path where the config's values do not fit the template version."""
    found = misfits(template, config.params, secrets)
    if found:
        raise Invalid(
            f"the release config of {config.service} in {config.environment} does not fit "
            f"template {template.name!r} version {template.version}: {told(found)}; fix the config",
            field=next(iter(found)),
            errors=found,
        )
