"""Shared templates: the list, a new one, versions and their blast radius, and edits."""

import difflib
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import catalog_service, template_service
from services.api.access import ConfigAdmin, Principal, Releaser, Viewer
from services.api.deps import api_of
from services.api.schemas import ActionIn, Queued, TemplateContentIn, TemplateIn
from services.api.ui.pages import back, form, form_error, problem, render
from shared.errors import FabuError, Invalid
from shared.models.base import now
from shared.models.catalog import TemplateSource

router = APIRouter(include_in_schema=False)

# Templates


@router.get("/templates")
async def templates_page(request: Request, principal: Viewer) -> Response:
    return await _templates_page(request, principal)


async def _templates_page(
    request: Request,
    principal: Principal,
    values: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    found = await template_service.templates(api_of(request), principal)
    return render(
        request,
        principal,
        "templates.html",
        status_code=422 if error else 200,
        templates=found,
        values=values or {"kind": "fabu", "ref": "main"},
        error=error,
    )


def _parameters(values: dict[str, str]) -> dict[str, Any] | None:
    """The parameters' JSON Schema from the form (empty: none)."""
    text = values.get("parameters", "").strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError as exc:
        raise Invalid(f"parameters: not valid JSON: {exc}", field="parameters") from exc
    if parsed is not None and not isinstance(parsed, dict):
        raise Invalid("parameters: give a JSON object (a JSON Schema)", field="parameters")
    return parsed


def _template_in(values: dict[str, str]) -> TemplateIn:
    kind = values.get("kind", "fabu")
    if kind == "fabu":
        return TemplateIn(
            name=values.get("name", "").strip(),
            content=values.get("content") or None,
            parameters=_parameters(values),
        )
    source = TemplateSource.model_validate(
        {
            "type": kind,
            "project": values.get("project", "").strip(),
            "url": values.get("url", "").strip(),
            "path": values.get("path", "").strip(),
            "ref": values.get("ref", "").strip() or "main",
        }
    )
    return TemplateIn(name=values.get("name", "").strip(), source=source)


@router.post("/templates")
async def create_template(request: Request, principal: ConfigAdmin) -> Response:
    values = await form(request)
    try:
        made = await template_service.create(api_of(request), principal, _template_in(values))
    except (ValidationError, FabuError) as exc:
        return await _templates_page(request, principal, values, form_error(exc))
    return back(f"/templates/{made.id}")


@router.get("/templates/{template_id}")
async def template_page(request: Request, template_id: str, principal: Viewer) -> Response:
    return await _template_page(request, principal, template_id)


async def _template_page(
    request: Request,
    principal: Principal,
    template_id: str,
    error: str = "",
    queued: list[Queued] | None = None,
) -> Response:
    api = api_of(request)
    q = request.query_params
    try:
        current = await template_service.template(api, principal, template_id)
        versions = await template_service.versions(api, principal, template_id)
        to_version = int(q.get("to") or current.version)
        from_version = int(q.get("from") or max(to_version - 1, 1))
        impact = await template_service.impact(
            api, principal, template_id, from_version, to_version
        )
        old = await template_service.template(api, principal, template_id, from_version)
        new = await template_service.template(api, principal, template_id, to_version)
    except ValueError:
        return problem(request, principal, Invalid("from, to: template versions are numbers"))
    except FabuError as exc:
        return problem(request, principal, exc)
    at = now()
    frozen = any(
        e.frozen_by(at)
        for e in await catalog_service.environments(api, principal)
        if e.name in {s.environment for s in impact.services}
    )
    diff = "".join(
        difflib.unified_diff(
            old.content.splitlines(keepends=True),
            new.content.splitlines(keepends=True),
            f"version {old.version}",
            f"version {new.version}",
        )
    )
    return render(
        request,
        principal,
        "template.html",
        status_code=422 if error else 200,
        template=current,
        parameters_text=json.dumps(current.parameters, indent=2, ensure_ascii=False)
        if current.parameters is not None
        else "",
        versions=versions,
        impact=impact,
        diff=diff,
        error=error,
        queued=queued,
        frozen=frozen,
    )


@router.post("/templates/{template_id}/release")
async def release_template(request: Request, template_id: str, principal: Releaser) -> Response:
    """Release the template's current version to every service using it (the blast radius)."""
    values = await form(request)
    body = ActionIn(
        description=values.get("description", ""),
        override_reason=values.get("override_reason", ""),
    )
    try:
        queued = await template_service.release_all(api_of(request), principal, template_id, body)
    except FabuError as exc:
        return await _template_page(request, principal, template_id, exc.message)
    return await _template_page(request, principal, template_id, queued=queued)


@router.post("/templates/{template_id}")
async def change_template(request: Request, template_id: str, principal: ConfigAdmin) -> Response:
    values = await form(request)
    try:
        body = TemplateContentIn(content=values.get("content", ""), parameters=_parameters(values))
        await template_service.change(api_of(request), principal, template_id, body)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"])
        return await _template_page(request, principal, template_id, message)
    except FabuError as exc:
        return await _template_page(request, principal, template_id, exc.message)
    return back(f"/templates/{template_id}")
