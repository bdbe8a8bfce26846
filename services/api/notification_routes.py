"""Where a service's release notifications go, per environment, and each environment's default."""

from fastapi import APIRouter

from services.api import notification_service
from services.api.access import ConfigAdmin, Viewer
from services.api.deps import ApiDep
from shared.models.notifications import Channel

router = APIRouter()


@router.put("/services/{name}/notifications/{environment}")
async def put_service_channels(
    name: str, environment: str, body: list[Channel], api: ApiDep, editor: ConfigAdmin
) -> list[Channel]:
    """Replace the service's channels there (an empty list: no notifications at all)."""
    return await notification_service.put(api, editor, name, environment, body)


@router.get("/services/{name}/notifications/{environment}")
async def get_service_channels(
    name: str, environment: str, api: ApiDep, me: Viewer
) -> list[Channel]:
    """The channels in force (the service's, else the environment's default), secrets masked."""
    return await notification_service.get(api, me, name, environment)


@router.delete("/services/{name}/notifications/{environment}")
async def reset_service_channels(
    name: str, environment: str, api: ApiDep, editor: ConfigAdmin
) -> list[Channel]:
    """Drop the service's own channels there: the environment's default (returned) applies."""
    return await notification_service.reset(api, editor, name, environment)


@router.put("/environments/{name}/notifications")
async def put_default_channels(
    name: str, body: list[Channel], api: ApiDep, editor: ConfigAdmin
) -> list[Channel]:
    """The default for services that set none in this environment."""
    return await notification_service.put(api, editor, None, name, body)


@router.get("/environments/{name}/notifications")
async def get_default_channels(name: str, api: ApiDep, me: Viewer) -> list[Channel]:
    return await notification_service.get(api, me, None, name)
