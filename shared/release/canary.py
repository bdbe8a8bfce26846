"""Moving a canary release on, and taking its objects away: for the API and the tracker."""

import copy
import json

from shared.cluster.client import Cluster
from shared.cluster.manifest import Obj, canary_objects, is_route, objects
from shared.messaging.bus import Bus
from shared.models.base import now
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent, TranscriptLine
from shared.release import lifecycle
from shared.release.blue_green import remove_preview
from shared.release.lifecycle import Actor, Outcome
from shared.release.machine import PROMOTE, Promoted
from shared.store.releases import Releases

# On an HTTPRoute a canary split: its spec before the first step (JSON), or "" when the
# route did not exist; what an abort puts back.
BEFORE_CANARY = "fabu.io/before-canary"


async def route_for_step(cluster: Cluster, namespace: str, route: Obj) -> Obj:
    """The split HTTPRoute of a step, carrying what the live route was before the first."""
    live = await cluster.live(namespace, route)
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    before = annotations.get(BEFORE_CANARY)
    if before is None:
        before = json.dumps(live.get("spec") or {}, sort_keys=True) if live else ""
    route = copy.deepcopy(route)
    route["metadata"].setdefault("annotations", {})[BEFORE_CANARY] = before
    return route


def _spec(before: str, own: Obj) -> dict[str, object]:
    """The route's spec kept before the canary; the release's own route's (``own``, as
    its manifest has it) if the annotation was edited into something else."""
    try:
        kept = json.loads(before)
    except ValueError:
        kept = None
    return kept if isinstance(kept, dict) else dict(own.get("spec") or {})


async def _restore_route(cluster: Cluster, namespace: str, route: Obj, own: Obj) -> str:
    """Put back the HTTPRoute as it was before the canary (deleted if it was not there)."""
    name = f"HTTPRoute/{route['metadata']['name']}"
    live = await cluster.live(namespace, route)
    metadata = (live or {}).get("metadata") or {}
    annotations = dict(metadata.get("annotations") or {})
    before = annotations.pop(BEFORE_CANARY, None)
    if live is None or before is None:
        return ""
    if before == "":
        return name if await cluster.delete(namespace, route) else ""
    restored = Obj(
        apiVersion=live["apiVersion"],
        kind=live["kind"],
        metadata={
            "name": metadata["name"],
            "labels": metadata.get("labels") or {},
            "annotations": annotations,
        },
        spec=_spec(before, own),
    )
    await cluster.apply(namespace, restored)
    return f"{name} (its routes as before the canary)"


def _named(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


async def remove_canary(cluster: Cluster, release: Release) -> list[str]:
    """Delete the canary's objects, whatever step it reached, and put back an HTTPRoute it
    split unless the full rollout has applied the route of the release; what was done."""
    if release.params.blue_green is not None:
        return await remove_preview(cluster, release)
    removed = []
    own = {_named(o): o for o in objects(release.manifest) if is_route(o)}
    for obj in reversed(canary_objects(release.manifest, 50)):
        if is_route(obj):
            if release.in_canary and (
                done := await _restore_route(cluster, release.namespace, obj, own[_named(obj)])
            ):
                removed.append(done)
        elif await cluster.delete(release.namespace, obj):
            removed.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return removed


async def promote(
    releases: Releases, bus: Bus, release: Release, actor: Actor, why: str
) -> Outcome:
    """Move a paused canary to its next step (after the last: the full rollout), handing
    it to the deployer; :class:`Lost` when it was no longer paused at that step."""
    step = (release.canary_step or 0) + 1
    total = len(release.params.steps)
    weight = release.params.steps[step].weight if step < total else 100
    target = (
        f"canary step {step + 1} of {total} ({weight}% asked)"
        if step < total
        else f"the full rollout (after canary step {total} of {total})"
    )
    if release.params.blue_green is not None:
        target = release.params.step_name(step)
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
            step=step - 1, weight=release.params.steps[step - 1].weight, what="promoted", by=by
        ),
    )
