"""``latency``: the latency Fabu adds to a release, 50 releases one after another."""

import statistics
import uuid

from bench.harness import Bench, CompletionWatch
from bench.readings import Row, pct, ts
from devstack.system import FabuSystem


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
