"""A service's live state in an environment, observed in the cluster, not read from records.

For each workload the service has there (its objects carry the
``fabu.io/service`` and ``fabu.io/environment`` labels): the images its pods
run, its desired, ready and updated counts, and a health word as kubectl and
Argo CD mean it:

``Healthy``      the rollout is done (kubectl's rule) and its pods are Ready;
``Progressing``  the rollout is still under way;
``Degraded``     its progress deadline passed, a current pod shows a cause
                 (``CrashLoopBackOff``, ``ImagePullBackOff``, unschedulable),
                 or the release that applied it failed and it is not done;
``Suspended``    a paused Deployment;
``Missing``      the release applied it, and it is not there.

The service's health is its worst workload's. Then which release it is: the
last release that changed the workloads (one that was applied, not a canary
that ended at a canary step), and whether the cluster still holds exactly
that release's manifest: each object's live version against a server-side
dry run of the release's version of it, field by field (``Synced`` or
``OutOfSync`` with the drifted fields). Fields that another controller owns
by design are not drift: a workload's ``spec.replicas`` when a
HorizontalPodAutoscaler scales it, and any field whose manager is a
controller (``CONTROLLERS``).

The workloads and pods come from one shared set of watches per namespace
(``shared.cluster.watches``), so reading a state costs no request for them; the drift
check costs a read and a dry run per object of the manifest, and is kept
(``DRIFT_KEEP_S``) while the workloads' versions do not change.
"""

import asyncio
import json
import time
from collections import Counter
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel

from shared.cluster.causes import pod_cause
from shared.cluster.client import Cluster
from shared.cluster.manifest import ENVIRONMENT_LABEL, SERVICE_LABEL
from shared.cluster.objects import REVISION, Json, KubeObject, owner
from shared.cluster.rollout import ONLY_ROLLING_UPDATE, VIEWERS
from shared.cluster.watches import KINDS, Snapshot, Watches
from shared.errors import FabuError
from shared.models.base import now
from shared.models.parameters import hidden_in
from shared.models.release import Release
from shared.release.machine import ReleaseState
from shared.secrets import MASK, Secrets

Obj = KubeObject
# The managers (their names' beginnings) that own fields by design.
CONTROLLERS = ("kube-controller-manager", "vpa-", "keda", "cluster-autoscaler")
SERVER_WRITTEN = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")
DRIFT_KEEP_S = 30.0
LIST_WITHIN_S = 10.0
RESOURCES = {kind: resource for resource, kind in KINDS.items()}


class Health(StrEnum):
    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"


# Argo CD's order, least to most worrying: a service is as healthy as its worst workload.
WORST = list(Health)


class Running(BaseModel):
    image: str
    pods: int


class WorkloadState(BaseModel):
    kind: str
    name: str
    health: Health
    # kubectl's status line, or the cause: why it is not Healthy ("" when it is).
    message: str = ""
    images: list[Running] = []
    desired: int = 0
    ready: int = 0
    updated: int = 0


class Drift(BaseModel):
    object: str  # "Deployment/hello"
    field: str  # "spec.replicas", "spec.template.spec.containers[app].image"
    live: Any = None
    release: Any = None


class Matched(BaseModel):
    """The release whose manifest the state is compared with."""

    id: str
    version: str
    state: ReleaseState
    finished_at: datetime | None = None


class ServiceState(BaseModel):
    service: str
    environment: str
    namespace: str
    health: Health
    sync: Literal["Synced", "OutOfSync", "Unknown"]
    # What the pods run, all workloads together, most pods first.
    images: list[Running] = []
    workloads: list[WorkloadState] = []
    release: Matched | None = None
    drift: list[Drift] = []
    last_good: Matched | None = None
    # Why part of the state could not be observed ("" when all of it was).
    error: str = ""
    observed_at: datetime


def matched(release: Release | None) -> Matched | None:
    if release is None:
        return None
    return Matched(
        id=release.id,
        version=release.version,
        state=release.state,
        finished_at=release.finished_at,
    )


def _pods_running(pods: list[Obj]) -> list[Running]:
    images: Counter[str] = Counter()
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            images[str(container.get("image", ""))] += 1
    return [Running(image=i, pods=n) for i, n in images.most_common()]


