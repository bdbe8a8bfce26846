"""Starting a release: the one way every endpoint that releases does it."""

import structlog

from services.api.deps import BusDep
from services.api.schemas import ReleaseAccepted
from shared.errors import Unavailable
from shared.messages import ReleaseRequested
from shared.models import Release
from shared.render import ReleaseParams
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
