"""Image versions: registered by CI, discovered in the registry, offered to the release form."""

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.access import ImageRegistrar
from services.api.deps import AuditDep, CatalogDep, ImagesDep, RegistriesDep
from shared.errors import Forbidden, Invalid, NotFound, TransientError, Unavailable
from shared.messages import ImageBuilt
from shared.models import Image, Role

router = APIRouter()


class ImageVersion(BaseModel):
    tag: str
    digest: str = ""
    commit_sha: str = ""
    pipeline_url: str = ""
    pushed_at: datetime | None = None
    # Whether CI told Fabu about it (else only the registry lists it).
    registered: bool


class ImageVersions(BaseModel):
    repository: str
    versions: list[ImageVersion]


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
async def list_images(
    name: str, catalog: CatalogDep, images: ImagesDep, registries: RegistriesDep
) -> ImageVersions:
    """The tags the registry has, with what CI registered about them; newest first.

    Registered tags come first, newest push first; then the tags only the
    registry knows, in reverse order of their names (the registry lists no
    dates).
    """
    service = await catalog.service(name)
    if service is None:
        raise NotFound(f"service {name!r} not found")
    try:
        tags = await registries.tags(service.image_repository)
    except TransientError as exc:
        raise Unavailable(exc.message) from exc
    known: dict[str, Image] = {}
    for image in await images.of(service.image_repository):
        for tag in image.tags:
            known.setdefault(tag, image)
    oldest = datetime.min.replace(tzinfo=UTC)
    registered = sorted(
        (t for t in tags if t in known),
        key=lambda t: known[t].pushed_at or known[t].registered_at or oldest,
        reverse=True,
    )
    versions = [
        ImageVersion(
            tag=tag,
            digest=known[tag].digest,
            commit_sha=known[tag].commit_sha,
            pipeline_url=known[tag].pipeline_url,
            pushed_at=known[tag].pushed_at,
            registered=True,
        )
        for tag in registered
    ]
    versions += [
        ImageVersion(tag=tag, registered=False)
        for tag in sorted((t for t in tags if t not in known), reverse=True)
    ]
    return ImageVersions(repository=service.image_repository, versions=versions)