def _current(kind: str, obj: Obj, pods: list[Obj], replica_sets: list[Obj]) -> list[Obj]:
    """The pods of the workload's current revision (all of them for a DaemonSet)."""
    if kind == "Deployment":
        revision = (obj["metadata"].get("annotations") or {}).get(REVISION)
        news = {
            rs["metadata"]["name"]
            for rs in replica_sets
            if (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
        }
        return [p for p in pods if owner(p, "ReplicaSet") in news]
    update = (obj.get("status") or {}).get("updateRevision")
    if kind == "StatefulSet" and update:
        return [
            p
            for p in pods
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == update
        ]
    return pods


def _counts(kind: str, obj: Obj) -> tuple[int, int, int]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "DaemonSet":
        return (
            int(status.get("desiredNumberScheduled", 0)),
            int(status.get("numberReady", 0)),
            int(status.get("updatedNumberScheduled", 0)),
        )
    return (
        int(spec.get("replicas", 1)),
        int(status.get("readyReplicas", 0)),
        int(status.get("updatedReplicas", 0)),
    )


def workload_state(
    kind: str, obj: Obj, pods: list[Obj], replica_sets: list[Obj], gave_up: bool = False
) -> WorkloadState:
    """One workload's state from its live object, its pods and (a Deployment's) ReplicaSets;
    ``gave_up``: the release that applied it failed."""
    alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    desired, ready, updated = _counts(kind, obj)
    state = WorkloadState(
        kind=kind,
        name=obj["metadata"]["name"],
        health=Health.HEALTHY,
        images=_pods_running(alive),
        desired=desired,
        ready=ready,
        updated=updated,
    )
    if kind == "Deployment" and (obj.get("spec") or {}).get("paused"):
        state.health, state.message = Health.SUSPENDED, "the Deployment is paused"
        return state
    status = VIEWERS[kind](obj, 0)
    done = status.done or (status.message == ONLY_ROLLING_UPDATE and ready >= desired)
    causes = [c for p in _current(kind, obj, alive, replica_sets) if (c := pod_cause(p))]
    if status.failed or causes:
        state.health, state.message = Health.DEGRADED, causes[0] if causes else status.message
    elif not done:
        state.health, state.message = Health.PROGRESSING, status.message
        if gave_up:
            state.health = Health.DEGRADED
            state.message = f"the release that applied it failed; {status.message}"
    return state


def _paths(fields: Json, prefix: str = "") -> set[str]:
    """The fields a managed-fields entry (FieldsV1) owns, as paths in ``differences``' form."""
    paths = set()
    for key, sub in fields.items():
        if key == ".":
            continue
        if key.startswith("f:"):
            path = f"{prefix}.{key[2:]}" if prefix else key[2:]
        elif key.startswith("k:"):
            item = json.loads(key[2:])
            path = f"{prefix}[{item.get('name', json.dumps(item, sort_keys=True))}]"
        else:
            path = f"{prefix}[{key}]"
        if isinstance(sub, dict) and sub:
            paths |= _paths(sub, path)
        else:
            paths.add(path)  # a leaf: the field itself (a parent owns only its children)
    return paths


def controlled(live: Obj) -> set[str]:
    """The paths that controllers own by design in ``live`` (its managed fields)."""
    owned: set[str] = set()
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        manager = str(entry.get("manager", ""))
        if manager.startswith(CONTROLLERS) and entry.get("subresource") != "status":
            owned |= _paths(entry.get("fieldsV1") or {})
    return owned


def clean(obj: Obj | None) -> Json:
    """The object as a comparison sees it: without its status and what the server writes."""
    if obj is None:
        return {}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_WRITTEN}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}


def _named(items: list[Any]) -> dict[str, Any] | None:
    if items and all(isinstance(i, dict) and "name" in i for i in items):
        return {str(i["name"]): i for i in items}
    return None


