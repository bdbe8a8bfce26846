"""Release plans: the list, a new plan, one plan (its waves live), its actions, and
promotion from one environment to another."""

import asyncio
import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api import catalog_service, plan_service
from services.api.access import Principal, Releaser, Viewer
from services.api.deps import api_of
from services.api.schemas import ActionIn, DecisionIn, PlanIn, PromoteIn
from services.api.ui.pages import back, form, form_errors, problem, render, utc_time
from shared.errors import FabuError, Invalid
from shared.models.plan import PlanState

router = APIRouter(include_in_schema=False)
# Rows of the new-plan form (more with ?rows=).
ROWS = 5
MAX_ROWS = 50


# The fields of the plan forms that show their own errors; any other is shown above.
PLAN_FIELDS = (
    "name",
    "description",
    "environment",
    "concurrency",
    "on_failure",
    "scheduled_at",
    "override_reason",
)


def paths(exc: ValidationError | FabuError) -> dict[str, str]:
    """A refusal's errors by their whole path (``items.1.version``), so a row's error
    stays at its row."""
    if isinstance(exc, FabuError):
        return form_errors(exc)
    errors: dict[str, str] = {}
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        last = str(error["loc"][-1]) if error["loc"] else ""
        errors.setdefault(where, f"{last}: {error['msg']}" if last else error["msg"])
    return errors


def row_errors(errors: dict[str, str], filled: list[int]) -> dict[str, str]:
    """The plan service's errors where the new-plan form shows them: ``items.N...`` at
    the row item N came from (``row-R``), each field of the form at itself, the rest
    (``items`` as a whole...) above the form (``""``)."""
    shown: dict[str, str] = {}
    for key, why in errors.items():
        parts = key.split(".")
        if parts[0] == "items" and len(parts) > 1 and parts[1].isdigit():
            n = int(parts[1])
            if n < len(filled):
                row = f"row-{filled[n]}"
                shown[row] = f"{shown[row]}; {why}" if row in shown else why
                continue
        where = key if key in PLAN_FIELDS else ""
        shown[where] = f"{shown[where]}; {why}" if where in shown else why
    return shown


def _options(values: dict[str, str]) -> dict[str, object]:
    return {
        "name": values.get("name", ""),
        "description": values.get("description", ""),
        "concurrency": values.get("concurrency") or 5,
        "on_failure": values.get("on_failure") or "stop",
        "scheduled_at": utc_time(values.get("scheduled_at", ""), "scheduled_at"),
        "override_reason": values.get("override_reason", ""),
    }


@router.get("/plans")
async def plans(request: Request, principal: Viewer) -> Response:
    api = api_of(request)
    environment = request.query_params.get("environment") or None
    found, environments = await asyncio.gather(
        plan_service.page(api, principal, environment),
        catalog_service.environments(api, principal),
    )
    return render(
        request,
        principal,
        "plans.html",
        plans=found,
        environments=environments,
        chosen=environment or "",
    )


async def _new_page(
    request: Request,
    principal: Principal,
    values: dict[str, str],
    errors: dict[str, str],
    rows: int,
) -> Response:
    api = api_of(request)
    services, environments = await asyncio.gather(
        catalog_service.services(api, principal), catalog_service.environments(api, principal)
    )
    return render(
        request,
        principal,
        "plan_new.html",
        status_code=422 if errors else 200,
        services=services,
        environments=environments,
        values=values,
        errors=errors,
        rows=rows,
        max_rows=MAX_ROWS,
    )


def _rows(values: dict[str, str]) -> int:
    asked = values.get("rows", "")
    return min(int(asked), MAX_ROWS) if asked.isdigit() and int(asked) > 0 else ROWS


@router.get("/plans/new")
async def new_plan(request: Request, principal: Releaser) -> Response:
    values = dict(request.query_params)
    return await _new_page(request, principal, values, {}, _rows(values))


@router.post("/plans/new")
async def create_plan(request: Request, principal: Releaser) -> Response:
    values = await form(request)
    rows = _rows(values)
    if values.get("more"):  # five more rows, what was filled in kept
        return await _new_page(request, principal, values, {}, min(rows + 5, MAX_ROWS))
    # The rows filled in, and which row each item came from (errors name the item).
    filled = [n for n in range(rows) if values.get(f"service-{n}")]
    items = [
        {
            "service": values[f"service-{n}"],
            "version": values.get(f"version-{n}", "").strip(),
            "wave": int(w) - 1
            if (w := values.get(f"wave-{n}", "").strip()).isdigit() and w != "0"
            else 0,
            "after": [a.strip() for a in values.get(f"after-{n}", "").split(",") if a.strip()],
        }
        for n in filled
    ]
    try:
        body = PlanIn(environment=values.get("environment", ""), items=items, **_options(values))
        plan = await plan_service.create(api_of(request), principal, body)
    except (ValidationError, FabuError) as exc:
        shown = row_errors(paths(exc), filled)
        return await _new_page(request, principal, values, shown, rows)
    return back(f"/plans/{plan.id}")


