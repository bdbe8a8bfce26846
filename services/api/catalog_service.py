"""Environments, services, release configs, image versions and previews, between the
HTTP edges and the stores: the JSON routes and the UI pages call these."""

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.diff import manifest_diff
from services.api.releasing import config_template, sample_params
from services.api.schemas import ConfigIn, ConfigView, Preview
from shared.cluster.admission import Refused, admit, policy_problems, scope_problems
from shared.cluster.client import ClusterError, Clusters, kubeconfig_file
from shared.errors import (
    Conflict,
    Invalid,
    NotFound,
    TransientError,
    Unavailable,
    found,
)
from shared.models.base import now
from shared.models.catalog import BaseParams, Environment, Service, ServiceConfig, Template
from shared.models.parameters import (
    filled,
    hidden_forms,
    hide,
    masked,
    opened,
    problems,
    schema_of,
    sealed,
    secrets_in,
    told,
    unmasked,
)
from shared.outside.registry import Repository
from shared.settings import Settings
from shared.templating.render import RenderError
from shared.templating.versions import misfits, render_with

log = structlog.get_logger()


async def reachable(env: Environment, settings: Settings) -> None:
    if not env.in_cluster and not env.kubeconfig:
        raise Invalid("environment needs a kubeconfig or in_cluster: true")
    if env.kubeconfig and not env.in_cluster:
        try:
            await asyncio.to_thread(kubeconfig_file, env.kubeconfig, settings.kubeconfig_dir)
        except ClusterError as exc:
            raise Invalid(exc.message) from exc


def _changes(
    before: tuple[ServiceConfig, Template | None] | None,
    after: tuple[ConfigIn, Template],
    values: dict[str, Any],
    secret: set[str | int],
    open_: Callable[[str], str],
) -> list[str]:
    """Field by field, what a save changes in what a release renders with (defaults
    filled in): ``replicas: 2 → 3``. A parameter holding a secret (``secret``: their
    names) only says that it changed; ``values`` are plain."""
    if before is None:
        return ["created"]
    (config, was_template), (body, template) = before, after
    lines = []
    if config.template_id != body.template_id:
        lines.append(f"template_id: {config.template_id} → {body.template_id}")
    settings = set(BaseParams.model_fields)
    old = {
        **config.params.model_dump(include=settings),
        **filled(
            was_template.parameters if was_template else None, config.params.template_values()
        ),
    }
    new = {**body.params.model_dump(include=settings), **filled(template.parameters, values)}
    for key in sorted(old.keys() | new.keys()):
        was, now_ = old.get(key), new.get(key)
        if key in secret or masked(was) != was:
            # Sealed anew on every save: compare what they hold.
            if opened(was, open_)[0] != now_:
                lines.append(f"{key}: changed (holds a secret)")
        elif was != now_:
            lines.append(f"{key}: {json.dumps(was)} → {json.dumps(now_)}")
    return lines


async def _template_of(api: Api, config: ServiceConfig, known: Template) -> Template | None:
    if config.template_id == known.id:
        return known
    return await api.catalog.template(config.template_id)


async def create_environment(
    api: Api, principal: Principal, body: Environment, create_namespace: bool = False
) -> Environment:
    """Add an environment, once its cluster has its namespace and lets Fabu release
    there (``create_namespace``: Fabu creates a missing one first)."""
    need(principal, Permission.ADMIN)
    body = body.model_copy(update={"archived_at": None})
    await reachable(body, api.settings)
    if await api.catalog.environment(body.name) is not None:
        # Before the cluster is asked, so that nothing is created there for it.
        raise Conflict(f"environment {body.name!r} already exists", field="name")
    await _namespace_ready(api, principal, body, create_namespace)
    await api.catalog.add_environment(body)
    await api.audit.record(
        principal.name, "environment.create", f"environment/{body.name}", after=body
    )
    return body


