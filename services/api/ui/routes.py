"""The web UI: every page's router (``ROUTERS``), and the pages of its own (login, the
language, the dashboard and the favicon). :mod:`services.api.ui.pages` has the rules
every page follows.
"""

import secrets
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from services.api import catalog_service, release_service, state_service, user_service
from services.api.access import (
    SESSION_COOKIE,
    Principal,
    SignedIn,
    Viewer,
    drop_session_cookie,
    set_session_cookie,
)
from services.api.deps import api_of
from services.api.incoming import client_address
from services.api.schemas import LoginIn, ReleaseSummary
from services.api.ui import (
    admin_pages,
    analysis_pages,
    plan_pages,
    release_pages,
    service_pages,
    template_pages,
)
from services.api.ui.i18n import LANGUAGES
from services.api.ui.pages import LOGIN_CSRF_COOKIE, back, form, render
from shared.cluster.live import Health
from shared.errors import Unauthorized
from shared.release.machine import ReleaseState
from shared.store.releases import ReleaseFilter

router = APIRouter(include_in_schema=False)


@router.get("/favicon.ico")
async def favicon() -> Response:
    """Browsers ask for it on every page: Fabu's icon (the pages link the SVG itself)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


# Logging in and out, and the language


@router.get("/login")
async def login_page(request: Request, then: str = "/", error: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        None,
        "login.html",
        then=then,
        login_csrf=token,
        error=error,
        oidc=api_of(request).oauth is not None,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=600, httponly=True, secure=True, samesite="strict"
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    data = await form(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    then = data.get("then", "/")
    if not then.startswith("/") or then.startswith("//"):
        then = "/"
    if not cookie or not secrets.compare_digest(cookie, data.get("login_csrf", "")):
        return await login_page(request, then, "the login form expired; try again")
    response = back(then)
    try:
        body = LoginIn(username=data.get("username", ""), password=data.get("password", ""))
        _, secret, session = await user_service.sign_in(
            api_of(request), body.username, body.password, client_address(request)
        )
        set_session_cookie(response, secret, session.expires_at)
    except (Unauthorized, ValidationError):
        page = await login_page(request, then, "Wrong user name or password")
        page.status_code = 401
        return page
    except user_service.TooManyAttempts as exc:
        wait = f"Too many failed logins: wait {exc.retry_after} seconds, then try again."
        page = await login_page(request, then, wait)
        page.status_code = 429
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, _: SignedIn) -> Response:
    """End the session: like every form, with the session's CSRF token (``SignedIn``
    refuses a post without it), so no other page can log the user out."""
    response = back("/login")
    await user_service.sign_out(api_of(request), request.cookies.get(SESSION_COOKIE, ""))
    drop_session_cookie(response)
    return response


@router.post("/language")
async def language(request: Request, principal: SignedIn) -> Response:
    chosen = (await form(request)).get("language", "")
    if chosen in ("", *LANGUAGES):
        await user_service.set_language(api_of(request), principal, chosen)
    referer = request.headers.get("referer", "/")
    return back(urllib.parse.urlsplit(referer).path or "/")


# The dashboard

# The states the dashboard lists as running: started (approved where asked), not finished.
RUNNING_STATES = (
    ReleaseState.REQUESTED,
    ReleaseState.RENDERED,
    ReleaseState.APPLIED,
    ReleaseState.PAUSED,
)


async def _dashboard(request: Request, principal: Principal) -> dict[str, Any]:
    api = api_of(request)
    running: list[ReleaseSummary] = []
    for state in RUNNING_STATES:
        running += (await release_service.page(api, principal, ReleaseFilter(state=state))).items
    running.sort(key=lambda r: r.id, reverse=True)
    awaiting = await release_service.page(
        api, principal, ReleaseFilter(state=ReleaseState.AWAITING_APPROVAL)
    )
    recent = (await release_service.page(api, principal, ReleaseFilter(), limit=30)).items
    recent = [r for r in recent if r.state.final][:15]
    states = await state_service.all_states(
        api, principal, await catalog_service.services(api, principal)
    )
    attention = [
        s for _, s in sorted(states.items()) if s.health is not Health.HEALTHY or s.sync != "Synced"
    ]
    return {
        "running": running,
        "awaiting": awaiting.items,
        "recent": recent,
        "attention": attention,
        "healthy": len(states) - len(attention),
    }


@router.get("/")
async def dashboard(request: Request, principal: Viewer) -> Response:
    return render(request, principal, "dashboard.html", **await _dashboard(request, principal))


@router.get("/fragments/dashboard")
async def dashboard_lists(request: Request, principal: Viewer) -> Response:
    context = await _dashboard(request, principal)
    return render(request, principal, "_dashboard_lists.html", **context)


# Every router of the UI, in the order the app includes them.
ROUTERS = (
    router,
    service_pages.router,
    release_pages.router,
    plan_pages.router,
    template_pages.router,
    analysis_pages.router,
    admin_pages.router,
)
