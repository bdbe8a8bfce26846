"""Tracker: ``release.applied`` in, ``release.completed`` or ``release.failed`` out.

Follows the Deployment and its pods through the shared namespace watches and
decides with kubectl's rollout rules, appending each new status line to the
transcript and keeping a timeline per pod. The final write carries the
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
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.tracker.diagnose import diagnose
from services.tracker.pods import Obj, PodTimelines, replica_set_counts
from services.tracker.rollout import rollout_status
from services.tracker.watches import Subscription, Update, Watches
from shared import lifecycle, ops
from shared.bus import Msg
from shared.canary import promote, remove_canary
from shared.cluster import Cluster
from shared.errors import FabuError
from shared.lifecycle import PAUSE, SUCCEED, TRACKER, Failed, Lost, Observed, Outcome, Succeeded
from shared.messages import ReleaseApplied, ReleaseCancelled
from shared.models import (
    CanaryEvent,
    Diagnosis,
    Release,
    ReleaseState,
    TranscriptLine,
    now,
)
from shared.objects import KubeObject
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

    cancels = await ctx.bus.nc.subscribe(ctx.bus.subjects.cancelled, cb=on_cancelled)
    ctx.owned.push_async_callback(watches.stop)
    ctx.owned.push_async_callback(cancels.unsubscribe)

    async def handle(msg: Msg) -> None:
        await track(ctx, watches, following, ReleaseApplied.model_validate_json(msg.data))

    return handle


def _remaining(release: Release, timeout_s: int) -> float:
    """What is left of the rollout's timeout (all of it for a pause taken over)."""
    if release.state is not ReleaseState.APPLIED:
        return float(timeout_s)
    applied = [e.at for e in release.events if e.state is ReleaseState.APPLIED]
    since = now() - (applied[-1] if applied else release.created_at)
    return timeout_s - since.total_seconds()


async def track(
    ctx: Context,
    watches: Watches,
    following: dict[str, asyncio.Queue[Update]],
    event: ReleaseApplied,
) -> None:
    # A paused one: a tracker that died holding a canary's timed pause; take it over.
    release = await pending_release(
        ctx, event.release_id, TRACKER, ReleaseState.APPLIED, ReleaseState.PAUSED
    )
    if release is None or (release.state is ReleaseState.PAUSED and _pause_of(release) is None):
        return
    if event.step != (release.canary_step or 0):
        return  # a step the release has left
    found = await environment_and_cluster(ctx, release, TRACKER)
    if found is None:
        return
    env, cluster = found
    timeout_s = release.params.rollout_timeout_s or env.rollout_timeout_s
    subscription = watches.subscribe(cluster, release.namespace, release.deployment)
    following[release.id] = subscription.updates
    ops.TRACKED.inc()
    try:
        await _follow(ctx, cluster, subscription, release, timeout_s)
    finally:
        ops.TRACKED.dec()
        if following.get(release.id) is subscription.updates:
            following.pop(release.id)
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
    ) -> "Ending":
        """Stored with the final state: ReplicaSet counts, pods, and for a failure the diagnosis."""
        replica_sets = list(self.replica_sets.values())
        counts = replica_set_counts(replica_sets, self.deployment)
        pods = self.timelines.timeline(next((c.name for c in counts if c.new), None))
        bundle = None
        if failure is not None:
            bundle = await diagnose(
                cluster, release.namespace, self.deployment, failure, pods, replica_sets
            )
        return Ending(Observed(replica_sets=counts, pods=pods), bundle)


@dataclass(frozen=True)
class Ending:
    observed: Observed
    diagnosis: Diagnosis | None

    def failed(self, reason: str) -> Failed:
        observed = self.observed
        return Failed(
            reason=reason,
            replica_sets=observed.replica_sets,
            pods=observed.pods,
            diagnosis=self.diagnosis,
        )


