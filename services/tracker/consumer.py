"""Tracker: ``release.applied`` in, ``release.completed`` or ``release.failed`` out.

Follows the Deployment through the shared namespace watch and decides with
kubectl's rollout rules, appending each new status line to the transcript.
The message stays unacknowledged (kept alive) while the rollout runs, so if
this process dies JetStream hands the release to another tracker, which
resumes it. Idempotency key: the release's state (``applied`` → final).
Failure: ``ProgressDeadlineExceeded``, the Deployment deleted, or the rollout
not done within the release's timeout (its config's, else the environment's).
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

from nats.aio.msg import Msg

from services.tracker.rollout import rollout_status
from services.tracker.watches import Subscription, Watches
from shared.messages import ReleaseApplied, ReleaseCompleted
from shared.models import Release, ReleaseState, TranscriptLine, now
from shared.worker import Context, environment_and_cluster, fail_release, pending_release

FLUSH_S = 0.25


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    watches = Watches()

    async def handle(msg: Msg) -> None:
        await track(ctx, watches, ReleaseApplied.model_validate_json(msg.data))

    return handle


def _applied_at(release: Release) -> timedelta:
    applied = [e.at for e in release.events if e.state is ReleaseState.APPLIED]
    return now() - (applied[-1] if applied else release.created_at)


async def track(ctx: Context, watches: Watches, event: ReleaseApplied) -> None:
    release = await pending_release(
        ctx,
        event.release_id,
        ReleaseState.APPLIED,
        ReleaseState.SUCCEEDED,
        partial(_completed, ctx),
    )
    if release is None:
        return
    found = await environment_and_cluster(ctx, release, "track")
    if found is None:
        return
    env, cluster = found
    timeout_s = release.params.rollout_timeout_s or env.rollout_timeout_s
    await _follow(
        ctx, watches.subscribe(cluster, release.namespace, release.deployment), release, timeout_s
    )


async def _follow(
    ctx: Context, subscription: Subscription, release: Release, timeout_s: int
) -> None:
    """Judge each new state of the Deployment until the rollout ends or times out."""
    remaining = timeout_s - _applied_at(release).total_seconds()
    deadline = asyncio.get_running_loop().time() + remaining
    last = release.transcript[-1].text if release.transcript else ""
    # Lines wait up to FLUSH_S to be written together: fewer writes under load,
    # and the final write carries whatever is still pending.
    pending: list[TranscriptLine] = []
    clock = asyncio.get_running_loop().time
    try:
        while True:
            left = deadline - clock()
            wait = min(left, FLUSH_S) if pending else left
            try:
                obj = await asyncio.wait_for(subscription.updates.get(), max(wait, 0))
            except TimeoutError:
                if pending and left > 0:
                    await ctx.releases.append_transcript(release.id, pending)
                    pending = []
                    continue
                reason = f"rollout not finished within {timeout_s}s: {last or 'no status seen'}"
                await fail_release(ctx, release.id, ReleaseState.APPLIED, "track", reason, pending)
                return
            if obj is None:
                reason = f'deployment "{release.deployment}" was deleted during the rollout'
                await fail_release(ctx, release.id, ReleaseState.APPLIED, "track", reason, pending)
                return
            status = rollout_status(obj, release.generation or 0)
            if status.message != last:
                pending.append(TranscriptLine(at=now(), text=status.message))
            last = status.message
            if status.failed:
                await fail_release(
                    ctx, release.id, ReleaseState.APPLIED, "track", status.message, pending
                )
                return
            if status.done:
                await _succeed(ctx, release, pending, obj)
                return
    finally:
        subscription.close()


async def _succeed(
    ctx: Context, release: Release, lines: list[TranscriptLine], obj: dict[str, object]
) -> None:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations", {}) if isinstance(metadata, dict) else {}
    revision = str((annotations or {}).get("deployment.kubernetes.io/revision", release.revision))
    moved = await ctx.releases.advance(
        release.id,
        ReleaseState.APPLIED,
        ReleaseState.SUCCEEDED,
        actor="tracker",
        lines=lines,
        revision=revision,
    )
    if moved:
        await _completed(ctx, release)


async def _completed(ctx: Context, release: Release) -> None:
    await ctx.bus.publish(ctx.bus.subjects.completed, ReleaseCompleted(release_id=release.id))
