"""What a process keeps of its reads of things people rarely change (users, tokens,
sessions, environments, services, configs, channels) for ``keep_s``.

Every write that changes one of them drops all that is kept in its process and
``tell``s the others (the processes subscribe to a NATS notice and drop theirs): a
revoked token or a changed config takes effect at once everywhere, or, when the
notice is lost (NATS down), after ``keep_s`` at most.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

import structlog

log = structlog.get_logger()

T = TypeVar("T")

# The most reads kept at once; beyond it, all are dropped and kept afresh.
KEPT_AT_MOST = 10_000


async def _nobody() -> None:
    return None


class Kept:
    def __init__(self, keep_s: float = 0.0, tell: Callable[[], Awaitable[None]] = _nobody) -> None:
        self._keep_s = keep_s
        self._tell = tell
        # key → (kept until, by time.monotonic(); the read, done or under way)
        self._reads: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """What ``read`` answered for ``key`` less than ``keep_s`` ago, else its answer now;
        callers that ask at once while it is read share that one read."""
        if self._keep_s <= 0:
            return await read()
        clock = time.monotonic()
        kept = self._reads.get(key)
        if kept is None or kept[0] <= clock:
            if len(self._reads) >= KEPT_AT_MOST:
                self._reads.clear()
            kept = (clock + self._keep_s, asyncio.ensure_future(read()))
            self._reads[key] = kept
        reading = kept[1]
        try:
            return cast("T", await asyncio.shield(reading))
        except BaseException:
            if reading.done() and self._reads.get(key, (0.0, None))[1] is reading:
                del self._reads[key]  # a failed read is not kept
            raise

    def forget(self) -> None:
        """Drop everything kept (something changed, here or in another process)."""
        self._reads.clear()

    async def changed(self) -> None:
        """Something kept was written here: forget, and tell the other processes."""
        self.forget()
        try:
            await self._tell()
        except Exception:  # they forget after keep_s anyway
            log.warning("could not tell the other processes that settings changed")
