"""Who is acting, and whether they may.

Every request but health, metrics, login and webhooks names its caller, by
one of two means:

- ``Authorization: Bearer <token>``: an API token (CI, the command line);
- the ``fabu_session`` cookie of a browser login. A request that changes
  anything must then also send the session's CSRF token, in the
  ``X-CSRF-Token`` header or a form's ``csrf_token`` field: a cookie is sent
  by the browser whoever made the page, the CSRF token only by our pages.

Roles (see :class:`shared.models.Role`): every role may read; a releaser
releases where a grant covers the environment and the service (or its team);
a config-admin edits templates, services, base parameters and channels; an
admin does everything, and alone manages users, environments and the audit
log. Routes declare the kind of permission they need with :func:`require`;
a route whose target is known only from its body or a stored record also
checks the scope with :meth:`Principal.must_release`.
"""

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from fastapi import Depends, Request, Response

from shared.errors import Forbidden, Unauthorized
from shared.models.base import now
from shared.models.catalog import Service
from shared.models.users import Role, User
from shared.store.users import Users

SESSION_COOKIE = "fabu_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A token's last use is written at most this often.
TOKEN_USE_RESOLUTION_S = 60


class Permission(StrEnum):
    # Anyone signed in, whatever their grants: their own account and tokens.
    SIGNED_IN = "signed_in"
    VIEW = "view"
    # Holds some releaser grant; the route checks the scope on its target.
    RELEASE = "release"
    EDIT_CONFIG = "edit_config"
    # Registering images: a releaser (of the image's service, checked by the
    # route) or a config-admin.
    REGISTER_IMAGE = "register_image"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    user: User
    via: Literal["session", "token"]

    @property
    def name(self) -> str:
        return self.user.name

    def has(self, role: Role) -> bool:
        return any(g.role in (role, Role.ADMIN) for g in self.user.grants)

    def holds(self, permission: Permission) -> bool:
        match permission:
            case Permission.SIGNED_IN:
                return True
            case Permission.VIEW:
                return bool(self.user.grants)
            case Permission.RELEASE:
                return self.has(Role.RELEASER)
            case Permission.EDIT_CONFIG:
                return self.has(Role.CONFIG_ADMIN)
            case Permission.REGISTER_IMAGE:
                return self.has(Role.RELEASER) or self.has(Role.CONFIG_ADMIN)
            case Permission.ADMIN:
                return self.has(Role.ADMIN)

    def can_release(self, environment: str | None, service: Service | None) -> bool:
        """Whether a grant lets this user release ``service`` to ``environment`` (None: any)."""
        return any(
            g.role is Role.ADMIN or (g.role is Role.RELEASER and g.covers(environment, service))
            for g in self.user.grants
        )

    def must_release(self, environment: str | None, service: Service) -> None:
        if not self.can_release(environment, service):
            where = f" to {environment}" if environment else ""
            raise Forbidden(
                f"{self.name} may not release {service.name} (team {service.team}){where}: "
                "that needs a releaser grant covering it"
            )


def set_session_cookie(response: Response, secret: str, expires_at: datetime) -> None:
    """The browser's session: an HTTP-only cookie, sent back on every request."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max(int((expires_at - now()).total_seconds()), 0),
        httponly=True,
        secure=True,
        samesite="lax",
        path="/",
    )


def drop_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)


async def _csrf_sent(request: Request) -> str:
    sent = request.headers.get(CSRF_HEADER, "")
    content_type = request.headers.get("content-type", "")
    if not sent and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        field = form.get(CSRF_FIELD, "")
        sent = field if isinstance(field, str) else ""
    return sent


async def authenticate(request: Request) -> Principal:
    """The caller, from their token or their session (401 when neither is valid)."""
    users: Users = request.app.state.api.users
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    via: Literal["session", "token"]
    if credential and scheme.lower() == "bearer":
        token = await users.token_by_secret(credential.strip())
        if token is None or token.revoked_at is not None:
            raise Unauthorized("the API token is unknown or revoked")
        if token.expires_at is not None and token.expires_at <= now():
            raise Unauthorized(f"the API token {token.name!r} expired at {token.expires_at}")
        if (
            token.last_used_at is None
            or (now() - token.last_used_at).total_seconds() > TOKEN_USE_RESOLUTION_S
        ):
            await users.used_token(token)
        name, via = token.user, "token"
    elif cookie := request.cookies.get(SESSION_COOKIE):
        session = await users.session(cookie)
        if session is None or session.expires_at <= now():
            raise Unauthorized("the session has ended; log in again")
        if request.method not in SAFE_METHODS and not hmac.compare_digest(
            (await _csrf_sent(request)).encode(), session.csrf.encode()
        ):
            raise Forbidden(
                f"CSRF check failed: send the session's CSRF token in {CSRF_HEADER} "
                f"(or the form field {CSRF_FIELD})"
            )
        name, via = session.user, "session"
        request.state.csrf = session.csrf  # for the forms of the pages it serves
    else:
        raise Unauthorized("log in, or send an API token as Authorization: Bearer <token>")
    user = await users.get(name)
    if user is None or user.disabled:
        raise Unauthorized(f"user {name!r} is disabled or no longer exists")
    return Principal(user, via)


class Lacking(Forbidden):
    """403: the caller lacks a permission (a page then says what it takes, and whom to ask)."""

    def __init__(self, principal: Principal, permission: Permission) -> None:
        super().__init__(f"{principal.name} lacks the {permission} permission")
        self.principal = principal
        self.permission = permission


def need(principal: Principal, permission: Permission) -> None:
    """403 unless ``principal`` holds ``permission``: the one wording of that refusal."""
    if not principal.holds(permission):
        raise Lacking(principal, permission)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller, when they hold ``permission``; else 401 (no
    caller) or 403, answered in JSON on the API's paths and as a page on the UI's
    (a redirect to the login page, or the page that says whom to ask: see
    ``ui.pages.error_page``)."""

    async def caller(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        need(principal, permission)
        return principal

    caller.__name__ = f"require_{permission.value}"
    return caller


# The one family of dependencies, for JSON routes and pages alike.
SignedIn = Annotated[Principal, Depends(require(Permission.SIGNED_IN))]
Viewer = Annotated[Principal, Depends(require(Permission.VIEW))]
Releaser = Annotated[Principal, Depends(require(Permission.RELEASE))]
ConfigAdmin = Annotated[Principal, Depends(require(Permission.EDIT_CONFIG))]
ImageRegistrar = Annotated[Principal, Depends(require(Permission.REGISTER_IMAGE))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
