"""Tracker: ``release.applied`` in, ``release.completed`` or ``release.failed`` out.

Follows the Deployment and its pods through the shared namespace watches and
decides with kubectl's rollout rules, appending each new status line to the
transcript and keeping a timeline per pod. The final write carries the
ReplicaSet counts and, for a failure, the diagnosis bundle. A cancelled
release (``release.cancelled``, read by every tracker) is let go, the
cluster left as it is.
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
from typing import Any

from nats.aio.msg import Msg

from services.tracker.diagnose import diagnose
from services.tracker.pods import Obj, PodTimelines, replica_set_counts
from services.tracker.rollout import rollout_status
from services.tracker.watches import Subscription, Update, Watches
from shared.cluster import Cluster
from shared.messages import ReleaseApplied, ReleaseCancelled, ReleaseCompleted
from shared.models import Release, ReleaseState, TranscriptLine, now
from shared.worker import Context, environment_and_cluster, fail_release, pending_release

FLUSH_S = 0.25
STOP: Update = ("stop", "", {})


async def setup(ctx: Context) -> Callable[[Msg], Awaitable[None]]:
    watches = Watches()
    # The update queue of every release this process follows, to stop it on cancel.
    following: dict[str, asyncio.Queue[Update]] = {}

    async def on_cancelled(msg: Msg) -> None:
        event = ReleaseCancelled.model_validate_json(msg.data)
        queue = following.get(event.release_id)
        if queue is not None:
            queue.put_nowait(STOP)

    await ctx.bus.nc.subscribe(ctx.bus.subjects.cancelled, cb=on_cancelled)

    async def handle(msg: Msg) -> None:
        await track(ctx, watches, following, ReleaseApplied.model_validate_json(msg.data))

    return handle


def _applied_at(release: Release) -> timedelta:
    applied = [e.at for e in release.events if e.state is ReleaseState.APPLIED]
    return now() - (applied[-1] if applied else release.created_at)


async def track(
    ctx: Context,
    watches: Watches,
    following: dict[str, asyncio.Queue[Update]],
    event: ReleaseApplied,
) -> None:
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
    subscription = watches.subscribe(cluster, release.namespace, release.deployment)
    following[release.id] = subscription.updates
    try:
        await _follow(ctx, cluster, subscription, release, timeout_s)
    finally:
        following.pop(release.id, None)
        subscription.close()


class Seen:
    """What the tracker has seen of a release's Deployment, ReplicaSets and pods."""

    def __init__(self, release: Release) -> None:
        self.deployment: Obj | None = None
        self.replica_sets: dict[str, Obj] = {}
        self.timelines = PodTimelines(release.started_at, release.pods)
        self.pods_changed = False

    def take(self, resource: str, kind: str, obj: Obj) -> None:
        """Keep a ReplicaSet or pod change (the Deployment is judged by the caller)."""
        if resource == "pods":
            self.pods_changed = self.timelines.update(kind, obj) or self.pods_changed
        elif kind == "DELETED":
            self.replica_sets.pop(obj["metadata"]["name"], None)
        else:
            self.replica_sets[obj["metadata"]["name"]] = obj

    def catch_up(self, updates: asyncio.Queue[Update]) -> None:
        """Take the ReplicaSet and pod changes already queued (the watches are separate streams)."""
        while not updates.empty():
            resource, kind, obj = updates.get_nowait()
            if resource in ("replicasets", "pods"):
                self.take(resource, kind, obj)

    async def outcome(
        self, cluster: Cluster, release: Release, failure: str | None = None
    ) -> dict[str, Any]:
        """Stored with the final state: ReplicaSet counts, pods, and for a failure the diagnosis."""
        replica_sets = list(self.replica_sets.values())
        counts = replica_set_counts(replica_sets, self.deployment)
        pods = self.timelines.timeline(next((c.name for c in counts if c.new), None))
        fields: dict[str, Any] = {
            "replica_sets": [c.model_dump() for c in counts],
            "pods": [p.model_dump() for p in pods],
        }
        if failure is not None:
            bundle = await diagnose(
                cluster, release.namespace, self.deployment, failure, pods, replica_sets
            )
            fields["diagnosis"] = bundle.model_dump()
        return fields


async def _follow(
    ctx: Context, cluster: Cluster, subscription: Subscription, release: Release, timeout_s: int
) -> None:
    """Judge each new state of the Deployment until the rollout ends or times out."""
    remaining = timeout_s - _applied_at(release).total_seconds()
    clock = asyncio.get_running_loop().time
    deadline = clock() + remaining
    last = release.transcript[-1].text if release.transcript else ""
    # Lines and pod changes wait up to FLUSH_S to be written together: fewer
    # writes under load, and the final write carries whatever is still pending.
    pending: list[TranscriptLine] = []
    seen = Seen(release)

    async def fail(reason: str) -> None:
        seen.catch_up(subscription.updates)
        fields = await seen.outcome(cluster, release, reason)
        await fail_release(
            ctx, release.id, ReleaseState.APPLIED, "track", reason, pending, **fields
        )

    while True:
        left = deadline - clock()
        dirty = bool(pending) or seen.pods_changed
        wait = min(left, FLUSH_S) if dirty else left
        try:
            resource, kind, obj = await asyncio.wait_for(subscription.updates.get(), max(wait, 0))
        except TimeoutError:
            if dirty and left > 0:
                pods = seen.timelines.timeline() if seen.pods_changed else None
                still_applied = await ctx.releases.record_progress(release.id, pending, pods)
                pending, seen.pods_changed = [], False
                if not still_applied:
                    return  # cancelled, or finished by another tracker
                continue
            await fail(f"rollout not finished within {timeout_s}s: {last or 'no status seen'}")
            return
        if resource == STOP[0]:
            return
        if resource != "deployments":
            seen.take(resource, kind, obj)
            continue
        if kind == "DELETED":
            await fail(f'deployment "{release.deployment}" was deleted during the rollout')
            return
        seen.deployment = obj
        status = rollout_status(obj, release.generation or 0)
        if status.message != last:
            pending.append(TranscriptLine(at=now(), text=status.message))
        last = status.message
        if status.failed:
            await fail(status.message)
            return
        if status.done:
            seen.catch_up(subscription.updates)
            await _succeed(ctx, release, pending, obj, await seen.outcome(cluster, release))
            return


async def _succeed(
    ctx: Context,
    release: Release,
    lines: list[TranscriptLine],
    obj: dict[str, object],
    fields: dict[str, Any],
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
        **fields,
    )
    if moved:
        await _completed(ctx, release)


async def _completed(ctx: Context, release: Release) -> None:
    await ctx.bus.publish(ctx.bus.subjects.completed, ReleaseCompleted(release_id=release.id))
