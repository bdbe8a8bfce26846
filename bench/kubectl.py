"""``kubectl``: the article's method (``kubectl apply -f`` + ``kubectl rollout status``
per service) against Fabu, for the same 20 Deployments at once."""

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness import Bench, services
from bench.readings import Row
from bench.throughput import fabu_concurrent
from devstack.system import FabuSystem


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
