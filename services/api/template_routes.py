"""Shared templates: create, change, read versions, sync, and see what a change reaches."""

from typing import Annotated

from fastapi import APIRouter, Query

from services.api import template_service
from services.api.access import ConfigAdmin, Releaser, Viewer
from services.api.deps import ApiDep
from services.api.schemas import (
    ActionIn,
    Impact,
    Queued,
    TemplateContentIn,
    TemplateIn,
)
from shared.models.catalog import Template

router = APIRouter()


@router.post("/templates", status_code=201)
async def create_template(body: TemplateIn, api: ApiDep, editor: ConfigAdmin) -> Template:
    """A template kept in Fabu (``content``) or read from GitLab or Git now (``source``)."""
    return await template_service.create(api, editor, body)


@router.put("/templates/{template_id}")
async def change_template(
    template_id: str, body: TemplateContentIn, api: ApiDep, editor: ConfigAdmin
) -> Template:
    """The next version of a template kept in Fabu (one read from a source changes there)."""
    return await template_service.change(api, editor, template_id, body)


@router.get("/templates")
async def list_templates(api: ApiDep, me: Viewer) -> list[Template]:
    return await template_service.templates(api, me)


@router.get("/templates/{template_id}")
async def get_template(template_id: str, api: ApiDep, me: Viewer) -> Template:
    return await template_service.template(api, me, template_id)


@router.get("/templates/{template_id}/versions")
async def template_versions(template_id: str, api: ApiDep, me: Viewer) -> list[Template]:
    return await template_service.versions(api, me, template_id)


@router.get("/templates/{template_id}/versions/{version}")
async def template_version(template_id: str, version: int, api: ApiDep, me: Viewer) -> Template:
    return await template_service.template(api, me, template_id, version)


@router.post("/templates/sync", status_code=202)
async def sync_all(api: ApiDep, editor: ConfigAdmin) -> dict[str, str]:
    """Read every template from its source again (in the renderer, in the background)."""
    await template_service.sync_all(api, editor)
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
    template_id: str, api: ApiDep, principal: Releaser, body: ActionIn | None = None
) -> list[Queued]:
    """Release the current version of the template to every service and environment using
    it, each at the version it runs now (services never released are skipped)."""
    return await template_service.release_all(api, principal, template_id, body)
