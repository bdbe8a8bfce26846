"""What every stage process shares: wiring, shutdown, and failing a release.

``python -m services.<stage>`` builds a :class:`Context` once, starts the
health/metrics server, and runs the stage's handler over its consumer until
SIGTERM; then it stops fetching, finishes what is in flight, drains NATS and
closes its connections.
"""

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from nats.aio.msg import Msg

from shared import ops, subjects
from shared.bus import Bus, Handler, run_worker
from shared.cluster import Cluster, ClusterError, Clusters
from shared.ids import ReleaseId
from shared.logs import configure_logging
from shared.messages import ReleaseFailed, Stage
from shared.models import Environment, Release, ReleaseState, TranscriptLine
from shared.settings import Settings
from shared.store.catalog import Catalog
from shared.store.mongo import Mongo
from shared.store.releases import Releases

log = structlog.get_logger()


@dataclass
class Context:
    settings: Settings
    mongo: Mongo
    catalog: Catalog
    releases: Releases
    bus: Bus
    clusters: Clusters


async def fail_release(
    ctx: Context,
    release_id: ReleaseId,
    expected: ReleaseState,
    stage: Stage,
    reason: str,
    lines: list[TranscriptLine] | None = None,
    **fields: Any,
) -> None:
    """Mark the release failed (if it still is in ``expected``) and announce it.

    ``fields`` are stored with the failure (the tracker's diagnosis).
    """
    moved = await ctx.releases.advance(
        release_id, expected, ReleaseState.FAILED, actor=stage, lines=lines, reason=reason, **fields
    )
    if moved:
        log.info("release failed", release_id=release_id, stage=stage, reason=reason)
    release = await ctx.releases.get(release_id)
    if release and release.state is ReleaseState.FAILED:
        # Also on redelivery after a crash between the write and the publish;
        # the event id de-duplicates it.
        event = ReleaseFailed(release_id=release_id, stage=stage, reason=release.reason)
        await ctx.bus.publish(ctx.bus.subjects.failed, event)


async def pending_release(
    ctx: Context,
    release_id: ReleaseId,
    expected: ReleaseState,
    moved_on: ReleaseState,
    republish: Callable[[Release], Awaitable[None]],
) -> Release | None:
    """The release if it waits in ``expected`` for this stage, else None.

    A release already in ``moved_on`` gets its next subject published again: the
    stage may have died between its write and its publish (the event id
    de-duplicates a second copy).
    """
    release = await ctx.releases.get(release_id)
    if release is not None and release.state is moved_on:
        await republish(release)
    if release is None or release.state is not expected:
        return None
    return release


async def environment_and_cluster(
    ctx: Context, release: Release, stage: Stage
) -> tuple[Environment, Cluster] | None:
    """The release's environment and a client for its cluster; None after failing the release."""
    env = await ctx.catalog.environment(release.environment)
    try:
        if env is None:
            raise ClusterError(f"environment {release.environment!r} no longer exists")  # noqa: TRY301
        return env, await ctx.clusters.get(env)
    except ClusterError as exc:
        await fail_release(ctx, release.id, release.state, stage, exc.message)
        return None


Setup = Callable[[Context], Awaitable[Callable[[Msg], Awaitable[None]]]]


def run(process: str, consumers: dict[str, Setup]) -> None:
    """Run a process that serves the given consumers (durable name → setup of its handler)."""
    asyncio.run(_main(process, consumers))


async def _main(process: str, consumers: dict[str, Setup]) -> None:
    settings = Settings()
    configure_logging()
    mongo = Mongo(settings.mongo_url, settings.mongo_db, settings.mongo_pool)
    await mongo.ensure_indexes()
    bus = await Bus.connect(settings.nats_url, subjects.Subjects(settings.nats_prefix), process)
    ctx = Context(
        settings, mongo, Catalog(mongo), Releases(mongo), bus, Clusters(settings.kubeconfig_dir)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def healthy() -> bool:
        try:
            await mongo.ping()
        except Exception:
            return False
        return bus.nc.is_connected

    runner, port = await ops.serve(settings.http_host, settings.http_port, healthy)
    log.info("started", stage=process, health=f"http://{settings.http_host}:{port}/healthz")

    def measured(stage: str, handler: Callable[[Msg], Awaitable[None]]) -> Handler:
        async def handle(msg: Msg) -> None:
            started = time.perf_counter()
            outcome = "error"
            try:
                await handler(msg)
                outcome = "ok"
            finally:
                ops.HANDLED.labels(stage, outcome).inc()
                ops.DURATION.labels(stage).observe(time.perf_counter() - started)

        return handle

    try:
        handlers = {stage: measured(stage, await setup(ctx)) for stage, setup in consumers.items()}
        await asyncio.gather(
            *(
                run_worker(
                    bus,
                    stage,
                    handler,
                    stop,
                    ack_wait_s=settings.ack_wait_s,
                    max_in_flight=settings.max_in_flight,
                )
                for stage, handler in handlers.items()
            )
        )
    finally:
        log.info("stopping", stage=process)
        await bus.close()
        await ctx.clusters.close()
        await mongo.close()
        await runner.cleanup()