async def _namespace_ready(api: Api, principal: Principal, env: Environment, create: bool) -> None:
    """Refused unless the environment's cluster has its namespace (or, with ``create``,
    Fabu created it: audited) and lets Fabu's account do there what a release does.

    Asked with a client of its own, closed after: the kubeconfig as it is now, and no
    client kept for an environment that is not saved."""
    where = f"the cluster of environment {env.name}"
    clusters = Clusters(api.settings.kubeconfig_dir)
    try:
        try:
            cluster = await clusters.get(env)
        except ClusterError as exc:
            raise Invalid(exc.message, field="kubeconfig") from exc
        exists = await cluster.namespace_exists(env.namespace)
        denied = await cluster.denied(env.namespace)
        if denied:
            raise Invalid(
                f"namespace: {where} does not let Fabu release to namespace "
                f"{env.namespace!r}: its account is denied {', '.join(denied)}; ask a cluster "
                "admin to grant them (a Role and RoleBinding in that namespace)",
                field="namespace",
            )
        if not exists and not create:
            raise Invalid(
                f'namespace: namespace "{env.namespace}" does not exist in {where}: ask a '
                "cluster admin to create it, or tick 'create it'",
                field="namespace",
            )
        if not exists:
            await cluster.create_namespace(env.namespace)
    except TransientError as exc:
        raise Unavailable(f"{where} cannot be reached, nothing was saved: {exc.message}") from exc
    except ClusterError as exc:
        raise Invalid(
            f"namespace: {where} refused the check of namespace {env.namespace!r}, nothing "
            f"was saved: {exc.message}",
            field="namespace",
        ) from exc
    finally:
        await clusters.close()
    if not exists:
        await api.audit.record(
            principal.name,
            "namespace.create",
            f"environment/{env.name}",
            note=f"namespace {env.namespace} created in {where}",
        )


async def environment(api: Api, principal: Principal, name: str) -> Environment:
    need(principal, Permission.VIEW)
    return found(await api.catalog.environment(name), f"environment {name!r}")


async def environments(api: Api, principal: Principal, archived: bool = False) -> list[Environment]:
    need(principal, Permission.VIEW)
    return await api.catalog.environments(archived)


def _known_registry(api: Api, body: Service) -> None:
    host = Repository.parse(body.image_repository).host
    if host not in api.settings.registries:
        known = ", ".join(sorted(api.settings.registries)) or "none"
        raise Invalid(
            f"image_repository: the registry {host} is not configured in FABU_REGISTRIES "
            f"(configured: {known})",
            field="image_repository",
        )


async def create_service(api: Api, principal: Principal, body: Service) -> Service:
    need(principal, Permission.EDIT_CONFIG)
    body = body.model_copy(update={"archived_at": None})
    _known_registry(api, body)
    await api.catalog.add_service(body)
    await api.audit.record(principal.name, "service.create", f"service/{body.name}", after=body)
    return body


async def update_service(api: Api, principal: Principal, name: str, body: Service) -> Service:
    """Replace a service's team, image repository and GitLab project (archiving is
    its own action: the stored ``archived_at`` stays)."""
    need(principal, Permission.EDIT_CONFIG)
    if body.name != name:
        raise Invalid(f"name: {body.name!r} differs from the path's {name!r}", field="name")
    current = found(await api.catalog.service(name), f"service {name!r}")
    body = body.model_copy(update={"archived_at": current.archived_at})
    _known_registry(api, body)
    await api.catalog.replace_service(body)
    await api.audit.record(
        principal.name, "service.update", f"service/{name}", before=current, after=body
    )
    return body


def _cluster_changed(current: Environment, body: Environment) -> bool:
    """Whether a save moves the environment to another cluster or namespace."""
    fields = ("namespace", "kubeconfig", "in_cluster")
    return any(getattr(current, f) != getattr(body, f) for f in fields)


Retirable = TypeVar("Retirable", Service, Environment)


