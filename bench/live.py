"""``live``: what watching costs: the live state of 1,000 services read through one
``Observer``: its requests to the API server and the memory of its watches, without a
release to compare, with the drift check, and within the drift check's keep time."""

import asyncio
import time
import tracemalloc
import uuid
from collections import Counter
from typing import Any

import yaml

from bench.harness import Bench, limited
from bench.readings import Row
from devstack.system import FabuSystem
from shared.cluster.client import Cluster
from shared.cluster.live import Observer, ServiceState
from shared.ids import ReleaseId, TemplateId
from shared.models.catalog import BaseParams
from shared.models.release import Release
from shared.models.release_parts import Workload
from shared.store.mongo import new_id

LIVE = 1000


class Counting:
    """Counts a cluster client's requests (watches included), by method."""

    def __init__(self, cluster: Cluster) -> None:
        self.counts: Counter[str] = Counter()
        call = cluster._call

        async def counted(method: str, path: str, **kwargs: Any) -> Any:
            self.counts[method] += 1
            return await call(method, path, **kwargs)

        cluster._call = counted  # type: ignore[method-assign]

    def take(self) -> str:
        taken = ", ".join(f"{n} {m}" for m, n in sorted(self.counts.items())) or "none"
        self.counts.clear()
        return taken


async def live_cost(bench: Bench, count: int) -> dict[str, str]:
    namespace = f"bench-live-{uuid.uuid4().hex[:6]}"
    bench.kubectl("create", "namespace", namespace)
    names = [f"live{i}" for i in range(count)]
    manifests = {n: bench.manifest(n, namespace, "1.0.0") for n in names}

    async def apply(name: str) -> None:
        for obj in yaml.safe_load_all(manifests[name]):
            await bench.cluster.apply(namespace, obj)

    await limited(50, [apply(n) for n in names])
    pods: list[Any] = []
    for _ in range(600):
        pods = await bench.cluster.items(namespace, "pods")
        if len(pods) >= count:
            break
        await asyncio.sleep(0.5)
    releases = {
        n: Release(
            id=ReleaseId(new_id()),
            service=n,
            environment="b",
            version="1.0.0",
            image=bench.image(n, "1.0.0"),
            template_id=TemplateId("bench"),
            config_version=1,
            params=BaseParams(replicas=1),
            namespace=namespace,
            manifest=manifests[n],
            workloads=[Workload(kind="Deployment", name=n, generation=1)],
        )
        for n in names
    }
    counting = Counting(bench.cluster)
    observer = Observer()
    got: dict[str, str] = {"pods": str(len(pods))}
    tracemalloc.start()
    try:
        started = time.perf_counter()
        await observer.watches.snapshot(bench.cluster, namespace, 60)
        got["list_s"] = f"{time.perf_counter() - started:.2f}"
        got["list_requests"] = counting.take()
        got["memory_mb"] = f"{tracemalloc.get_traced_memory()[0] / 2**20:.1f}"

        async def states(with_release: bool) -> tuple[float, list[ServiceState]]:
            started = time.perf_counter()
            found = await limited(
                16,
                [
                    observer.state(
                        bench.cluster,
                        n,
                        "b",
                        namespace,
                        releases[n] if with_release else None,
                        None,
                    )
                    for n in names
                ],
            )
            return time.perf_counter() - started, found

        took, found = await states(False)
        got["bare_s"], got["bare_requests"] = f"{took:.2f}", counting.take()
        got["health"] = str(dict(Counter(s.health.value for s in found)))
        took, found = await states(True)
        got["drift_s"], got["drift_requests"] = f"{took:.2f}", counting.take()
        got["sync"] = str(dict(Counter(s.sync for s in found)))
        took, _ = await states(True)
        got["kept_s"], got["kept_requests"] = f"{took:.2f}", counting.take()
        got["memory_after_mb"] = f"{tracemalloc.get_traced_memory()[0] / 2**20:.1f}"
    finally:
        tracemalloc.stop()
        await observer.stop()
        bench.kubectl("delete", "namespace", namespace, "--wait=false")
    return got


async def live_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"watching {LIVE} services' live state...", flush=True)
    got = await live_cost(bench, LIVE)
    return [
        (f"live state, {LIVE} services ({got['pods']} pods): first listing (s)", got["list_s"], ""),
        ("  requests for it (5 lists, 5 watches)", got["list_requests"], ""),
        ("  memory of the watches (MB, Python allocations)", got["memory_mb"], ""),
        (f"  {LIVE} states, no release to compare (s)", got["bare_s"], ""),
        ("    requests", got["bare_requests"], "none"),
        ("    health", got["health"], ""),
        (f"  {LIVE} states with drift checks (s)", got["drift_s"], ""),
        ("    requests", got["drift_requests"], "2 per object"),
        ("    sync", got["sync"], ""),
        (f"  {LIVE} states again, drift kept (s)", got["kept_s"], ""),
        ("    requests", got["kept_requests"], "none"),
        ("  memory after the states (MB)", got["memory_after_mb"], ""),
    ]
