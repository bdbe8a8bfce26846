"""A canary step under the tracker: paused once healthy, held for its timed pause (a
failure meanwhile ends it), and its objects removed when the release ends."""

import asyncio

from services.tracker.rollout import STOP, deleted
from shared.cluster.client import Cluster
from shared.cluster.objects import KubeObject
from shared.cluster.rollout import rollout_status
from shared.cluster.watches import Subscription
from shared.errors import FabuError
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent, TranscriptLine
from shared.release import lifecycle
from shared.release.canary import remove_canary
from shared.release.lifecycle import AS_TRACKER, Outcome
from shared.release.machine import PAUSE, Observed, ReleaseState
from shared.worker import Context


def pause_left(release: Release) -> float | None:
    """What is left of a paused canary step's timed pause; None if it waits for a person."""
    if release.state is not ReleaseState.PAUSED or not release.in_canary:
        return None
    pause_s = release.params.steps[release.canary_step or 0].pause_s
    healthy = [e.at for e in release.canary if e.what == "healthy"]
    if pause_s is None or not healthy:
        return None
    return max(0.0, pause_s - (now() - healthy[-1]).total_seconds())


async def pause(
    ctx: Context,
    release: Release,
    lines: list[TranscriptLine],
    obj: KubeObject,
    observed: Observed,
) -> Outcome:
    """A healthy canary step: the release paused, to wait for a promote (or the step's
    pause); the outcome says if another change won."""
    step = release.canary_step or 0
    weight = release.params.steps[step].weight
    replicas = int((obj.get("spec") or {}).get("replicas", 0))
    wait = release.params.steps[step].pause_s
    then = (
        "waiting for someone to promote or abort it"
        if wait is None
        else f"Fabu promotes it after its {wait}s pause unless someone promotes or aborts it first"
    )
    if names := release.params.steps[step].analysis:
        then = (
            f"its analysis ({', '.join(names)}) decides: Fabu promotes it when every check "
            "passes, fails it when one fails, and leaves it to a person when inconclusive"
        )
    if release.params.blue_green is None:
        line = (
            f"canary step {step + 1} of {len(release.params.steps)} ({weight}% asked, "
            f"{replicas} canary pods) healthy: {then}"
        )
    else:
        line = (
            f"{release.params.step_name(step)} ({replicas} pods of the new version) healthy: {then}"
        )
    return await lifecycle.take(
        ctx.releases,
        ctx.bus,
        release,
        PAUSE,
        AS_TRACKER,
        observed,
        [TranscriptLine(at=now(), text=line)],
        CanaryEvent(step=step, weight=weight, what="healthy", replicas=replicas),
        kept=lines,
    )


async def hold(
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
            return True, deleted(f"Deployment/{release.deployment}", "pause")
        status = rollout_status(obj, release.generation or 0)
        if status.failed:
            return True, status.message
    return True, None


def _objects_of(release: Release) -> str:
    return "the canary's objects" if release.params.blue_green is None else "the preview"


async def canary_done(
    cluster: Cluster, release: Release, outcome: str, reason: str = ""
) -> tuple[list[TranscriptLine], CanaryEvent | None]:
    """The end of a canary release's tracking: its objects removed first, and the line
    and canary event to store with the final state."""
    if release.canary_step is None:
        return [], None
    step = release.canary_step
    weight = release.params.steps[step].weight if release.in_canary else 100
    try:
        removed = await remove_canary(cluster, release)
        line = f"removed {_objects_of(release)}: {', '.join(removed) or 'none were left'}"
    except FabuError as exc:
        line = f"could not remove {_objects_of(release)}: {exc.message}"
    if release.in_canary:
        line += "; the main Deployment was not touched"
    event = CanaryEvent(step=step, weight=weight, what=outcome, detail=reason)
    return [TranscriptLine(at=now(), text=line)], event
