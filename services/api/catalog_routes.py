"""Environments, services, their versioned release configs, and release previews."""

from fastapi import APIRouter

from services.api import catalog_service, state_service
from services.api.access import Admin, ConfigAdmin, Viewer
from services.api.deps import ApiDep
from services.api.schemas import ConfigIn, ConfigView, EnvironmentIn, ImageTag, Preview
from services.api.state_service import ServiceStates
from shared.models.catalog import Environment, Service, ServiceConfig

router = APIRouter()


@router.post("/environments", status_code=201)
async def create_environment(body: EnvironmentIn, api: ApiDep, admin: Admin) -> Environment:
    """Add an environment: 422 when its namespace is missing in its cluster (unless
    ``create_namespace``) or Fabu may not release there, 503 when the cluster is unreachable."""
    return await catalog_service.create_environment(
        api, admin, body.environment(), body.create_namespace
    )


@router.get("/environments/{name}")
async def get_environment(name: str, api: ApiDep, me: Viewer) -> Environment:
    return await catalog_service.environment(api, me, name)


@router.put("/environments/{name}")
async def update_environment(
    name: str, body: EnvironmentIn, api: ApiDep, admin: Admin
) -> Environment:
    """Replace an environment's settings: its cluster, approvals, freeze windows (a new
    cluster or namespace is checked as on creation)."""
    return await catalog_service.update_environment(
        api, admin, name, body.environment(), body.create_namespace
    )


@router.get("/environments")
async def list_environments(api: ApiDep, me: Viewer, archived: bool = False) -> list[Environment]:
    """In name order; ``archived=true`` includes the archived ones."""
    return await catalog_service.environments(api, me, archived)


@router.post("/environments/{name}/archive")
async def archive_environment(name: str, api: ApiDep, admin: Admin) -> Environment:
    """Retire an environment: kept with its history, hidden from lists, released to no more."""
    return await catalog_service.archive_environment(api, admin, name)


@router.post("/environments/{name}/restore")
async def restore_environment(name: str, api: ApiDep, admin: Admin) -> Environment:
    return await catalog_service.archive_environment(api, admin, name, archived=False)


@router.post("/services", status_code=201)
async def create_service(body: Service, api: ApiDep, editor: ConfigAdmin) -> Service:
    return await catalog_service.create_service(api, editor, body)


@router.get("/services")
async def list_services(api: ApiDep, me: Viewer, archived: bool = False) -> list[Service]:
    """In name order; ``archived=true`` includes the archived ones."""
    return await catalog_service.services(api, me, archived)


@router.put("/services/{name}")
async def update_service(name: str, body: Service, api: ApiDep, editor: ConfigAdmin) -> Service:
    """Replace a service's team, image repository and GitLab project."""
    return await catalog_service.update_service(api, editor, name, body)


@router.post("/services/{name}/archive")
async def archive_service(name: str, api: ApiDep, editor: ConfigAdmin) -> Service:
    """Retire a service: kept with its history, hidden from lists, released no more."""
    return await catalog_service.archive_service(api, editor, name)


@router.post("/services/{name}/restore")
async def restore_service(name: str, api: ApiDep, editor: ConfigAdmin) -> Service:
    return await catalog_service.archive_service(api, editor, name, archived=False)


@router.get("/services/{name}")
async def get_service(name: str, api: ApiDep, me: Viewer) -> Service:
    return await catalog_service.service(api, me, name)


@router.get("/services/{name}/state")
async def service_state(
    name: str, api: ApiDep, me: Viewer, environment: str | None = None
) -> ServiceStates:
    """What runs, observed in the cluster: per environment, each workload's images,
    counts and health, and whether the cluster holds the last applied release (drift)."""
    return await state_service.service_states(api, me, name, environment)


@router.put("/services/{name}/config/{environment}")
async def put_config(
    name: str, environment: str, body: ConfigIn, api: ApiDep, editor: ConfigAdmin
) -> ServiceConfig:
    """Save the next version of a release config, after rendering it with its template."""
    return await catalog_service.put_config(api, editor, name, environment, body)


@router.get("/services/{name}/config/{environment}")
async def get_config(name: str, environment: str, api: ApiDep, me: Viewer) -> ConfigView:
    """The current config, with its template's parameter schema, the values a release
    renders with (defaults filled in, secrets masked) and any that no longer fit."""
    return await catalog_service.config(api, me, name, environment)


@router.get("/services/{name}/config/{environment}/versions")
async def config_versions(
    name: str, environment: str, api: ApiDep, me: Viewer
) -> list[ServiceConfig]:
    """Every saved version, newest first, each with its author, time and changes."""
    return await catalog_service.config_versions(api, me, name, environment)


@router.get("/services/{name}/config/{environment}/versions/{version}")
async def config_version(
    name: str, environment: str, version: int, api: ApiDep, me: Viewer
) -> ConfigView:
    return await catalog_service.config(api, me, name, environment, version)


@router.get("/services/{name}/preview")
async def preview(
    name: str, environment: str, version: ImageTag, api: ApiDep, me: Viewer
) -> Preview:
    """The manifest a release of ``version`` would apply now, and its diff against live."""
    return await catalog_service.preview(api, me, name, environment, version)
