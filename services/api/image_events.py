"""Image registration from NATS: ``image.built`` in; the image registered through
``image_service.record_image``, as the API's and the webhooks' registrations are.

Images are the catalog's, and the API registers them: its process runs this durable
consumer (``images``) beside its routes, every replica sharing it. Idempotency key:
the repository, digest, tag and source (``Images.register``): a message delivered again
records nothing new (the audit log notes each delivery, as it notes each call of the
API). A message that does not hold an image is retried, then dropped by JetStream.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from services.api import image_service
from services.api.context import Api
from shared.messaging.bus import Msg, run_worker
from shared.messaging.messages import ImageBuilt
from shared.messaging.subjects import IMAGES

log = structlog.get_logger()
# The source and the actor the audit log names for an ``image.built`` message.
NATS = "nats"


@asynccontextmanager
async def consuming(api: Api) -> AsyncIterator[None]:
    """Take ``image.built`` messages while the app runs; on the way out, stop fetching
    and let those in flight finish (within ``FABU_SHUTDOWN_S``)."""
    stop = asyncio.Event()
    settings = api.settings

    async def handle(msg: Msg) -> None:
        built = ImageBuilt.model_validate_json(msg.data)
        await image_service.record_image(api, built, NATS, NATS)

    consumer = asyncio.create_task(
        run_worker(
            api.bus,
            IMAGES,
            handle,
            stop,
            ack_wait_s=settings.ack_wait_s,
            max_in_flight=settings.max_in_flight,
            shutdown_s=settings.shutdown_s,
        )
    )
    consumer.add_done_callback(_stopped)
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(consumer, return_exceptions=True)


def _stopped(consumer: asyncio.Task[None]) -> None:
    """Say so when the consumer ended on its own: images from NATS wait until a restart."""
    if not consumer.cancelled() and consumer.exception() is not None:
        log.error("the image.built consumer stopped", error=str(consumer.exception()))
