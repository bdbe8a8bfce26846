"""Each worker's small HTTP side: /healthz for probes and /metrics for Prometheus."""

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HANDLED = Counter("fabu_messages_total", "Messages handled by a stage", ["stage", "outcome"])
DURATION = Histogram(
    "fabu_message_seconds",
    "Time a stage spent on one message",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600),
)

TRACKED = Gauge("fabu_releases_tracked", "Releases a tracker follows now")


async def serve(
    host: str, port: int, healthy: Callable[[], Awaitable[bool]]
) -> tuple[web.AppRunner, int]:
    async def healthz(_: web.Request) -> web.Response:
        ok = await healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses
    return runner, int(bound[0][1]) if bound else port
