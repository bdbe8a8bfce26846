"""Image versions: registered by CI, discovered in the registry, offered to the release form."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from services.api.deps import CatalogDep, ImagesDep, RegistriesDep, SettingsDep
from services.api.hooks import check_secret, read_event
from shared.errors import FabuError, Invalid, NotFound, TransientError, Unavailable
from shared.messages import ImageBuilt
from shared.models import Image
from shared.registry import Registries
from shared.store.catalog import Catalog
from shared.store.images import Images

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
async def register_image(body: ImageBuilt, catalog: CatalogDep, images: ImagesDep) -> Image:
    """For CI after a push: idempotent, one record per repository and digest."""
    if body.service:
        service = await catalog.service(body.service)
        if service is None:
            raise NotFound(f"service {body.service!r} not found")
        if service.image_repository != body.repository:
            raise Invalid(
                f"repository: service {service.name!r} releases {service.image_repository!r}, "
                f"not {body.repository!r}"
            )
    return await images.register(body, "api")


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


async def _services_of(catalog: Catalog, repository: str) -> list[str]:
    return [s.name for s in await catalog.services() if s.image_repository == repository]


@router.post("/webhooks/harbor", status_code=202)
async def harbor_webhook(
    request: Request,
    catalog: CatalogDep,
    images: ImagesDep,
    settings: SettingsDep,
    authorization: Annotated[str, Header()] = "",
) -> dict[str, Any]:
    """Harbor's ``PUSH_ARTIFACT`` event; ``Authorization`` must be the policy's auth header."""
    check_secret(authorization, settings.harbor_webhook_secret, "Authorization")
    event = await read_event(request)
    if event.get("type") != "PUSH_ARTIFACT":
        return {"accepted": False, "detail": f"ignored: {event.get('type')} events are not used"}
    data = event.get("event_data") or {}
    pushed = datetime.fromtimestamp(int(event.get("occur_at") or 0), UTC)
    registered = []
    for resource in data.get("resources") or []:
        url = str(resource.get("resource_url", ""))
        tag = str(resource.get("tag") or "")
        repository = url.rsplit("@", 1)[0]
        if tag and repository.endswith(f":{tag}"):
            repository = repository.removesuffix(f":{tag}")
        services = await _services_of(catalog, repository) or [""]
        try:
            built = ImageBuilt(
                service=services[0],
                repository=repository,
                tag=tag,
                digest=str(resource.get("digest", "")),
                pushed_at=pushed,
            )
        except ValueError as exc:
            raise Invalid(f"event_data.resources: {exc}") from exc
        image = await images.register(built, "harbor")
        registered.append({"repository": image.repository, "tag": tag, "digest": image.digest})
    return {"accepted": True, "registered": registered}


async def register_from_gitlab(
    event: dict[str, Any], catalog: Catalog, images: Images, registries: Registries
) -> list[dict[str, str]]:
    """A successful GitLab pipeline or job: register the image its commit pushed.

    The services built by that project (``gitlab_project``) are looked up in
    the registry under the tags CI commonly gives: the Git tag of a tag
    pipeline, the short commit sha (``$CI_COMMIT_SHORT_SHA``) and the full one.
    """
    project = event.get("project") or {}
    ids = {str(project.get("id", "")), str(project.get("path_with_namespace", ""))}
    if event.get("object_kind") == "pipeline":
        attributes = event.get("object_attributes") or {}
        sha, ref = str(attributes.get("sha", "")), str(attributes.get("ref", ""))
        is_tag, status = bool(attributes.get("tag")), attributes.get("status")
        url = str(
            attributes.get("url")
            or f"{project.get('web_url', '')}/-/pipelines/{attributes.get('id')}"
        )
        finished = attributes.get("finished_at")
    else:  # a job ("build") event
        ids.add(str(event.get("project_id", "")))
        sha, ref = str(event.get("sha", "")), str(event.get("ref", ""))
        is_tag, status = bool(event.get("tag")), event.get("build_status")
        homepage = (event.get("repository") or {}).get("homepage", "")
        url = f"{homepage}/-/pipelines/{event.get('pipeline_id')}"
        finished = event.get("build_finished_at")
    if status != "success" or not sha:
        return []
    candidates = [t for t in ([ref] if is_tag else []) + [sha[:8], sha] if t]
    pushed = _gitlab_time(finished)
    found = []
    for service in await catalog.services():
        if not service.gitlab_project or service.gitlab_project not in ids:
            continue
        for tag in candidates:
            try:
                digest = await registries.digest(service.image_repository, tag)
            except FabuError as exc:
                raise Unavailable(f"registry of {service.name!r}: {exc.message}") from exc
            if digest:
                built = ImageBuilt(
                    service=service.name,
                    repository=service.image_repository,
                    tag=tag,
                    digest=digest,
                    commit_sha=sha,
                    pipeline_url=url,
                    pushed_at=pushed,
                )
                await images.register(built, "gitlab")
                found.append({"service": service.name, "tag": tag, "digest": digest})
    return found


def _gitlab_time(value: object) -> datetime | None:
    """GitLab writes ``2026-05-01 12:00:00 UTC`` in hooks (and ISO 8601 elsewhere)."""
    if not value:
        return None
    text = str(value).replace(" UTC", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
