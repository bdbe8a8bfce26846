"""``make bench``: Fabu's release pipeline measured on the local real stack; prints a table.

``python -m bench <part>...`` runs only the named parts, in the order given:

- latency: added latency per release, 50 releases one after another:
  (request accepted → apply sent) + (Deployment complete, as seen by this
  program's own watch → release ``succeeded`` stored).
- kubectl: the article's method against Fabu for the same 20 Deployments,
  all 20 at once: ``kubectl apply -f`` + ``kubectl rollout status`` (the
  built kubectl) per service, against 20 Fabu releases.
- throughput: 500 releases of 500 services at once against a direct
  server-side apply of the same manifests: each release's time in each step
  (STEPS), every process's CPU seconds, py-spy profiles of the stages (kept in
  the run's log folder); then the peak memory of each stage process so far.
- intake: the API alone (the renderer stopped meanwhile): 500 release requests
  of 500 services at once, the requests per second it accepted and the CPU
  each process spent per request, profiled; then the renderer started again
  and the 500 released.
- flight: 1,000 releases whose pods never become Ready (so they stay
  tracked), followed by one tracker; cancelled; then 1,000 more followed by
  two trackers. Counted from each tracker's ``fabu_releases_tracked``.
- steady: 10 releases in flight at all times (40 services alternating two
  versions) for a minute's warm-up and then 10 minutes; the memory of every
  process at the start and at the end of those 10 minutes.
- render: what rendering in worker processes within a budget costs: the demo
  template rendered 500 times in this process, then 500 at once through
  ``shared.templating.sandbox.Renderers`` (two worker processes, as each renderer and API
  process keeps by default): renders per second and each render's time.
- live: what watching costs: 1,000 services (a Service and a one-pod
  Deployment each) applied straight to one namespace; then the live state of
  each read through one ``shared.cluster.live.Observer``: the requests to the API
  server and the memory (Python's allocations) of its watches, the states
  without a release to compare, then with one (the drift check: a read and a
  dry run per object), then again within the drift check's keep time.
- list: the release list (50 rows) with 1,000, 10,000 and 100,000 records
  stored: copies of a real finished release (manifest, transcript, pod
  timeline and all) over 500 services, 3 environments and 20 operators; 3
  requests per query shape. It stops growing the collection once the
  newest-first page takes more than 10 s (FerretDB sorts in memory).
"""

import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import nats
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pymongo import AsyncMongoClient

from bench.profile import RATE, Profiler, Sampled, cpu_seconds, rows_scanned, used_between
from devstack.registry import push_image
from devstack.stack import Stack, free_port
from devstack.system import STAGES, FabuSystem, new_token
from shared.cluster.client import LISTED, Cluster, Clusters
from shared.cluster.live import Observer, ServiceState
from shared.cluster.rollout import rollout_status
from shared.cluster.throttle import Gate
from shared.ids import ReleaseId, TemplateId
from shared.messaging.subjects import Subjects
from shared.models.catalog import BaseParams, Environment
from shared.models.release import Release
from shared.models.release_parts import Workload
from shared.store.mongo import new_id
from shared.templating.render import ReleaseParams, render
from shared.templating.sandbox import Budget, Renderers

TEMPLATE = (Path(__file__).parents[1] / "devstack" / "demo" / "web-service.yaml.j2").read_text()
FINAL = {"succeeded", "failed"}
LIST_SIZES = (1_000, 10_000, 100_000)
LIST_GIVE_UP_S = 10.0
SERVICES = 500
FLIGHT = 1000
STEADY = 10
STEADY_WARM_S = 60.0
STEADY_S = 600.0
LIVE = 1000
T = TypeVar("T")
Row = tuple[str, str, str]


