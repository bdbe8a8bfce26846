"""The adaptive limit on requests open to an API server (shared.cluster.throttle)."""

import asyncio

import pytest

from shared.cluster.throttle import Gate


async def test_no_more_than_the_limit_are_open_at_once() -> None:
    gate = Gate(start=2, ceiling=2)
    most = 0
    release = asyncio.Event()

    async def one() -> None:
        nonlocal most
        async with gate.request():
            most = max(most, gate.open)
            await release.wait()

    tasks = [asyncio.create_task(one()) for _ in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert gate.open == 2
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
    assert gate.open == 0


async def test_answers_in_time_raise_the_limit_up_to_the_ceiling() -> None:
    gate = Gate(start=4, ceiling=6)
    for _ in range(4):
        async with gate.request():
            pass
    # About one more place for each round of ``limit`` answers.
    assert 4.9 < gate.limit < 5
    for _ in range(200):
        async with gate.request():
            pass
    assert gate.limit == 6


async def test_push_back_halves_the_limit_once_per_slow_period() -> None:
    gate = Gate(start=16, ceiling=64, slow_s=60)
    async with gate.request() as answer:
        answer.pushed_back = True
    assert gate.limit == 8
    # The answers sent under the same load: no second cut.
    async with gate.request() as answer:
        answer.pushed_back = True
    assert gate.limit == 8


async def test_no_answer_is_push_back_and_a_cancelled_waiter_leaves_no_place_taken() -> None:
    gate = Gate(start=1, ceiling=4, slow_s=60)
    with pytest.raises(OSError, match="reset"):
        async with gate.request():
            raise OSError("connection reset")
    assert gate.limit == 1  # never below one
    assert gate.open == 0
    held = asyncio.Event()

    async def holder() -> None:
        async with gate.request():
            await held.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.set()
    await first
    async with asyncio.timeout(1):
        async with gate.request():
            assert gate.open == 1
