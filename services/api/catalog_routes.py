"""Environments, services, their versioned release configs, and release previews."""

from fastapi import APIRouter

from services.api import catalog_service
from services.api.access import Admin, ConfigAdmin, Viewer
from services.api.deps import ApiDep, AuditDep, CatalogDep, SettingsDep
from services.api.schemas import ConfigIn, ImageTag, Preview
from shared.errors import Invalid, NotFound
from shared.models import Environment, Service, ServiceConfig
from shared.registry import Repository

router = APIRouter()


@router.post("/environments", status_code=201)
async def create_environment(
    body: Environment, catalog: CatalogDep, audit: AuditDep, settings: SettingsDep, admin: Admin
) -> Environment:
    await catalog_service.reachable(body, settings)
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
    name: str, body: Environment, api: ApiDep, admin: Admin
) -> Environment:
    """Replace an environment's settings: its cluster, approvals, freeze windows."""
    return await catalog_service.update_environment(api, admin, name, body)


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


@router.put("/services/{name}/config/{environment}")
async def put_config(
    name: str, environment: str, body: ConfigIn, api: ApiDep, editor: ConfigAdmin
) -> ServiceConfig:
    """Save the next version of a release config, after rendering it with its template."""
    return await catalog_service.put_config(api, editor, name, environment, body)


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
    name: str, environment: str, version: ImageTag, api: ApiDep, me: Viewer
) -> Preview:
    """The manifest a release of ``version`` would apply now, and its diff against live."""
    return await catalog_service.preview(api, me, name, environment, version)
