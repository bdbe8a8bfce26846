"""The API process: JSON under /api/v1, OpenAPI at /openapi.json, /healthz and /metrics,
the web UI, and the ``image.built`` consumer (``image_events``).

Health, metrics, login and the webhooks (which carry their own secrets) are
open; everything else, the OpenAPI description included, needs a caller.
"""

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import (
    analysis_routes,
    auth_routes,
    catalog_routes,
    image_events,
    image_routes,
    notification_routes,
    plan_conductor,
    plan_routes,
    release_routes,
    template_routes,
    user_routes,
    user_service,
    webhook_routes,
)
from services.api.access import Permission, SignedIn, require
from services.api.context import Api
from services.api.incoming import TextBodies, storable
from services.api.passwords import hash_password
from services.api.schemas import ERRORS
from services.api.ui import pages as ui_pages
from services.api.ui import routes as ui_routes
from shared.cluster.client import Clusters
from shared.cluster.live import Observer
from shared.errors import Conflict, FabuError
from shared.messaging.bus import Bus
from shared.messaging.subjects import Subjects
from shared.models.users import Grant, Role, User
from shared.outside.registry import Registries
from shared.secrets import Secrets
from shared.settings import Settings
from shared.store.audit import Audit
from shared.store.catalog import Catalog
from shared.store.images import Images
from shared.store.indexes import ensure_indexes
from shared.store.kept import Kept
from shared.store.mongo import Mongo, StoreError
from shared.store.plans import Plans
from shared.store.releases import Releases
from shared.store.users import Users
from shared.templating import sandbox

log = structlog.get_logger()
ADMIN = "admin"
MAX_BODY_BYTES = 1_000_000
# Paths answered in JSON; the rest are the UI's pages.
API_PATHS = ("/api/", "/openapi.json", "/healthz", "/metrics")


# What a browser may do with Fabu's answers: run and style only what Fabu serves (no
# inline script, style or handler, no javascript: URL), load images only from Fabu
# (and data: URLs), be framed by no page (clickjacking), post forms only to Fabu,
# guess no content type, and tell other sites nothing of the page it came from.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer: pages, JSON, static files, errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error_headers(exc: FabuError) -> dict[str, str] | None:
    """What an error answer says beside its body: how to authenticate, when to retry."""
    if isinstance(exc, user_service.TooManyAttempts):
        return {"Retry-After": str(exc.retry_after)}
    return {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None


async def first_admin(users: Users, audit: Audit, settings: Settings) -> None:
    """With no users yet, create ``admin``; a generated password is printed once, here only."""
    if await users.any():
        return
    password = settings.admin_password or secrets.token_urlsafe(18)
    admin = User(name=ADMIN, display_name="Administrator", grants=[Grant(role=Role.ADMIN)])
    try:
        await users.add(admin, await hash_password(password))
    except Conflict:
        return  # another API replica made it first
    await audit.record("fabu", "user.create", f"user/{ADMIN}", after=admin, note="first start")
    if not settings.admin_password:
        print(f"Fabu: the first user is {ADMIN!r} with password {password}", flush=True)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as owned:
            mongo = Mongo(settings.mongo_url, settings.mongo_db, settings.mongo_pool)
            owned.push_async_callback(mongo.close)
            await ensure_indexes(mongo)
            bus = await Bus.connect(settings.nats_url, Subjects(settings.nats_prefix), "api")
            owned.push_async_callback(bus.close)
            clusters = Clusters(settings.kubeconfig_dir)
            owned.push_async_callback(clusters.close)
            registries = Registries(settings.registries, settings.deny)
            owned.push_async_callback(registries.close)
            observer = Observer(Secrets(settings.secret_key))
            owned.push_async_callback(observer.stop)
            renderers = sandbox.renderers(settings)
            owned.push_async_callback(renderers.close)
            kept = Kept(settings.kept_s, lambda: bus.notice(bus.subjects.changed))
            owned.push_async_callback(await bus.on_notice(bus.subjects.changed, kept.forget))
            app.state.api = api = Api(
                settings=settings,
                mongo=mongo,
                catalog=Catalog(mongo, kept),
                releases=Releases(mongo),
                plans=Plans(mongo),
                bus=bus,
                clusters=clusters,
                registries=registries,
                images=Images(mongo),
                users=Users(mongo, kept),
                audit=Audit(mongo),
                observer=observer,
                renderers=renderers,
                oauth=auth_routes.oauth(settings),
            )
            await first_admin(api.users, api.audit, settings)
            # Stopped first, while the connections it uses are still open.
            await owned.enter_async_context(image_events.consuming(api))
            await owned.enter_async_context(plan_conductor.conducting(api))
            yield

    app = FastAPI(
        title="Fabu",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,
        dependencies=[Depends(storable)],
        # Above any body Fabu takes (a template is at most 200,000 characters): 413.
        max_body_size=MAX_BODY_BYTES,
        middleware=[Middleware(SecurityHeaders), Middleware(TextBodies)],
    )
    if settings.oidc_issuer:
        # Holds only the OpenID Connect state and nonce between redirect and callback.
        app.add_middleware(
            SessionMiddleware,
            secret_key=settings.secret_key or secrets.token_urlsafe(32),
            session_cookie="fabu_oidc",
            max_age=600,
            same_site="lax",
            https_only=True,
        )

    @app.exception_handler(FabuError)
    async def fabu_error(request: Request, exc: FabuError) -> Response:
        if not request.url.path.startswith(API_PATHS):
            return ui_pages.error_page(request, exc)
        headers = error_headers(exc)
        body: dict[str, object] = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        if exc.errors:
            body["errors"] = exc.errors
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("database error", error=str(exc))
        return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        try:
            await request.app.state.api.mongo.ping()
        except Exception:
            return JSONResponse({"ok": False}, status_code=503)
        ok = request.app.state.api.bus.connected
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: SignedIn) -> dict[str, Any]:
        return app.openapi()

    # Reading needs a role; each route that changes something asks for more.
    viewer = [Depends(require(Permission.VIEW))]
    for module in (
        catalog_routes,
        analysis_routes,
        release_routes,
        template_routes,
        image_routes,
        notification_routes,
        plan_routes,
    ):
        app.include_router(module.router, prefix="/api/v1", dependencies=viewer, responses=ERRORS)
    for module in (auth_routes, user_routes, webhook_routes):
        app.include_router(module.router, prefix="/api/v1", responses=ERRORS)
    for ui_router in ui_routes.ROUTERS:
        app.include_router(ui_router)
    app.mount("/static", StaticFiles(directory=ui_pages.STATIC), name="static")
    app.mount("/metrics", make_asgi_app())
    return app
