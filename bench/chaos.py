"""``make chaos``: faults while releases run, on the local real stack; prints a table.

Every drill releases new services into an environment that emails its
results to a local SMTP sink, and counts: releases that reach a final state,
the reasons of those that failed, and the final emails (by Message-ID) each
release got. ``python -m bench.chaos <drill>...`` runs only the named ones.

- kills: 100 releases at once while, every 1.3 s, a random stage process (any
  of the five) is SIGKILLed and started again 0.3 s later.
- tracker: two tracker replicas; one is SIGKILLed once 40 releases are being
  tracked.
- nats, secantusdb (the database): 60 releases at once; 1 s later the
  component is SIGKILLed and started again 8 s after. Meanwhile the API is asked
  for a list page and for a new release every 0.5 s, and its answers are counted.
- apiserver: 40 releases; as soon as one is tracked the Kubernetes API server
  is SIGKILLed, for 20 s with a 120 s rollout timeout, then for 25 s with a
  10 s one.
"""

import asyncio
import contextlib
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from bench.harness import FINAL, Bench, limited, on_stack
from devstack.stack import Stack
from devstack.system import STAGES, FabuSystem

RELEASES = 100
RESTARTED = 60
APISERVER_RELEASES = 40
KILL_EVERY_S = 1.0
RESTART_AFTER_S = 0.3
TRACKED = 40
DRILLS = ("kills", "tracker", "nats", "secantusdb", "apiserver")
DOWN_S = 8.0
# Shorter than the rollout timeout (the releases resume), then longer (they fail).
APISERVER_SHORT_S = 20.0
APISERVER_LONG_S = 25.0


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


async def batch(bench: Bench, prefix: str, count: int, **params: Any) -> tuple[str, list[str]]:
    """A new environment that emails its results, with ``count`` services ready to release."""
    unique = uuid.uuid4().hex[:6]
    env = await bench.environment(f"chaos-{prefix}-{unique}")
    channel = [{"type": "email", "recipients": ["chaos@example.com"]}]
    answer = await bench.api.put(f"/environments/{env}/notifications", json=channel)
    answer.raise_for_status()
    names = [f"{prefix}{unique}-{i}" for i in range(count)]
    for name in names:
        await bench.service(name, env, **params)
    await limited(16, [bench.push(n, "1.0.0") for n in names])
    return env, names


async def release_all(bench: Bench, env: str, names: list[str]) -> list[str]:
    return list(await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names)))


async def outcome(bench: Bench, mail: Mail, ids: list[str], took: float) -> list[tuple[str, str]]:
    """Final states, the time to reach them, and the final emails each release got."""
    await asyncio.sleep(10)  # the notifier's last deliveries
    bodies = await _bodies(bench.api, ids)
    states = Counter(b["state"] for b in bodies)
    finals = [
        sum(mail.ids[f"<{b['id']}.{event}@fabu>"] for event in ("succeeded", "failed"))
        for b in bodies
    ]
    unknown = sum(d["state"] == "unknown" for b in bodies for d in b["notifications"].values())
    reasons = Counter(_shape(b["reason"]) for b in bodies if b["state"] == "failed")
    return [
        (
            "  releases in a final state",
            f"{sum(b['state'] in FINAL for b in bodies)} of {len(ids)} ({dict(states)})",
        ),
        *((f"  failed with: {reason}", str(n)) for reason, n in reasons.items()),
        ("  time until all were final (s)", f"{took:.1f}"),
        ("  releases with exactly one final email", str(finals.count(1))),
        ("  releases with no final email", str(finals.count(0))),
        ("  releases with more than one", str(sum(f > 1 for f in finals))),
        ("  deliveries recorded 'unknown' (notifier died mid-send)", str(unknown)),
    ]


def _shape(reason: str) -> str:
    """A failure reason without the parts that differ per release (names, times)."""
    return re.sub(r"\d{2}:\d{2}:\d{2}|\"[^\"]*\"|:\d+", "…", reason)[:150]


async def kills_during_releases(
    system: FabuSystem, bench: Bench, mail: Mail
) -> list[tuple[str, str]]:
    env, names = await batch(bench, "k", RELEASES)
    ids = await release_all(bench, env, names)
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
    took = await _until_final(bench.api, ids, 600)
    stop.set()
    await task
    return [
        (f"{RELEASES} releases at once; stage processes SIGKILLed", ""),
        (
            f"  killed (one every {KILL_EVERY_S + RESTART_AFTER_S:g} s)",
            ", ".join(f"{s} {n}" for s, n in sorted(kills.items())),
        ),
        *await outcome(bench, mail, ids, took),
    ]


async def _answers(api: httpx.AsyncClient, env: str, spare: str, until: float) -> Counter[str]:
    """What the API answers while a component is down: a list page and a new release."""
    seen: Counter[str] = Counter()
    while time.monotonic() < until:
        for call in (
            api.get("/releases", params={"limit": 1}),
            api.post("/releases", json={"service": spare, "environment": env, "version": "1.0.0"}),
        ):
            try:
                answer = await call
                detail = answer.json().get("detail", "") if answer.status_code >= 400 else ""
                seen[f"{answer.request.method} {answer.status_code} {detail}".strip()] += 1
            except httpx.HTTPError as exc:
                seen[f"no answer: {type(exc).__name__}"] += 1
        await asyncio.sleep(0.5)
    return seen


