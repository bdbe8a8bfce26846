"""What a service owns in its environment's namespace, and what a release would prune.

Every object a release applies carries ``fabu.io/service`` and
``fabu.io/environment`` (added when the manifest is rendered), and the release
keeps its inventory. After a release succeeds, the objects of that service
and environment that its manifest no longer has are deleted: found by those
labels among the kinds of this and earlier releases' inventories, and also
among the common kinds below when what was applied before is not all known (a
preview, or an earlier release recorded before releases kept inventories). An
object annotated ``fabu.io/prune: "false"`` is kept, and so is a canary's (the
canary removes its own).
"""

import asyncio
from collections.abc import Iterable

from shared.cluster.client import Cluster
from shared.cluster.manifest import (
    CANARY,
    ENVIRONMENT_LABEL,
    PRUNE_ANNOTATION,
    SERVICE_LABEL,
    TRACK_LABEL,
    Obj,
)
from shared.models.release_parts import Owned

# Looked for when the earlier inventories are not all known: what a team's service holds
# most often. Each kind is one listing per release that succeeds.
COMMON = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
)


def key(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj['metadata']['name']}"


async def leftovers(
    cluster: Cluster,
    namespace: str,
    service: str,
    environment: str,
    inventory: list[Owned],
    earlier: Iterable[Owned] | None = None,
) -> list[Obj]:
    """The service's objects there that ``inventory`` no longer has, and may be pruned:
    looked for among the kinds of ``inventory`` and of ``earlier`` (what the service's
    earlier releases there applied), and among COMMON too when ``earlier`` is None (not
    known)."""
    keep = {o.key for o in inventory}
    known = [*inventory, *(earlier or ())]
    kinds = dict.fromkeys(
        [*(COMMON if earlier is None else ()), *((o.api_version, o.kind) for o in known)]
    )
    selector = f"{SERVICE_LABEL}={service},{ENVIRONMENT_LABEL}={environment}"
    listings = await asyncio.gather(
        *(cluster.labelled(namespace, api_version, kind, selector) for api_version, kind in kinds)
    )
    found = []
    for obj in (obj for listing in listings for obj in listing):
        metadata = obj["metadata"]
        if (
            key(obj) in keep
            or (metadata.get("annotations") or {}).get(PRUNE_ANNOTATION) == "false"
            or (metadata.get("labels") or {}).get(TRACK_LABEL) == CANARY
            or metadata.get("deletionTimestamp")
        ):
            continue
        found.append(obj)
    return sorted(found, key=key)


async def prune(cluster: Cluster, namespace: str, objects: list[Obj]) -> list[str]:
    """Delete ``objects`` (their dependents in the background); what was deleted."""
    return [key(obj) for obj in objects if await cluster.delete(namespace, obj)]
