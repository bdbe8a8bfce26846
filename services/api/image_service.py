"""Images, between the edges and the stores: the versions a service may release, and
every registration of an image CI built, whoever announces it (a person or CI through
the JSON API, GitLab's and Harbor's webhooks, the ``image.built`` message).

Every registration goes through :func:`record_image`: recorded once per repository
and digest, and written to the audit log under whoever announced it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.schemas import ImageIn
from shared.errors import FabuError, Forbidden, Invalid, NotFound, TransientError, Unavailable
from shared.messaging.messages import ImageBuilt
from shared.models.catalog import Image
from shared.models.users import Role
from shared.outside.registry import RegistryError


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


async def images(api: Api, principal: Principal, name: str) -> ImageVersions:
    """The tags the registry has, with what CI registered about them; newest first.

    Registered tags come first, newest push first; then the tags only the
    registry knows, in reverse order of their names (the registry lists no
    dates).
    """
    need(principal, Permission.VIEW)
    service = await api.catalog.service(name)
    if service is None:
        raise NotFound(f"service {name!r} not found")
    try:
        tags = await api.registries.tags(service.image_repository)
    except TransientError as exc:
        raise Unavailable(exc.message) from exc
    known: dict[str, Image] = {}
    for image in await api.images.of(service.image_repository):
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


async def record_image(api: Api, built: ImageBuilt, source: str, actor: str) -> Image:
    """The one door of every registration: ``source`` ("api", "gitlab", "harbor",
    "nats") registered this tag of this digest (idempotent: one record per repository
    and digest), written to the audit log as done by ``actor``."""
    image = await api.images.register(built, source)
    await api.audit.record(
        actor, "image.register", f"image/{built.repository}:{built.tag}", after=image
    )
    return image


async def register_image(api: Api, principal: Principal, body: ImageIn) -> Image:
    """For CI after a push: idempotent, one record per repository and digest.

    Needs a grant to release the service (anywhere) or config-admin; an image
    of no service needs config-admin. Without a repository, the service's; without
    a digest, the one the registry holds for the tag now.
    """
    need(principal, Permission.REGISTER_IMAGE)
    service = await api.catalog.service(body.service) if body.service else None
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
    repository = body.repository or (service.image_repository if service else "")
    if service is not None and service.image_repository != repository:
        raise Invalid(
            f"repository: service {service.name!r} releases {service.image_repository!r}, "
            f"not {repository!r}",
            field="repository",
        )
    digest = body.digest
    if not digest:
        try:
            digest = await api.registries.digest(repository, body.tag, fresh=True) or ""
        except (TransientError, RegistryError) as exc:
            raise Unavailable(f"the registry answered: {exc.message}") from exc
        if not digest:
            raise Invalid(f"tag: {repository} has no tag {body.tag!r}", field="tag")
    built = ImageBuilt.model_validate(
        {**body.model_dump(), "repository": repository, "digest": digest}
    )
    return await record_image(api, built, "api", principal.name)


def webhook(source: str) -> str:
    """How the audit log names a webhook that registered an image."""
    return f"webhook:{source}"


async def register_pushed(
    api: Api, source: str, repository: str, tag: str, digest: str, pushed_at: datetime
) -> Image:
    """A push a registry announced (Harbor's webhook), registered for the service that
    releases ``repository`` (none: for no service). ValueError: not an image."""
    services = [s.name for s in await api.catalog.services() if s.image_repository == repository]
    built = ImageBuilt(
        service=services[0] if services else "",
        repository=repository,
        tag=tag,
        digest=digest,
        pushed_at=pushed_at,
    )
    return await record_image(api, built, source, webhook(source))


@dataclass(frozen=True)
class BuiltCommit:
    """A commit a CI pipeline (or job) built successfully."""

    # The project's id and path, as the services name it (``gitlab_project``).
    projects: set[str]
    sha: str
    # The tags its image may have been pushed under, each looked up in the registry.
    tags: list[str]
    pipeline_url: str
    pushed_at: datetime | None


async def register_commit(api: Api, source: str, commit: BuiltCommit) -> list[ImageBuilt]:
    """Register the images a commit's pipeline pushed: of every service built from its
    project, each of ``commit.tags`` the registry holds. The registrations made."""
    found = []
    for service in await api.catalog.services():
        if not service.gitlab_project or service.gitlab_project not in commit.projects:
            continue
        for tag in commit.tags:
            try:
                digest = await api.registries.digest(service.image_repository, tag, fresh=True)
            except FabuError as exc:
                raise Unavailable(f"registry of {service.name!r}: {exc.message}") from exc
            if digest:
                built = ImageBuilt(
                    service=service.name,
                    repository=service.image_repository,
                    tag=tag,
                    digest=digest,
                    commit_sha=commit.sha,
                    pipeline_url=commit.pipeline_url,
                    pushed_at=commit.pushed_at,
                )
                await record_image(api, built, source, webhook(source))
                found.append(built)
    return found
