"""``throughput``: 500 releases at once against a direct server-side apply of the same
manifests: each release's time in each step, every process's CPU and database
commands, the documents those examined, the stages' profiles, and their peak memory."""

import asyncio
import time
from typing import Any

import yaml

from bench.commands import commands_rows, database_commands
from bench.examined import Examined, examined
from bench.harness import SERVICES, Bench, CompletionWatch, services
from bench.profile import Profiler, cpu_seconds, report_profiles, used_between
from bench.readings import Row, rss_mb, spread, ts
from devstack.system import STAGES, FabuSystem

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


async def fabu_concurrent(
    bench: Bench, env: str, names: list[str], window: Examined | None = None
) -> tuple[float, int, dict[str, list[float]]]:
    """A release of each service at once: the seconds from the first request to the last
    ``succeeded``, how many succeeded, and the breakdown of those. A ``window`` closes
    once the stages have nothing more to do, before this program reads the records."""
    watch = CompletionWatch(bench.cluster, env)
    try:
        started = time.time()
        ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
        if window is not None:
            await bench.settled(list(ids))
            await window.stop()
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


async def throughput_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"{SERVICES} releases at once against direct apply...", flush=True)
    env, names = await services(bench, SERVICES, "c")
    profiler = Profiler(system, system.logs / "profiles" / "throughput")
    sent = await database_commands(system)
    window = await examined(system)
    before = cpu_seconds(system)
    try:
        fabu_s, ok, steps = await fabu_concurrent(bench, env, names, window)
    finally:
        sampled = profiler.stop()
        await window.stop()
    fabu_cpu = used_between(before, cpu_seconds(system))
    commands = commands_rows(sent, await database_commands(system), SERVICES)
    commands += await window.rows(f"{SERVICES} at once", SERVICES)
    await window.close()
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
