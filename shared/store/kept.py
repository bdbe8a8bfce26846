"""What a process keeps of its reads of things people rarely change (users, tokens,
sessions, environments, services, configs, channels) for ``keep_s``.

Every write that changes one of them drops all that is kept in its process and
``tell``s the others (the processes subscribe to a NATS notice and drop theirs): a
revoked token or a changed config takes effect at once everywhere, or, when the
notice is lost (NATS down), after ``keep_s`` at most.
"""

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar, cast

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
        # key → (kept until, by time.monotonic(); what was read)
        self._reads: dict[Hashable, tuple[float, object]] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """What ``read`` answered for ``key`` less than ``keep_s`` ago, else its answer now."""
        if self._keep_s <= 0:
            return await read()
        clock = time.monotonic()
        kept = self._reads.get(key)
        if kept is not None and kept[0] > clock:
            return cast("T", kept[1])
        value = await read()
        if len(self._reads) >= KEPT_AT_MOST:
            self._reads.clear()
        self._reads[key] = (clock + self._keep_s, value)
        return value

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
