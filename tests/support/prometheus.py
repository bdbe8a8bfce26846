"""A test-owned exporter for the local stack's Prometheus, and reading Prometheus back.

The exporter is a stand-in owned by the tests, not part of Fabu: pods on KWOK run
no containers and serve no traffic, so nothing would publish what a canary's pods
publish in a real cluster. It serves ``/metrics`` in Prometheus' text format on
127.0.0.1 with the counters a test sets, and lists itself as a scrape target by
writing ``<unique>.json`` into the stack's target folder (Prometheus' file service
discovery); every series Prometheus stores from it carries ``exporter="<unique>"``.

    exporter.count(service="web", version="2.0.0", track="canary", code="500", n=3)
    exporter.set_rate(20, service="web", version="2.0.0", track="canary", code="200")
    await wait_scraped(url, f'http_requests_total{{exporter="{exporter.name}",code="500"}}')
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from devstack.stack import Stack
from tests.support.wait import eventually

REQUESTS = "http_requests_total"

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Counter:
    value: float = 0.0
    per_s: float = 0.0  # added continuously since ``since``
    since: float = 0.0

    def now(self, at: float) -> float:
        return self.value + self.per_s * (at - self.since)


class _Counters(Collector):
    """Counters keyed by metric name and label set, read at each scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], _Counter] = {}

    def _counter(self, metric: str, labels: dict[str, str]) -> _Counter:
        if not metric.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {metric!r}")
        key = (metric, tuple(sorted(labels.items())))
        return self._counters.setdefault(key, _Counter(since=time.monotonic()))

    def add(self, metric: str, labels: dict[str, str], n: float) -> None:
        with self._lock:
            self._counter(metric, labels).value += n

    def set_rate(self, metric: str, labels: dict[str, str], per_s: float) -> None:
        at = time.monotonic()
        with self._lock:
            counter = self._counter(metric, labels)
            counter.value, counter.per_s, counter.since = counter.now(at), per_s, at

    def collect(self) -> Iterator[Metric]:
        at = time.monotonic()
        families: dict[str, Metric] = {}
        with self._lock:
            for (name, labels), counter in sorted(self._counters.items()):
                family = families.get(name)
                if family is None:
                    family = families[name] = Metric(
                        name.removesuffix("_total"), "set by a test", "counter"
                    )
                family.add_sample(name, dict(labels), counter.now(at))
        yield from families.values()


class Exporter:
    """Counters a test sets, served for the local Prometheus to scrape (see the
    module's docstring). Counters only grow, as real ones do."""

    def __init__(self, targets: Path) -> None:
        self.name = f"exporter-{uuid.uuid4().hex[:10]}"
        self._counters = _Counters()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._counters)
        # Port 0: the kernel's free port, with no window for another to take it.
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self.url = f"http://127.0.0.1:{self._server.server_port}/metrics"
        self._target = targets / f"{self.name}.json"
        target = [
            {
                "targets": [f"127.0.0.1:{self._server.server_port}"],
                "labels": {"exporter": self.name},
            }
        ]
        # Written whole, then renamed into place: Prometheus never reads half a file.
        staging = targets / f".{self.name}.json.partial"
        staging.write_text(json.dumps(target))
        staging.rename(self._target)

    def count(self, n: float = 1.0, *, metric: str = REQUESTS, **labels: str) -> None:
        """Add ``n`` to the counter with these labels (created at 0 when new)."""
        if n < 0:
            raise ValueError("counters only grow")
        self._counters.add(metric, labels, n)

    def set_rate(self, per_s: float, *, metric: str = REQUESTS, **labels: str) -> None:
        """Make the counter with these labels grow by ``per_s`` every second from now
        (0 stops it), so that ``rate()`` over it reads ``per_s``."""
        if per_s < 0:
            raise ValueError("counters only grow")
        self._counters.set_rate(metric, labels, per_s)

    def selector(self, metric: str = REQUESTS, **labels: str) -> str:
        """A PromQL selector for this exporter's series of ``metric`` with these labels."""
        matchers = {"exporter": self.name, **labels}
        inner = ",".join(f'{k}="{_promql_string(v)}"' for k, v in matchers.items())
        return f"{metric}{{{inner}}}"

    def close(self) -> None:
        """No longer a target, and no longer serving."""
        self._target.unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


async def query(url: str, promql: str) -> list[Series]:
    """An instant query's series through Prometheus' HTTP API (raises on an error)."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"{url}/api/v1/query", data={"query": promql})
    answer = response.json()
    if answer.get("status") != "success":
        raise AssertionError(f"Prometheus refused {promql!r}: {answer.get('error')}")
    data = answer["data"]
    if data["resultType"] == "scalar":
        return [Series({}, float(data["result"][1]))]
    if data["resultType"] != "vector":
        raise AssertionError(f"{promql!r} answered a {data['resultType']}, not a vector")
    return [Series(s["metric"], float(s["value"][1])) for s in data["result"]]


async def wait_scraped(
    url: str,
    promql: str,
    until: Callable[[list[Series]], bool] = bool,
    within: float = 30.0,
) -> list[Series]:
    """Wait until ``promql`` answers series that satisfy ``until`` (default: any)."""

    async def answered() -> list[Series] | None:
        series = await query(url, promql)
        return series if until(series) else None

    return await eventually(answered, f"Prometheus to answer {promql}", within=within)


async def reachable(url: str) -> bool:
    """Prometheus answers its readiness probe."""
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/-/ready")).status_code == 200
    except httpx.TransportError:
        return False


class LocalPrometheus:
    """The stack's own Prometheus, to stop and start again (same port, same data)."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url

    def running(self) -> bool:
        return self.stack.running().get("prometheus", False)

    async def stop(self) -> None:
        """SIGTERM, and wait until it exited: its URL then refuses connections."""
        await asyncio.to_thread(self.stack.stop_component, "prometheus")

    async def start(self) -> None:
        """Start it again and wait until it is ready."""
        await asyncio.to_thread(self.stack.start_component, "prometheus")

        async def ready() -> bool:
            return await reachable(self.url)

        await eventually(ready, "Prometheus to be ready again")
