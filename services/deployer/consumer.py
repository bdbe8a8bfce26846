"""Deployer: ``release.rendered`` in, ``release.applied`` out.

Server-side applies every object of the stored manifest (field manager
``fabu``) into the environment's namespace, then records the Deployment's
generation and revision. Idempotency key: the release's state (``rendered``
→ ``applied``); applying the same manifest twice is a no-op for the cluster.
An object the API server rejects, a forbidden request or a cluster that stays
unreachable fails the release with the API server's message.
"""

from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from services.deployer.apply import objects, revision
from shared.cluster import ClusterError
from shared.errors import TransientError
from shared.messages import ReleaseApplied, ReleaseRendered
from shared.models import Release, ReleaseState, TranscriptLine, now
from shared.worker import Context, environment_and_cluster, fail_release, pending_release

# Deliveries of one message before an unreachable cluster fails the release.
MAX_ATTEMPTS = 5


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        event = ReleaseRendered.model_validate_json(msg.data)
        try:
            await handle_rendered(ctx, event)
        except TransientError as exc:
            if msg.metadata.num_delivered < MAX_ATTEMPTS:
                raise
            reason = f"gave up after {MAX_ATTEMPTS} attempts: {exc.message}"
            await fail_release(ctx, event.release_id, ReleaseState.RENDERED, "apply", reason)

    return handle


async def handle_rendered(ctx: Context, event: ReleaseRendered) -> None:
    release = await pending_release(
        ctx,
        event.release_id,
        ReleaseState.RENDERED,
        ReleaseState.APPLIED,
        lambda done: _announce(ctx, done, done.generation or 0),
    )
    if release is None:
        return
    found = await environment_and_cluster(ctx, release, "apply")
    if found is None:
        return
    _, cluster = found
    started_at = now()
    try:
        generation, rev = 0, ""
        for obj in objects(release.manifest):
            applied = await cluster.apply(release.namespace, obj)
            if obj.get("kind") == "Deployment":
                generation = int(applied.get("metadata", {}).get("generation", 0))
                rev = revision(applied)
    except ClusterError as exc:
        await fail_release(ctx, release.id, ReleaseState.RENDERED, "apply", exc.message)
        return
    moved = await ctx.releases.advance(
        release.id,
        ReleaseState.RENDERED,
        ReleaseState.APPLIED,
        actor="deployer",
        generation=generation,
        revision=rev,
        started_at=started_at,
    )
    if moved:
        await _announce(ctx, release, generation)
        return
    current = await ctx.releases.get(release.id)
    if current is not None and current.state is ReleaseState.CANCELLED:
        # Cancelled while its objects were being sent: say that they were.
        line = "the objects had already been applied when the release was cancelled"
        await ctx.releases.note(release.id, [TranscriptLine(at=now(), text=line)])


async def _announce(ctx: Context, release: Release, generation: int) -> None:
    event = ReleaseApplied(release_id=release.id, generation=generation)
    await ctx.bus.publish(ctx.bus.subjects.applied, event)
