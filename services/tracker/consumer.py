"""Tracker: ``release.applied`` in, ``release.completed`` or ``release.failed`` out.

Follows the Deployment and its pods through the shared namespace watches and
decides with kubectl's rollout rules, appending each new status line to the
transcript and keeping a timeline per pod. The first time a new pod shows why it
cannot become Ready (``shared.cluster.causes``: a crash loop from its first restart, an
image that cannot be pulled, no node to run it), a ``cause:`` line says so at
once, long before the timeout. The final write carries the
ReplicaSet counts and, for a failure, the diagnosis bundle. A cancelled
release (``release.cancelled``, read by every tracker) is let go, the
cluster left as it is.
The message stays unacknowledged (kept alive) while the rollout runs, so if
this process dies JetStream hands the release to another tracker, which
resumes it. Idempotency key: the release's state (``succeed``, ``fail`` or
``pause``: whichever is claimed first, a cancel included, wins).
Failure: ``ProgressDeadlineExceeded``, the Deployment deleted, or the rollout
not done within the release's timeout (its config's, else the environment's).

A canary step is tracked the same way on the canary Deployment. Healthy, the
release pauses (``release.paused``); a step with a pause is watched for that
long and then promoted. A failing step fails the release with its diagnosis
and removes the canary's objects, the main Deployment untouched; the full
rollout at the end removes them once it is done (or has failed).

Its parts: ``follow`` (the loop over the watches' updates), ``rollout`` (kubectl's
judgement of each workload), ``seen`` (ReplicaSets, pods and their causes),
``ending`` (failed, or succeeded after hooks and pruning), ``canary`` (a step's pause,
hold and clean-up) and ``pruning``.
"""

import asyncio
from collections.abc import Awaitable, Callable

from services.tracker.canary import pause_left
from services.tracker.follow import follow
from services.tracker.rollout import STOP, followed
from shared import probes
from shared.cluster.watches import Update, Watches
from shared.messaging.bus import Msg
from shared.messaging.messages import ReleaseApplied, ReleaseCancelled
from shared.release import lifecycle
from shared.release.lifecycle import AS_TRACKER
from shared.release.machine import ReleaseState
from shared.release.stages import environment_and_cluster
from shared.worker import Context


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    watches = Watches()
    # The update queue of every release this process follows, to stop it on cancel.
    following: dict[str, asyncio.Queue[Update]] = {}

    async def on_cancelled(msg: Msg) -> None:
        event = ReleaseCancelled.model_validate_json(msg.data)
        queue = following.get(event.release_id)
        if queue is not None:
            queue.put_nowait(STOP)

    unsubscribe = await ctx.bus.subscribe(ctx.bus.subjects.cancelled, on_cancelled)
    ctx.owned.push_async_callback(watches.stop)
    ctx.owned.push_async_callback(unsubscribe)

    async def handle(msg: Msg) -> None:
        event = ReleaseApplied.model_validate_json(msg.data)
        # Delivered before: another tracker (or this one) began it and may have written
        # lines and pods since; a first delivery finds none yet.
        taken_over = msg.metadata.num_delivered > 1
        await track(ctx, watches, following, event, taken_over)

    return handle


async def track(
    ctx: Context,
    watches: Watches,
    following: dict[str, asyncio.Queue[Update]],
    event: ReleaseApplied,
    taken_over: bool = False,
) -> None:
    # A paused one: a tracker that died holding a canary's timed pause; take it over.
    # Taken over, with its transcript and pods so far, to go on from there.
    release = await lifecycle.pending(
        ctx.releases,
        ctx.bus,
        event.release_id,
        AS_TRACKER,
        ReleaseState.APPLIED,
        ReleaseState.PAUSED,
        with_transcript=taken_over,
    )
    if release is None or (
        release.state is ReleaseState.PAUSED
        and pause_left(release) is None
        and not release.params.steps[release.canary_step or 0].analysis
    ):
        return
    if event.step != (release.canary_step or 0):
        return  # a step the release has left
    found = await environment_and_cluster(ctx, release, AS_TRACKER)
    if found is None:
        return
    env, cluster = found
    timeout_s = release.params.rollout_timeout_s or env.rollout_timeout_s
    keys = [w.key for w in followed(release)]
    subscription = watches.subscribe(cluster, release.namespace, keys)
    following[release.id] = subscription.updates
    probes.TRACKED.inc()
    try:
        await follow(ctx, cluster, subscription, release, timeout_s)
    finally:
        probes.TRACKED.dec()
        if following.get(release.id) is subscription.updates:
            following.pop(release.id)
        subscription.close()
