"""Environments, templates, services and their release configs."""

from fastapi import APIRouter

from services.api.deps import CatalogDep
from services.api.schemas import ConfigIn, TemplateIn
from shared.errors import Invalid, NotFound
from shared.ids import TemplateId
from shared.models import Environment, Service, ServiceConfig, Template
from shared.store.mongo import new_id

router = APIRouter()


@router.post("/environments", status_code=201)
async def create_environment(body: Environment, catalog: CatalogDep) -> Environment:
    if not body.in_cluster and not body.kubeconfig:
        raise Invalid("environment needs a kubeconfig or in_cluster: true")
    await catalog.add_environment(body)
    return body


@router.get("/environments")
async def list_environments(catalog: CatalogDep) -> list[Environment]:
    return await catalog.environments()


@router.post("/templates", status_code=201)
async def create_template(body: TemplateIn, catalog: CatalogDep) -> Template:
    template = Template(id=TemplateId(new_id()), name=body.name, content=body.content)
    await catalog.add_template(template)
    return template


@router.get("/templates/{template_id}")
async def get_template(template_id: str, catalog: CatalogDep) -> Template:
    template = await catalog.template(TemplateId(template_id))
    if template is None:
        raise NotFound(f"template {template_id!r} not found")
    return template


@router.post("/services", status_code=201)
async def create_service(body: Service, catalog: CatalogDep) -> Service:
    await catalog.add_service(body)
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
    name: str, environment: str, body: ConfigIn, catalog: CatalogDep
) -> ServiceConfig:
    if await catalog.service(name) is None:
        raise NotFound(f"service {name!r} not found")
    if await catalog.environment(environment) is None:
        raise NotFound(f"environment {environment!r} not found")
    if await catalog.template(body.template_id) is None:
        raise Invalid(f"template_id: template {body.template_id!r} not found")
    config = ServiceConfig(
        service=name, environment=environment, template_id=body.template_id, params=body.params
    )
    return await catalog.put_config(config)


@router.get("/services/{name}/config/{environment}")
async def get_config(name: str, environment: str, catalog: CatalogDep) -> ServiceConfig:
    config = await catalog.config(name, environment)
    if config is None:
        raise NotFound(f"service {name!r} has no release config for environment {environment!r}")
    return config
