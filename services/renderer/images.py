"""Image registration: ``image.built`` in; the image recorded once per repository and digest.

Idempotency key: the repository and digest (the record's ``_id``); a tag or
source seen again changes nothing.
"""

from collections.abc import Awaitable, Callable

from shared.messaging.bus import Msg
from shared.messaging.messages import ImageBuilt
from shared.store.images import Images
from shared.worker import Context


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    images = Images(ctx.mongo)

    async def handle(msg: Msg) -> None:
        await images.register(ImageBuilt.model_validate_json(msg.data), "nats")

    return handle
