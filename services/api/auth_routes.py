"""Logging in and out: passwords, browser sessions, and OpenID Connect (GitLab).

A login sets the ``fabu_session`` cookie (HTTP-only, Secure, SameSite=Lax)
and answers with the session's CSRF token, which every change made with the
cookie must send back (see :mod:`services.api.access`).
"""

from typing import Any

import httpx
import structlog
from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from services.api import user_service
from services.api.access import (
    SESSION_COOKIE,
    SignedIn,
    authenticate,
    drop_session_cookie,
    set_session_cookie,
)
from services.api.deps import ApiDep
from services.api.incoming import client_address
from services.api.schemas import LoginIn, Problem
from shared.errors import NotFound, Unauthorized, Unavailable
from shared.models.users import User
from shared.outside import egress
from shared.settings import Settings

router = APIRouter()
log = structlog.get_logger()
OIDC = "gitlab"


class Me(BaseModel):
    user: User
    # The token to send in X-CSRF-Token with changes made through the session.
    csrf_token: str = ""


THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": Problem,
        "description": "too many failed logins for the user name or from the address: "
        "refused, whatever the password, for the seconds in Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}


@router.post("/auth/login", responses=THROTTLED)
async def login(body: LoginIn, request: Request, response: Response, api: ApiDep) -> Me:
    """Check the password and start a session (the cookie), answering with its CSRF token."""
    user, secret, session = await user_service.sign_in(
        api, body.username, body.password, client_address(request)
    )
    set_session_cookie(response, secret, session.expires_at)
    return Me(user=user, csrf_token=session.csrf)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, response: Response, api: ApiDep) -> None:
    """End the session of the cookie sent, if any. A live session's caller proves itself as
    for any change made with the cookie: its CSRF token in X-CSRF-Token (else 403), or an
    API token (a page elsewhere can make the browser send the cookie, never these)."""
    secret = request.cookies.get(SESSION_COOKIE, "")
    if await user_service.session(api, secret) is not None:
        await authenticate(request)
    await user_service.sign_out(api, secret)
    drop_session_cookie(response)


@router.get("/auth/me")
async def me(principal: SignedIn, request: Request, api: ApiDep) -> Me:
    """The caller, their grants, and (for a session) its CSRF token."""
    csrf = ""
    if principal.via == "session":
        session = await user_service.session(api, request.cookies[SESSION_COOKIE])
        csrf = session.csrf if session else ""
    return Me(user=principal.user, csrf_token=csrf)


def oauth(settings: Settings) -> OAuth | None:
    """The OpenID Connect client, when an issuer is configured."""
    if not settings.oidc_issuer:
        return None
    client = OAuth()
    client.register(
        OIDC,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid profile email",
            "code_challenge_method": "S256",
            # The provider's metadata names the other endpoints: all guarded.
            "transport": egress.Transport(settings.deny, 1 << 20, 20.0, shared=True),
            "timeout": 10.0,
        },
    )
    return client


def _client(request: Request) -> Any:
    client: OAuth | None = request.app.state.api.oauth
    if client is None:
        raise NotFound("OpenID Connect login is not configured (FABU_OIDC_ISSUER)")
    return client.create_client(OIDC)


@router.get("/auth/oidc/login", response_class=RedirectResponse, status_code=302)
async def oidc_login(request: Request, api: ApiDep) -> Any:
    """Send the browser to the identity provider (GitLab) to sign in."""
    callback = api.settings.public_url.rstrip("/") + "/api/v1/auth/oidc/callback"
    try:
        return await _client(request).authorize_redirect(request, callback)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the identity provider cannot be reached: {exc!r}") from exc
    except egress.EgressDenied as exc:
        raise Unavailable(f"the identity provider cannot be reached: {exc.message}") from exc


@router.get("/auth/oidc/callback", response_class=RedirectResponse, status_code=302)
async def oidc_callback(request: Request, api: ApiDep) -> Any:
    """Where the identity provider sends the browser back: check it, start a session."""
    try:
        token = await _client(request).authorize_access_token(request)
    except OAuthError as exc:
        raise Unauthorized(f"the identity provider's answer was refused: {exc.error}") from exc
    except httpx.HTTPError as exc:
        raise Unavailable(f"the identity provider cannot be reached: {exc!r}") from exc
    except egress.EgressDenied as exc:
        raise Unavailable(f"the identity provider cannot be reached: {exc.message}") from exc
    secret, session = await user_service.sign_in_oidc(api, token.get("userinfo") or {})
    response = RedirectResponse("/", status_code=302)
    set_session_cookie(response, secret, session.expires_at)
    return response
