"""A blue-green release's objects at each step, for the deployer and the tracker.

Step 0, *the preview*: ``<name>-preview`` runs the new version at the main
Deployment's size, its pods out of the active Services' reach, each active Service
copied as ``<service>-preview`` for the preview's own traffic (and its analysis).
Step 1, *the switch*: each active Service selects the preview's pods, carrying
its selector from before in an annotation; the old version keeps running for
``scale_down_delay_s``, ready to take the traffic back on an abort. The full
rollout then moves the main Deployment to the new version while the active
Services stay on the preview; once it is done they are applied as the manifest
has them (the main pods, now of the new version) and the preview is deleted.
An abort before the switch switches nothing.
"""

import copy
import json

from shared.cluster.client import Cluster
from shared.cluster.manifest import (
    Obj,
    active_services,
    canary_target,
    objects,
    preview_objects,
    preview_selector,
)
from shared.models.release import Release
from shared.models.release_parts import CanaryEvent

# On an active Service switched to the preview: its selector before (JSON), or "" when
# the Service did not exist.
BEFORE_SWITCH = "fabu.io/before-switch"
PREVIEW, SWITCH = 0, 1


def _active(release: Release) -> tuple[Obj, list[Obj]]:
    docs = objects(release.manifest)
    deployment = canary_target(docs)
    if deployment is None:
        raise ValueError("the manifest names no Deployment for the preview")
    return deployment, active_services(docs, deployment)


async def step_objects(cluster: Cluster, release: Release) -> tuple[list[Obj], CanaryEvent, str]:
    """What to apply at the release's blue-green step, its event and a transcript line."""
    step = release.canary_step or 0
    preview = preview_objects(release.manifest)
    deployment = next(o for o in preview if o["kind"] == "Deployment")
    replicas = int(deployment["spec"]["replicas"])
    name = deployment["metadata"]["name"]
    if step == PREVIEW:
        services = ", ".join(o["metadata"]["name"] for o in preview if o["kind"] == "Service")
        line = (
            f"the preview: {name} with {replicas} pods of the new version, reached through "
            f"{services or 'no Service'}; the active Services stay on the old version"
        )
        event = CanaryEvent(step=step, weight=0, what="applied", replicas=replicas)
        return preview, event, line
    main, active = _active(release)
    switched = []
    for service in active:
        live = await cluster.live(release.namespace, service)
        annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
        before = annotations.get(BEFORE_SWITCH)
        if before is None:
            selector = ((live or {}).get("spec") or {}).get("selector")
            before = json.dumps(selector, sort_keys=True) if live else ""
        moved = copy.deepcopy(service)
        moved["metadata"].setdefault("annotations", {})[BEFORE_SWITCH] = before
        moved["spec"]["selector"] = preview_selector(main)
        switched.append(moved)
    names = ", ".join(f"Service {s['metadata']['name']}" for s in switched) or "no Service"
    delay = release.params.blue_green.scale_down_delay_s if release.params.blue_green else 0
    line = (
        f"the switch: {names} {'sends its' if len(switched) == 1 else 'send their'} traffic "
        f"to {name}'s pods (the new version); the "
        f"old version stays {delay}s, then the main Deployment takes the new version"
    )
    event = CanaryEvent(step=step, weight=100, what="applied", replicas=replicas, detail=names)
    return [*preview, *switched], event, line


async def switched(cluster: Cluster, release: Release) -> set[str]:
    """The names of the active Services now switched to the preview: only those can be,
    so only those are read."""
    names = set()
    for service in _active(release)[1]:
        live = await cluster.live(release.namespace, service)
        annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
        if BEFORE_SWITCH in annotations:
            names.add(service["metadata"]["name"])
    return names


def _selector(before: str, service: Obj) -> dict[str, str]:
    """The selector kept before the switch; the manifest's own if it was edited into
    something else than a selector."""
    try:
        kept = json.loads(before)
    except ValueError:
        kept = None
    if isinstance(kept, dict) and all(isinstance(v, str) for v in kept.values()):
        return {str(k): v for k, v in kept.items()}
    return dict((service.get("spec") or {}).get("selector") or {})


async def remove_preview(cluster: Cluster, release: Release) -> list[str]:
    """Put each switched Service back (before the full rollout: as it was; after it: as
    the manifest has it), then delete the preview; what was done."""
    done = []
    _, active = _active(release)
    for service in active:
        live = await cluster.live(release.namespace, service)
        annotations = dict(((live or {}).get("metadata") or {}).get("annotations") or {})
        before = annotations.pop(BEFORE_SWITCH, None)
        name = f"Service/{service['metadata']['name']}"
        if live is None or before is None:
            continue
        if not release.in_canary:
            await cluster.apply(release.namespace, service)
            done.append(f"{name} back on the main pods (the new version)")
        elif before == "":
            await cluster.delete(release.namespace, service)
            done.append(f"{name} (it did not exist before the switch)")
        else:
            restored = copy.deepcopy(service)
            restored["spec"]["selector"] = _selector(before, service)
            await cluster.apply(release.namespace, restored)
            done.append(f"{name} switched back to the old version")
    for obj in reversed(preview_objects(release.manifest)):
        if await cluster.delete(release.namespace, obj):
            done.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return done
