"""``flight``: 1,000 releases whose pods never become Ready, tracked by one tracker,
then (after cancelling them) 1,000 more by two: the time to track all, how they are
shared, and each tracker's memory."""

import uuid

from bench.harness import Bench, limited, until
from bench.readings import Row, rss_mb, samples
from devstack.system import FabuSystem

FLIGHT = 1000


async def tracked(port: int) -> int:
    """The releases a tracker follows now, from its /metrics."""
    return sum(int(s.value) for s in await samples(port, "fabu_releases_tracked"))


def start_tracker(system: FabuSystem, name: str) -> int:
    """A tracker replica that may follow FLIGHT releases at once; its metrics port."""
    system.start("tracker", extra_env={"FABU_MAX_IN_FLIGHT": str(FLIGHT)}, name=name)
    return system.ports[name]


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
