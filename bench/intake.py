"""``intake``: the API alone (the renderer stopped meanwhile) taking 500 release
requests at once: the requests per second, the CPU and database commands per request and
the documents they examined, profiled; then the renderer started again and the 500
released."""

import asyncio
import time

from bench.commands import commands_rows, database_commands
from bench.examined import examined
from bench.harness import SERVICES, Bench, services
from bench.profile import Profiler, cpu_seconds, report_profiles, used_between
from bench.readings import Row, spread
from devstack.system import FabuSystem


async def intake_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"the API's intake: {SERVICES} release requests at once...", flush=True)
    env, names = await services(bench, SERVICES, "in")
    # Nothing past the API runs meanwhile: the requests wait in the stream for the renderer.
    system.kill("renderer")
    profiler = Profiler(system, system.logs / "profiles" / "intake")
    sent = await database_commands(system)
    window = await examined(system)
    before = cpu_seconds(system)
    try:
        started = time.time()
        ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
        took = max(bench.asked[r][1] for r in ids) - started
    finally:
        sampled = profiler.stop()
        await window.stop()
    cpu = used_between(before, cpu_seconds(system))
    commands = commands_rows(sent, await database_commands(system), SERVICES, ("api",))
    commands += await window.rows("the API's intake", SERVICES)
    await window.close()
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
