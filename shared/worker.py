"""What every stage process shares: its wiring, lifetimes and shutdown.

``python -m services.<stage>`` opens a :func:`context` (its connections, owned
by one exit stack), starts the health/metrics server, and runs the stage's
handlers over their consumers until SIGTERM; then it stops fetching, gives
what is in flight ``FABU_SHUTDOWN_S`` to finish (below the pod's termination
grace period), hands back what has not finished for another replica to take
over, drains NATS and closes its connections in reverse order.
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from shared import probes
from shared.cluster.client import Clusters
from shared.logs import configure_logging
from shared.messaging import subjects
from shared.messaging.bus import Bus, Handler, Msg, run_worker
from shared.release.stages import giving_up
from shared.settings import Settings
from shared.store.catalog import Catalog
from shared.store.indexes import ensure_indexes
from shared.store.kept import Kept
from shared.store.mongo import Mongo
from shared.store.releases import Releases
from shared.templating.sandbox import Renderers, renderers

log = structlog.get_logger()


@dataclass
class Context:
    """A stage's connections and stores; what its handlers are given."""

    settings: Settings
    mongo: Mongo
    catalog: Catalog
    releases: Releases
    bus: Bus
    clusters: Clusters
    # The processes templates are rendered in, each render within its budget.
    renderers: Renderers
    # Closes, in reverse order, what the stage opened: its connections and
    # whatever its consumers' setups hand it (the tracker's watches).
    owned: AsyncExitStack


# A consumer's setup: given the stage's context, the handler of its messages.
Setup = Callable[[Context], Awaitable[Handler]]


@asynccontextmanager
async def context(settings: Settings, process: str) -> AsyncIterator[Context]:
    """A stage's connections, opened in order and closed in reverse, whatever happens;
    what a stage's setup opens it hands to ``Context.owned`` to be closed with them."""
    async with AsyncExitStack() as owned:
        mongo = Mongo(settings.mongo_url, settings.mongo_db, settings.mongo_pool)
        owned.push_async_callback(mongo.close)
        await ensure_indexes(mongo)
        bus = await Bus.connect(settings.nats_url, subjects.Subjects(settings.nats_prefix), process)
        owned.push_async_callback(bus.close)
        kept = Kept(settings.kept_s, lambda: bus.notice(bus.subjects.changed))
        owned.push_async_callback(await bus.on_notice(bus.subjects.changed, kept.forget))
        clusters = Clusters(settings.kubeconfig_dir)
        owned.push_async_callback(clusters.close)
        render_processes = renderers(settings)
        owned.push_async_callback(render_processes.close)
        yield Context(
            settings,
            mongo,
            Catalog(mongo, kept),
            Releases(mongo),
            bus,
            clusters,
            render_processes,
            owned,
        )


def run(process: str, consumers: dict[str, Setup]) -> None:
    """Run a process that serves the given consumers (durable name → setup of its handler)."""
    asyncio.run(_main(process, consumers))


async def _main(process: str, consumers: dict[str, Setup]) -> None:
    settings = Settings()
    configure_logging()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with context(settings, process) as ctx:

        async def healthy() -> bool:
            try:
                await ctx.mongo.ping()
            except Exception:
                return False
            return ctx.bus.connected

        runner, port = await probes.serve(settings.http_host, settings.http_port, healthy)
        ctx.owned.push_async_callback(runner.cleanup)
        log.info("started", stage=process, health=f"http://{settings.http_host}:{port}/healthz")
        handlers = {stage: _measured(stage, await setup(ctx)) for stage, setup in consumers.items()}
        try:
            await asyncio.gather(
                *(
                    run_worker(
                        ctx.bus,
                        stage,
                        handler,
                        stop,
                        ack_wait_s=settings.ack_wait_s,
                        max_in_flight=settings.max_in_flight,
                        shutdown_s=settings.shutdown_s,
                        give_up=giving_up(ctx, stage),
                    )
                    for stage, handler in handlers.items()
                )
            )
        finally:
            log.info("stopping", stage=process)


def _measured(stage: str, handler: Handler) -> Handler:
    async def handle(msg: Msg) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            await handler(msg)
            outcome = "ok"
        finally:
            probes.HANDLED.labels(stage, outcome).inc()
            probes.DURATION.labels(stage).observe(time.perf_counter() - started)

    return handle
