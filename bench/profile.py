"""Where a bench part's time went: CPU seconds of every process, and py-spy samples.

:class:`Profiler` samples each of Fabu's stage processes with py-spy (100 times
a second, without pausing them) while a part runs, and keeps the raw stacks
(``<stage>.txt``, one ``frame;frame;… count`` line per stack: feed them to any
flame graph tool) as the run's artifact. Only the thread holding the GIL
is sampled, so a stage's samples divided by the rate is about the time it ran
Python code. :func:`report_profiles` prints each stage's hottest functions and
keeps them beside the raw stacks (``summary.txt``).

:func:`cpu_seconds` reads from ``/proc`` the CPU time used so far by each
stage and by each of the stack's components (a component's whole process
group, and every process under it).
"""

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import Stack
from devstack.system import FabuSystem

RATE = 100
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sampled:
    """One process's samples: how many, and the functions that took the most of them."""

    samples: int
    # (function (file), share of the samples) for the functions running on top...
    own: list[tuple[str, float]]
    # ...and for Fabu's own functions anywhere on the stack.
    within: list[tuple[str, float]]


def _frame(frame: str) -> str:
    """``name (path/file.py:12)`` → ``name (file.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def _ours(frame: str) -> bool:
    # py-spy names a file by its path below the interpreter's search path.
    where = frame.partition(" (")[2]
    return where.startswith(("services/", "shared/"))


def summarise(raw: str, top: int = 8) -> Sampled:
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[_frame(frames[-1])] += n
        for name in {_frame(f) for f in frames if _ours(f)}:
            within[name] += n
    share = max(total, 1)
    return Sampled(
        samples=total,
        own=[(name, n / share) for name, n in own.most_common(top)],
        within=[(name, n / share) for name, n in within.most_common(top)],
    )


class Profiler:
    """py-spy recording every stage of ``system`` into ``folder`` until :meth:`stop`."""

    def __init__(self, system: FabuSystem, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        spy = Path(sys.executable).parent / "py-spy"
        self.jobs = {
            stage: subprocess.Popen(  # noqa: S603 - py-spy from this venv, on our own children
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(process.pid),
                    "--rate",
                    str(RATE),
                    "--nonblocking",
                    # Only the thread holding the GIL: Python's own CPU time, not its waits.
                    "--gil",
                    "--format",
                    "raw",
                    "--output",
                    str(folder / f"{stage}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for stage, process in system.processes.items()
        }

    def stop(self) -> dict[str, Sampled]:
        """Stop recording (py-spy writes its file on SIGINT); each stage's samples."""
        for job in self.jobs.values():
            job.send_signal(signal.SIGINT)
        for job in self.jobs.values():
            job.wait(timeout=60)
        return {
            stage: summarise(path.read_text())
            for stage in self.jobs
            if (path := self.folder / f"{stage}.txt").exists()
        }


def report_profiles(folder: Path, sampled: dict[str, Sampled]) -> None:
    """Each stage's hottest functions, printed and kept beside its raw stacks."""
    lines = []
    for stage, got in sampled.items():
        lines.append(f"{stage}: {got.samples} samples ({got.samples / RATE:.1f} s on a core)")
        lines += [f"  on top   {share:6.1%}  {name}" for name, share in got.own]
        lines += [f"  within   {share:6.1%}  {name}" for name, share in got.within]
    text = "\n".join(lines)
    (folder / "summary.txt").write_text(text + "\n")
    print(f"\nprofiles ({folder}):\n{text}\n", flush=True)


def _stat(pid: int) -> list[str]:
    # The command may hold spaces and parentheses: the fields start after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(system: FabuSystem) -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) used so far by each stage and
    by each component of the local stack with every process under it (found by parent,
    not by group: a database's backends may start sessions of their own)."""
    owners = {pid: name for name, (pid, _) in Stack().pids().items()}
    owners |= {p.pid: stage for stage, p in system.processes.items()}
    # This program: the client sending the requests, and its own watches.
    owners[os.getpid()] = "bench (client)"
    parents: dict[int, int] = {}
    spent: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except OSError:
            continue
        # After the command: state ppid … utime(12) stime(13) cutime(14) cstime(15).
        parents[int(entry.name)] = int(fields[1])
        spent[int(entry.name)] = sum(int(f) for f in fields[11:15]) / TICK
    used: dict[str, float] = {}
    for pid, seconds in spent.items():
        up = pid
        while up > 1 and up not in owners:
            up = parents.get(up, 0)
        if up in owners:
            used[owners[up]] = used.get(owners[up], 0.0) + seconds
    return used


def used_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}
