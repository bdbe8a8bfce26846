"""``make bench``: Fabu's release pipeline measured on the local real stack; prints a table.

1. Added latency per release, 50 releases one after another:
   (request accepted → apply sent) + (Deployment complete, as seen by this
   program's own watch → release ``succeeded`` stored).
2. The article's method against Fabu for the same 20 Deployments, all 20 at
   once: ``kubectl apply -f`` + ``kubectl rollout status`` (the built kubectl)
   per service, against 20 Fabu releases.
3. 200 releases of 200 services at once against a direct server-side-apply
   of the same manifests, and the peak memory of each stage process.
4. The release list (50 rows) with 1,000, 10,000 and 100,000 records
   stored: copies of a real finished release (manifest, transcript, pod
   timeline and all) over 500 services, 3 environments and 20 operators; 3
   requests per query shape. It stops growing the collection once the
   newest-first page takes more than 10 s (FerretDB sorts in memory).
"""

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from pymongo import AsyncMongoClient

from devstack.registry import push_image
from devstack.stack import Stack, free_port
from devstack.system import STAGES, FabuSystem, new_token
from services.tracker.rollout import rollout_status
from shared.cluster import Cluster, Clusters
from shared.models import BaseParams, Environment
from shared.render import ReleaseParams, render
from shared.store.mongo import new_id

TEMPLATE = (Path(__file__).parents[1] / "devstack" / "demo" / "web-service.yaml.j2").read_text()
FINAL = {"succeeded", "failed"}
LIST_SIZES = (1_000, 10_000, 100_000)
LIST_GIVE_UP_S = 10.0


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
        async for _, obj in cluster.watch(namespace, "deployments"):
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
    def __init__(self, env: dict[str, str], api: httpx.AsyncClient, cluster: Cluster) -> None:
        self.env = env
        self.api = api
        self.cluster = cluster
        self.template_id = ""
        self.registry = env["FABU_REGISTRY_URL"].removeprefix("http://")

    def kubectl(self, *args: str) -> None:
        subprocess.run(
            [self.env["FABU_KUBECTL"], f"--kubeconfig={self.env['KUBECONFIG']}", *args],
            check=True,
            capture_output=True,
        )

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
        accepted = await self.api.post("/releases", json=body)
        release_id: str = accepted.raise_for_status().json()["id"]
        return release_id

    async def finished(self, environment: str, release_ids: list[str]) -> list[dict[str, Any]]:
        """Wait with one list query per round (polling each release would load the database)."""
        wanted = set(release_ids)
        deadline = time.monotonic() + 600
        while True:
            page = await self.api.get(
                "/releases", params={"environment": environment, "limit": 200}
            )
            done = {r["id"] for r in page.json()["items"] if r["state"] in FINAL}
            if wanted <= done:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("releases did not finish in time")
            await asyncio.sleep(0.05)
        return [(await self.api.get(f"/releases/{r}")).json() for r in release_ids]

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
            body = (await bench.finished(env, [await bench.release("lat", env, version)]))[0]
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
    kubectl = f"{bench.env['FABU_KUBECTL']} --kubeconfig={bench.env['KUBECONFIG']} -n {namespace}"
    scripts = []
    for i in range(count):
        name = f"svc{i}"
        path = folder / f"{name}.yaml"
        path.write_text(bench.manifest(name, namespace, "1.0.0"))
        scripts.append(
            f"{kubectl} apply -f {path} >/dev/null && "
            f"{kubectl} rollout status deployment/{name} --timeout=300s >/dev/null"
        )
    started = time.time()
    jobs = [await asyncio.create_subprocess_shell(s) for s in scripts]
    codes = [await job.wait() for job in jobs]
    elapsed = time.time() - started
    if any(codes):
        raise RuntimeError("kubectl apply/rollout status failed")
    return elapsed


async def fabu_concurrent(bench: Bench, count: int, prefix: str) -> tuple[float, int]:
    env = await bench.environment(f"bench-{prefix}-{uuid.uuid4().hex[:6]}")
    names = [f"{prefix}{i}" for i in range(count)]
    for name in names:
        await bench.service(name, env)
    await asyncio.gather(*(bench.push(name, "1.0.0") for name in names))
    started = time.time()
    ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
    bodies = await bench.finished(env, list(ids))
    ok = sum(b["state"] == "succeeded" for b in bodies)
    return max(ts(b["finished_at"]) for b in bodies) - started, ok


