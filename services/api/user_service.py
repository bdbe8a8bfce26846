"""Users, grants, sessions and the audit log, between the HTTP edges and the stores:
the JSON routes and the UI pages call these."""

from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.passwords import hash_password, password_matches
from shared.errors import Conflict, FabuError, Forbidden, Invalid, NotFound, Unauthorized
from shared.errors import found as exists
from shared.models.base import now
from shared.models.users import ApiToken, AuditEntry, Grant, Role, User
from shared.store.logins import LoginAttempts
from shared.store.users import Session, Users

log = structlog.get_logger()


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


async def user(users: Users, name: str) -> User:
    return exists(await users.get(name), f"user {name!r}")


async def keep_an_admin(users: Users, name: str, grants: list[Grant], disabled: bool) -> None:
    """409 when the change would leave no enabled admin."""
    if not disabled and any(g.role is Role.ADMIN for g in grants):
        return
    for other in await users.all():
        if (
            other.name != name
            and not other.disabled
            and any(g.role is Role.ADMIN for g in other.grants)
        ):
            return
    raise Conflict(f"{name} is the last enabled admin; make another admin first")


def self_or_admin(principal: Principal, name: str) -> None:
    """403 unless ``principal`` acts on their own account or is an admin."""
    if principal.name != name and not principal.has(Role.ADMIN):
        raise Forbidden(f"{principal.name} may act only on their own account, not {name!r}")


async def users(api: Api, principal: Principal) -> list[User]:
    need(principal, Permission.ADMIN)
    return await api.users.all()


async def account(api: Api, principal: Principal, name: str) -> User:
    """A user's account: one's own, or anyone's for an admin."""
    self_or_admin(principal, name)
    return await user(api.users, name)


async def update_user(api: Api, principal: Principal, name: str, fields: dict[str, Any]) -> User:
    """Change a user's name fields, or disable them (their sessions end; tokens stop working)."""
    need(principal, Permission.ADMIN)
    before = await user(api.users, name)
    if fields.get("disabled"):
        await keep_an_admin(api.users, name, before.grants, disabled=True)
    after = await api.users.update(name, **fields)
    if after is None:
        raise NotFound(f"user {name!r} not found")
    if after.disabled:
        await api.users.end_sessions(name)
    await api.audit.record(
        principal.name, "user.update", f"user/{name}", before=before, after=after
    )
    return after


async def set_language(api: Api, principal: Principal, language: str) -> None:
    """The caller's own language for pages and mails ("": the browser's)."""
    need(principal, Permission.SIGNED_IN)
    await api.users.update(principal.name, language=language)


async def set_password(api: Api, principal: Principal, name: str, current: str, new: str) -> None:
    """One's own password with the current one, or anyone's as an admin; every session of
    the user ends."""
    self_or_admin(principal, name)
    found = await user(api.users, name)
    if found.source != "local":
        raise Invalid(f"user {name!r} signs in through the identity provider; it has no password")
    if principal.name == name and not await password_matches(
        await api.users.password_hash(name), current
    ):
        raise Invalid("current_password: it is not the current password", field="current_password")
    await api.users.update(name, password_hash=await hash_password(new))
    await api.users.end_sessions(name)
    await api.audit.record(principal.name, "user.password", f"user/{name}")


