"""Environments, services, their versioned release configs, and release previews."""

import asyncio
import json

from fastapi import APIRouter

from services.api.access import Admin, ConfigAdmin
from services.api.deps import AuditDep, CatalogDep, ClustersDep, SettingsDep
from services.api.diff import manifest_diff
from services.api.releasing import config_template, sample_params
from services.api.schemas import ConfigIn, ImageTag, Preview
from shared.cluster import ClusterError, kubeconfig_file
from shared.errors import Invalid, NotFound, TransientError, Unavailable
from shared.models import Environment, Service, ServiceConfig
from shared.registry import Repository
from shared.render import RenderError, render
from shared.settings import Settings

router = APIRouter()


async def _reachable(env: Environment, settings: Settings) -> None:
    if not env.in_cluster and not env.kubeconfig:
        raise Invalid("environment needs a kubeconfig or in_cluster: true")
    if env.kubeconfig and not env.in_cluster:
        try:
            await asyncio.to_thread(kubeconfig_file, env.kubeconfig, settings.kubeconfig_dir)
        except ClusterError as exc:
            raise Invalid(exc.message) from exc


@router.post("/environments", status_code=201)
async def create_environment(
    body: Environment, catalog: CatalogDep, audit: AuditDep, settings: SettingsDep, admin: Admin
) -> Environment:
    await _reachable(body, settings)
    await catalog.add_environment(body)
    await audit.record(admin.name, "environment.create", f"environment/{body.name}", after=body)
    return body


@router.get("/environments/{name}")
async def get_environment(name: str, catalog: CatalogDep) -> Environment:
    env = await catalog.environment(name)
    if env is None:
        raise NotFound(f"environment {name!r} not found")
    return env


@router.put("/environments/{name}")
async def update_environment(
    name: str,
    body: Environment,
    catalog: CatalogDep,
    audit: AuditDep,
    settings: SettingsDep,
    admin: Admin,
) -> Environment:
    """Replace an environment's settings: its cluster, approvals, freeze windows."""
    if body.name != name:
        raise Invalid(f"name: {body.name!r} differs from the path's {name!r}")
    await _reachable(body, settings)
    before = await catalog.replace_environment(body)
    if before is None:
        raise NotFound(f"environment {name!r} not found")
    await audit.record(
        admin.name, "environment.update", f"environment/{name}", before=before, after=body
    )
    return body


@router.get("/environments")
async def list_environments(catalog: CatalogDep) -> list[Environment]:
    return await catalog.environments()


@router.post("/services", status_code=201)
async def create_service(
    body: Service, catalog: CatalogDep, audit: AuditDep, settings: SettingsDep, editor: ConfigAdmin
) -> Service:
    host = Repository.parse(body.image_repository).host
    if host not in settings.registries:
        known = ", ".join(sorted(settings.registries)) or "none"
        raise Invalid(
            f"image_repository: the registry {host} is not configured in FABU_REGISTRIES "
            f"(configured: {known})"
        )
    await catalog.add_service(body)
    await audit.record(editor.name, "service.create", f"service/{body.name}", after=body)
    return body


@router.get("/services")
async def list_services(catalog: CatalogDep) -> list[Service]:
    return await catalog.services()


@router.get("/services/{name}")
async def get_service(name: str, catalog: CatalogDep) -> Service:
    service = await catalog.service(name)
    if service is None:
        raise NotFound(f"service {name!r} not found")
    return service


def _changes(before: ServiceConfig | None, after: ConfigIn) -> list[str]:
    """Field by field, what a save changes: ``replicas: 2 → 3``."""
    if before is None:
        return ["created"]
    lines = []
    if before.template_id != after.template_id:
        lines.append(f"template_id: {before.template_id} → {after.template_id}")
    old, new = before.params.model_dump(), after.params.model_dump()
    for key in new:
        if old.get(key) != new[key]:
            lines.append(f"{key}: {json.dumps(old.get(key))} → {json.dumps(new[key])}")
    return lines


@router.put("/services/{name}/config/{environment}")
async def put_config(
    name: str,
    environment: str,
    body: ConfigIn,
    catalog: CatalogDep,
    audit: AuditDep,
    editor: ConfigAdmin,
) -> ServiceConfig:
    """Save the next version of a release config, after rendering it with its template."""
    service, env, template, current = await asyncio.gather(
        catalog.service(name),
        catalog.environment(environment),
        catalog.template(body.template_id),
        catalog.config(name, environment),
    )
    if service is None:
        raise NotFound(f"service {name!r} not found")
    if env is None:
        raise NotFound(f"environment {environment!r} not found")
    if template is None:
        raise Invalid(f"template_id: template {body.template_id!r} not found")
    params = sample_params(name, service.image_repository, env.name, env.namespace)
    try:
        render(template.content, body.params, params)
    except RenderError as exc:
        raise Invalid(
            f"params: template {template.name!r} version {template.version} does not render "
            f"with them: {exc}"
        ) from exc
    config = ServiceConfig(
        service=name,
        environment=environment,
        template_id=body.template_id,
        params=body.params,
        author=editor.name,
        change=_changes(current, body),
        note=body.note,
    )
    stored = await catalog.put_config(config)
    await audit.record(
        editor.name,
        "config.update",
        f"config/{name}/{environment}",
        before=current,
        after=stored,
        note=body.note,
    )
    return stored


@router.get("/services/{name}/config/{environment}")
async def get_config(name: str, environment: str, catalog: CatalogDep) -> ServiceConfig:
    config = await catalog.config(name, environment)
    if config is None:
        raise NotFound(f"service {name!r} has no release config for environment {environment!r}")
    return config


@router.get("/services/{name}/config/{environment}/versions")
async def config_versions(name: str, environment: str, catalog: CatalogDep) -> list[ServiceConfig]:
    """Every saved version, newest first, each with its author, time and changes."""
    return await catalog.config_versions(name, environment)


@router.get("/services/{name}/config/{environment}/versions/{version}")
async def config_version(
    name: str, environment: str, version: int, catalog: CatalogDep
) -> ServiceConfig:
    config = await catalog.config(name, environment, version)
    if config is None:
        raise NotFound(f"version {version} of the config of {name!r} in {environment!r} not found")
    return config


@router.get("/services/{name}/preview")
async def preview(
    name: str,
    environment: str,
    version: ImageTag,
    catalog: CatalogDep,
    clusters: ClustersDep,
) -> Preview:
    """The manifest a release of ``version`` would apply now, and its diff against live."""
    service, env, config = await asyncio.gather(
        catalog.service(name), catalog.environment(environment), catalog.config(name, environment)
    )
    if service is None:
        raise NotFound(f"service {name!r} not found")
    if env is None:
        raise NotFound(f"environment {environment!r} not found")
    if config is None:
        raise Invalid(f"service {name!r} has no release config for environment {environment!r}")
    template = await config_template(catalog, config)
    params = sample_params(name, service.image_repository, env.name, env.namespace, version)
    try:
        rendered = render(template.content, config.params, params)
    except RenderError as exc:
        raise Invalid(f"the release would fail to render: {exc}") from exc
    try:
        diff = await manifest_diff(await clusters.get(env), env.namespace, rendered.manifest)
    except (ClusterError, TransientError) as exc:
        raise Unavailable(f"the cluster of {env.name!r} answered: {exc.message}") from exc
    return Preview(
        manifest=rendered.manifest,
        template_id=template.id,
        template_version=template.version,
        config_version=config.version,
        diff=diff,
    )