async def direct_apply(bench: Bench, count: int) -> float:
    namespace = f"bench-direct-{uuid.uuid4().hex[:6]}"
    bench.kubectl("create", "namespace", namespace)
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


async def store_records(system: FabuSystem, mongo_url: str, total: int) -> None:
    """Fill the release collection up to ``total`` with copies of a real release."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        releases = client[system.env["FABU_MONGO_DB"]]["releases"]
        model = await releases.find_one({"state": "succeeded"})
        assert model is not None
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


def peak_rss_mb(system: FabuSystem) -> dict[str, float]:
    peaks = {}
    for stage, process in system.processes.items():
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[stage] = int(line.split()[1]) / 1024
    return peaks


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
    clusters = Clusters()
    try:
        cluster = await clusters.get(
            Environment(name=name, namespace="default", kubeconfig=env["KUBECONFIG"])
        )
        async with httpx.AsyncClient(base_url=system.api_url + "/api/v1", timeout=60) as api:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await api.get(system.api_url + "/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            token = await new_token(system.api_url, "admin", system.admin_password, name)
            api.headers["Authorization"] = f"Bearer {token}"
            yield system, Bench(env, api, cluster)
    finally:
        await clusters.close()
        system.stop()
        smtp.stop()
        if started_stack:
            stack.down()


async def main() -> None:
    async with on_stack("bench", Sink()) as (system, bench):
        print("measuring added latency (50 releases, one after another)...", flush=True)
        before, after = await added_latency(bench, 50)
        print("measuring the article's method against Fabu (20 deployments)...", flush=True)
        kubectl_s = await kubectl_method(bench, 20)
        fabu20_s, ok20 = await fabu_concurrent(bench, 20, "f")
        print("measuring 200 concurrent releases against direct apply...", flush=True)
        fabu200_s, ok200 = await fabu_concurrent(bench, 200, "c")
        direct_s = await direct_apply(bench, 200)
        peaks = peak_rss_mb(system)
        pages: dict[int, dict[str, list[float]]] = {}
        for records in LIST_SIZES:
            print(f"measuring the release list with {records} records...", flush=True)
            await store_records(system, bench.env["FABU_MONGO_URL"], records)
            pages[records] = await list_pages(bench.api, 3)
            if max(pages[records]["newest"]) > LIST_GIVE_UP_S:
                break

    added = [b + a for b, a in zip(before, after, strict=True)]
    rows = [
        ("added latency p50 (ms)", f"{statistics.median(added) * 1000:.1f}", "< 25"),
        ("added latency p99 (ms)", f"{pct(added, 0.99) * 1000:.1f}", "< 100"),
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
        ("20 deployments: kubectl apply + rollout status (s)", f"{kubectl_s:.2f}", ""),
        ("20 deployments: Fabu (s)", f"{fabu20_s:.2f} ({ok20}/20 ok)", ""),
        ("  Fabu / kubectl wall time", f"{fabu20_s / kubectl_s:.2f}x", "<= 0.5x"),
        ("200 releases at once: Fabu (s)", f"{fabu200_s:.2f} ({ok200}/200 ok)", ""),
        ("200 deployments: direct server-side apply (s)", f"{direct_s:.2f}", ""),
        ("  Fabu rate / direct rate", f"{direct_s / fabu200_s:.2f}x", ">= 0.8x"),
        *((f"peak RSS {stage} (MB)", f"{peaks.get(stage, 0):.0f}", "") for stage in STAGES),
        *(
            (
                f"list page, {records} records, {shape}: p50 / max (ms)",
                f"{statistics.median(t) * 1000:.0f} / {max(t) * 1000:.0f}",
                "p99 < 50 at 100000",
            )
            for records, shapes in pages.items()
            for shape, t in shapes.items()
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'value':>22}  goal")
    for name, value, goal in rows:
        print(f"{name.ljust(width)}  {value:>22}  {goal}")
    print(f"\n(logs of the run: {system.logs})")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
