"""Following a release's workloads through the namespace watches: each new state judged,
new lines and pod changes written together every ``FLUSH_S``, until every workload is
done, one fails, the release is cancelled or the rollout's timeout passes."""

import asyncio

from services.tracker.ending import Tracking
from services.tracker.pods import Obj
from services.tracker.rollout import NO_WORKLOADS, STOP, Rollout, deleted, kubectl_line
from services.tracker.seen import Seen
from shared.cluster.client import Cluster
from shared.cluster.watches import KINDS, Subscription, workload_of
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import TranscriptLine
from shared.release.machine import ReleaseState
from shared.release.stages import hidden_of, masked, masked_pods
from shared.worker import Context

# How long new transcript lines and pod changes wait to be written together: the live
# view lags by at most this, and hundreds of rollouts at once write a few times a
# second each no more.
FLUSH_S = 1.0


def remaining(release: Release, timeout_s: int) -> float:
    """What is left of the rollout's timeout (all of it for a pause taken over)."""
    if release.state is not ReleaseState.APPLIED:
        return float(timeout_s)
    applied = [e.at for e in release.events if e.state is ReleaseState.APPLIED]
    since = now() - (applied[-1] if applied else release.created_at)
    return timeout_s - since.total_seconds()


async def _record_progress(
    ctx: Context, release: Release, rollout: Rollout, seen: Seen, hidden: list[str]
) -> bool:
    """Write the new lines and the pods if they changed, ``hidden`` masked in them; False
    when the release was cancelled or finished by another tracker."""
    pods = masked_pods(seen.timelines.timeline(), hidden) if seen.pods_changed else None
    return await ctx.releases.record_progress(release.id, masked(rollout.pending, hidden), pods)


async def follow(
    ctx: Context, cluster: Cluster, subscription: Subscription, release: Release, timeout_s: int
) -> None:
    """Judge each new state of each workload until all are done, one fails or the timeout
    passes (or, for a canary's timed pause taken over, until the pause ends)."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + remaining(release, timeout_s)
    ending = Tracking(ctx, cluster, subscription, release)
    rollout, seen, fail, finish = ending.rollout, ending.seen, ending.fail, ending.finish
    # A pod's cause quotes the cluster, which may quote the release's secrets.
    hidden = hidden_of(ctx, release)

    if rollout.finished:
        rollout.pending.append(TranscriptLine(at=now(), text=NO_WORKLOADS))
        await finish(Obj())
        return
    while True:
        left = deadline - clock()
        dirty = bool(rollout.pending) or seen.pods_changed
        try:
            resource, kind, obj = await asyncio.wait_for(
                subscription.updates.get(), max(min(left, FLUSH_S) if dirty else left, 0)
            )
        except TimeoutError:
            if not (dirty and left > 0):
                unreachable = subscription.unreachable()
                reason = rollout.timed_out(timeout_s)
                failing = next(iter(rollout.waiting()), None)
                await fail(f"{reason}; {unreachable}" if unreachable else reason, failing=failing)
                return
            if not await _record_progress(ctx, release, rollout, seen, hidden):
                return  # cancelled, or finished by another tracker
            rollout.pending, seen.pods_changed = [], False
            continue
        if resource == STOP[0]:
            return
        key = workload_of(resource, obj) if resource in KINDS else None
        if key is None:
            seen.take(resource, kind, obj, rollout.pending)
        elif key not in rollout.generations:
            continue
        elif kind == "DELETED":
            await fail(deleted(key, "rollout"), failing=key)
            return
        else:
            seen.workloads[key] = obj
            status = rollout.judge(key, resource, obj)
            if status.failed:
                await fail(kubectl_line(key, status.message), failing=key)
                return
            if rollout.finished:
                await finish(obj)
                return
