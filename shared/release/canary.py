"""Moving a canary release on, and taking its objects away: for the API and the tracker."""

from shared.cluster.client import Cluster
from shared.cluster.manifest import canary_objects
from shared.messaging.bus import Bus
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent, TranscriptLine
from shared.release import lifecycle
from shared.release.lifecycle import Actor, Outcome
from shared.release.machine import PROMOTE, Promoted
from shared.store.releases import Releases


async def remove_canary(cluster: Cluster, release: Release) -> list[str]:
    """Delete the canary's objects, whatever step it reached; what was deleted."""
    removed = []
    for obj in reversed(canary_objects(release.manifest, 50)):
        if await cluster.delete(release.namespace, obj):
            removed.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return removed


async def promote(
    releases: Releases, bus: Bus, release: Release, actor: Actor, why: str
) -> Outcome:
    """Move a paused canary to its next step (after the last: the full rollout), handing
    it to the deployer; :class:`Lost` when it was no longer paused at that step."""
    step = (release.canary_step or 0) + 1
    total = len(release.params.canary)
    weight = release.params.canary[step].weight if step < total else 100
    target = (
        f"canary step {step + 1} of {total} ({weight}% asked)"
        if step < total
        else f"the full rollout (after canary step {total} of {total})"
    )
    by = actor.name
    return await lifecycle.take(
        releases,
        bus,
        release,
        PROMOTE,
        actor,
        Promoted(canary_step=step),
        [TranscriptLine(at=now(), text=f"promoted to {target} by {by}{why}")],
        CanaryEvent(
            step=step - 1, weight=release.params.canary[step - 1].weight, what="promoted", by=by
        ),
    )
