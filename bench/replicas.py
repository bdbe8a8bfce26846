"""``replicas``: two processes of every stage and of the API, 500 releases of 500 services
at once spread over both APIs: the wall time, how many succeeded, and that nothing was
done twice, from the store (each release's history holds each transition once) and
from each stage's /metrics (the replicas together handled each message once, and both
handled some)."""

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import httpx
from pymongo import AsyncMongoClient

from bench.commands import database_commands
from bench.harness import SERVICES, Bench, services, until
from bench.readings import Row, samples, ts
from devstack.system import STAGES, FabuSystem

# The transitions of a release that succeeds, each taken once, in order, and the states
# they leave it in.
ONCE = ("render", "apply", "succeed")
HISTORY = ["rendered", "applied", "succeeded"]
# The messages each stage's consumer takes per release that succeeds (the notifier's:
# applied and completed).
PER_RELEASE = {"renderer": 1, "deployer": 1, "tracker": 1, "notifier": 2}


async def handled(system: FabuSystem) -> dict[str, Counter[str]]:
    """The messages each process's consumer of its own stage has handled so far, by
    outcome (``ok``, ``error``), from its /metrics."""
    counts: dict[str, Counter[str]] = {}
    for process in system.processes:
        stage = process.split("-")[0]
        counted: Counter[str] = Counter()
        for sample in await samples(system.ports[process], "fabu_messages_total"):
            if sample.labels["stage"] == stage:
                counted[sample.labels["outcome"]] += int(sample.value)
        counts[process] = counted
    return counts


async def done_once(system: FabuSystem, ids: list[str]) -> tuple[int, list[str]]:
    """How many of the releases hold each transition exactly once in the store (their
    history of state changes: a transition is one conditional update, so a second
    taking of it would be a second event), and what the others hold."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system.env["FABU_MONGO_URL"])
    try:
        db = client[system.env["FABU_MONGO_DB"]]
        histories = {
            doc["_id"]: [e["state"] for e in doc.get("events", [])]
            async for doc in db["releases"].find({"_id": {"$in": ids}}, {"events.state": 1})
        }
    finally:
        await client.close()
    wrong = [f"{r}: history {histories.get(r)}" for r in ids if histories.get(r) != HISTORY]
    return len(ids) - len(wrong), wrong


async def replicas_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    print(f"two replicas of everything: {SERVICES} releases at once...", flush=True)
    env, names = await services(bench, SERVICES, "rp")
    seconds = [f"{stage}-2" for stage in STAGES]
    for stage, name in zip(STAGES, seconds, strict=True):
        system.start(stage, name=name)

    async def healthy() -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            answers = [await http.get(f"{system.url(name)}/healthz") for name in seconds]
        return all(a.status_code == 200 for a in answers)

    await until(healthy, 120, "the second replicas healthy")
    other = aiohttp.ClientSession(
        base_url=system.url("api-2"),
        headers={"Authorization": bench.api.headers["Authorization"]},
        connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=2),
        timeout=aiohttp.ClientTimeout(total=600),
    )
    before, sent = await handled(system), await database_commands(system)
    try:
        started = time.time()
        ids = list(
            await asyncio.gather(
                *(
                    bench.release(n, env, "1.0.0", via=other if i % 2 else None)
                    for i, n in enumerate(names)
                )
            )
        )
        await bench.settled(ids)
        after, created = await handled(system), await database_commands(system)
    finally:
        await other.close()
    bodies = await bench.finished(ids)
    system.stop(*seconds)
    bench.drop(env)
    ok = sum(b["state"] == "succeeded" for b in bodies)
    wall = max(ts(b["finished_at"]) for b in bodies) - started
    once, wrong = await done_once(system, ids)
    for line in wrong[:10]:
        print(f"  done other than once: {line}", flush=True)
    rows: list[Row] = [
        (
            f"two replicas of each process: {SERVICES} releases at once (s)",
            f"{wall:.2f} ({ok}/{SERVICES} succeeded)",
            f"{SERVICES}/{SERVICES}",
        ),
        (
            f"  nothing done twice: releases with each of {', '.join(ONCE)} once in the store",
            f"{once}/{SERVICES}",
            f"{SERVICES}/{SERVICES}",
        ),
    ]
    for stage in ("api", *PER_RELEASE):
        pair = (stage, f"{stage}-2")
        if stage == "api":
            what = "release records created (insert releases)"
            did = [created[p]["insert releases"] - sent[p]["insert releases"] for p in pair]
            errors = 0
            expected = SERVICES
        else:
            what = "messages handled"
            did = [after[p]["ok"] - before.get(p, Counter())["ok"] for p in pair]
            errors = sum(after[p]["error"] - before.get(p, Counter())["error"] for p in pair)
            expected = PER_RELEASE[stage] * SERVICES
        rows.append(
            (
                f"  {stage}: {what}, {' + '.join(pair)} (errors)",
                f"{did[0]} + {did[1]} = {sum(did)} ({errors})",
                f"= {expected}, each > 0",
            )
        )
    return rows
