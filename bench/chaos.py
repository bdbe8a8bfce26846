"""``make chaos``: faults while releases run, on the local real stack; prints a table.

1. 100 releases of 100 services at once while, every 1.3 s, a random stage
   process (any of the five) is SIGKILLed and started again 0.3 s later.
   Counted: releases that reach a final state, and the final notifications
   (emails to a local SMTP sink, by Message-ID) each release got.
2. Two tracker replicas; one is SIGKILLed while 40 releases are being
   tracked. Counted: releases the survivor finished, and how long it took.

Faults of NATS, FerretDB and the Kubernetes API server need a stack that can
restart one component; they are not played yet.
"""

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from bench.__main__ import FINAL, Bench, on_stack
from devstack.system import STAGES, FabuSystem

RELEASES = 100
KILL_EVERY_S = 1.0
RESTART_AFTER_S = 0.3
TRACKED = 40


class Mail:
    """An SMTP sink counting messages by their Message-ID (one per release and event)."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in envelope.content.decode(errors="replace").splitlines():
            if line.lower().startswith("message-id:"):
                self.ids[line.split(":", 1)[1].strip()] += 1
        return "250 OK"


async def _until_final(api: httpx.AsyncClient, ids: list[str], within_s: float) -> float:
    """Seconds until every release is final (the API may be down meanwhile)."""
    started, wanted = time.monotonic(), set(ids)
    while time.monotonic() - started < within_s:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            page = await api.get("/releases", params={"limit": 200})
            done = {r["id"] for r in page.json()["items"] if r["state"] in FINAL | {"cancelled"}}
            if wanted <= done:
                return time.monotonic() - started
        await asyncio.sleep(0.5)
    return float("nan")


async def _bodies(api: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [(await api.get(f"/releases/{r}")).json() for r in ids]


async def kills_during_releases(
    system: FabuSystem, bench: Bench, mail: Mail
) -> list[tuple[str, str]]:
    env = await bench.environment(f"chaos-{uuid.uuid4().hex[:6]}")
    channel = [{"type": "email", "recipients": ["chaos@example.com"]}]
    answer = await bench.api.put(f"/environments/{env}/notifications", json=channel)
    answer.raise_for_status()
    names = [f"k{i}" for i in range(RELEASES)]
    for name in names:
        await bench.service(name, env)
    await asyncio.gather(*(bench.push(n, "1.0.0") for n in names))
    ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
    # A fixed seed: the same kills in the same order every run.
    rng = random.Random(20261127)  # noqa: S311 (not for secrets)
    kills, stop = Counter[str](), asyncio.Event()

    async def killer() -> None:
        while not stop.is_set():
            await asyncio.sleep(KILL_EVERY_S)
            stage = rng.choice(STAGES)
            system.kill(stage)
            kills[stage] += 1
            await asyncio.sleep(RESTART_AFTER_S)
            system.start(stage)

    task = asyncio.create_task(killer())
    took = await _until_final(bench.api, list(ids), 600)
    stop.set()
    await task
    await asyncio.sleep(10)  # the notifier's last deliveries
    bodies = await _bodies(bench.api, list(ids))
    states = Counter(b["state"] for b in bodies)
    finals = [
        sum(mail.ids[f"<{b['id']}.{event}@fabu>"] for event in ("succeeded", "failed"))
        for b in bodies
    ]
    unknown = sum(d["state"] == "unknown" for b in bodies for d in b["notifications"].values())
    return [
        ("releases started at once", str(RELEASES)),
        (
            f"stage processes SIGKILLed (one every {KILL_EVERY_S + RESTART_AFTER_S:g} s)",
            ", ".join(f"{s} {n}" for s, n in sorted(kills.items())),
        ),
        (
            "releases in a final state",
            f"{sum(b['state'] in FINAL for b in bodies)} ({dict(states)})",
        ),
        ("time until all were final (s)", f"{took:.1f}"),
        ("releases with exactly one final email", str(finals.count(1))),
        ("releases with no final email", str(finals.count(0))),
        ("releases with more than one", str(sum(f > 1 for f in finals))),
        ("deliveries recorded 'unknown' (notifier died mid-send)", str(unknown)),
    ]


async def tracker_replica_killed(system: FabuSystem, bench: Bench) -> list[tuple[str, str]]:
    system.start("tracker", name="tracker-2")
    env = await bench.environment(f"chaos-t-{uuid.uuid4().hex[:6]}")
    names = [f"t{i}" for i in range(TRACKED)]
    for name in names:
        await bench.service(name, env)
    await asyncio.gather(*(bench.push(n, "1.0.0") for n in names))
    ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
    await asyncio.sleep(1.0)  # tracking has begun on both
    system.kill("tracker")
    took = await _until_final(bench.api, list(ids), 300)
    bodies = await _bodies(bench.api, list(ids))
    system.start("tracker")
    return [
        ("releases tracked by two trackers, one SIGKILLed after 1 s", str(TRACKED)),
        ("releases succeeded", str(sum(b["state"] == "succeeded" for b in bodies))),
        ("time until all were final (s; ack wait 5 s)", f"{took:.1f}"),
    ]


async def main() -> None:
    mail = Mail()
    rows: list[tuple[str, str]] = []
    faster = {"FABU_ACK_WAIT_S": "5", "FABU_NOTIFY_CLAIM_STALE_S": "10"}
    async with on_stack("chaos", mail, faster) as (system, bench):
        print("SIGKILL of random stages during 100 concurrent releases...", flush=True)
        rows += await kills_during_releases(system, bench, mail)
        print("a tracker replica killed while another runs...", flush=True)
        rows += await tracker_replica_killed(system, bench)
    width = max(len(r[0]) for r in rows) + 2
    print()
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    print(f"\n(logs of the run: {system.logs})")


if __name__ == "__main__":
    asyncio.run(main())
