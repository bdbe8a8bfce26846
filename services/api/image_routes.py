"""Image versions: registered by CI, discovered in the registry, offered to the release form."""

from fastapi import APIRouter

from services.api import catalog_service
from services.api.access import ImageRegistrar, Viewer
from services.api.catalog_service import ImageVersions
from services.api.deps import ApiDep, AuditDep, CatalogDep, ImagesDep
from shared.errors import Forbidden, Invalid, NotFound
from shared.messages import ImageBuilt
from shared.models import Image, Role

router = APIRouter()


@router.post("/images")
async def register_image(
    body: ImageBuilt,
    catalog: CatalogDep,
    images: ImagesDep,
    audit: AuditDep,
    principal: ImageRegistrar,
) -> Image:
    """For CI after a push: idempotent, one record per repository and digest.

    Needs a grant to release the service (anywhere) or config-admin; an image
    of no service needs config-admin.
    """
    service = await catalog.service(body.service) if body.service else None
    if body.service and service is None:
        raise NotFound(f"service {body.service!r} not found")
    allowed = principal.has(Role.CONFIG_ADMIN) or (
        service is not None and principal.can_release(None, service)
    )
    if not allowed:
        raise Forbidden(
            f"{principal.name} may not register images of "
            + (f"service {service.name}" if service else "no service")
        )
    if service is not None and service.image_repository != body.repository:
        raise Invalid(
            f"repository: service {service.name!r} releases {service.image_repository!r}, "
            f"not {body.repository!r}"
        )
    image = await images.register(body, "api")
    await audit.record(
        principal.name, "image.register", f"image/{body.repository}:{body.tag}", after=image
    )
    return image


@router.get("/services/{name}/images")
async def list_images(name: str, api: ApiDep, me: Viewer) -> ImageVersions:
    """The tags the registry has, with what CI registered about them; newest first.

    Registered tags come first, newest push first; then the tags only the
    registry knows, in reverse order of their names (the registry lists no
    dates).
    """
    return await catalog_service.images(api, me, name)
