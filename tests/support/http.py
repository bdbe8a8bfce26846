"""Serving a test's own aiohttp application on a free local port."""

from aiohttp import web
from aiohttp.typedefs import Handler


@web.middleware
async def _close_after(request: web.Request, handler: Handler) -> web.StreamResponse:
    # One request per connection: a Fabu process keeping a connection alive
    # would keep this process's handler task alive past the test that used it.
    response = await handler(request)
    response.force_close()
    return response


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start ``app`` on 127.0.0.1; returns its runner (to clean up) and its URL."""
    app.middlewares.append(_close_after)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
