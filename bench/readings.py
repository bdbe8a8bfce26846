"""What the parts read and how they print it: times from a release's record,
percentiles, a process's memory and its /metrics, and the table of every part's rows."""

import statistics
from datetime import datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devstack.system import FabuSystem

# A row of the table: what was measured, its value, the goal (or "").
Row = tuple[str, str, str]


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    """p50 / p99 / max, in seconds."""
    return f"{statistics.median(values):.2f} / {pct(values, 0.99):.2f} / {max(values):.2f}"


def rss_mb(system: FabuSystem, process: str, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MB."""
    for line in Path(f"/proc/{system.processes[process].pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def samples(port: int, name: str) -> list[Sample]:
    """The samples named ``name`` that the process serving /metrics on ``port`` reports now."""
    async with httpx.AsyncClient(follow_redirects=True) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def print_table(rows: list[Row]) -> None:
    """Every part's rows under one header, the values aligned."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'value':>24}  goal")
    for name, value, goal in rows:
        print(f"{name.ljust(width)}  {value:>24}  {goal}")
