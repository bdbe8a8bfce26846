"""Shared templates: create, change, read versions, sync, and see what a change reaches."""

from typing import Annotated

from fastapi import APIRouter, Query

from services.api import template_service
from services.api.access import ConfigAdmin, Releaser, Viewer
from services.api.deps import ApiDep, AuditDep, BusDep, CatalogDep, ReleasesDep, SettingsDep
from services.api.releasing import Starter, again, start
from services.api.schemas import (
    ActionIn,
    Impact,
    Queued,
    TemplateContentIn,
    TemplateIn,
)
from shared.errors import FabuError, Invalid, TransientError, Unavailable
from shared.ids import TemplateId
from shared.messages import TemplateChanged
from shared.models import ReleaseKind, Template, now
from shared.render import RenderError
from shared.sources import Remotes
from shared.store.mongo import new_id
from shared.templates import read_checked

router = APIRouter()


@router.post("/templates", status_code=201)
async def create_template(
    body: TemplateIn,
    catalog: CatalogDep,
    settings: SettingsDep,
    audit: AuditDep,
    editor: ConfigAdmin,
) -> Template:
    """A template kept in Fabu (``content``) or read from GitLab or Git now (``source``)."""
    template_id = TemplateId(new_id())
    if body.source is None:
        assert body.content is not None  # noqa: S101 - narrows the type: TemplateIn holds content or source
        template_service.checked(body.content)
        template = Template(id=template_id, name=body.name, content=body.content)
    else:
        remotes = Remotes.of(settings)
        try:
            found = await read_checked(remotes, body.source)
        except RenderError as exc:
            raise Invalid(f"source: {exc}", field="source") from exc
        except TransientError as exc:
            raise Unavailable(f"source: {exc.message}") from exc
        except FabuError as exc:
            raise Invalid(f"source: {exc.message}", field="source") from exc
        template = Template(
            id=template_id,
            name=body.name,
            content=found.content,
            source=body.source,
            commit_sha=found.commit_sha,
            synced_at=now(),
        )
    await catalog.add_template(template)
    await audit.record(editor.name, "template.create", f"template/{template.id}", after=template)
    return template


@router.put("/templates/{template_id}")
async def change_template(
    template_id: str, body: TemplateContentIn, api: ApiDep, editor: ConfigAdmin
) -> Template:
    """The next version of a template kept in Fabu (one read from a source changes there)."""
    return await template_service.change(api, editor, template_id, body)


@router.get("/templates")
async def list_templates(catalog: CatalogDep) -> list[Template]:
    return await catalog.templates()


@router.get("/templates/{template_id}")
async def get_template(template_id: str, catalog: CatalogDep) -> Template:
    return await template_service.found(catalog, template_id)


@router.get("/templates/{template_id}/versions")
async def template_versions(template_id: str, catalog: CatalogDep) -> list[Template]:
    await template_service.found(catalog, template_id)
    return await catalog.template_versions(TemplateId(template_id))


@router.get("/templates/{template_id}/versions/{version}")
async def template_version(template_id: str, version: int, catalog: CatalogDep) -> Template:
    return await template_service.found(catalog, template_id, version)


@router.post("/templates/sync", status_code=202)
async def sync_all(bus: BusDep, audit: AuditDep, editor: ConfigAdmin) -> dict[str, str]:
    """Read every template from its source again (in the renderer, in the background)."""
    await bus.publish(bus.subjects.template_changed, TemplateChanged(everything=True))
    await audit.record(editor.name, "template.sync", "template/*")
    return {"detail": "every template is being read again from its source"}


@router.get("/templates/{template_id}/impact")
async def impact(
    template_id: str,
    api: ApiDep,
    me: Viewer,
    from_version: Annotated[int | None, Query(alias="from", ge=1)] = None,
    to_version: Annotated[int | None, Query(alias="to", ge=1)] = None,
) -> Impact:
    """Every service and environment whose config uses the template, with the manifest diff
    between two of its versions (default: the previous and the current one)."""
    return await template_service.impact(api, me, template_id, from_version, to_version)


@router.post("/templates/{template_id}/release", status_code=202)
async def release_all(
    template_id: str,
    catalog: CatalogDep,
    releases: ReleasesDep,
    bus: BusDep,
    audit: AuditDep,
    principal: Releaser,
    body: ActionIn | None = None,
) -> list[Queued]:
    """Release the current version of the template to every service and environment using
    it, each at the version it runs now (services never released are skipped)."""
    template = await template_service.found(catalog, template_id)
    starter = Starter(releases, bus, audit, principal)
    queued = []
    for config in await catalog.configs_using(template.id):
        latest = await releases.latest(config.service, config.environment)
        env = await catalog.environment(config.environment)
        service = await catalog.service(config.service)
        if latest is None or env is None or service is None:
            queued.append(
                Queued(
                    service=config.service,
                    environment=config.environment,
                    release_id=None,
                    error="never released here: nothing to release again",
                )
            )
            continue
        description = (body.description if body else "") or (
            f"template {template.name} version {template.version}"
        )
        release = again(latest, ReleaseKind.DEPLOY, description, env.namespace, template, config)
        try:
            accepted = await start(
                release, env, service, starter, body.override_reason if body else ""
            )
        except FabuError as exc:
            queued.append(
                Queued(
                    service=config.service,
                    environment=config.environment,
                    release_id=None,
                    error=exc.message,
                )
            )
            continue
        queued.append(
            Queued(service=config.service, environment=config.environment, release_id=accepted.id)
        )
    return queued
