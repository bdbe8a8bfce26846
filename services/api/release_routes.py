"""Releases: request one, read one, list them."""

import asyncio
from typing import Annotated

import structlog
from fastapi import APIRouter, Query

from services.api.deps import BusDep, CatalogDep, ReleasesDep
from services.api.schemas import ReleaseAccepted, ReleaseIn, ReleasePage, ReleaseSummary
from shared.errors import Invalid, NotFound, Unavailable
from shared.ids import ReleaseId
from shared.messages import ReleaseRequested
from shared.models import Release, ReleaseState
from shared.store.mongo import new_id

router = APIRouter()
log = structlog.get_logger()


@router.post("/releases", status_code=202)
async def create_release(
    body: ReleaseIn, catalog: CatalogDep, releases: ReleasesDep, bus: BusDep
) -> ReleaseAccepted:
    service, env, config = await asyncio.gather(
        catalog.service(body.service),
        catalog.environment(body.environment),
        catalog.config(body.service, body.environment),
    )
    if service is None:
        raise NotFound(f"service {body.service!r} not found")
    if env is None:
        raise NotFound(f"environment {body.environment!r} not found")
    if config is None:
        raise Invalid(
            f"service {body.service!r} has no release config for environment {body.environment!r}"
        )
    release = Release(
        id=ReleaseId(new_id()),
        service=service.name,
        environment=env.name,
        version=body.version,
        image=f"{service.image_repository}:{body.version}",
        description=body.description,
        template_id=config.template_id,
        config_version=config.version,
        params=config.params,
        namespace=env.namespace,
    )
    await releases.create(release)
    try:
        await bus.publish(bus.subjects.requested, ReleaseRequested(release_id=release.id))
    except Exception as exc:
        await releases.discard(release)
        log.exception("could not hand the release on", release_id=release.id)
        raise Unavailable("the message bus is unavailable; nothing was released") from exc
    return ReleaseAccepted(id=release.id, state=release.state)


@router.get("/releases/{release_id}")
async def get_release(release_id: str, releases: ReleasesDep) -> Release:
    release = await releases.get(release_id)
    if release is None:
        raise NotFound(f"release {release_id!r} not found")
    return release


@router.get("/releases")
async def list_releases(
    releases: ReleasesDep,
    service: str | None = None,
    environment: str | None = None,
    state: ReleaseState | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReleasePage:
    page = await releases.page(
        service=service, environment=environment, state=state, before=cursor, limit=limit
    )
    next_cursor = page[-1].id if len(page) == limit else None
    return ReleasePage(items=[ReleaseSummary.of(r) for r in page], next_cursor=next_cursor)
