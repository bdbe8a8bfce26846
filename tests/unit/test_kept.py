"""What a process keeps of its reads (``shared.store.kept``)."""

import asyncio

import pytest

from shared.store.kept import Kept


class Reads:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> int:
        self.count += 1
        await asyncio.sleep(0)  # a read takes a turn of the event loop at least
        return self.count


async def test_callers_asking_at_once_share_one_read_and_a_change_drops_it() -> None:
    told: list[str] = []

    async def tell() -> None:
        told.append("changed")

    kept, read = Kept(60, tell), Reads()
    assert await asyncio.gather(*(kept.get("k", read) for _ in range(50))) == [1] * 50
    assert await kept.get("k", read) == 1
    await kept.changed()
    assert told == ["changed"]
    assert await kept.get("k", read) == 2


async def test_nothing_is_kept_with_no_time_to_keep_it() -> None:
    kept, read = Kept(0), Reads()
    assert [await kept.get("k", read) for _ in range(3)] == [1, 2, 3]


async def test_a_failed_read_is_not_kept() -> None:
    kept, calls = Kept(60), []

    async def failing() -> int:
        calls.append(1)
        raise ConnectionError("the database is unavailable")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await kept.get("k", failing)
    assert len(calls) == 2
