"""Templates are rendered in worker processes, each render within a budget.

A template is code that config-admins and template repositories write. It runs
in Jinja's sandbox, which keeps it from Fabu's objects but not from spending
CPU and memory, so it never runs on an event loop: ``Renderers`` hands each
render to one of a few child processes (``python -m shared.templating.sandbox``), which

- stops it when it has used ``cpu_s`` seconds of CPU time (an interval timer
  raises inside the render; a C loop that never returns to Python is killed
  by the kernel at the next whole second, ``RLIMIT_CPU``);
- stops it when it allocates more than ``memory_mib`` beyond what the process
  held before it (``RLIMIT_DATA``: the allocation fails, ``MemoryError``);
- is replaced after either, so nothing of a hostile render stays.

The caller gets a ``RenderError`` naming the budget it went over, and its
event loop keeps answering meanwhile.
"""

import asyncio
import contextlib
import math
import os
import pickle
import resource
import signal
import struct
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from shared.models.catalog import BaseParams
from shared.models.parameters import Schema
from shared.settings import Settings
from shared.templating.render import Limits, ReleaseParams, Rendered, RenderError, check, render

_HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class Budget:
    """What one render may spend, and what the manifest it makes may be."""

    cpu_s: float = 2.0
    memory_mib: int = 256
    limits: Limits = field(default_factory=Limits)

    def cpu_message(self) -> str:
        return f"the template went over its render budget of {self.cpu_s:g} s of CPU time"

    def memory_message(self) -> str:
        return f"the template went over its render budget of {self.memory_mib} MiB of memory"


def renderers(settings: Settings) -> "Renderers":
    """The render processes a Fabu process keeps, with the budget its settings give."""
    limits = Limits(settings.manifest_max_chars, settings.manifest_max_objects)
    budget = Budget(settings.render_cpu_s, settings.render_memory_mib, limits)
    return Renderers(budget, settings.render_workers)


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, request: bytes) -> tuple[str, Any, bool]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None  # noqa: S101 - a pipe
        assert stdout is not None  # noqa: S101 - a pipe
        stdin.write(_HEADER.pack(len(request)) + request)
        await stdin.drain()
        size = _HEADER.unpack(await stdout.readexactly(_HEADER.size))[0]
        answer: tuple[str, Any, bool] = pickle.loads(await stdout.readexactly(size))  # noqa: S301 - our own child
        return answer

    def alive(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()


class Renderers:
    """Up to ``workers`` render processes, started when first needed."""

    def __init__(self, budget: Budget | None = None, workers: int = 2) -> None:
        self.budget = budget or Budget()
        self._size = workers
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._free = asyncio.Condition()
        # Past this, the worker is stuck outside Python (the CPU limit would have
        # ended it): killed, and the render refused.
        self._wall_s = max(60.0, self.budget.cpu_s * 20)

    async def render(
        self,
        template: str,
        params: BaseParams,
        release: ReleaseParams,
        restarted_at: datetime | None = None,
        *,
        parameters: Schema | None = None,
        hidden: list[str] | None = None,
    ) -> Rendered:
        """``render.render`` in a worker process, within the budget (RenderError if not)."""
        rendered: Rendered = await self._call(
            "render",
            (template, params, release, restarted_at),
            {"parameters": parameters, "hidden": hidden, "limits": self.budget.limits},
        )
        return rendered

    async def check(self, template: str) -> None:
        """``shared.templating.render.check`` in a worker, within the budget."""
        await self._call("check", (template,), {})

    async def _take(self) -> _Worker:
        async with self._free:
            while not self._idle and len(self._all) >= self._size:
                await self._free.wait()
            if self._idle:
                return self._idle.pop()
            worker = await _start(self.budget)
            self._all.add(worker)
            return worker

    async def _give_back(self, worker: _Worker) -> None:
        async with self._free:
            if worker.alive():
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._free.notify()

    async def _call(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        request = pickle.dumps((op, args, kwargs))
        worker = await self._take()
        try:
            kind, value, spent = await asyncio.wait_for(worker.ask(request), self._wall_s)
            if spent:
                await worker.stop()
        except TimeoutError as exc:
            await worker.stop()
            raise RenderError(
                f"the template did not finish rendering within {self._wall_s:g} s"
            ) from exc
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await worker.stop()
            raise RenderError(self._died(worker)) from exc
        except BaseException:
            await worker.stop()  # cancelled mid-render: its answer would confuse the next
            raise
        finally:
            await self._give_back(worker)
        if kind == "error":
            raise RenderError(value)
        return value

    def _died(self, worker: _Worker) -> str:
        code = worker.process.returncode
        if code == -signal.SIGXCPU:
            return self.budget.cpu_message()
        return f"the template's render process ended unexpectedly (exit status {code})"

    async def close(self) -> None:
        async with self._free:
            workers, self._idle = list(self._all), []
            self._all.clear()
        for worker in workers:
            await worker.stop()


async def _start(budget: Budget) -> _Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.templating.sandbox",
        str(budget.cpu_s),
        str(budget.memory_mib),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )
    return _Worker(process)


# The worker process.


class _Overrun(BaseException):
    """The render's CPU time is spent (a BaseException: no ``except Exception`` keeps it)."""


def _overrun(_signum: int, _frame: Any) -> None:
    raise _Overrun


def _data_bytes() -> int:
    """The process's data segment now (VmData), which RLIMIT_DATA limits."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit(cpu_s: float, memory_bytes: int) -> None:
    """Let the next render use ``cpu_s`` more CPU seconds and ``memory_bytes`` more memory."""
    _, data_hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (_data_bytes() + memory_bytes, data_hard))
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(spent + cpu_s) + 1, cpu_hard))
    signal.setitimer(signal.ITIMER_PROF, cpu_s)


def _answer(
    op: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget
) -> tuple[str, Any, bool]:
    """The answer to one request: (kind, value, whether a budget was spent)."""
    try:
        _limit(budget.cpu_s, budget.memory_mib * 1024 * 1024)
        try:
            if op == "render":
                value: Rendered | None = render(*args, **kwargs)
            else:
                check(*args)
                value = None
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _Overrun:
        return ("error", budget.cpu_message(), True)
    except MemoryError:
        return ("error", budget.memory_message(), True)
    except RenderError as exc:
        return ("error", str(exc), False)
    except Exception as exc:  # a manifest Fabu's checks stumble on is the template's error
        return ("error", f"the manifest could not be checked: {exc!r}", False)
    return ("ok", value, False)


def _read(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    return stream.read(_HEADER.unpack(header)[0])


def main() -> None:
    budget = Budget(cpu_s=float(sys.argv[1]), memory_mib=int(sys.argv[2]))
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, never into an answer
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPROF, _overrun)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    while (request := _read(sys.stdin.buffer)) is not None:
        op, args, kwargs = pickle.loads(request)  # noqa: S301 - from the parent process
        answer = _answer(op, args, kwargs, budget)
        try:
            data = pickle.dumps(answer)
        except MemoryError:
            answer = ("error", budget.memory_message(), True)
            data = pickle.dumps(answer)
        answers.write(_HEADER.pack(len(data)) + data)
        answers.flush()
        if answer[2]:
            return  # a budget was spent: a fresh process takes the next render


if __name__ == "__main__":
    main()
