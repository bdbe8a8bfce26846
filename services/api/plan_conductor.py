"""The plan conductor: every API replica runs it beside its routes.

Every ``FABU_PLAN_TICK_S`` it starts the scheduled plans whose time has come and
steps each running plan (``plan_service.begin`` and ``advance``). Plans are in
MongoDB, so a schedule outlives any process; each step is written only on the
revision it read, so with several replicas a plan starts once and each item's
release is asked for once.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import structlog

from services.api import plan_service
from services.api.context import Api
from shared.models.base import now

log = structlog.get_logger()


async def tick(api: Api) -> None:
    """One round: the plans due started, the running ones stepped."""
    for plan in await api.plans.due(now()):
        await plan_service.begin(api, plan)
    running = await api.plans.running()
    stepped = await asyncio.gather(
        *(plan_service.advance(api, p) for p in running), return_exceptions=True
    )
    for plan, outcome in zip(running, stepped, strict=True):
        if isinstance(outcome, BaseException):
            log.error("could not step a plan; trying again", plan_id=plan.id, error=str(outcome))


@asynccontextmanager
async def conducting(api: Api) -> AsyncIterator[None]:
    """Run the conductor while the app runs."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                await tick(api)
            except Exception:
                log.exception("the plan conductor's round failed; trying again")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), api.settings.plan_tick_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
