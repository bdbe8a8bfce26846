"""Release records: the list, a new release, one release, and the actions on it."""

import asyncio
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import catalog_service, release_service
from services.api.access import Principal
from services.api.schemas import ActionIn, DecisionIn, ReleaseIn
from services.api.ui.pages import (
    Releaser,
    Viewer,
    api_for,
    back,
    form,
    problem,
    render,
    validation_errors,
)
from shared.errors import FabuError, Invalid, NotFound
from shared.models import ReleaseState, now

router = APIRouter(include_in_schema=False)

# Release records


PAGE_SIZES = (25, 50, 100)


def _day(text: str, field: str) -> datetime | None:
    """A date from the form's date box, as midnight UTC (None when empty)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError as exc:
        raise Invalid(f"{field}: give a date as YYYY-MM-DD", field=field) from exc


@router.get("/releases")
async def releases(request: Request, principal: Viewer) -> Response:
    q = request.query_params
    api = api_for(request)
    names = ("service", "environment", "state", "operator", "since", "until")
    filters = {k: (q.get(k) or "").strip() for k in names}
    size = int(q["size"]) if q.get("size", "").isdigit() else PAGE_SIZES[0]
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    try:
        try:
            state = ReleaseState(filters["state"]) if filters["state"] else None
        except ValueError as exc:
            states = ", ".join(ReleaseState)
            raise Invalid(f"state: not one of {states}", field="state") from exc
        since = _day(filters["since"], "since")
        until = _day(filters["until"], "until")
    except FabuError as exc:
        return problem(request, principal, exc)
    found, services, environments, operators = await asyncio.gather(
        release_service.page(
            api,
            principal,
            service=filters["service"] or None,
            environment=filters["environment"] or None,
            state=state,
            operator=filters["operator"] or None,
            since=since,
            # The last day given is in the range.
            until=until + timedelta(days=1) if until else None,
            prefix=True,
            cursor=q.get("cursor") or None,
            back=q.get("back") or None,
            limit=size,
            counted=True,
        ),
        catalog_service.services(api, principal, archived=True),
        catalog_service.environments(api, principal, archived=True),
        release_service.operators(api, principal),
    )
    kept = {k: v for k, v in filters.items() if v}
    if size != PAGE_SIZES[0]:
        kept["size"] = str(size)

    def link(**more: str) -> str:
        return "/releases?" + urllib.parse.urlencode({**kept, **more})

    return render(
        request,
        principal,
        "releases.html",
        page=found,
        filters=filters,
        filtered=any(filters.values()),
        size=size,
        sizes=PAGE_SIZES,
        states=list(ReleaseState),
        services=[s.name for s in services],
        environments=[e.name for e in environments],
        operators=operators,
        next_url=link(cursor=found.next_cursor) if found.next_cursor else "",
        previous_url=link(back=found.previous_cursor) if found.previous_cursor else "",
    )


@router.get("/releases/new")
async def new_release(request: Request, principal: Releaser) -> Response:
    return await _new_release_page(request, principal, dict(request.query_params), {})


async def _new_release_page(
    request: Request, principal: Principal, values: dict[str, str], errors: dict[str, str]
) -> Response:
    api = api_for(request)
    services = await catalog_service.services(api, principal)
    environments = await catalog_service.environments(api, principal)
    chosen = next((s for s in services if s.name == values.get("service")), None)
    versions, config, preview = None, None, None
    if chosen is not None:
        try:
            versions = await catalog_service.images(api, principal, chosen.name)
        except FabuError as exc:
            errors.setdefault("version", exc.message)
        if values.get("environment"):
            config = await api.catalog.config(chosen.name, values["environment"])
        if values.get("preview") and values.get("environment") and values.get("version"):
            try:
                preview = await catalog_service.preview(
                    api, principal, chosen.name, values["environment"], values["version"]
                )
            except FabuError as exc:
                errors.setdefault(exc.field, exc.message)
    return render(
        request,
        principal,
        "release_new.html",
        status_code=422 if errors else 200,
        services=services,
        environments=environments,
        values=values,
        versions=versions,
        config=config,
        preview=preview,
        errors=errors,
        frozen=next(
            (e.frozen_by(now()) for e in environments if e.name == values.get("environment")),
            None,
        ),
    )


@router.post("/releases/new")
async def create_release(request: Request, principal: Releaser) -> Response:
    values = await form(request)
    try:
        body = ReleaseIn(
            service=values.get("service", ""),
            environment=values.get("environment", ""),
            version=values.get("version", ""),
            description=values.get("description", ""),
            override_reason=values.get("override_reason", ""),
        )
    except ValidationError as exc:
        return await _new_release_page(request, principal, values, validation_errors(exc))
    try:
        accepted = await release_service.create(api_for(request), principal, body)
    except FabuError as exc:
        return await _new_release_page(request, principal, values, {exc.field: exc.message})
    return back(f"/releases/{accepted.id}")


@router.get("/releases/{release_id}")
async def release(request: Request, release_id: str, principal: Viewer) -> Response:
    api = api_for(request)
    try:
        found = await release_service.get(api, principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    actions, good, env = await asyncio.gather(
        release_service.actions(api, principal, found),
        release_service.last_good(api, principal, found),
        api.catalog.environment(found.environment),
    )
    if good is not None and "rollback" not in await release_service.actions(api, principal, good):
        good = None
    timeout_s = found.params.rollout_timeout_s or (env.rollout_timeout_s if env else None)
    waiting = found.state is ReleaseState.AWAITING_APPROVAL
    return render(
        request,
        principal,
        "release.html",
        release=found,
        actions=actions,
        last_good=good,
        timeout_s=timeout_s,
        approvers=await release_service.approvers(api, principal, found) if waiting else [],
        frozen=env.frozen_by(now()) if env else None,
    )


@router.get("/releases/{release_id}/rollback")
async def rollback_page(request: Request, release_id: str, principal: Viewer) -> Response:
    api = api_for(request)
    try:
        diff = await release_service.rollback_preview(api, principal, release_id)
        found = await release_service.get(api, principal, release_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    env = await api.catalog.environment(found.environment)
    frozen = env.frozen_by(now()) if env else None
    return render(request, principal, "rollback.html", release=found, diff=diff, frozen=frozen)


@router.post("/releases/{release_id}/{action}")
async def release_action(
    request: Request, release_id: str, action: str, principal: Releaser
) -> Response:
    values = await form(request)
    api = api_for(request)
    act = ActionIn(
        description=values.get("description", ""),
        override_reason=values.get("override_reason", ""),
    )
    decided = DecisionIn(
        comment=values.get("comment", ""), override_reason=values.get("override_reason", "")
    )
    try:
        match action:
            case "rollback":
                done: Any = await release_service.rollback(api, principal, release_id, act)
            case "redeploy":
                done = await release_service.redeploy(api, principal, release_id, act)
            case "cancel":
                done = await release_service.cancel(api, principal, release_id)
            case "abort":
                done = await release_service.abort(api, principal, release_id)
            case "promote":
                done = await release_service.promote(api, principal, release_id)
            case "approve":
                done = await release_service.approve(api, principal, release_id, decided)
            case "reject":
                done = await release_service.reject(api, principal, release_id, decided)
            case _:
                return problem(request, principal, NotFound(f"no action {action!r}"))
    except FabuError as exc:
        return problem(request, principal, exc)
    return back(f"/releases/{done.id}")
