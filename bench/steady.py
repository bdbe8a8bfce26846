"""``steady``: a steady load of releases in flight, and every process's memory at the
start and at the end of it."""

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from bench.harness import Bench, limited
from bench.readings import Row, rss_mb
from devstack.system import FabuSystem

STEADY = 10
STEADY_WARM_S = 60.0
STEADY_S = 600.0


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
