"""One Deployment watch per cluster and namespace, shared by every release tracked there.

Each watch keeps the newest object per Deployment name and hands every change
to the subscribers of that name; a release subscribes while it is tracked.
"""

import asyncio
import contextlib
from typing import Any

import structlog

from shared.cluster import Cluster
from shared.errors import FabuError

log = structlog.get_logger()
Obj = dict[str, Any]
RETRY_S = 2.0


class Subscription:
    def __init__(self, watch: "NamespaceWatch", name: str) -> None:
        self.watch = watch
        self.name = name
        # None means the Deployment was deleted.
        self.updates: asyncio.Queue[Obj | None] = asyncio.Queue()

    def close(self) -> None:
        self.watch.unsubscribe(self)


class NamespaceWatch:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.latest: dict[str, Obj] = {}
        self.subscribers: dict[str, set[Subscription]] = {}
        self.task = asyncio.create_task(self._run(), name=f"watch {namespace}")

    def subscribe(self, name: str) -> Subscription:
        subscription = Subscription(self, name)
        self.subscribers.setdefault(name, set()).add(subscription)
        if name in self.latest:
            subscription.updates.put_nowait(self.latest[name])
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self.subscribers.get(subscription.name, set())
        subscribers.discard(subscription)
        if not subscribers:
            self.subscribers.pop(subscription.name, None)

    async def _run(self) -> None:
        while True:
            try:
                async for kind, obj in self.cluster.watch_deployments(self.namespace):
                    name = obj["metadata"]["name"]
                    if kind == "DELETED":
                        self.latest.pop(name, None)
                    else:
                        self.latest[name] = obj
                    for subscription in self.subscribers.get(name, ()):
                        subscription.updates.put_nowait(None if kind == "DELETED" else obj)
            except FabuError as exc:
                log.warning("watch failed; restarting", namespace=self.namespace, error=exc.message)
            except Exception:
                log.exception("watch broke; restarting", namespace=self.namespace)
            await asyncio.sleep(RETRY_S)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Watches:
    def __init__(self) -> None:
        self._watches: dict[tuple[int, str], NamespaceWatch] = {}

    def subscribe(self, cluster: Cluster, namespace: str, name: str) -> Subscription:
        key = (id(cluster), namespace)
        if key not in self._watches:
            self._watches[key] = NamespaceWatch(cluster, namespace)
        return self._watches[key].subscribe(name)

    async def stop(self) -> None:
        for watch in self._watches.values():
            await watch.stop()
        self._watches.clear()