def differences(live: Any, would: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where two objects differ, as (path, live value, release value), leaves first found."""
    if isinstance(live, dict) and isinstance(would, dict):
        found = []
        for key in sorted(set(live) | set(would)):
            sub = f"{path}.{key}" if path else str(key)
            found += differences(live.get(key), would.get(key), sub)
        return found
    if isinstance(live, list) and isinstance(would, list):
        by_live, by_would = _named(live), _named(would)
        if by_live is not None and by_would is not None:
            found = []
            for name in sorted(set(by_live) | set(by_would)):
                found += differences(by_live.get(name), by_would.get(name), f"{path}[{name}]")
            return found
    return [] if live == would else [(path, live, would)]


def _scaled(objects: list[Obj]) -> set[str]:
    """The workloads (``Deployment/web``) a HorizontalPodAutoscaler of the manifest scales."""
    targets = set()
    for obj in objects:
        if obj.get("kind") == "HorizontalPodAutoscaler":
            ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
            targets.add(f"{ref.get('kind')}/{ref.get('name')}")
    return targets


async def drift(
    cluster: Cluster, namespace: str, manifest: str, hidden: list[str] | None = None
) -> list[Drift]:
    """Each field where the live objects differ from a server-side dry run of ``manifest``;
    a Secret's values are never shown, nor ``hidden`` (the release's secrets) anywhere."""
    loaded = yaml.load_all(manifest, Loader=yaml.CSafeLoader)
    objects = [cast(Obj, d) for d in loaded if isinstance(d, dict)]
    scaled = _scaled(objects)

    async def one(obj: Obj) -> list[Drift]:
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        live = await cluster.live(namespace, obj)
        if live is None:
            return [Drift(object=key, field="", live=None, release="the object")]
        would = await cluster.apply(namespace, obj, dry_run=True)
        ignored = controlled(live) | ({"spec.replicas"} if key in scaled else set())
        secret = obj["kind"] == "Secret"
        return [
            Drift(
                object=key,
                field=path,
                live=MASK if secret and a is not None else hidden_in(a, hidden or []),
                release=MASK if secret and b is not None else hidden_in(b, hidden or []),
            )
            for path, a, b in differences(clean(live), clean(would))
            if not any(path == i or path.startswith((f"{i}.", f"{i}[")) for i in ignored)
        ]

    found = await asyncio.gather(*(one(obj) for obj in objects))
    return [d for part in found for d in part]


class Observer:
    """Live states, from the watches of each environment's namespace (started on first use)."""

    def __init__(self, secrets: Secrets | None = None) -> None:
        self.watches = Watches()
        # Opens the manifests that hold secrets, to compare the cluster with them.
        self.secrets = secrets or Secrets("")
        # (cluster, namespace) → (the watches' change counts, the workloads by owner).
        self._index: dict[tuple[int, str], tuple[tuple[int, ...], dict[Any, Any]]] = {}
        # (cluster, namespace, service) → (when, the release and its workloads' versions,
        # the drift found then).
        self._drift: dict[tuple[int, str, str], tuple[float, tuple[str, ...], list[Drift]]] = {}

    async def state(
        self,
        cluster: Cluster,
        service: str,
        environment: str,
        namespace: str,
        release: Release | None,
        last_good: Release | None,
    ) -> ServiceState:
        """``release``: the last one applied whole (``Release.applied_whole``), if any."""
        state = ServiceState(
            service=service,
            environment=environment,
            namespace=namespace,
            health=Health.UNKNOWN,
            sync="Unknown",
            release=matched(release),
            last_good=matched(last_good),
            observed_at=now(),
        )
        try:
            snapshot = await self.watches.snapshot(cluster, namespace, LIST_WITHIN_S)
        except FabuError as exc:
            state.error = exc.message
            return state
        latest = snapshot.latest
        found = self._owned(cluster, namespace, snapshot).get((service, environment), {})
        gave_up = release is not None and release.state is ReleaseState.FAILED
        for key, obj in sorted(found.items()):
            kind = key.partition("/")[0]
            pods = list(latest["pods"].get(key, {}).values())
            replica_sets = list(latest["replicasets"].get(key, {}).values())
            state.workloads.append(workload_state(kind, obj, pods, replica_sets, gave_up))
        for expected in release.workloads if release else []:
            if expected.key not in found:
                state.workloads.append(
                    WorkloadState(
                        kind=expected.kind,
                        name=expected.name,
                        health=Health.MISSING,
                        message=f"release {release.id if release else ''} applied it; "
                        "it is not in the cluster",
                    )
                )
        healths = [w.health for w in state.workloads] or [Health.MISSING]
        state.health = max(healths, key=WORST.index)
        images: Counter[str] = Counter()
        for workload in state.workloads:
            for running in workload.images:
                images[running.image] += running.pods
        state.images = [Running(image=i, pods=n) for i, n in images.most_common()]
        if release is None or not release.manifest:
            state.sync = "OutOfSync" if found else "Unknown"
            return state
        versions = tuple(
            f"{key}@{obj['metadata'].get('resourceVersion')}" for key, obj in sorted(found.items())
        )
        try:
            state.drift = await self._drifted(cluster, namespace, release, versions)
        except FabuError as exc:
            state.error = f"cannot compare with release {release.id}: {exc.message}"
            return state
        state.sync = "OutOfSync" if state.drift else "Synced"
        return state

    def _owned(
        self, cluster: Cluster, namespace: str, snapshot: Snapshot
    ) -> dict[tuple[str, str], dict[str, Obj]]:
        """The namespace's workloads by the service and environment labelled on them:
        (service, environment) → workload key → object; made again once the watches
        have taken a change."""
        key = (id(cluster), namespace)
        kept = self._index.get(key)
        if kept is not None and kept[0] == snapshot.changes:
            return kept[1]
        index: dict[tuple[str, str], dict[str, Obj]] = {}
        for resource in KINDS:
            for workload, objects in snapshot.latest[resource].items():
                for obj in objects.values():
                    labels = obj["metadata"].get("labels") or {}
                    owner = (labels.get(SERVICE_LABEL), labels.get(ENVIRONMENT_LABEL))
                    if owner[0] and owner[1]:
                        index.setdefault((str(owner[0]), str(owner[1])), {})[workload] = obj
        self._index[key] = (snapshot.changes, index)
        return index

    async def _drifted(
        self, cluster: Cluster, namespace: str, release: Release, versions: tuple[str, ...]
    ) -> list[Drift]:
        key = (id(cluster), namespace, release.service)
        versions = (release.id, *versions)
        kept = self._drift.get(key)
        clock = time.monotonic()
        if kept is not None and kept[1] == versions and clock - kept[0] < DRIFT_KEEP_S:
            return kept[2]
        hidden = release.params.hidden(self.secrets.open) if release.sealed_manifest else []
        found = await drift(cluster, namespace, self.secrets.manifest(release), hidden)
        self._drift[key] = (clock, versions, found)
        return found

    async def stop(self) -> None:
        await self.watches.stop()