async def _follow(
    ctx: Context, cluster: Cluster, subscription: Subscription, release: Release, timeout_s: int
) -> None:
    """Judge each new state of the Deployment until the rollout ends or times out
    (or, for a canary's timed pause taken over, until the pause ends)."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + _remaining(release, timeout_s)
    last = release.transcript[-1].text if release.transcript else ""
    # Lines and pod changes wait up to FLUSH_S to be written together: fewer
    # writes under load, and the final write carries whatever is still pending.
    pending: list[TranscriptLine] = []
    seen = Seen(release)

    async def fail(reason: str, now_in: Release = release) -> None:
        """Fail the release as ``now_in`` holds it (paused, once the tracker paused it)."""
        seen.catch_up(subscription.updates)
        observed = await seen.outcome(cluster, release, reason)
        if release.in_canary:
            reason = f"canary step {(release.canary_step or 0) + 1} failed: {reason}"
        lines, canary = await _canary_done(cluster, release, "failed", reason)
        # What was seen and done stays in the transcript whoever ends the release.
        kept = pending + lines
        await fail_release(ctx, now_in, TRACKER, observed.failed(reason), canary=canary, kept=kept)

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
            reason = f"rollout not finished within {timeout_s}s: {last or 'no status seen'}"
            unreachable = subscription.unreachable()
            await fail(f"{reason}; {unreachable}" if unreachable else reason)
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
            outcome = await seen.outcome(cluster, release)
            lines, pending = pending, []  # written now: ``fail`` must not repeat them
            await _done(ctx, cluster, subscription, release, lines, obj, outcome, fail)
            return


async def _done(
    ctx: Context,
    cluster: Cluster,
    subscription: Subscription,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    outcome: Ending,
    fail: Callable[[str, Release], Awaitable[None]],
) -> None:
    """The rollout is done: the release succeeded, or its canary step is healthy."""
    if not release.in_canary:
        done, canary = await _canary_done(cluster, release, "succeeded")
        await _succeed(ctx, release, lines + done, obj, outcome.observed, canary)
        return
    paused = release
    if release.state is ReleaseState.APPLIED:
        moved = await _pause(ctx, release, lines, obj, outcome.observed)
        if isinstance(moved, Lost):
            return
        paused = moved.release
    step = release.params.canary[release.canary_step or 0]
    pause_s = _pause_of(release) if release.state is ReleaseState.PAUSED else step.pause_s
    if pause_s is None:
        return  # until someone promotes or aborts it
    held, failure = await _hold(subscription, release, pause_s)
    if failure is not None:
        await fail(failure, paused)
    elif held:
        await promote(ctx.releases, ctx.bus, paused, TRACKER, f" after its {step.pause_s}s pause")


def _pause_of(release: Release) -> float | None:
    """What is left of a paused canary step's timed pause; None if it waits for a person."""
    if release.state is not ReleaseState.PAUSED or not release.in_canary:
        return None
    pause_s = release.params.canary[release.canary_step or 0].pause_s
    healthy = [e.at for e in release.canary if e.what == "healthy"]
    if pause_s is None or not healthy:
        return None
    return max(0.0, pause_s - (now() - healthy[-1]).total_seconds())


async def _hold(
    subscription: Subscription, release: Release, pause_s: float
) -> tuple[bool, str | None]:
    """Watch a healthy canary step for ``pause_s``: whether it was held that long
    (not aborted meanwhile), and why it failed, if it did."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + pause_s
    while (left := deadline - clock()) > 0:
        try:
            resource, kind, obj = await asyncio.wait_for(subscription.updates.get(), left)
        except TimeoutError:
            break
        if resource == STOP[0]:
            return False, None
        if resource != "deployments":
            continue
        if kind == "DELETED":
            return True, f'deployment "{release.deployment}" was deleted during the pause'
        status = rollout_status(obj, release.generation or 0)
        if status.failed:
            return True, status.message
    return True, None


async def _pause(
    ctx: Context,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    observed: Observed,
) -> Outcome:
    """A healthy canary step: wait for a promote (or the step's pause); False if it moved on."""
    step = release.canary_step or 0
    weight = release.params.canary[step].weight
    replicas = int((obj.get("spec") or {}).get("replicas", 0))
    wait = release.params.canary[step].pause_s
    then = "promote or abort it" if wait is None else f"promoting it in {wait}s"
    line = f"canary step {step + 1} of {len(release.params.canary)} ({weight}%) healthy: {then}"
    return await lifecycle.take(
        ctx.releases,
        ctx.bus,
        release,
        PAUSE,
        TRACKER,
        observed,
        [TranscriptLine(at=now(), text=line)],
        CanaryEvent(step=step, weight=weight, what="healthy", replicas=replicas),
        kept=lines,
    )


async def _canary_done(
    cluster: Cluster, release: Release, outcome: str, reason: str = ""
) -> tuple[list[TranscriptLine], CanaryEvent | None]:
    """The end of a canary release's tracking: its objects removed first, and the line
    and canary event to store with the final state."""
    if release.canary_step is None:
        return [], None
    step = release.canary_step
    weight = release.params.canary[step].weight if release.in_canary else 100
    try:
        removed = await remove_canary(cluster, release)
        line = f"removed the canary's objects: {', '.join(removed) or 'none were left'}"
    except FabuError as exc:
        line = f"could not remove the canary's objects: {exc.message}"
    if release.in_canary:
        line += "; the main Deployment was not touched"
    event = CanaryEvent(step=step, weight=weight, what=outcome, detail=reason)
    return [TranscriptLine(at=now(), text=line)], event


async def _succeed(
    ctx: Context,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    observed: Observed,
    canary: CanaryEvent | None,
) -> None:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations", {}) if isinstance(metadata, dict) else {}
    revision = str((annotations or {}).get("deployment.kubernetes.io/revision", release.revision))
    fields = Succeeded(replica_sets=observed.replica_sets, pods=observed.pods, revision=revision)
    # What was seen and done stays in the transcript whoever ends the release.
    await lifecycle.take(
        ctx.releases, ctx.bus, release, SUCCEED, TRACKER, fields, canary=canary, kept=lines
    )
