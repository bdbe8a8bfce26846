"""JetStream on the stack's NATS server: publish, durable pull, ack, nak with delay."""

import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType


async def test_durable_pull_ack_and_nak_with_delay(
    nats_client: NatsClient, stream_name: str
) -> None:
    js = nats_client.jetstream()
    subject = f"{stream_name}.release.requested"
    await js.add_stream(name=stream_name, subjects=[f"{stream_name}.>"], storage=StorageType.FILE)
    try:
        first = await js.publish(subject, b"one", headers={"Nats-Msg-Id": "event-1"})
        duplicate = await js.publish(subject, b"one", headers={"Nats-Msg-Id": "event-1"})
        await js.publish(subject, b"two", headers={"Nats-Msg-Id": "event-2"})
        assert duplicate.duplicate is True
        assert duplicate.seq == first.seq

        consumer = await js.pull_subscribe(subject, durable="renderer", stream=stream_name)
        batch = await consumer.fetch(2, timeout=5)
        assert [m.data for m in batch] == [b"one", b"two"]
        await batch[0].ack_sync()
        await batch[1].nak(delay=1.5)

        # The nak'ed message is held back for its delay, then redelivered.
        with pytest.raises(nats.errors.TimeoutError):
            await consumer.fetch(1, timeout=0.3)
        [again] = await consumer.fetch(1, timeout=10)
        assert again.data == b"two"
        assert again.metadata.num_delivered == 2
        await again.ack_sync()

        info = await js.consumer_info(stream_name, "renderer")
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    finally:
        await js.delete_stream(stream_name)
