"""The API process: JSON under /api/v1, OpenAPI at /openapi.json, /healthz and /metrics."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

from services.api import (
    catalog_routes,
    image_routes,
    notification_routes,
    release_routes,
    template_routes,
    webhook_routes,
)
from shared.bus import Bus
from shared.cluster import Clusters
from shared.errors import FabuError
from shared.registry import Registries
from shared.settings import Settings
from shared.store.catalog import Catalog
from shared.store.images import Images
from shared.store.mongo import Mongo, StoreError
from shared.store.releases import Releases
from shared.subjects import Subjects

log = structlog.get_logger()


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = Mongo(settings.mongo_url, settings.mongo_db, settings.mongo_pool)
        await mongo.ensure_indexes()
        bus = await Bus.connect(settings.nats_url, Subjects(settings.nats_prefix), "api")
        app.state.catalog = Catalog(mongo)
        app.state.releases = Releases(mongo)
        app.state.bus = bus
        app.state.mongo = mongo
        app.state.clusters = Clusters()
        app.state.settings = settings
        app.state.registries = Registries(settings.registries)
        app.state.images = Images(mongo)
        try:
            yield
        finally:
            await app.state.clusters.close()
            await app.state.registries.close()
            await bus.close()
            await mongo.close()

    app = FastAPI(title="Fabu", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(FabuError)
    async def fabu_error(_: Request, exc: FabuError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("database error", error=str(exc))
        return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        try:
            await request.app.state.mongo.ping()
        except Exception:
            return JSONResponse({"ok": False}, status_code=503)
        ok = request.app.state.bus.nc.is_connected
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    app.include_router(catalog_routes.router, prefix="/api/v1")
    app.include_router(release_routes.router, prefix="/api/v1")
    app.include_router(template_routes.router, prefix="/api/v1")
    app.include_router(webhook_routes.router, prefix="/api/v1")
    app.include_router(image_routes.router, prefix="/api/v1")
    app.include_router(notification_routes.router, prefix="/api/v1")
    app.mount("/metrics", make_asgi_app())
    return app
