"""How many requests a process keeps open to one API server: a limit that follows its answers.

The limit grows by one for every ``limit`` answers that come back in time
(additive increase: about one more each round of answers) up to ``ceiling``,
and is halved when the server pushes back: a ``429`` or ``5xx``, an answer
slower than ``slow_s``, or none at all (multiplicative decrease, as TCP does).
One cut per ``slow_s``: the answers still in flight when the first one came
back late were sent under the same load. A ``Retry-After`` the server sends
is the retry's delay (see ``Cluster``).
"""

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Gauge

# Served with the stage's other metrics (``shared.probes``).
LIMIT = Gauge(
    "fabu_cluster_request_limit",
    "Requests this process may keep open to an API server now (the last one to change)",
)


class Gate:
    def __init__(self, start: int = 16, ceiling: int = 256, slow_s: float = 2.0) -> None:
        self.limit = float(start)
        self.open = 0
        self._ceiling = ceiling
        self._slow_s = slow_s
        self._cut_at = -slow_s
        self._waiting: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def request(self) -> AsyncIterator["Answer"]:
        """Hold one of the places while a request is open; say through the ``Answer``
        whether the server pushed back (an exception from the request counts as no answer)."""
        while self.open >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                self._wake()  # a place it was woken for goes to the next
                raise
        self.open += 1
        answer = Answer()
        started = time.monotonic()
        try:
            yield answer
        except Exception:
            answer.pushed_back = True
            raise
        finally:
            self.open -= 1
            self._answered(time.monotonic() - started, answer.pushed_back)

    def _answered(self, took: float, pushed_back: bool) -> None:
        if pushed_back or took > self._slow_s:
            at = time.monotonic()
            if at - self._cut_at > self._slow_s:
                self.limit = max(1.0, self.limit / 2)
                self._cut_at = at
        else:
            self.limit = min(float(self._ceiling), self.limit + 1 / self.limit)
        LIMIT.set(self.limit)
        self._wake()

    def _wake(self) -> None:
        for _ in range(max(0, int(self.limit) - self.open)):
            if not self._waiting:
                return
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)


class Answer:
    """Set ``pushed_back`` when the server answered 429 or 5xx."""

    pushed_back = False
