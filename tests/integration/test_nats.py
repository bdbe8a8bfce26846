"""Fabu's bus on the stack's NATS server: an event published twice handled once, a
transient error retried after its delay, installations kept apart by their prefix, and
the stages' worker loop shutting down or giving up."""

import asyncio
import json

from shared.errors import TransientError
from shared.ids import ReleaseId
from shared.messaging.bus import Bus, Handler, Msg, run_worker
from shared.messaging.messages import ReleaseRequested
from shared.messaging.subjects import RENDERER, Subjects
from tests.support.stack import StackEnv


async def _work(bus: Bus, handle: Handler, stop: asyncio.Event) -> None:
    """Run the renderer's consumer on ``bus`` until ``stop`` (within a deadline)."""
    await asyncio.wait_for(
        run_worker(bus, RENDERER, handle, stop, ack_wait_s=60, max_in_flight=4), timeout=30
    )


async def _first_handled(bus: Bus) -> str:
    """The release id of the first message the renderer's consumer on ``bus`` handles."""
    stop = asyncio.Event()
    handled: list[str] = []

    async def handle(msg: Msg) -> None:
        handled.append(json.loads(msg.data)["release_id"])
        stop.set()

    await _work(bus, handle, stop)
    return handled[0]


async def test_an_event_published_twice_reaches_the_stage_once(
    stack_env: StackEnv, stream_name: str
) -> None:
    """A stage that dies between its write and its publish publishes the same event
    again: the stage after it handles it once (de-duplicated by its event id)."""
    subjects = Subjects(stream_name)
    bus = await Bus.connect(stack_env.nats_url, subjects, "test")
    try:
        twice = ReleaseRequested(release_id=ReleaseId("twice"))
        await bus.publish(subjects.requested, twice)
        await bus.publish(subjects.requested, twice)
        await bus.publish(subjects.requested, ReleaseRequested(release_id=ReleaseId("after")))
        stop = asyncio.Event()
        handled: list[str] = []

        async def handle(msg: Msg) -> None:
            handled.append(json.loads(msg.data)["release_id"])
            if "after" in handled:
                stop.set()  # published after both copies: any second copy came before it

        await _work(bus, handle, stop)
        assert sorted(handled) == ["after", "twice"]
        info = await bus.js.consumer_info(subjects.stream, subjects.consumer(RENDERER)[0])
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
    finally:
        await bus.js.delete_stream(subjects.stream)
        await bus.close()


async def test_a_transient_error_hands_the_message_back_after_its_delay(
    stack_env: StackEnv, stream_name: str
) -> None:
    """A handler raising ``TransientError(delay)`` gets the message again, not before the
    delay; handled then, it is acknowledged and not delivered again."""
    subjects = Subjects(stream_name)
    bus = await Bus.connect(stack_env.nats_url, subjects, "test")
    try:
        await bus.publish(subjects.requested, ReleaseRequested(release_id=ReleaseId("busy")))
        stop = asyncio.Event()
        delivered: list[tuple[int, float]] = []
        clock = asyncio.get_running_loop().time

        async def handle(msg: Msg) -> None:
            delivered.append((msg.metadata.num_delivered, clock()))
            if len(delivered) == 1:
                raise TransientError("the database is away", delay=1.5)
            stop.set()

        await _work(bus, handle, stop)
        [(first, at), (second, again)] = delivered
        assert (first, second) == (1, 2)
        assert again - at >= 1.4
        info = await bus.js.consumer_info(subjects.stream, subjects.consumer(RENDERER)[0])
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
    finally:
        await bus.js.delete_stream(subjects.stream)
        await bus.close()


async def test_the_prefix_keeps_two_installations_apart(
    stack_env: StackEnv, stream_name: str
) -> None:
    """Two installations on one NATS server (``FABU_NATS_PREFIX``): each one's stages get
    its own releases only."""
    ours, theirs = Subjects(f"{stream_name}_OURS"), Subjects(f"{stream_name}_THEIRS")
    buses = [await Bus.connect(stack_env.nats_url, s, "test") for s in (ours, theirs)]
    try:
        for bus, release_id in zip(buses, ("ours", "theirs"), strict=True):
            await bus.publish(bus.subjects.requested, ReleaseRequested(release_id=release_id))
        for bus, release_id in zip(buses, ("ours", "theirs"), strict=True):
            stream = await bus.js.stream_info(bus.subjects.stream)
            assert (await _first_handled(bus), stream.state.messages) == (release_id, 1)
    finally:
        for bus in buses:
            await bus.js.delete_stream(bus.subjects.stream)
            await bus.close()


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
