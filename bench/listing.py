"""``list``: 20 releases at once with the records stored so far (none, run alone) and
again with 100,000: the documents each examined and the database's milliseconds, which
stay flat as releases pile up if every lookup is an index range; and the release list
page with 1,000, 10,000 and 100,000 records stored, for each query shape."""

import asyncio
import os
import statistics
import time
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.examined import Examined, examined
from bench.harness import Bench, services
from bench.readings import Row, pct
from devstack.system import FabuSystem
from shared.store.mongo import new_id

LIST_SIZES = (1_000, 10_000, 100_000)
# The records stored at most (fewer for a quick look: FABU_BENCH_LIST_RECORDS).
LIST_RECORDS = int(os.environ.get("FABU_BENCH_LIST_RECORDS", "100000"))
# The collection stops growing once the newest-first page takes longer.
LIST_GIVE_UP_S = 10.0
# Requests per query shape and size: up to LIST_REQUESTS, and at least 3, while the
# size's requests have taken less than LIST_BUDGET_S.
LIST_REQUESTS = 20
LIST_BUDGET_S = 60.0
# The releases measured at each end, at once, each of its own service.
GROWTH_RELEASES = 20


async def store_records(system: FabuSystem, mongo_url: str, total: int) -> None:
    """Fill the release collection up to ``total`` with copies of a real release."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        releases = client[system.env["FABU_MONGO_DB"]]["releases"]
        model = await releases.find_one({"state": "succeeded"})
        assert model is not None  # noqa: S101 - the bench ran releases that succeeded
        have = await releases.count_documents({})
        for start in range(have, total, 2000):
            batch = []
            for i in range(start, min(start + 2000, total)):
                doc = {**model, "_id": new_id(), "service": f"svc-{i % 500}"}
                doc["environment"] = ("dev", "test", "prod")[i % 3]
                doc["operator"] = f"user{i % 20}"
                doc["state"] = "failed" if i % 10 == 0 else "succeeded"
                batch.append(doc)
            await releases.insert_many(batch)
    finally:
        await client.close()


async def list_pages(api: httpx.AsyncClient) -> dict[str, list[float]]:
    """Seconds per list page (50 rows) for each query shape, the shapes taken in turn."""
    shapes: dict[str, dict[str, Any]] = {
        "newest": {},
        "one service": {"service": "svc-7"},
        "service + environment": {"service": "svc-7", "environment": "prod"},
        "operator + state": {"operator": "user0", "state": "failed"},
    }
    times: dict[str, list[float]] = {name: [] for name in shapes}
    began = time.perf_counter()
    for sample in range(LIST_REQUESTS):
        if sample >= 3 and time.perf_counter() - began > LIST_BUDGET_S:
            break
        for name, params in shapes.items():
            started = time.perf_counter()
            answer = await api.get("/releases", params={**params, "limit": 50}, timeout=600)
            times[name].append(time.perf_counter() - started)
            answer.raise_for_status()
    return times


async def stored(system: FabuSystem) -> int:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system.env["FABU_MONGO_URL"])
    try:
        return await client[system.env["FABU_MONGO_DB"]]["releases"].count_documents({})
    finally:
        await client.close()


async def releases_examined(
    system: FabuSystem, bench: Bench, prefix: str
) -> tuple[int, list[Row], Examined]:
    """GROWTH_RELEASES releases at once, profiled: the records stored before them, the
    rows, and the window (its figures per release)."""
    before = await stored(system)
    print(f"{GROWTH_RELEASES} releases at once with {before} records stored...", flush=True)
    env, names = await services(bench, GROWTH_RELEASES, prefix)
    window = await examined(system)
    try:
        ids = await asyncio.gather(*(bench.release(n, env, "1.0.0") for n in names))
        await bench.settled(list(ids))
    finally:
        await window.stop()
    bodies = await bench.finished(list(ids))
    ok = sum(b["state"] == "succeeded" for b in bodies)
    rows: list[Row] = [
        (
            f"{GROWTH_RELEASES} releases at once, {before:,} records stored",
            f"{ok}/{GROWTH_RELEASES} succeeded",
            "",
        )
    ]
    rows += await window.rows(f"{before:,} stored", GROWTH_RELEASES)
    await window.close()
    bench.drop(env)
    return before, rows, window


async def list_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    first, rows, small = await releases_examined(system, bench, "ga")
    pages: dict[int, dict[str, list[float]]] = {}
    for records in [n for n in LIST_SIZES if n < LIST_RECORDS] + [LIST_RECORDS]:
        print(f"the release list with {records} records...", flush=True)
        await store_records(system, bench.env["FABU_MONGO_URL"], records)
        pages[records] = await list_pages(bench.api)
        if max(pages[records]["newest"]) > LIST_GIVE_UP_S:
            break
    last, grown, large = await releases_examined(system, bench, "gb")
    rows += grown
    for what, figures in (
        ("documents examined", (large.docs_per, small.docs_per)),
        ("database ms", (large.ms_per, small.ms_per)),
    ):
        if None not in figures:
            rows.append(
                (
                    f"  {what} per release, {last:,} / {first:,} stored",
                    " / ".join(f"{n:.1f}" for n in figures if n is not None),
                    "flat",
                )
            )
    return rows + [
        (
            f"list page, {records:,} records, {shape}: p50 / p99 (ms, {len(t)} requests)",
            f"{statistics.median(t) * 1000:.0f} / {pct(t, 0.99) * 1000:.0f}",
            "p99 < 50 ms at 100,000",
        )
        for records, shapes in pages.items()
        for shape, t in shapes.items()
    ]