def _retired(current: Retirable, archived: bool) -> Retirable:
    """``current`` archived now (to the millisecond the database keeps), or restored."""
    at = now()
    stamp = at.replace(microsecond=at.microsecond // 1000 * 1000) if archived else None
    return current.model_copy(update={"archived_at": stamp})


async def archive_service(
    api: Api, principal: Principal, name: str, archived: bool = True
) -> Service:
    """Retire a service (``archived``), or bring it back: its history stays either way;
    archived, it leaves every list and form and no release of it is started."""
    need(principal, Permission.EDIT_CONFIG)
    current = found(await api.catalog.service(name), f"service {name!r}")
    if (current.archived_at is not None) == archived:
        return current
    changed = _retired(current, archived)
    await api.catalog.replace_service(changed)
    action = "service.archive" if archived else "service.restore"
    await api.audit.record(principal.name, action, f"service/{name}", before=current, after=changed)
    return changed


async def archive_environment(
    api: Api, principal: Principal, name: str, archived: bool = True
) -> Environment:
    """Retire an environment (``archived``), or bring it back: as for a service."""
    need(principal, Permission.ADMIN)
    current = found(await api.catalog.environment(name), f"environment {name!r}")
    if (current.archived_at is not None) == archived:
        return current
    changed = _retired(current, archived)
    await api.catalog.replace_environment(changed)
    action = "environment.archive" if archived else "environment.restore"
    await api.audit.record(
        principal.name, action, f"environment/{name}", before=current, after=changed
    )
    return changed


async def services(api: Api, principal: Principal, archived: bool = False) -> list[Service]:
    need(principal, Permission.VIEW)
    return await api.catalog.services(archived)


async def service(api: Api, principal: Principal, name: str) -> Service:
    need(principal, Permission.VIEW)
    return found(await api.catalog.service(name), f"service {name!r}")


async def config(
    api: Api, principal: Principal, name: str, environment: str, version: int | None = None
) -> ConfigView:
    """A config version with its template's schema now, the values a release would render
    with (defaults filled in) and why they do not fit, if they do not."""
    need(principal, Permission.VIEW)
    found = await api.catalog.config(name, environment, version)
    if found is None:
        if version is not None:
            raise NotFound(
                f"version {version} of the config of {name!r} in {environment!r} not found"
            )
        raise NotFound(f"service {name!r} has no release config for environment {environment!r}")
    template = await api.catalog.template(found.template_id)
    parameters = template.parameters if template else None
    values = found.params.template_values()
    return ConfigView(
        **found.model_dump(),
        parameters=schema_of(parameters),
        effective=masked(filled(parameters, values)),
        problems=misfits(template, found.params, api.secrets) if template else {},
    )


async def stored_config(
    api: Api, principal: Principal, name: str, environment: str, version: int | None = None
) -> ServiceConfig | None:
    """A config version as stored (None: there is none), without what :func:`config`
    works out from its template."""
    need(principal, Permission.VIEW)
    return await api.catalog.config(name, environment, version)


async def config_versions(
    api: Api, principal: Principal, name: str, environment: str
) -> list[ServiceConfig]:
    need(principal, Permission.VIEW)
    return await api.catalog.config_versions(name, environment)


async def update_environment(
    api: Api, principal: Principal, name: str, body: Environment, create_namespace: bool = False
) -> Environment:
    """Replace an environment's settings: its cluster, approvals, freeze windows. A
    new cluster or namespace is checked as on creation (``create_namespace`` too)."""
    need(principal, Permission.ADMIN)
    if body.name != name:
        raise Invalid(f"name: {body.name!r} differs from the path's {name!r}", field="name")
    current = found(await api.catalog.environment(name), f"environment {name!r}")
    body = body.model_copy(update={"archived_at": current.archived_at})
    await reachable(body, api.settings)
    if _cluster_changed(current, body) or create_namespace:
        await _namespace_ready(api, principal, body, create_namespace)
    await api.catalog.replace_environment(body)
    await api.audit.record(
        principal.name, "environment.update", f"environment/{name}", before=current, after=body
    )
    return body


async def put_config(
    api: Api, principal: Principal, name: str, environment: str, body: ConfigIn
) -> ServiceConfig:
    """Save the next version of a release config, after rendering it with its template."""
    need(principal, Permission.EDIT_CONFIG)
    service, env, template, current = await asyncio.gather(
        api.catalog.service(name),
        api.catalog.environment(environment),
        api.catalog.template(body.template_id),
        api.catalog.config(name, environment),
    )
    if service is None:
        raise NotFound(f"service {name!r} not found")
    if env is None:
        raise NotFound(f"environment {environment!r} not found")
    if template is None:
        raise Invalid(f"template_id: template {body.template_id!r} not found", field="template_id")
    await _analyses_known(api, body.params)
    before = current.params.template_values() if current else {}
    values = unmasked(template.parameters, body.params.template_values(), before, api.secrets.open)
    found = problems(template.parameters, values)
    if found:
        raise Invalid(told(found), field=next(iter(found)), errors=found)
    plain = body.params.with_values(values)
    secret = secrets_in(template.parameters, values)
    params = sample_params(name, service.image_repository, env.name, env.namespace)
    hidden = hidden_forms(list(secret.values()))
    try:
        rendered = await api.renderers.render(
            template.content, plain, params, parameters=template.parameters, hidden=hidden
        )
        await _admitted(api, env, rendered.objects)
    except (RenderError, Refused) as exc:
        said = hide(exc.message if isinstance(exc, Refused) else str(exc), hidden)
        raise Invalid(
            f"params: template {template.name!r} version {template.version} does not render "
            f"with them: {said}"
        ) from exc
    config = ServiceConfig(
        service=name,
        environment=environment,
        template_id=body.template_id,
        params=body.params.with_values(sealed(template.parameters, values, api.secrets.seal)),
        author=principal.name,
        change=_changes(
            (current, await _template_of(api, current, template)) if current else None,
            (body, template),
            values,
            {p[0] for p in secret},
            api.secrets.open,
        ),
        note=body.note,
    )
    stored = await api.catalog.put_config(config)
    await api.audit.record(
        principal.name,
        "config.update",
        f"config/{name}/{environment}",
        before=current,
        after=stored,
        note=body.note,
    )
    return stored


async def _analyses_known(api: Api, params: BaseParams) -> None:
    """422 naming each canary step (``canary[1].analysis``) or the blue-green settings
    (``blue_green.analysis``) that name an analysis template that does not exist."""
    named = params.analysis_names()
    if not named:
        return
    known = {t.name for t in await api.catalog.analyses(named)}
    places = [(f"canary[{i}].analysis", step.analysis) for i, step in enumerate(params.canary)]
    if params.blue_green is not None:
        places.append(("blue_green.analysis", params.blue_green.analysis))
    unknown = {
        field: f"{field}: no analysis template is named {', '.join(map(repr, missing))}"
        for field, names in places
        if (missing := [n for n in names if n not in known])
    }
    if unknown:
        raise Invalid("; ".join(unknown.values()), field=next(iter(unknown)), errors=unknown)


async def _admitted(api: Api, env: Environment, objects: list[dict[str, Any]]) -> None:
    """Refused unless the environment lets a release hold the objects: its policy always,
    and which kinds are namespaced as its cluster says, when the cluster can be asked
    (if it cannot, the deployer asks before it applies anything)."""
    problems = policy_problems(env, objects)
    try:
        problems += await scope_problems(await api.clusters.get(env), objects)
    except (ClusterError, TransientError) as exc:
        log.info(
            "config saved unchecked against the cluster", environment=env.name, error=exc.message
        )
    if problems:
        raise Refused("; ".join(problems))


async def preview(
    api: Api, principal: Principal, name: str, environment: str, version: str
) -> Preview:
    """The manifest a release of ``version`` would apply now, and its diff against live."""
    need(principal, Permission.VIEW)
    service, env, config = await asyncio.gather(
        api.catalog.service(name),
        api.catalog.environment(environment),
        api.catalog.config(name, environment),
    )
    if service is None:
        raise NotFound(f"service {name!r} not found")
    if env is None:
        raise NotFound(f"environment {environment!r} not found")
    if config is None:
        raise Invalid(f"service {name!r} has no release config for environment {environment!r}")
    template = await config_template(api.catalog, config, api.secrets)
    params = sample_params(name, service.image_repository, env.name, env.namespace, version)
    try:
        rendered = await render_with(api.renderers, template, config.params, params, api.secrets)
    except RenderError as exc:
        hidden = config.params.hidden(api.secrets.open)
        raise Invalid(f"the release would fail to render: {hide(str(exc), hidden)}") from exc
    try:
        cluster = await api.clusters.get(env)
        await admit(cluster, env, rendered.objects)
    except Refused as exc:
        said = hide(exc.message, rendered.hidden)
        raise Invalid(f"the release would be refused in {env.name!r}: {said}") from exc
    except (ClusterError, TransientError) as exc:
        raise Unavailable(f"the cluster of {env.name!r} answered: {exc.message}") from exc
    try:
        diff = await manifest_diff(cluster, env.namespace, rendered.manifest, rendered.hidden)
    except (ClusterError, TransientError) as exc:
        raise Unavailable(f"the cluster of {env.name!r} answered: {exc.message}") from exc
    return Preview(
        manifest=rendered.shown,
        template_id=template.id,
        template_version=template.version,
        config_version=config.version,
        diff=diff,
    )
