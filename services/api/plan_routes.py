"""Release plans over HTTP: thin wrappers over ``plan_service``."""

from typing import Annotated

from fastapi import APIRouter, Query

from services.api import plan_service
from services.api.access import Releaser, Viewer
from services.api.deps import ApiDep
from services.api.plan_service import ItemReview, Promotion, RollbackPreview
from services.api.schemas import ActionIn, DecisionIn, PlanIn, PromoteIn
from shared.models.plan import Plan

router = APIRouter()


@router.post("/plans", status_code=201)
async def create_plan(body: PlanIn, api: ApiDep, me: Releaser) -> Plan:
    """A plan of items in waves (``wave``, or ``after``: the items each waits for),
    approved once where the environment asks, started now or at ``scheduled_at``."""
    return await plan_service.create(api, me, body)


@router.get("/plans")
async def list_plans(
    api: ApiDep,
    me: Viewer,
    environment: str | None = None,
    cursor: Annotated[str | None, Query(description="the last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[Plan]:
    """Plans, newest first."""
    return await plan_service.page(api, me, environment, cursor, limit)


@router.post("/plans/promotion")
async def promotion(body: PromoteIn, api: ApiDep, me: Viewer) -> Promotion:
    """What promoting would release: exactly what runs healthy in ``source``, against
    what runs in ``environment``; nothing is stored."""
    return await plan_service.promotion(api, me, body)


@router.post("/plans/promote", status_code=201)
async def promote(body: PromoteIn, api: ApiDep, me: Releaser) -> Plan:
    """A plan releasing exactly what runs healthy in ``source`` to ``environment``."""
    return await plan_service.promote(api, me, body)


@router.get("/plans/{plan_id}")
async def get_plan(plan_id: str, api: ApiDep, me: Viewer) -> Plan:
    return await plan_service.get(api, me, plan_id)


@router.get("/plans/{plan_id}/review")
async def review_plan(plan_id: str, api: ApiDep, me: Viewer) -> list[ItemReview]:
    """Each item not yet started against what runs now: version and manifest diff."""
    return await plan_service.review_items(api, me, plan_id)


@router.post("/plans/{plan_id}/approve")
async def approve(plan_id: str, api: ApiDep, me: Releaser, body: DecisionIn | None = None) -> Plan:
    """Approve the plan once, for every item: someone other than its operator, whose
    grants cover every item."""
    return await plan_service.approve(api, me, plan_id, body)


@router.post("/plans/{plan_id}/reject")
async def reject(plan_id: str, api: ApiDep, me: Releaser, body: DecisionIn | None = None) -> Plan:
    return await plan_service.reject(api, me, plan_id, body)


@router.post("/plans/{plan_id}/cancel")
async def cancel(plan_id: str, api: ApiDep, me: Releaser) -> Plan:
    """No item starts after this; items running go on to their end."""
    return await plan_service.cancel(api, me, plan_id)


@router.get("/plans/{plan_id}/rollback/preview")
async def rollback_preview(plan_id: str, api: ApiDep, me: Viewer) -> RollbackPreview:
    """The combined diff of rolling the plan back, in the order it would run."""
    return await plan_service.rollback_preview(api, me, plan_id)


@router.post("/plans/{plan_id}/rollback", status_code=201)
async def rollback(plan_id: str, api: ApiDep, me: Releaser, body: ActionIn | None = None) -> Plan:
    """A plan restoring every service this one changed, reverse wave order."""
    return await plan_service.rollback(api, me, plan_id, body)