async def create_token(
    api: Api, principal: Principal, owner: str, name: str, expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A token of ``owner`` (oneself, or anyone for an admin) and its secret, shown once."""
    self_or_admin(principal, owner)
    await user(api.users, owner)
    token, secret = await api.users.add_token(owner, name, expires_at)
    await api.audit.record(principal.name, "token.create", f"token/{token.id}", after=token)
    return token, secret


async def tokens(api: Api, principal: Principal, owner: str | None) -> list[ApiToken]:
    """The tokens of ``owner``, else the caller's (an admin's: everyone's)."""
    if owner is not None:
        self_or_admin(principal, owner)
        return await api.users.tokens(owner)
    return await api.users.tokens(None if principal.has(Role.ADMIN) else principal.name)


async def revoke_token(api: Api, principal: Principal, token_id: str) -> ApiToken:
    token = exists(await api.users.token(token_id), f"token {token_id!r}")
    self_or_admin(principal, token.user)
    revoked = await api.users.revoke_token(token_id)
    if revoked is None:
        raise Conflict(f"token {token_id!r} was already revoked")
    await api.audit.record(
        principal.name, "token.revoke", f"token/{token_id}", before=token, after=revoked
    )
    return revoked


async def create_user(api: Api, principal: Principal, new: User, password: str | None) -> User:
    need(principal, Permission.ADMIN)
    await api.users.add(new, await hash_password(password) if password else None)
    await api.audit.record(principal.name, "user.create", f"user/{new.name}", after=new)
    return new


async def set_grants(api: Api, principal: Principal, name: str, grants: list[Grant]) -> User:
    """Replace the user's grants (their roles, and where a releaser holds)."""
    need(principal, Permission.ADMIN)
    before = await user(api.users, name)
    await keep_an_admin(api.users, name, grants, before.disabled)
    after = await api.users.update(name, grants=grants)
    if after is None:
        raise NotFound(f"user {name!r} not found")
    await api.audit.record(
        principal.name, "user.grants", f"user/{name}", before=before, after=after
    )
    return after


async def audit_log(
    api: Api,
    principal: Principal,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> AuditPage:
    """Every change, newest first: who, what, when, and the object before and after."""
    need(principal, Permission.ADMIN)
    items = await api.audit.page(
        actor=actor,
        action=action,
        target=target,
        since=since,
        until=until,
        before=cursor,
        limit=limit,
    )
    return AuditPage(items=items, next_cursor=items[-1].id if len(items) == limit else None)


class TooManyAttempts(FabuError):
    """Logins refused for a while, whatever the password: 429 with ``Retry-After``."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed logins for this user name or from this address: "
            f"try again in {retry_after} s"
        )
        self.retry_after = retry_after


async def sign_in(
    api: Api, username: str, password: str, address: str
) -> tuple[User, str, Session]:
    """Check the password and start a session: the user, the session's secret (the
    cookie) and the session (its CSRF token). 401 for a wrong name or password; 429,
    the password unchecked, after too many failures at the name or from ``address``
    (the client's) within the window (``FABU_LOGIN_ATTEMPTS``, ``FABU_LOGIN_WINDOW_S``)."""
    settings = api.settings
    attempts = LoginAttempts(api.mongo, settings.login_attempts, settings.login_window_s)
    if wait := await attempts.begin(username, address):
        log.warning("login throttled", user=username, address=address)
        await api.audit.record(
            username,
            "session.throttled",
            f"user/{username}",
            note=f"from {address}: refused, try again in {wait} s",
        )
        raise TooManyAttempts(wait)
    found = await api.users.get(username)
    stored = await api.users.password_hash(username) if found else None
    if not await password_matches(stored, password) or found is None or found.disabled:
        log.info("login refused", user=username, address=address)
        raise Unauthorized("wrong user name or password")
    await attempts.succeeded(username)
    secret, session = await start_session(api, found)
    await api.audit.record(found.name, "session.login", f"user/{found.name}", note="password")
    return found, secret, session


async def sign_in_oidc(api: Api, claims: dict[str, Any]) -> tuple[str, Session]:
    """Start a session for the user the identity provider vouched for (``claims``: its
    userinfo), made a viewer on their first visit: the session's secret and the session.
    401 for a user of Fabu's own, or a disabled one."""
    name = str(claims.get("nickname") or claims.get("preferred_username") or "")
    if not name:
        raise Invalid("the identity provider named no user (nickname or preferred_username)")
    user = await api.users.get(name)
    if user is None:
        user = User(
            name=name,
            display_name=str(claims.get("name", "")),
            email=str(claims.get("email", "")),
            source="oidc",
            grants=[Grant(role=Role.VIEWER)],
        )
        await api.users.add(user, None)
        await api.audit.record(name, "user.create", f"user/{name}", after=user, note="oidc")
    elif user.source != "oidc" or user.disabled:
        raise Unauthorized(f"user {name!r} cannot sign in through the identity provider")
    secret, session = await start_session(api, user)
    await api.audit.record(name, "session.login", f"user/{name}", note="oidc")
    return secret, session


async def session(api: Api, secret: str) -> Session | None:
    """The session whose secret the cookie holds, while it lasts (None: none, or ended)."""
    found = await api.users.session(secret) if secret else None
    return found if found is not None and found.expires_at > now() else None


async def start_session(api: Api, found: User) -> tuple[str, Session]:
    lifetime = timedelta(hours=api.settings.session_hours)
    return await api.users.add_session(found.name, lifetime)


async def sign_out(api: Api, secret: str) -> None:
    """End the session whose secret the cookie held (nothing without one)."""
    if secret:
        await api.users.end_session(secret)
