"""Rendering in worker processes: a hostile template costs at most its budget, and the
event loop that asked keeps running meanwhile."""

import asyncio
import time
from typing import Any

import pytest

from shared.models.catalog import BaseParams
from shared.templating.render import Limits, RenderError
from shared.templating.sandbox import Budget, Renderers
from tests.support.wait import eventually
from tests.unit.test_render import RELEASE

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ service }}\n"
BILLION_STEPS = "{% for i in range(100000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"


async def _lag_while(work: "asyncio.Future[Any]") -> float:
    """The longest the event loop was kept from a 20 ms timer while ``work`` ran."""
    worst = 0.0
    while not work.done():
        before = time.monotonic()
        await asyncio.sleep(0.02)
        worst = max(worst, time.monotonic() - before - 0.02)
    return worst


async def test_a_billion_steps_are_stopped_at_the_cpu_budget_and_the_loop_runs_on() -> None:
    renderers = Renderers(Budget(cpu_s=0.5, memory_mib=128), workers=1)
    try:
        work = asyncio.ensure_future(renderers.render(BILLION_STEPS, BaseParams(), RELEASE))
        lag = await _lag_while(work)
        with pytest.raises(RenderError, match=r"render budget of 0\.5 s of CPU time"):
            await work
        assert lag < 1.0  # the loop was never held for the render
        # The worker that spent its budget was replaced: the next render works.
        rendered = await renderers.render(CONFIG_MAP, BaseParams(), RELEASE)
        assert rendered.objects[0]["metadata"]["name"] == "web"
    finally:
        await renderers.close()


async def test_a_loop_in_c_that_never_returns_to_python_is_killed_by_the_kernel() -> None:
    renderers = Renderers(Budget(cpu_s=0.5, memory_mib=128), workers=1)
    try:
        with pytest.raises(RenderError, match=r"render budget of 0\.5 s of CPU time"):
            await renderers.render("{{ range(99999)|sum }}" * 100000, BaseParams(), RELEASE)
    finally:
        await renderers.close()


@pytest.mark.parametrize(
    "template",
    [
        "{{ ('x' * 1000000).split('x') | list | length }}",
        "{% set a = range(99999)|list %}{{ [a, a, a, a, a, a, a, a] | map('list') | list }}",
    ],
)
async def test_memory_beyond_the_budget_is_refused(template: str) -> None:
    renderers = Renderers(Budget(cpu_s=5, memory_mib=16), workers=1)
    try:
        with pytest.raises(RenderError, match="render budget of 16 MiB of memory"):
            await renderers.render(template * 20, BaseParams(), RELEASE)
        assert (await renderers.render(CONFIG_MAP, BaseParams(), RELEASE)).objects
    finally:
        await renderers.close()


async def test_errors_and_limits_come_back_as_render_errors_with_the_line() -> None:
    renderers = Renderers(Budget(limits=Limits(max_objects=2)), workers=2)
    try:
        with pytest.raises(RenderError, match=r"line 2: division by zero"):
            await renderers.render("a: 1\nb: {{ 1/0 }}\n", BaseParams(), RELEASE)
        many = "---\n".join(CONFIG_MAP.replace("{{ service }}", f"c{i}") for i in range(3))
        with pytest.raises(RenderError, match="holds 3 objects; at most 2"):
            await renderers.render(many, BaseParams(), RELEASE)
        with pytest.raises(RenderError, match="line 1"):
            await renderers.check("{% for %}")
        await renderers.check(CONFIG_MAP)
        # Several at once share the workers.
        done = await asyncio.gather(
            *(renderers.render(CONFIG_MAP, BaseParams(), RELEASE) for _ in range(6))
        )
        assert len(done) == 6
    finally:
        await renderers.close()


async def test_a_cancelled_render_leaves_no_worker_answering_the_next_one_wrong() -> None:
    renderers = Renderers(Budget(cpu_s=3), workers=1)
    try:
        slow = asyncio.ensure_future(renderers.render(BILLION_STEPS, BaseParams(), RELEASE))

        async def started() -> bool:
            return bool(renderers._all)  # the worker process is running

        await eventually(started, "the render process to start")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        rendered = await renderers.render(CONFIG_MAP, BaseParams(), RELEASE)
        assert rendered.objects[0]["kind"] == "ConfigMap"
    finally:
        await renderers.close()
