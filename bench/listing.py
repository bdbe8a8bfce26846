"""``list``: the release list page with 1,000, 10,000 and 100,000 records stored, for
each query shape."""

import statistics
import time
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.harness import Bench
from bench.readings import Row
from devstack.system import FabuSystem
from shared.store.mongo import new_id

LIST_SIZES = (1_000, 10_000, 100_000)
LIST_GIVE_UP_S = 10.0


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


async def list_pages(api: httpx.AsyncClient, samples: int) -> dict[str, list[float]]:
    """Seconds per list page (50 rows) for each query shape."""
    shapes: dict[str, dict[str, Any]] = {
        "newest": {},
        "one service": {"service": "svc-7"},
        "service + environment": {"service": "svc-7", "environment": "prod"},
        "operator + state": {"operator": "user0", "state": "failed"},
    }
    times: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(samples):
        for name, params in shapes.items():
            started = time.perf_counter()
            answer = await api.get("/releases", params={**params, "limit": 50}, timeout=600)
            times[name].append(time.perf_counter() - started)
            answer.raise_for_status()
    return times


async def list_rows(system: FabuSystem, bench: Bench) -> list[Row]:
    pages: dict[int, dict[str, list[float]]] = {}
    for records in LIST_SIZES:
        print(f"the release list with {records} records...", flush=True)
        await store_records(system, bench.env["FABU_MONGO_URL"], records)
        pages[records] = await list_pages(bench.api, 3)
        if max(pages[records]["newest"]) > LIST_GIVE_UP_S:
            break
    return [
        (
            f"list page, {records} records, {shape}: p50 / max (ms)",
            f"{statistics.median(t) * 1000:.0f} / {max(t) * 1000:.0f}",
            "p99 < 50 at 100000",
        )
        for records, shapes in pages.items()
        for shape, t in shapes.items()
    ]
