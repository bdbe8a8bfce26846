"""Image versions: registered by CI, discovered in the registry, offered to the release form."""

from fastapi import APIRouter

from services.api import image_service
from services.api.access import ImageRegistrar, Viewer
from services.api.deps import ApiDep
from services.api.image_service import ImageVersions
from services.api.schemas import ImageIn
from shared.models.catalog import Image

router = APIRouter()


@router.post("/images")
async def register_image(body: ImageIn, api: ApiDep, principal: ImageRegistrar) -> Image:
    """For CI after a push: idempotent, one record per repository and digest.

    Needs a grant to release the service (anywhere) or config-admin; an image
    of no service needs config-admin. Without a repository, the service's; without a
    digest, the one the registry holds for the tag.
    """
    return await image_service.register_image(api, principal, body)


@router.get("/services/{name}/images")
async def list_images(name: str, api: ApiDep, me: Viewer) -> ImageVersions:
    """The tags the registry has, with what CI registered about them; newest first.

    Registered tags come first, newest push first; then the tags only the
    registry knows, in reverse order of their names (the registry lists no
    dates).
    """
    return await image_service.images(api, me, name)
