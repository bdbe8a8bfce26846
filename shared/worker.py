"""What every stage process shares: wiring, lifetimes, shutdown, and failing a release.

``python -m services.<stage>`` opens a :func:`context` (its connections, owned
by one exit stack), starts the health/metrics server, and runs the stage's
handlers over their consumers until SIGTERM; then it stops fetching, gives
what is in flight ``FABU_SHUTDOWN_S`` to finish (below the pod's termination
grace period), hands back what has not finished for another replica to take
over, drains NATS and closes its connections in reverse order.
"""

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from shared import probes
from shared.cluster.client import Cluster, ClusterError, Clusters
from shared.cluster.manifest import objects
from shared.ids import ReleaseId
from shared.logs import configure_logging
from shared.messaging import subjects
from shared.messaging.bus import MAX_DELIVER, Bus, GiveUp, Handler, Msg, run_worker
from shared.models.base import now
from shared.models.catalog import Environment
from shared.models.parameters import hidden_in, hide
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent, HookRun, PodTimeline, TranscriptLine
from shared.release import hook_jobs, lifecycle
from shared.release.lifecycle import Actor, Failed, Outcome
from shared.release.machine import ReleaseState
from shared.secrets import SecretError, Secrets
from shared.settings import Settings
from shared.store.catalog import Catalog
from shared.store.mongo import Mongo
from shared.store.releases import Releases
from shared.templating.sandbox import Renderers, renderers

log = structlog.get_logger()


@dataclass
class Context:
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


def hidden_of(ctx: Context, release: Release) -> list[str]:
    """What to mask wherever the outside's words about a release could quote its secrets
    (``parameters.hidden_forms`` of its config's opened secrets)."""
    try:
        return release.params.hidden(Secrets(ctx.settings.secret_key).open)
    except SecretError:
        return []  # none could be opened: none reached the manifest or the cluster


def masked(lines: list[TranscriptLine], hidden: list[str]) -> list[TranscriptLine]:
    """``lines`` with ``hidden`` masked in each."""
    if not hidden:
        return lines
    return [line.model_copy(update={"text": hide(line.text, hidden)}) for line in lines]


async def fail_release(
    ctx: Context,
    release: Release,
    actor: Actor,
    failed: Failed,
    lines: Iterable[TranscriptLine] = (),
    canary: CanaryEvent | None = None,
    kept: list[TranscriptLine] | None = None,
) -> Outcome:
    """Fail the release (if it still is in the state it was read in) and announce it;
    ``kept`` lines join the transcript whoever ends it.

    Every text here may quote the outside (the API server's answer, a Job's or a pod's
    log): the release's secrets are masked in all of it before it is stored, logged or
    sent on."""
    hidden = hidden_of(ctx, release)
    if hidden:
        failed = Failed.model_validate(hidden_in(failed.model_dump(exclude_unset=True), hidden))
        lines = masked(list(lines), hidden)
        if kept is not None:
            kept = masked(kept, hidden)
    outcome = await lifecycle.take(
        ctx.releases, ctx.bus, release, lifecycle.FAIL, actor, failed, lines, canary, kept
    )
    if outcome:
        log.info("release failed", release_id=release.id, stage=actor.name, reason=failed.reason)
    return outcome


async def release_hooks(
    ctx: Context,
    cluster: Cluster,
    release: Release,
    when: str,
    actor: Actor,
    kept: list[TranscriptLine] | None = None,
    seen: list[PodTimeline] | None = None,
) -> list[TranscriptLine] | None:
    """Run the release's ``when`` hook Jobs (``hook_jobs``) while it stays in the state
    it is in, saying so in the transcript at once and keeping each hook's phase and pods
    beside the release as they change (after ``seen``, the workloads' pods already
    shown): the ``kept`` lines back, to be written with what comes next; None when a
    hook failed (the release with it) or the release was cancelled meanwhile (the
    lines written then): nothing more may be done for it."""
    lines = list(kept or [])
    if hook_jobs.HOOK_ANNOTATION not in release.manifest:
        return lines  # no hooks at all: nothing to parse or open
    jobs = hook_jobs.hooks(objects(Secrets(ctx.settings.secret_key).manifest(release)), when)
    if not jobs:
        return lines
    env = await ctx.catalog.environment(release.environment)
    timeout_s = release.params.rollout_timeout_s or (env.rollout_timeout_s if env else 300)
    waiting = release.state
    # A pod's cause and a Job's log quote the cluster, which may quote the secrets.
    hidden = hidden_of(ctx, release)
    before = list(seen or [])

    async def still_wanted() -> bool:
        current = await ctx.releases.head(release.id)
        return current is not None and current.state is waiting

    async def report(
        run: HookRun, pods: list[PodTimeline] | None, new: list[TranscriptLine]
    ) -> None:
        shown = None if pods is None else [*before, *_masked_pods(pods, hidden)]
        await ctx.releases.record_hook(
            release.id, run.model_copy(update={"cause": hide(run.cause, hidden)}), shown
        )
        if new:
            await ctx.releases.note(release.id, masked(new, hidden))

    names = ", ".join(j["metadata"]["name"] for j in jobs)
    running = TranscriptLine(at=now(), text=f"running the {when} hooks: {names}")
    await ctx.releases.note(release.id, [running])
    try:
        failed = await hook_jobs.run(
            cluster, release.namespace, jobs, timeout_s, still_wanted, report
        )
    except ClusterError as exc:
        failed = hook_jobs.HookFailed(exc.message)
    if failed is not None:
        auto = release.rollback_of is None and _auto_rollback(release, env)
        reason = f"{failed.reason.rstrip('.')}. {hook_jobs.consequence(when, auto)}"
        fields = Failed(reason=reason, diagnosis=failed.diagnosis, pods=[*before, *failed.pods])
        await fail_release(ctx, release, actor, fields, kept=[*lines, *failed.lines])
        return None
    if not await still_wanted():
        await ctx.releases.note(
            release.id, [*lines, TranscriptLine(at=now(), text=hook_jobs.STOPPED)]
        )
        return None
    return lines


