"""Moving a canary release on, and taking its objects away: for the API and the tracker."""

from shared.bus import Bus
from shared.cluster import Cluster
from shared.manifest import canary_objects
from shared.messages import ReleaseRendered
from shared.models import CanaryEvent, Release, ReleaseState, TranscriptLine, now
from shared.store.releases import Releases


async def remove_canary(cluster: Cluster, release: Release) -> list[str]:
    """Delete the canary's objects, whatever step it reached; what was deleted."""
    removed = []
    for obj in reversed(canary_objects(release.manifest, 50)):
        if await cluster.delete(release.namespace, obj):
            removed.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return removed


async def promote(releases: Releases, bus: Bus, release: Release, by: str, why: str) -> bool:
    """Move a paused canary to its next step (after the last: the full rollout) and hand it
    to the deployer; False when it was no longer paused at that step."""
    step = (release.canary_step or 0) + 1
    total = len(release.params.canary)
    weight = release.params.canary[step].weight if step < total else 100
    target = f"step {step + 1} of {total} ({weight}%)" if step < total else "the full rollout"
    moved = await releases.advance(
        release.id,
        ReleaseState.PAUSED,
        ReleaseState.RENDERED,
        by,
        [TranscriptLine(at=now(), text=f"promoted to {target} by {by}{why}")],
        CanaryEvent(
            step=step - 1, weight=release.params.canary[step - 1].weight, what="promoted", by=by
        ),
        at_step=step - 1,
        canary_step=step,
    )
    if moved:
        await bus.publish(
            bus.subjects.rendered,
            ReleaseRendered(
                release_id=release.id, manifest_sha256=release.manifest_sha256, step=step
            ),
        )
    return moved
