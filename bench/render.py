"""``render``: what rendering in worker processes within a budget costs, against
rendering in this process."""

import asyncio
import time

from bench.harness import TEMPLATE, Bench
from bench.readings import Row, pct
from devstack.system import FabuSystem
from shared.models.catalog import BaseParams
from shared.templating.render import ReleaseParams, render
from shared.templating.sandbox import Budget, Renderers

RENDERS = 500


async def render_rows(_system: FabuSystem, _bench: Bench) -> list[Row]:
    params = ReleaseParams(
        release_id="bench",
        service="web",
        version="1.0",
        image="r/web:1.0",
        environment="b",
        namespace="bench",
    )
    config = BaseParams(replicas=2)
    render(TEMPLATE, config, params)  # compiled once, as a renderer's cache keeps it
    started = time.perf_counter()
    for _ in range(RENDERS):
        render(TEMPLATE, config, params)
    inline_s = time.perf_counter() - started
    renderers = Renderers(Budget(), workers=2)
    try:
        await asyncio.gather(*(renderers.render(TEMPLATE, config, params) for _ in range(2)))
        started = time.perf_counter()
        await asyncio.gather(*(renderers.render(TEMPLATE, config, params) for _ in range(RENDERS)))
        pooled_s = time.perf_counter() - started
        alone: list[float] = []
        for _ in range(50):
            began = time.perf_counter()
            await renderers.render(TEMPLATE, config, params)
            alone.append(time.perf_counter() - began)
    finally:
        await renderers.close()
    return [
        ("render: the demo template", "", ""),
        ("  in the process (renders/s)", f"{RENDERS / inline_s:.0f}", ""),
        ("  in the process, each (ms)", f"{1000 * inline_s / RENDERS:.2f}", ""),
        ("  through 2 budgeted workers, 500 at once (renders/s)", f"{RENDERS / pooled_s:.0f}", ""),
        (
            "  one at a time through a worker, p50 / p99 (ms)",
            f"{1000 * pct(alone, 0.5):.2f} / {1000 * pct(alone, 0.99):.2f}",
            "",
        ),
    ]