def _auto_rollback(release: Release, env: Environment | None) -> bool:
    """Whether the release's config, else its environment, asks for automatic rollbacks."""
    asked = release.params.auto_rollback
    return bool(env.auto_rollback if asked is None and env is not None else asked)


def _masked_pods(pods: list[PodTimeline], hidden: list[str]) -> list[PodTimeline]:
    if not hidden:
        return pods
    return [PodTimeline.model_validate(hidden_in(p.model_dump(), hidden)) for p in pods]


async def pending_release(
    ctx: Context,
    release_id: ReleaseId,
    actor: Actor,
    *waiting: ReleaseState,
    with_transcript: bool = False,
) -> Release | None:
    """The release if it waits in one of ``waiting`` for this stage (see ``lifecycle.pending``)."""
    return await lifecycle.pending(
        ctx.releases, ctx.bus, release_id, actor, *waiting, with_transcript=with_transcript
    )


async def environment_and_cluster(
    ctx: Context, release: Release, actor: Actor
) -> tuple[Environment, Cluster] | None:
    """The release's environment and a client for its cluster; None after failing the release."""
    env = await ctx.catalog.environment(release.environment)
    try:
        if env is None:
            raise ClusterError(f"environment {release.environment!r} no longer exists")  # noqa: TRY301
        return env, await ctx.clusters.get(env)
    except ClusterError as exc:
        await fail_release(ctx, release, actor, Failed(reason=exc.message))
        return None


Setup = Callable[[Context], Awaitable[Callable[[Msg], Awaitable[None]]]]


@asynccontextmanager
async def context(settings: Settings, process: str) -> AsyncIterator[Context]:
    """A stage's connections, opened in order and closed in reverse, whatever happens;
    what a stage's setup opens it hands to ``Context.owned`` to be closed with them."""
    async with AsyncExitStack() as owned:
        mongo = Mongo(settings.mongo_url, settings.mongo_db, settings.mongo_pool)
        owned.push_async_callback(mongo.close)
        await mongo.ensure_indexes()
        bus = await Bus.connect(settings.nats_url, subjects.Subjects(settings.nats_prefix), process)
        owned.push_async_callback(bus.close)
        clusters = Clusters(settings.kubeconfig_dir)
        owned.push_async_callback(clusters.close)
        render_processes = renderers(settings)
        owned.push_async_callback(render_processes.close)
        yield Context(
            settings, mongo, Catalog(mongo), Releases(mongo), bus, clusters, render_processes, owned
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
            return ctx.bus.nc.is_connected

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
                        give_up=_giving_up(ctx, stage),
                    )
                    for stage, handler in handlers.items()
                )
            )
        finally:
            log.info("stopping", stage=process)


# The stages whose messages carry a release under way, and who fails it.
_RELEASE_STAGES = {
    subjects.RENDERER: lifecycle.RENDERER,
    subjects.DEPLOYER: lifecycle.DEPLOYER,
    subjects.PROMOTIONS: lifecycle.DEPLOYER,
    subjects.TRACKER: lifecycle.TRACKER,
}


def _giving_up(ctx: Context, stage: str) -> GiveUp | None:
    """For a stage that moves releases on: fail the release of a message that could not
    be handled in ``MAX_DELIVER`` deliveries, so it never stays under way holding its
    service's lock."""
    actor = _RELEASE_STAGES.get(stage)
    if actor is None:
        return None

    async def give_up(msg: Msg, reason: str) -> None:
        try:
            release_id = ReleaseId(str(json.loads(msg.data)["release_id"]))
        except (ValueError, KeyError, TypeError):
            return
        release = await ctx.releases.head(release_id)
        if release is None or release.state not in lifecycle.UNDER_WAY:
            return
        said = f"the {stage} could not handle it in {MAX_DELIVER} attempts: {reason}"
        await fail_release(ctx, release, actor, Failed(reason=said))

    return give_up


def _measured(stage: str, handler: Callable[[Msg], Awaitable[None]]) -> Handler:
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
