"""JetStream on the stack's NATS server: publish, durable pull, ack, nak with delay, and
the stages' worker loop shutting down."""

import asyncio
import json

import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType

from shared.errors import TransientError
from shared.ids import ReleaseId
from shared.messaging.bus import Bus, Msg, run_worker
from shared.messaging.messages import ReleaseRequested
from shared.messaging.subjects import RENDERER, Subjects
from tests.support.stack import StackEnv


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


async def test_a_stopped_worker_finishes_in_time_or_hands_its_messages_back(
    stack_env: StackEnv, stream_name: str
) -> None:
    """After stop: a handler that ends within the deadline is acked; one that does not is
    cancelled, its message handed back at once (not after ack_wait) for another replica."""
    subjects = Subjects(stream_name)
    bus = await Bus.connect(stack_env.nats_url, subjects, "test")
    try:
        await bus.publish(subjects.requested, ReleaseRequested(release_id=ReleaseId("quick")))
        await bus.publish(subjects.requested, ReleaseRequested(release_id=ReleaseId("slow")))
        stop = asyncio.Event()
        started: set[str] = set()
        finished: list[str] = []

        async def handle(msg: Msg) -> None:
            release_id = json.loads(msg.data)["release_id"]
            started.add(release_id)
            if len(started) == 2:
                stop.set()
            await asyncio.sleep(0.1 if release_id == "quick" else 3600)
            finished.append(release_id)

        await asyncio.wait_for(
            run_worker(bus, RENDERER, handle, stop, ack_wait_s=60, max_in_flight=4, shutdown_s=1.0),
            timeout=15,
        )
        assert finished == ["quick"]

        # The slow one is there for the next replica at once; the quick one is done.
        durable, _ = subjects.consumer(RENDERER)
        again = await bus.js.pull_subscribe_bind(durable, stream=subjects.stream)
        [msg] = await again.fetch(1, timeout=5)
        assert json.loads(msg.data)["release_id"] == "slow"
        assert msg.metadata.num_delivered == 2
        await msg.ack()
        await again.unsubscribe()
    finally:
        await bus.js.delete_stream(subjects.stream)
        await bus.close()


async def test_a_message_failing_its_last_delivery_is_given_up_whatever_the_cause(
    stack_env: StackEnv, stream_name: str
) -> None:
    """Bounded deliveries: what a stage cannot get past (an error it did not expect, or
    one it took for passing) is handed to ``give_up`` on its last delivery, not dropped
    in silence (the stages fail the release: see ``shared.worker``)."""
    subjects = Subjects(stream_name)
    bus = await Bus.connect(stack_env.nats_url, subjects, "test")
    try:
        await bus.publish(subjects.requested, ReleaseRequested(release_id=ReleaseId("broken")))
        await bus.publish(subjects.requested, ReleaseRequested(release_id=ReleaseId("busy")))
        stop = asyncio.Event()
        deliveries: dict[str, int] = {}
        given_up: dict[str, str] = {}

        async def handle(msg: Msg) -> None:
            release_id = json.loads(msg.data)["release_id"]
            deliveries[release_id] = deliveries.get(release_id, 0) + 1
            if release_id == "broken":
                raise RuntimeError("a bug")
            raise TransientError("the database is away", delay=0.05)

        async def give_up(msg: Msg, reason: str) -> None:
            given_up[json.loads(msg.data)["release_id"]] = reason
            if len(given_up) == 2:
                stop.set()

        await asyncio.wait_for(
            run_worker(
                bus,
                RENDERER,
                handle,
                stop,
                ack_wait_s=60,
                max_in_flight=4,
                give_up=give_up,
                max_deliver=3,
            ),
            timeout=60,
        )
        assert given_up == {"broken": "RuntimeError: a bug", "busy": "the database is away"}
        assert deliveries == {"broken": 3, "busy": 3}
        info = await bus.js.consumer_info(subjects.stream, subjects.consumer(RENDERER)[0])
        assert info.num_pending == 0
        assert info.num_ack_pending == 0
    finally:
        await bus.js.delete_stream(subjects.stream)
        await bus.close()
