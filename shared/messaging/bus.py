"""NATS JetStream: the release stream, the stage consumers, publishing, and the worker loop.

One stream holds ``release.>``, ``plan.>``, ``template.>`` and ``image.>`` on file
storage; each stage has one durable pull consumer that all its replicas
share, so JetStream spreads messages across them and redelivers what a dead
replica held.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from shared.errors import TransientError
from shared.messaging.messages import Event, ImageBuilt, PlanMessage, TemplateChanged
from shared.messaging.subjects import Subjects

log = structlog.get_logger()

DUPLICATE_WINDOW_S = 120.0
MAX_DELIVER = 20

# What a stage's handler receives; the stages import it from here, never from nats.
__all__ = ["MAX_DELIVER", "Bus", "GiveUp", "Handler", "Msg", "run_worker"]
Handler = Callable[[Msg], Awaitable[None]]
# Called with a message and why, when its last delivery failed too: JetStream delivers
# it no more, so whatever waits on it must be ended by the stage (a release failed).
GiveUp = Callable[[Msg, str], Awaitable[None]]


class Bus:
    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.subjects = subjects

    @classmethod
    async def connect(cls, url: str, subjects: Subjects, name: str) -> "Bus":
        nc = await nats.connect(url, name=name, max_reconnect_attempts=-1)
        bus = cls(nc, subjects)
        await bus.ensure_stream()
        return bus

    async def ensure_stream(self) -> None:
        config = StreamConfig(
            name=self.subjects.stream,
            subjects=[
                self.subjects.all_releases,
                self.subjects.all_templates,
                self.subjects.all_images,
                self.subjects.all_plans,
            ],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)  # exists with other settings

    async def ensure_consumer(
        self, stage: str, ack_wait_s: float, max_in_flight: int, max_deliver: int = MAX_DELIVER
    ) -> None:
        durable, subjects = self.subjects.consumer(stage)
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=max_in_flight * 4,
            filter_subjects=subjects,
        )
        try:
            await self.js.add_consumer(self.subjects.stream, config)
        except BadRequestError as exc:
            # It exists with other settings (an older version): keep it and
            # its pending messages rather than lose them by recreating it.
            log.warning(
                "consumer kept with its existing settings", consumer=durable, error=str(exc)
            )

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up now (not reconnecting, not closed)."""
        return self.nc.is_connected

    async def subscribe(self, subject: str, handle: Handler) -> Callable[[], Awaitable[None]]:
        """Hand ``handle`` every message published on ``subject`` from now on, outside
        JetStream's consumers (at most once, to every subscriber); the unsubscribe back."""
        subscription = await self.nc.subscribe(subject, cb=handle)
        return subscription.unsubscribe

    async def publish(
        self, subject: str, event: Event | TemplateChanged | ImageBuilt | PlanMessage
    ) -> None:
        await self.js.publish(
            subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.event_id}
        )

    async def notice(self, subject: str) -> None:
        """Tell every subscriber of ``subject`` now, outside JetStream: nothing stored,
        nothing redelivered, at most once."""
        await self.nc.publish(subject, b"")

    async def on_notice(
        self, subject: str, act: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``act`` on every notice on ``subject``; the unsubscribe back."""

        async def handle(_: Msg) -> None:
            act()

        return await self.subscribe(subject, handle)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()


async def run_worker(
    bus: Bus,
    stage: str,
    handle: Handler,
    stop: asyncio.Event,
    *,
    ack_wait_s: float,
    max_in_flight: int,
    shutdown_s: float = 45.0,
    give_up: GiveUp | None = None,
    max_deliver: int = MAX_DELIVER,
) -> None:
    """Fetch and handle messages until ``stop`` is set, then finish those in flight.

    What has not finished ``shutdown_s`` after ``stop`` is cancelled and its
    message handed back (nak) for another replica: a handler's writes are
    claimed transitions, so one cut short is finished by whoever takes it next.

    A handler returns normally → ack; raises ``TransientError`` → nak with its
    delay. Handlers turn permanent failures into a failed release themselves.
    While a handler runs, the message is kept alive with ``in_progress`` so a
    long rollout is not redelivered to another replica; if this process dies,
    JetStream redelivers it after ``ack_wait_s``. A message that fails on its
    ``max_deliver``-th delivery, for whatever cause, is handed to ``give_up``.
    """
    await bus.ensure_consumer(stage, ack_wait_s, max_in_flight, max_deliver)
    durable, _ = bus.subjects.consumer(stage)
    subscription = await bus.js.pull_subscribe_bind(durable, stream=bus.subjects.stream)
    running: set[asyncio.Task[None]] = set()
    room = asyncio.Event()  # set whenever fewer than max_in_flight are running
    room.set()

    async def one(msg: Msg) -> None:
        keepalive = asyncio.create_task(_keep_alive(msg, ack_wait_s))
        try:
            await handle(msg)
        except TransientError as exc:
            if not await _given_up(msg, exc.message, give_up, max_deliver):
                log.warning("retrying", stage=stage, reason=exc.message, delay=exc.delay)
                await msg.nak(delay=exc.delay)
        except asyncio.CancelledError:
            # Shutting down: let another replica have it now, not after ack_wait.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception as exc:
            if not await _given_up(msg, f"{type(exc).__name__}: {exc}", give_up, max_deliver):
                log.exception("handler failed; redelivering", stage=stage)
                await msg.nak(delay=5.0)
        else:
            await msg.ack()
        finally:
            await _cancelled(keepalive)

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        room.set()

    while not stop.is_set():
        free = max_in_flight - len(running)
        if free <= 0:
            room.clear()
            await _first(room.wait(), stop.wait())
            continue
        try:
            batch = await subscription.fetch(min(free, 64), timeout=1.0)
        except TimeoutError:  # nats-py raises asyncio.TimeoutError or its own subclass
            continue
        for msg in batch:
            task = asyncio.create_task(one(msg))
            running.add(task)
            task.add_done_callback(finished)
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()
    await _finish(stage, running, shutdown_s)


async def _given_up(msg: Msg, reason: str, give_up: GiveUp | None, max_deliver: int) -> bool:
    """True when this was the message's last delivery and ``give_up`` ended what it was
    for (the message is then terminated)."""
    if give_up is None or msg.metadata.num_delivered < max_deliver:
        return False
    log.error("giving up on a message", subject=msg.subject, reason=reason)
    await give_up(msg, reason)
    await msg.term()
    return True


async def _finish(stage: str, running: set[asyncio.Task[None]], shutdown_s: float) -> None:
    """Let the handlers still running finish within ``shutdown_s``; cancel the rest
    (their messages go back to JetStream) and wait until they have ended."""
    if not running:
        return
    _, late = await asyncio.wait(set(running), timeout=shutdown_s)
    if late:
        log.warning("handing back unfinished messages", stage=stage, count=len(late))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


async def _cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended (a task is never left behind)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # this task is being cancelled too: never swallow that


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            await _cancelled(task)


async def _keep_alive(msg: Msg, ack_wait_s: float) -> None:
    while True:
        await asyncio.sleep(ack_wait_s / 3)
        with contextlib.suppress(Exception):
            await msg.in_progress()