def _promote_body(values: dict[str, str], services: list[str]) -> PromoteIn:
    return PromoteIn(
        source=values.get("source", ""),
        environment=values.get("environment", ""),
        services=services,
        team=values.get("team", "").strip(),
        **_options(values),
    )


@router.get("/plans/promote")
async def promote_page(request: Request, principal: Releaser) -> Response:
    api = api_of(request)
    values = dict(request.query_params)
    chosen = request.query_params.getlist("services")
    services, environments = await asyncio.gather(
        catalog_service.services(api, principal), catalog_service.environments(api, principal)
    )
    promotion = None
    error = ""
    if values.get("source") and values.get("environment"):
        try:
            promotion = await plan_service.promotion(api, principal, _promote_body(values, chosen))
        except (ValidationError, FabuError) as exc:
            error = exc.message if isinstance(exc, FabuError) else str(exc)
    return render(
        request,
        principal,
        "plan_promote.html",
        status_code=422 if error else 200,
        values=values,
        chosen=chosen,
        services=services,
        teams=sorted({s.team for s in services}),
        environments=environments,
        promotion=promotion,
        error=error,
    )


@router.post("/plans/promote")
async def promote(request: Request, principal: Releaser) -> Response:
    data = await request.form()
    values = {k: v for k, v in data.items() if isinstance(v, str)}
    chosen = [v for v in data.getlist("services") if isinstance(v, str)]
    try:
        plan = await plan_service.promote(api_of(request), principal, _promote_body(values, chosen))
    except FabuError as exc:
        return problem(request, principal, exc)
    except ValidationError as exc:
        return problem(request, principal, Invalid(str(exc)))
    return back(f"/plans/{plan.id}")


@router.get("/plans/{plan_id}")
async def plan_page(request: Request, plan_id: str, principal: Viewer) -> Response:
    api = api_of(request)
    try:
        plan = await plan_service.get(api, principal, plan_id)
        review: list[plan_service.ItemReview] = []
        if plan.state is PlanState.AWAITING_APPROVAL:
            review = await plan_service.review_items(api, principal, plan_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(request, principal, "plan.html", plan=plan, review=review)


@router.get("/fragments/plans/{plan_id}")
async def plan_fragment(request: Request, plan_id: str, principal: Viewer) -> Response:
    """The plan's state, waves and transcript, read again every few seconds by its page."""
    try:
        plan = await plan_service.get(api_of(request), principal, plan_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(request, principal, "_plan_live.html", plan=plan)


@router.post("/plans/{plan_id}/decide")
async def decide(request: Request, plan_id: str, principal: Releaser) -> Response:
    values = await form(request)
    api = api_of(request)
    action = values.get("action", "")
    try:
        if action in ("approve", "reject"):
            body = DecisionIn(
                comment=values.get("comment", ""),
                override_reason=values.get("override_reason", ""),
            )
            decided = plan_service.approve if action == "approve" else plan_service.reject
            await decided(api, principal, plan_id, body)
        elif action == "cancel":
            await plan_service.cancel(api, principal, plan_id)
        else:
            raise Invalid(f"action: {action!r} is not approve, reject or cancel", field="action")
    except (ValidationError, FabuError) as exc:
        if isinstance(exc, FabuError):
            return problem(request, principal, exc)
        return problem(request, principal, Invalid(str(exc)))
    return back(f"/plans/{urllib.parse.quote(plan_id)}")


@router.get("/plans/{plan_id}/rollback")
async def rollback_page(request: Request, plan_id: str, principal: Releaser) -> Response:
    api = api_of(request)
    try:
        plan = await plan_service.get(api, principal, plan_id)
        preview = await plan_service.rollback_preview(api, principal, plan_id)
    except FabuError as exc:
        return problem(request, principal, exc)
    return render(request, principal, "plan_rollback.html", plan=plan, preview=preview)


@router.post("/plans/{plan_id}/rollback")
async def rollback(request: Request, plan_id: str, principal: Releaser) -> Response:
    values = await form(request)
    try:
        body = ActionIn(
            description=values.get("description", ""),
            override_reason=values.get("override_reason", ""),
        )
        back_plan = await plan_service.rollback(api_of(request), principal, plan_id, body)
    except FabuError as exc:
        return problem(request, principal, exc)
    except ValidationError as exc:
        return problem(request, principal, Invalid(str(exc)))
    return back(f"/plans/{back_plan.id}")
