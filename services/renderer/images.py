"""Image registration: ``image.built`` in; the image recorded once per repository and digest.

Idempotency key: the repository and digest (the record's ``_id``); a tag or
source seen again changes nothing.
"""

from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from shared.messages import ImageBuilt
from shared.models import Image
from shared.store.images import Images
from shared.worker import Context


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    images = Images(ctx.mongo)

    async def handle(msg: Msg) -> None:
        built = ImageBuilt.model_validate_json(msg.data)
        image = Image(
            repository=built.repository,
            digest=built.digest,
            service=built.service,
            commit_sha=built.commit_sha,
            pipeline_url=built.pipeline_url,
            pushed_at=built.pushed_at,
        )
        await images.register(image, built.tag, "nats")

    return handle
