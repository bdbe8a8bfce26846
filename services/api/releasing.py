"""Starting a release: the one way every endpoint that releases does it."""

import structlog

from services.api.deps import BusDep
from services.api.schemas import ReleaseAccepted
from shared.errors import Invalid, Unavailable
from shared.ids import ReleaseId
from shared.messages import ReleaseRequested
from shared.models import Release, ReleaseKind, ServiceConfig, Template
from shared.render import ReleaseParams
from shared.store.catalog import Catalog
from shared.store.mongo import new_id
from shared.store.releases import Releases

log = structlog.get_logger()


async def start(release: Release, releases: Releases, bus: BusDep) -> ReleaseAccepted:
    """Store the release (taking its service's lock) and hand it to the renderer."""
    await releases.create(release)
    try:
        await bus.publish(bus.subjects.requested, ReleaseRequested(release_id=release.id))
    except Exception as exc:
        await releases.discard(release)
        log.exception("could not hand the release on", release_id=release.id)
        raise Unavailable("the message bus is unavailable; nothing was released") from exc
    return ReleaseAccepted(id=release.id, state=release.state)


def sample_params(
    service: str,
    image_repository: str,
    environment: str,
    namespace: str,
    version: str = "0.0.0-preview",
) -> ReleaseParams:
    """Release parameters for rendering outside a release (validation, previews)."""
    return ReleaseParams(
        release_id="preview",
        service=service,
        version=version,
        image=f"{image_repository}:{version}",
        environment=environment,
        namespace=namespace,
    )


async def config_template(catalog: Catalog, config: ServiceConfig) -> Template:
    """The current version of the template a release config names (422 if it is gone)."""
    template = await catalog.template(config.template_id)
    if template is None:
        raise Invalid(f"template {config.template_id!r} of the release config no longer exists")
    return template


def again(
    source: Release,
    kind: ReleaseKind,
    operator: str,
    description: str,
    namespace: str,
    template: Template | None = None,
    config: ServiceConfig | None = None,
) -> Release:
    """A new release of ``source``'s image: with ``template`` and ``config`` when given
    (their current versions), else with exactly what ``source`` used."""
    return Release(
        id=ReleaseId(new_id()),
        service=source.service,
        environment=source.environment,
        version=source.version,
        image=source.image,
        kind=kind,
        operator=operator,
        source_release_id=source.id if kind is not ReleaseKind.DEPLOY else None,
        description=description,
        template_id=template.id if template else source.template_id,
        template_version=template.version if template else source.template_version,
        config_version=config.version if config else source.config_version,
        params=config.params if config else source.params,
        namespace=namespace,
    )