async def until_true(check: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"releases did not finish within {within_s:.0f}s")
        await asyncio.sleep(0.01)


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CompletionWatch:
    """This program's own watch: when each Deployment first completed with a given image."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.completed: dict[tuple[str, str], float] = {}
        self.task = asyncio.create_task(self._run(cluster, namespace))

    async def _run(self, cluster: Cluster, namespace: str) -> None:
        async for kind, obj in cluster.watch(namespace, "deployments"):
            if kind == LISTED:
                continue
            seen = time.time()
            image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            key = (obj["metadata"]["name"], image)
            if key not in self.completed and rollout_status(obj).done:
                self.completed[key] = seen

    async def wait(self, keys: list[tuple[str, str]], within: float = 300) -> None:
        deadline = time.monotonic() + within
        while not all(k in self.completed for k in keys):
            if time.monotonic() > deadline:
                raise RuntimeError("deployments did not complete in time")
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self.task.cancel()


class Bench:
    def __init__(
        self,
        env: dict[str, str],
        api: httpx.AsyncClient,
        releasing: aiohttp.ClientSession,
        cluster: Cluster,
    ) -> None:
        self.env = env
        self.api = api
        # Release requests go through aiohttp: with hundreds at once, httpx's pool took
        # more CPU in this program (22 ms a request) than the API spent answering them.
        self.releasing = releasing
        self.cluster = cluster
        self.template_id = ""
        self.registry = env["FABU_REGISTRY_URL"].removeprefix("http://")
        # Release id → "succeeded" or "failed", as published (see watch_outcomes).
        self.ended: dict[str, str] = {}
        # Release id → when its request was sent, and when its answer came (time.time()).
        self.asked: dict[str, tuple[float, float]] = {}
        self.nats: NatsClient | None = None

    def kubectl(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - kubectl from the stack, arguments built here
            [self.env["FABU_KUBECTL"], f"--kubeconfig={self.env['KUBECONFIG']}", *args],
            check=True,
            capture_output=True,
        )

    def namespace(self, prefix: str) -> str:
        name = f"bench-{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        return name

    def drop(self, namespace: str) -> None:
        """Delete a namespace and wait until it is gone: the next part finds the nodes and
        the control plane as they were, not busy deleting hundreds of pods."""
        self.kubectl("delete", "namespace", namespace, "--timeout=600s")

    async def environment(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        body = {"name": name, "namespace": name, "kubeconfig": self.env["KUBECONFIG"]}
        (await self.api.post("/environments", json=body)).raise_for_status()
        if not self.template_id:
            template = await self.api.post("/templates", json={"name": "web", "content": TEMPLATE})
            self.template_id = template.raise_for_status().json()["id"]
        return name

    async def service(self, name: str, environment: str, **params: Any) -> None:
        body = {"name": name, "image_repository": f"{self.registry}/bench/{name}", "team": "b"}
        (await self.api.post("/services", json=body)).raise_for_status()
        config = {"template_id": self.template_id, "params": {"replicas": 1, **params}}
        put = await self.api.put(f"/services/{name}/config/{environment}", json=config)
        put.raise_for_status()

    async def push(self, service: str, *versions: str) -> None:
        """Push the images first, as CI would: Fabu refuses tags the registry lacks."""
        for version in versions:
            await push_image(f"http://{self.registry}", f"bench/{service}", version)

    async def release(self, service: str, environment: str, version: str) -> str:
        body = {"service": service, "environment": environment, "version": version}
        sent = time.time()
        async with self.releasing.post("/api/v1/releases", json=body) as accepted:
            answer = await accepted.json()
        if accepted.status != 202:
            raise RuntimeError(f"release refused ({accepted.status}): {answer}")
        release_id: str = answer["id"]
        self.asked[release_id] = (sent, time.time())
        return release_id

    async def watch_outcomes(self, nats_url: str, prefix: str) -> None:
        """Hear every release's end on NATS, as it is published: waiting on the database
        would load the very thing being measured."""
        subjects = Subjects(prefix)

        async def quiet(error: Exception) -> None:
            """make chaos restarts NATS: the client reconnects by itself."""

        self.nats = await nats.connect(nats_url, error_cb=quiet, max_reconnect_attempts=-1)
        for subject, state in ((subjects.completed, "succeeded"), (subjects.failed, "failed")):

            async def heard(msg: Msg, state: str = state) -> None:
                release_id = json.loads(msg.data)["release_id"]
                self.ended.setdefault(release_id, state)

            await self.nats.subscribe(subject, cb=heard)

    async def finished(self, release_ids: list[str], within_s: float = 600) -> list[dict[str, Any]]:
        """Wait until every release has ended; then their records."""
        await until_true(lambda: all(r in self.ended for r in release_ids), within_s)
        return [(await self.api.get(f"/releases/{r}")).json() for r in release_ids]

    async def final_state(self, release_id: str, within_s: float = 600) -> str:
        await until_true(lambda: release_id in self.ended, within_s)
        return self.ended[release_id]

    def image(self, service: str, version: str) -> str:
        return f"{self.registry}/bench/{service}:{version}"

    def manifest(self, service: str, namespace: str, version: str) -> str:
        params = ReleaseParams(
            "bench", service, version, self.image(service, version), "b", namespace
        )
        return render(TEMPLATE, BaseParams(replicas=1), params).manifest


async def added_latency(bench: Bench, count: int) -> tuple[list[float], list[float]]:
    env = await bench.environment(f"bench-lat-{uuid.uuid4().hex[:6]}")
    await bench.service("lat", env)
    await bench.push("lat", *(f"1.0.{i}" for i in range(count)))
    watch = CompletionWatch(bench.cluster, env)
    before, after = [], []
    try:
        for i in range(count):
            version = f"1.0.{i}"
            body = (await bench.finished([await bench.release("lat", env, version)]))[0]
            if body["state"] != "succeeded":
                raise RuntimeError(f"release failed: {body['reason']}")
            await watch.wait([("lat", bench.image("lat", version))])
            complete = watch.completed[("lat", bench.image("lat", version))]
            before.append(ts(body["started_at"]) - ts(body["created_at"]))
            after.append(ts(body["finished_at"]) - complete)
    finally:
        watch.stop()
    return before, after


async def kubectl_method(bench: Bench, count: int) -> float:
    namespace = f"bench-kc-{uuid.uuid4().hex[:6]}"
    bench.kubectl("create", "namespace", namespace)
    folder = Path(tempfile.mkdtemp())
    kubectl = [
        bench.env["FABU_KUBECTL"],
        f"--kubeconfig={bench.env['KUBECONFIG']}",
        "-n",
        namespace,
    ]

    async def run(*args: str) -> int:
        job = await asyncio.create_subprocess_exec(
            *kubectl, *args, stdout=asyncio.subprocess.DEVNULL
        )
        return await job.wait()

    async def apply_and_wait(name: str, path: Path) -> int:
        applied = await run("apply", "-f", str(path))
        return applied or await run("rollout", "status", f"deployment/{name}", "--timeout=300s")

    paths = {}
    for i in range(count):
        name = f"svc{i}"
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(bench.manifest(name, namespace, "1.0.0"))
    started = time.time()
    codes = await asyncio.gather(*(apply_and_wait(n, p) for n, p in paths.items()))
    elapsed = time.time() - started
    bench.drop(namespace)
    if any(codes):
        raise RuntimeError("kubectl apply/rollout status failed")
    return elapsed


# The steps of a release, each from the end of the one before (the first two both from
# the request); see breakdown().
STEPS = (
    "request -> record created",
    "request -> answer received",
    "created -> rendered",
    "rendered -> applied",
    "applied -> complete (cluster)",
    "complete -> succeeded stored",
)


def breakdown(
    bench: Bench, bodies: list[dict[str, Any]], completed: dict[tuple[str, str], float]
) -> dict[str, list[float]]:
    """Seconds each release spent in each of STEPS: the request's times as this program saw
    them, the record's own times, and the Deployment's completion as this program's watch
    saw it (all on one machine's clock)."""
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    for body in bodies:
        sent, answered = bench.asked[body["id"]]
        at = {change["state"]: ts(change["at"]) for change in body["events"]}
        created, finished = ts(body["created_at"]), ts(body["finished_at"])
        complete = completed[(body["service"], body["image"])]
        for step, took in zip(
            STEPS,
            (
                created - sent,
                answered - sent,
                at["rendered"] - created,
                at["applied"] - at["rendered"],
                complete - at["applied"],
                finished - complete,
            ),
            strict=True,
        ):
            steps[step].append(took)
    return steps


async def services(bench: Bench, count: int, prefix: str) -> tuple[str, list[str]]:
    """A new environment with ``count`` services configured, their images pushed."""
    env = await bench.environment(f"bench-{prefix}-{uuid.uuid4().hex[:6]}")
    names = [f"{prefix}{i}" for i in range(count)]
    await limited(16, [bench.service(name, env) for name in names])
    await limited(16, [bench.push(name, "1.0.0") for name in names])
    return env, names


async def fabu_concurrent(
    bench: Bench, env: str, names: list[str]
) -> tuple[float, int, dict[str, list[float]]]:
    """A release of each service at once: the seconds from the first request to the last
    ``succeeded``, how many succeeded, and the breakdown of those."""
    watch = CompletionWatch(bench.cluster, env)
    try:
        started = time.time()
        ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
        bodies = await bench.finished(list(ids))
        ok = [b for b in bodies if b["state"] == "succeeded"]
        await watch.wait([(b["service"], b["image"]) for b in ok])
    finally:
        watch.stop()
    elapsed = max(ts(b["finished_at"]) for b in bodies) - started
    return elapsed, len(ok), breakdown(bench, ok, watch.completed)


async def direct_apply(bench: Bench, namespace: str, count: int) -> float:
    watch = CompletionWatch(bench.cluster, namespace)
    names = [f"direct{i}" for i in range(count)]
    docs = {n: list(yaml.safe_load_all(bench.manifest(n, namespace, "1.0.0"))) for n in names}

    async def apply(name: str) -> None:
        for obj in docs[name]:
            await bench.cluster.apply(namespace, obj)

    started = time.time()
    await asyncio.gather(*(apply(n) for n in names))
    await watch.wait([(n, bench.image(n, "1.0.0")) for n in names])
    watch.stop()
    return max(watch.completed.values()) - started


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


async def store_records(system: FabuSystem, mongo_url: str, total: int) -> None:
    """Fill the release collection up to ``total`` with copies of a real release."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        releases = client[system.env["FABU_MONGO_DB"]]["releases"]
        model = await releases.find_one({"state": "succeeded"})
        assert model is not None  # noqa: S101 - the bench ran releases that succeeded
        have = await releases.count_documents({})
        for start in range(have, total, 2000):
            batch = []
            for i in range(start, min(start + 2000, total)):
                doc = {**model, "_id": new_id(), "service": f"svc-{i % 500}"}
                doc["environment"] = ("dev", "test", "prod")[i % 3]
                doc["operator"] = f"user{i % 20}"
                doc["state"] = "failed" if i % 10 == 0 else "succeeded"
                batch.append(doc)
            await releases.insert_many(batch)
    finally:
        await client.close()


async def list_pages(api: httpx.AsyncClient, samples: int) -> dict[str, list[float]]:
    """Seconds per list page (50 rows) for each query shape."""
    shapes: dict[str, dict[str, Any]] = {
        "newest": {},
        "one service": {"service": "svc-7"},
        "service + environment": {"service": "svc-7", "environment": "prod"},
        "operator + state": {"operator": "user0", "state": "failed"},
    }
    times: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(samples):
        for name, params in shapes.items():
            started = time.perf_counter()
            answer = await api.get("/releases", params={**params, "limit": 50}, timeout=600)
            times[name].append(time.perf_counter() - started)
            answer.raise_for_status()
    return times


def rss_mb(system: FabuSystem, process: str, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MB."""
    for line in Path(f"/proc/{system.processes[process].pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def limited(limit: int, jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the jobs at most ``limit`` at a time, in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(job) for job in jobs)))


async def samples(port: int, name: str) -> list[Sample]:
    """The samples named ``name`` that the process serving /metrics on ``port`` reports now."""
    async with httpx.AsyncClient(follow_redirects=True) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def tracked(port: int) -> int:
    """The releases a tracker follows now, from its /metrics."""
    return sum(int(s.value) for s in await samples(port, "fabu_releases_tracked"))


async def until(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> float:
    """Seconds until ``check`` holds."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.TransportError):
            if await check():
                return time.monotonic() - started
        if time.monotonic() - started > within_s:
            raise RuntimeError(f"{what}: not within {within_s:.0f}s")
        await asyncio.sleep(0.2)


def start_tracker(system: FabuSystem, name: str) -> int:
    """A tracker replica that may follow FLIGHT releases at once; its metrics port."""
    system.start("tracker", extra_env={"FABU_MAX_IN_FLIGHT": str(FLIGHT)}, name=name)
    return system.ports[name]


Commands = dict[str, Counter[str]]


async def database_commands(system: FabuSystem) -> Commands:
    """The database commands each process has sent so far, by ``command collection``,
    from its /metrics."""
    sent: Commands = {}
    for process in system.processes:
        counted: Counter[str] = Counter()
        for sample in await samples(system.ports[process], "fabu_database_commands_total"):
            counted[f"{sample.labels['command']} {sample.labels['collection']}"] += int(
                sample.value
            )
        sent[process] = counted
    return sent


def commands_rows(
    before: Commands, after: Commands, per: int, processes: tuple[str, ...] = STAGES
) -> list[Row]:
    """Each process's database commands per release between two readings, its most
    frequent ones named."""
    rows: list[Row] = []
    for process in processes:
        used = after.get(process, Counter()) - before.get(process, Counter())
        rows += per_release(f"database commands per release: {process}", used, per, 1)
    return rows


def scanned_rows(before: Counter[str], after: Counter[str], per: int) -> list[Row]:
    """PostgreSQL's rows read by sequential scans per release, the most read collections
    named (none without the stack's PostgreSQL)."""
    used = after - before
    return per_release("PostgreSQL rows scanned per release", used, per, 0) if used else []


def per_release(title: str, used: Counter[str], per: int, digits: int) -> list[Row]:
    """A row of ``used`` per release, and one for each of its five largest parts."""
    parts = [(f"    {name}", n) for name, n in used.most_common(5)]
    return [(row, f"{n / per:.{digits}f}", "") for row, n in [(f"  {title}", used.total()), *parts]]


async def in_flight(system: FabuSystem, bench: Bench) -> dict[str, str]:
    """FLIGHT releases whose pods never become Ready, tracked by one tracker, then by two."""
    env = await bench.environment(f"bench-flight-{uuid.uuid4().hex[:6]}")
    names = [f"fl{i}" for i in range(FLIGHT)]
    # An hour: none may time out before all are tracked.
    await limited(16, [bench.service(n, env, rollout_timeout_s=3600) for n in names])
    await limited(16, [bench.push(n, "1.0.0-never-ready", "1.0.1-never-ready") for n in names])
    system.kill("tracker")
    first = start_tracker(system, "tracker")

    async def all_tracked(*ports: int) -> bool:
        return sum([await tracked(p) for p in ports]) >= FLIGHT

    async def none_tracked() -> bool:
        return await tracked(first) == 0

    async def serving(port: int) -> bool:
        await tracked(port)
        return True

    await until(none_tracked, 60, "the tracker's metrics")
    ids = await limited(64, [bench.release(n, env, "1.0.0-never-ready") for n in names])
    one_s = await until(lambda: all_tracked(first), 1800, f"{FLIGHT} releases tracked")
    one_now, one_peak = rss_mb(system, "tracker"), rss_mb(system, "tracker", "VmHWM")
    await limited(64, [bench.api.post(f"/releases/{r}/cancel") for r in ids])
    await until(none_tracked, 120, "cancelled releases let go")
    second = start_tracker(system, "tracker-2")
    await until(lambda: serving(second), 60, "the second tracker")
    ids = await limited(64, [bench.release(n, env, "1.0.1-never-ready") for n in names])
    two_s = await until(lambda: all_tracked(first, second), 1800, f"{FLIGHT} releases tracked")
    split = [await tracked(first), await tracked(second)]
    two_now = [rss_mb(system, "tracker"), rss_mb(system, "tracker-2")]
    await limited(64, [bench.api.post(f"/releases/{r}/cancel") for r in ids])
    system.kill("tracker-2")
    return {
        "one_s": f"{one_s:.1f}",
        "one_rss": f"{one_now:.0f} / {one_peak:.0f}",
        "two_s": f"{two_s:.1f}",
        "split": f"{split[0]} / {split[1]}",
        "two_rss": f"{two_now[0]:.0f} / {two_now[1]:.0f}",
    }


async def steady(system: FabuSystem, bench: Bench, warm_s: float, seconds: float) -> dict[str, Any]:
    """STEADY releases in flight at all times (40 services, alternating two versions) for
    ``warm_s`` and then ``seconds``; every process's memory at the start of the measured
    part and at its end."""
    env = await bench.environment(f"bench-steady-{uuid.uuid4().hex[:6]}")
    names = [f"st{i}" for i in range(40)]
    await limited(16, [bench.service(n, env) for n in names])
    await limited(16, [bench.push(n, "1.0.0", "1.0.1") for n in names])
    stop = time.monotonic() + warm_s + seconds
    done: Counter[str] = Counter()

    async def releaser(services: list[str]) -> None:
        turn = 0
        while time.monotonic() < stop:
            for name in services:
                release_id = await bench.release(name, env, ("1.0.0", "1.0.1")[turn % 2])
                done[await bench.final_state(release_id)] += 1
            turn += 1

    workers = [asyncio.create_task(releaser(names[i::STEADY])) for i in range(STEADY)]
    await asyncio.sleep(warm_s)
    first = {p: rss_mb(system, p) for p in system.processes}
    counted = Counter(done)
    await asyncio.gather(*workers)
    last = {p: rss_mb(system, p) for p in system.processes}
    return {"first": first, "last": last, "done": done - counted}


@contextlib.asynccontextmanager
async def on_stack(
    name: str, smtp_handler: Any, extra_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[FabuSystem, Bench]]:
    """The stack (started if needed, stopped after if so), an SMTP server with
    ``smtp_handler``, and Fabu's five services on their own database, signed in as admin."""
    stack = Stack()
    started_stack = not stack.is_up()
    env = stack.up(ready_delay_ms=int(os.environ.get("FABU_KWOK_READY_DELAY_MS", "1000")))
    smtp = Controller(smtp_handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    logs = Path(tempfile.mkdtemp(prefix=f"fabu-{name}-"))
    system = FabuSystem(
        env, logs, smtp_port=smtp.port, name=f"{name}-{uuid.uuid4().hex[:6]}", extra_env=extra_env
    )
    system.start_all()
    # This program's own client is not held back: the direct-apply baseline sends
    # every object at once.
    unlimited = lambda: Gate(start=100_000, ceiling=100_000, slow_s=math.inf)  # noqa: E731
    clusters = Clusters(str(Path(env["KUBECONFIG"]).parent), gate=unlimited)
    try:
        cluster = await clusters.get(
            Environment(name=name, namespace="default", kubeconfig=env["KUBECONFIG"])
        )
        # Up to 1,000 requests at once: time for the API to answer them all.
        async with httpx.AsyncClient(
            base_url=system.api_url + "/api/v1",
            timeout=httpx.Timeout(600),
            # keepalive_expiry below uvicorn's 5 s: never reuse a connection it is closing.
            limits=httpx.Limits(max_connections=200, keepalive_expiry=2),
        ) as api:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await api.get(system.api_url + "/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            token = await new_token(system.api_url, "admin", system.admin_password, name)
            api.headers["Authorization"] = f"Bearer {token}"
            releasing = aiohttp.ClientSession(
                base_url=system.api_url,
                headers={"Authorization": f"Bearer {token}"},
                connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=2),
                timeout=aiohttp.ClientTimeout(total=600),
            )
            bench = Bench(env, api, releasing, cluster)
            await bench.watch_outcomes(env["FABU_NATS_URL"], system.env["FABU_NATS_PREFIX"])
            try:
                yield system, bench
            finally:
                await releasing.close()
                if bench.nats is not None:
                    await bench.nats.close()
    finally:
        await clusters.close()
        system.stop()
        smtp.stop()
        if started_stack:
            stack.down()


async def latency_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print("added latency (50 releases, one after another)...", flush=True)
    before, after = await added_latency(bench, 50)
    added = [b + a for b, a in zip(before, after, strict=True)]
    return [
        ("added latency p50 (ms)", f"{statistics.median(added) * 1000:.1f}", "< 15"),
        ("added latency p99 (ms)", f"{pct(added, 0.99) * 1000:.1f}", "< 60"),
        (
            "  request -> apply sent p50 / p99 (ms)",
            f"{statistics.median(before) * 1000:.1f} / {pct(before, 0.99) * 1000:.1f}",
            "",
        ),
        (
            "  complete -> succeeded stored p50 / p99 (ms)",
            f"{statistics.median(after) * 1000:.1f} / {pct(after, 0.99) * 1000:.1f}",
            "",
        ),
    ]


async def kubectl_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print("the article's method against Fabu (20 deployments)...", flush=True)
    kubectl_s = await kubectl_method(bench, 20)
    env, names = await services(bench, 20, "f")
    fabu_s, ok, _ = await fabu_concurrent(bench, env, names)
    bench.drop(env)
    return [
        ("20 deployments: kubectl apply + rollout status (s)", f"{kubectl_s:.2f}", ""),
        ("20 deployments: Fabu (s)", f"{fabu_s:.2f} ({ok}/20 ok)", ""),
        ("  Fabu / kubectl wall time", f"{fabu_s / kubectl_s:.2f}x", "<= 0.4x"),
    ]


def spread(values: list[float]) -> str:
    """p50 / p99 / max, in seconds."""
    return f"{statistics.median(values):.2f} / {pct(values, 0.99):.2f} / {max(values):.2f}"


def report_profiles(folder: Path, sampled: dict[str, Sampled]) -> None:
    """Each stage's hottest functions, printed and kept beside its raw stacks."""
    lines = []
    for stage, got in sampled.items():
        lines.append(f"{stage}: {got.samples} samples ({got.samples / RATE:.1f} s on a core)")
        lines += [f"  on top   {share:6.1%}  {name}" for name, share in got.own]
        lines += [f"  within   {share:6.1%}  {name}" for name, share in got.within]
    text = "\n".join(lines)
    (folder / "summary.txt").write_text(text + "\n")
    print(f"\nprofiles ({folder}):\n{text}\n", flush=True)


async def throughput_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"{SERVICES} releases at once against direct apply...", flush=True)
    env, names = await services(bench, SERVICES, "c")
    profiler = Profiler(system, system.logs / "profiles" / "throughput")
    sent, scanned = await database_commands(system), rows_scanned()
    before = cpu_seconds(system)
    try:
        fabu_s, ok, steps = await fabu_concurrent(bench, env, names)
    finally:
        sampled = profiler.stop()
    fabu_cpu = used_between(before, cpu_seconds(system))
    commands = commands_rows(sent, await database_commands(system), SERVICES)
    commands += scanned_rows(scanned, rows_scanned(), SERVICES)
    report_profiles(profiler.folder, sampled)
    bench.drop(env)
    namespace = bench.namespace("direct")
    before = cpu_seconds(system)
    direct_s = await direct_apply(bench, namespace, SERVICES)
    direct_cpu = used_between(before, cpu_seconds(system))
    bench.drop(namespace)
    peaks = {stage: rss_mb(system, stage, "VmHWM") for stage in STAGES}
    return [
        (f"{SERVICES} releases at once: Fabu (s)", f"{fabu_s:.2f} ({ok}/{SERVICES} ok)", ""),
        *((f"  {step} p50 / p99 / max (s)", spread(steps[step]), "") for step in STEPS),
        (f"{SERVICES} deployments: direct server-side apply (s)", f"{direct_s:.2f}", ""),
        ("  Fabu rate / direct rate", f"{direct_s / fabu_s:.2f}x", ">= 0.8x"),
        *commands,
        *(
            (
                f"CPU s during Fabu's {SERVICES} / direct apply: {name}",
                f"{fabu_cpu[name]:.1f} / {direct_cpu.get(name, 0.0):.1f}",
                "",
            )
            for name in sorted(fabu_cpu, key=lambda n: -fabu_cpu[n])
            if fabu_cpu[name] >= 0.1
        ),
        *((f"peak RSS {stage} so far (MB)", f"{peaks[stage]:.0f}", "") for stage in STAGES),
    ]


async def intake_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"the API's intake: {SERVICES} release requests at once...", flush=True)
    env, names = await services(bench, SERVICES, "in")
    # Nothing past the API runs meanwhile: the requests wait in the stream for the renderer.
    system.kill("renderer")
    profiler = Profiler(system, system.logs / "profiles" / "intake")
    sent, scanned = await database_commands(system), rows_scanned()
    before = cpu_seconds(system)
    try:
        started = time.time()
        ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
        took = max(bench.asked[r][1] for r in ids) - started
    finally:
        sampled = profiler.stop()
    cpu = used_between(before, cpu_seconds(system))
    commands = commands_rows(sent, await database_commands(system), SERVICES, ("api",))
    commands += scanned_rows(scanned, rows_scanned(), SERVICES)
    report_profiles(profiler.folder, sampled)
    system.start("renderer")
    bodies = await bench.finished(list(ids))
    ok = sum(b["state"] == "succeeded" for b in bodies)
    bench.drop(env)
    answers = [bench.asked[r][1] - bench.asked[r][0] for r in ids]
    return [
        (
            f"API intake: {SERVICES} release requests at once, one process (requests/s)",
            f"{SERVICES / took:.1f}",
            ">= 100",
        ),
        ("  answer time p50 / p99 / max (s)", spread(answers), ""),
        *commands,
        *(
            (f"  CPU ms per request: {name}", f"{cpu[name] * 1000 / SERVICES:.1f}", "")
            for name in sorted(cpu, key=lambda n: -cpu[n])
            if cpu[name] >= 0.1
        ),
        ("  then released once the renderer was back", f"{ok}/{SERVICES} succeeded", ""),
    ]


async def flight_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"{FLIGHT} releases in flight, one tracker then two...", flush=True)
    got = await in_flight(system, bench)
    return [
        (f"{FLIGHT} in flight, one tracker: time to track all (s)", got["one_s"], ""),
        ("  tracker RSS now / peak (MB)", got["one_rss"], "peak < 300"),
        (f"{FLIGHT} in flight, two trackers: time to track all (s)", got["two_s"], ""),
        ("  releases tracked by each", got["split"], "shared"),
        ("  RSS of each (MB)", got["two_rss"], ""),
    ]


async def steady_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"steady load: {STEADY} releases in flight for {STEADY_S / 60:g} min...", flush=True)
    got = await steady(system, bench, STEADY_WARM_S, STEADY_S)
    done = got["done"]
    return [
        (
            f"steady load, {STEADY_S / 60:g} min after {STEADY_WARM_S:g} s warm-up: releases",
            f"{sum(done.values())} ({dict(done)})",
            "",
        ),
        *(
            (
                f"  RSS {p} start -> end (MB)",
                f"{got['first'][p]:.0f} -> {got['last'][p]:.0f} "
                f"({(got['last'][p] / got['first'][p] - 1) * 100:+.1f}%)",
                "< +10%",
            )
            for p in got["first"]
        ),
    ]


async def list_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    pages: dict[int, dict[str, list[float]]] = {}
    for records in LIST_SIZES:
        print(f"the release list with {records} records...", flush=True)
        await store_records(system, bench.env["FABU_MONGO_URL"], records)
        pages[records] = await list_pages(bench.api, 3)
        if max(pages[records]["newest"]) > LIST_GIVE_UP_S:
            break
    return [
        (
            f"list page, {records} records, {shape}: p50 / max (ms)",
            f"{statistics.median(t) * 1000:.0f} / {max(t) * 1000:.0f}",
            "p99 < 50 at 100000",
        )
        for records, shapes in pages.items()
        for shape, t in shapes.items()
    ]


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


RENDERS = 500


async def render_rows(_system: FabuSystem, _bench: Bench) -> list[Row]:
    params = ReleaseParams(
        release_id="bench",
        service="web",
        version="1.0",
        image="r/web:1.0",
        environment="b",
        namespace="bench",
    )
    config = BaseParams(replicas=2)
    render(TEMPLATE, config, params)  # compiled once, as a renderer's cache keeps it
    started = time.perf_counter()
    for _ in range(RENDERS):
        render(TEMPLATE, config, params)
    inline_s = time.perf_counter() - started
    renderers = Renderers(Budget(), workers=2)
    try:
        await asyncio.gather(*(renderers.render(TEMPLATE, config, params) for _ in range(2)))
        started = time.perf_counter()
        await asyncio.gather(*(renderers.render(TEMPLATE, config, params) for _ in range(RENDERS)))
        pooled_s = time.perf_counter() - started
        alone: list[float] = []
        for _ in range(50):
            began = time.perf_counter()
            await renderers.render(TEMPLATE, config, params)
            alone.append(time.perf_counter() - began)
    finally:
        await renderers.close()
    return [
        ("render: the demo template", "", ""),
        ("  in the process (renders/s)", f"{RENDERS / inline_s:.0f}", ""),
        ("  in the process, each (ms)", f"{1000 * inline_s / RENDERS:.2f}", ""),
        ("  through 2 budgeted workers, 500 at once (renders/s)", f"{RENDERS / pooled_s:.0f}", ""),
        (
            "  one at a time through a worker, p50 / p99 (ms)",
            f"{1000 * pct(alone, 0.5):.2f} / {1000 * pct(alone, 0.99):.2f}",
            "",
        ),
    ]


PARTS = {
    "latency": latency_rows,
    "kubectl": kubectl_rows,
    "throughput": throughput_rows,
    "intake": intake_rows,
    "flight": flight_rows,
    "steady": steady_rows,
    "list": list_rows,
    "live": live_rows,
    "render": render_rows,
}


async def main(parts: list[str]) -> None:
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"no such part: {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    rows: list[Row] = []
    async with on_stack("bench", Sink()) as (system, bench):
        for part in parts:
            rows += await PARTS[part](system, bench)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'value':>24}  goal")
    for name, value, goal in rows:
        print(f"{name.ljust(width)}  {value:>24}  {goal}")
    print(f"\n(logs of the run: {system.logs})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or list(PARTS)))
    sys.exit(0)
