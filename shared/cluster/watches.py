"""Shared watches: one per cluster, namespace and resource, whatever the number of releases.

A watch keeps the newest version of every object, grouped by the workload it
belongs to (``Deployment/web``, ``StatefulSet/db``, ``DaemonSet/agent``: a
workload by its name, a ReplicaSet by its Deployment, a pod through its
ReplicaSet or directly by its StatefulSet or DaemonSet), and hands each change
to the queues subscribed to that workload. A release subscribes one queue to
its workloads, their ReplicaSets and their pods while it is tracked; a
service's live state (``shared.cluster.live``) reads a namespace's newest objects.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from shared.cluster.client import LISTED, Cluster
from shared.cluster.objects import KubeObject
from shared.errors import FabuError, TransientError
from shared.models.base import now

log = structlog.get_logger()
Obj = KubeObject
# (resource, event type, object): ("pods", "MODIFIED", {...}). Type "SYNC" is a
# listed object; "DELETED" a deleted one.
Update = tuple[str, str, Obj]
# Pods and ReplicaSets first: a new subscriber has them before it judges a workload.
RESOURCES = ("pods", "replicasets", "deployments", "statefulsets", "daemonsets")
# The kind of each workload resource (objects in a listing do not name their kind).
KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
RETRY_S = 2.0
SYNC_POLL_S = 0.05
# A namespace's watches stop after this long unused (no subscriber, no reader).
IDLE_S = 300.0


def workload_of(resource: str, obj: Obj) -> str | None:
    """The key of the workload an object belongs to (``Deployment/web``); a pod's
    ReplicaSet is ``<deployment>-<hash>``."""
    metadata = obj["metadata"]
    if resource in KINDS:
        return f"{KINDS[resource]}/{metadata['name']}"
    owners = metadata.get("ownerReferences") or []
    if resource == "replicasets":
        return next(
            (f"Deployment/{o['name']}" for o in owners if o.get("kind") == "Deployment"), None
        )
    template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
    for owner in owners:
        name, kind = str(owner.get("name", "")), owner.get("kind")
        if kind in ("StatefulSet", "DaemonSet"):
            return f"{kind}/{name}"
        if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return f"Deployment/{name[: -len(template_hash) - 1]}"
    return None


class NamespaceWatch:
    def __init__(self, cluster: Cluster, namespace: str, resource: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.resource = resource
        self.latest: dict[str, dict[str, Obj]] = {}
        self.subscribers: dict[str, set[asyncio.Queue[Update]]] = {}
        # Since when, and why, the watch has failed to reach the API server (None: it is fine).
        self.broken: tuple[datetime, str] | None = None
        # Set once the first listing is in: ``latest`` then holds the namespace.
        self.synced = asyncio.Event()
        # The names listed so far in a listing under way (None between listings).
        self._listing: set[str] | None = None
        # How many changes ``latest`` has taken: a reader's index is stale once it grows.
        self.changes = 0
        self.task = asyncio.create_task(self._run(), name=f"watch {namespace} {resource}")

    def subscribe(self, workload: str, queue: asyncio.Queue[Update]) -> None:
        self.subscribers.setdefault(workload, set()).add(queue)
        for obj in self.latest.get(workload, {}).values():
            queue.put_nowait((self.resource, "SYNC", obj))

    def unsubscribe(self, workload: str, queue: asyncio.Queue[Update]) -> None:
        queues = self.subscribers.get(workload, set())
        queues.discard(queue)
        if not queues:
            self.subscribers.pop(workload, None)

    def _record(self, kind: str, obj: Obj) -> None:
        deployment = workload_of(self.resource, obj)
        if deployment is None:
            return
        # Who wrote which field: the largest part of most objects, and never read here.
        obj["metadata"].pop("managedFields", None)
        self.changes += 1
        objects = self.latest.setdefault(deployment, {})
        if kind == "DELETED":
            objects.pop(obj["metadata"]["name"], None)
            if not objects:
                self.latest.pop(deployment)
        else:
            objects[obj["metadata"]["name"]] = obj
        for queue in self.subscribers.get(deployment, ()):
            queue.put_nowait((self.resource, kind, obj))

    def _listed(self) -> None:
        """A listing is complete: what it did not list was deleted meanwhile."""
        listed, self._listing = self._listing or set(), None
        for objects in list(self.latest.values()):
            for name in [n for n in objects if n not in listed]:
                self._record("DELETED", objects[name])
        self.synced.set()

    async def _run(self) -> None:
        while True:
            try:
                async for kind, obj in self.cluster.watch(self.namespace, self.resource):
                    self.broken = None
                    if kind == LISTED:
                        self._listed()
                        continue
                    if kind == "SYNC":
                        self._listing = self._listing or set()
                        self._listing.add(obj["metadata"]["name"])
                    self._record(kind, obj)
            except FabuError as exc:
                if self.broken is None:
                    self.broken = (now(), exc.message)
                log.warning(
                    "watch failed; restarting",
                    namespace=self.namespace,
                    resource=self.resource,
                    error=exc.message,
                )
            except Exception:
                log.exception(
                    "watch broke; restarting", namespace=self.namespace, resource=self.resource
                )
            await asyncio.sleep(RETRY_S)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task  # its own cancellation, asked for just above


class Subscription:
    """Some workloads' and their pods' changes, on one queue, until closed."""

    def __init__(self, watches: list[NamespaceWatch], workloads: list[str]) -> None:
        self.updates: asyncio.Queue[Update] = asyncio.Queue()
        self._watches = watches
        self._workloads = workloads
        for watch in watches:
            for workload in workloads:
                watch.subscribe(workload, self.updates)

    def unreachable(self) -> str:
        """Why the watches cannot follow the Deployment now ("" while they can)."""
        broken = [w.broken for w in self._watches if w.broken is not None]
        if not broken:
            return ""
        since, error = min(broken)
        return f"the cluster's API server has been unreachable since {since:%H:%M:%S} UTC: {error}"

    def close(self) -> None:
        for watch in self._watches:
            for workload in self._workloads:
                watch.unsubscribe(workload, self.updates)


@dataclass(frozen=True)
class Snapshot:
    latest: dict[str, dict[str, dict[str, Obj]]]
    changes: tuple[int, ...]


class Watches:
    """The watches of each namespace in use. A namespace's watches stop once nobody has
    subscribed to or read them for ``idle_s`` (checked whenever any is asked for)."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self._watches: dict[tuple[int, str, str], NamespaceWatch] = {}
        self._used: dict[tuple[int, str], float] = {}
        self._idle_s = idle_s

    def _reap(self, clock: float) -> None:
        for (cluster, namespace), used in list(self._used.items()):
            keys = [(cluster, namespace, r) for r in RESOURCES]
            group = [self._watches[k] for k in keys if k in self._watches]
            if clock - used < self._idle_s or any(w.subscribers for w in group):
                continue
            for watch in group:
                watch.task.cancel()
            for key in keys:
                self._watches.pop(key, None)
            del self._used[(cluster, namespace)]

    def _of(self, cluster: Cluster, namespace: str) -> list[NamespaceWatch]:
        clock = time.monotonic()
        self._reap(clock)
        self._used[(id(cluster), namespace)] = clock
        watches = []
        for resource in RESOURCES:
            key = (id(cluster), namespace, resource)
            if key not in self._watches:
                self._watches[key] = NamespaceWatch(cluster, namespace, resource)
            watches.append(self._watches[key])
        return watches

    def subscribe(self, cluster: Cluster, namespace: str, workloads: list[str]) -> Subscription:
        """Follow the workloads (``Deployment/web`` …) of a release in ``namespace``."""
        return Subscription(self._of(cluster, namespace), workloads)

    async def snapshot(self, cluster: Cluster, namespace: str, within_s: float) -> "Snapshot":
        """The newest objects of ``namespace``: resource → workload key → name → object,
        once every watch has listed it (TransientError when one cannot within ``within_s``),
        and the number of changes each watch has taken."""
        watches = self._of(cluster, namespace)
        clock = asyncio.get_running_loop().time
        deadline = clock() + within_s
        while not all(w.synced.is_set() for w in watches):
            # A watch that failed before its first listing: no use waiting for it.
            broken = [w.broken[1] for w in watches if w.broken and not w.synced.is_set()]
            if broken or clock() > deadline:
                why = broken[0] if broken else f"no listing within {within_s:.0f} s"
                raise TransientError(f"cannot list namespace {namespace!r}: {why}")
            await asyncio.sleep(SYNC_POLL_S)
        return Snapshot({w.resource: w.latest for w in watches}, tuple(w.changes for w in watches))

    async def stop(self) -> None:
        for watch in self._watches.values():
            await watch.stop()
        self._watches.clear()
        self._used.clear()
