"""What every bench part stands on: the stack with Fabu's five services started on it
(:func:`on_stack`), the :class:`Bench` client that sets services up and releases them,
this program's own watch of Deployments, and waits with deadlines."""

import asyncio
import contextlib
import json
import math
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import nats
from aiosmtpd.controller import Controller
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from devstack.registry import push_image
from devstack.stack import Stack, free_port
from devstack.system import FabuSystem, new_token
from shared.cluster.client import LISTED, Cluster, Clusters
from shared.cluster.rollout import rollout_status
from shared.cluster.throttle import Gate
from shared.messaging.subjects import Subjects
from shared.models.catalog import BaseParams, Environment
from shared.templating.render import ReleaseParams, render

TEMPLATE = (Path(__file__).parents[1] / "devstack" / "demo" / "web-service.yaml.j2").read_text()
FINAL = {"succeeded", "failed"}
# The releases at once of the throughput and intake parts, each of its own service.
SERVICES = 500
T = TypeVar("T")


async def until_true(check: Callable[[], bool], within_s: float) -> None:
    """Wait until ``check`` holds (it is about releases ending), at most ``within_s``."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"releases did not finish within {within_s:.0f}s")
        await asyncio.sleep(0.01)


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
        self.subjects = Subjects()

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

    async def release(
        self,
        service: str,
        environment: str,
        version: str,
        via: aiohttp.ClientSession | None = None,
    ) -> str:
        """Ask for a release (through ``via``, another API replica, when given)."""
        body = {"service": service, "environment": environment, "version": version}
        sent = time.time()
        async with (via or self.releasing).post("/api/v1/releases", json=body) as accepted:
            answer = await accepted.json()
        if accepted.status != 202:
            raise RuntimeError(f"release refused ({accepted.status}): {answer}")
        release_id: str = answer["id"]
        self.asked[release_id] = (sent, time.time())
        return release_id

    async def watch_outcomes(self, nats_url: str, prefix: str) -> None:
        """Hear every release's end on NATS, as it is published: waiting on the database
        would load the very thing being measured."""
        self.subjects = subjects = Subjects(prefix)

        async def quiet(error: Exception) -> None:
            """make chaos restarts NATS: the client reconnects by itself."""

        self.nats = await nats.connect(nats_url, error_cb=quiet, max_reconnect_attempts=-1)
        for subject, state in ((subjects.completed, "succeeded"), (subjects.failed, "failed")):

            async def heard(msg: Msg, state: str = state) -> None:
                release_id = json.loads(msg.data)["release_id"]
                self.ended.setdefault(release_id, state)

            await self.nats.subscribe(subject, cb=heard)

    async def settled(self, release_ids: list[str], within_s: float = 600) -> None:
        """Wait until every release has ended and every message of the stream has been
        handled (none waiting, none unacknowledged): no stage has anything left to do."""
        await until_true(lambda: all(r in self.ended for r in release_ids), within_s)
        assert self.nats is not None  # noqa: S101 - watch_outcomes connected it
        jetstream = self.nats.jetstream()
        stream = self.subjects.stream

        async def drained() -> bool:
            consumers = await jetstream.consumers_info(stream)
            return all(not c.num_pending and not c.num_ack_pending for c in consumers)

        await until(drained, within_s, "the stages' messages handled")

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


async def services(bench: Bench, count: int, prefix: str) -> tuple[str, list[str]]:
    """A new environment with ``count`` services configured, their images pushed."""
    env = await bench.environment(f"bench-{prefix}-{uuid.uuid4().hex[:6]}")
    names = [f"{prefix}{i}" for i in range(count)]
    await limited(16, [bench.service(name, env) for name in names])
    await limited(16, [bench.push(name, "1.0.0") for name in names])
    return env, names


async def limited(limit: int, jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the jobs at most ``limit`` at a time, in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(job) for job in jobs)))


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