async def component_restarted(
    bench: Bench, mail: Mail, component: str, down_s: float
) -> list[tuple[str, str]]:
    """SIGKILL one part of the stack 1 s after releases start; start it again after ``down_s``."""
    stack = Stack()
    env, names = await batch(bench, component[:4], RESTARTED + 1)
    spare = names.pop()
    began = time.monotonic()
    ids = await release_all(bench, env, names)
    await asyncio.sleep(1.0)
    stack.stop_component(component, signal.SIGKILL)
    answers = await _answers(bench.api, env, spare, time.monotonic() + down_s)
    stack.start_component(component)
    await _until_final(bench.api, ids, 600)
    took = time.monotonic() - began
    spare_releases = await _listed(bench.api, spare)
    return [
        (f"{RESTARTED} releases at once; {component} SIGKILLed after 1 s, down {down_s:g} s", ""),
        *((f"  API while down: {answer}", f"{n}x") for answer, n in answers.most_common()),
        ("  releases stored from those calls", str(spare_releases)),
        *await outcome(bench, mail, ids, took),
    ]


async def _listed(api: httpx.AsyncClient, service: str) -> int:
    page = await api.get("/releases", params={"service": service})
    return len(page.raise_for_status().json()["items"])


async def _applied(api: httpx.AsyncClient, ids: list[str], within_s: float) -> int:
    """Wait until some release is being tracked; how many are."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        page = await api.get("/releases", params={"limit": 200})
        tracked = sum(
            bool(r["id"] in ids and r["state"] == "applied") for r in page.json()["items"]
        )
        if tracked:
            return tracked
        await asyncio.sleep(0.05)
    raise RuntimeError("no release was applied in time")


async def apiserver_stopped(
    bench: Bench, mail: Mail, down_s: float, rollout_timeout_s: int
) -> list[tuple[str, str]]:
    """SIGKILL the Kubernetes API server as soon as releases are being tracked."""
    stack = Stack()
    env, names = await batch(bench, "kapi", APISERVER_RELEASES, rollout_timeout_s=rollout_timeout_s)
    began = time.monotonic()
    ids = await release_all(bench, env, names)
    tracked = await _applied(bench.api, ids, 60)
    stack.stop_component("kube-apiserver", signal.SIGKILL)
    await asyncio.sleep(down_s)
    stack.start_component("kube-apiserver")
    await _until_final(bench.api, ids, 600)
    took = time.monotonic() - began
    return [
        (
            f"{APISERVER_RELEASES} releases (rollout timeout {rollout_timeout_s} s); "
            f"kube-apiserver SIGKILLed, down {down_s:g} s",
            "",
        ),
        ("  being tracked when it stopped", str(tracked)),
        *await outcome(bench, mail, ids, took),
    ]


async def tracker_replica_killed(
    system: FabuSystem, bench: Bench, mail: Mail
) -> list[tuple[str, str]]:
    system.start("tracker", name="tracker-2")
    env, names = await batch(bench, "t", TRACKED)
    began = time.monotonic()
    ids = await release_all(bench, env, names)
    tracked = await _applied(bench.api, ids, 60)
    system.kill("tracker")
    await _until_final(bench.api, ids, 300)
    took = time.monotonic() - began
    system.start("tracker")
    return [
        (f"{TRACKED} releases tracked by two trackers; one SIGKILLed", ""),
        ("  being tracked when it was killed", str(tracked)),
        *await outcome(bench, mail, ids, took),
    ]


async def main(drills: list[str]) -> None:
    mail = Mail()
    rows: list[tuple[str, str]] = []
    faster = {"FABU_ACK_WAIT_S": "5", "FABU_NOTIFY_CLAIM_STALE_S": "10"}
    async with on_stack("chaos", mail, faster) as (system, bench):
        stack = Stack().pids()  # the parts of the stack run here (not external ones)
        if "kills" in drills:
            print("SIGKILL of random stages during 100 concurrent releases...", flush=True)
            rows += await kills_during_releases(system, bench, mail)
        if "tracker" in drills:
            print("a tracker replica killed while another runs...", flush=True)
            rows += await tracker_replica_killed(system, bench, mail)
        for component in ("nats", "secantusdb"):
            if component in drills and component in stack:
                print(f"{component} killed and restarted during releases...", flush=True)
                rows += await component_restarted(bench, mail, component, DOWN_S)
        if "apiserver" in drills and "kube-apiserver" in stack:
            print("the Kubernetes API server stopped while releases are tracked...", flush=True)
            rows += await apiserver_stopped(bench, mail, APISERVER_SHORT_S, 120)
            rows += await apiserver_stopped(bench, mail, APISERVER_LONG_S, 10)
    width = max(len(r[0]) for r in rows) + 2
    print()
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    print(f"\n(logs of the run: {system.logs})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or list(DRILLS)))
