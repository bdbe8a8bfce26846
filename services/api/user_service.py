"""Users, grants, sessions and the audit log, between the HTTP edges and the stores:
the JSON routes and the UI pages call these."""

from datetime import datetime, timedelta

import structlog
from pydantic import BaseModel

from services.api.access import Permission, Principal, need
from services.api.context import Api
from services.api.passwords import hash_password, password_matches
from shared.errors import Conflict, NotFound, Unauthorized
from shared.models import AuditEntry, Grant, Role, User
from shared.store.users import Session, Users

log = structlog.get_logger()


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


async def user(users: Users, name: str) -> User:
    found = await users.get(name)
    if found is None:
        raise NotFound(f"user {name!r} not found")
    return found


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


async def sign_in(api: Api, username: str, password: str) -> tuple[User, str, Session]:
    """Check the password and start a session: the user, the session's secret (the
    cookie) and the session (its CSRF token). 401 for a wrong name or password."""
    found = await api.users.get(username)
    stored = await api.users.password_hash(username) if found else None
    if not await password_matches(stored, password) or found is None or found.disabled:
        log.info("login refused", user=username)
        raise Unauthorized("wrong user name or password")
    secret, session = await start_session(api, found)
    await api.audit.record(found.name, "session.login", f"user/{found.name}", note="password")
    return found, secret, session


async def start_session(api: Api, found: User) -> tuple[str, Session]:
    lifetime = timedelta(hours=api.settings.session_hours)
    return await api.users.add_session(found.name, lifetime)


async def sign_out(api: Api, secret: str) -> None:
    """End the session whose secret the cookie held (nothing without one)."""
    if secret:
        await api.users.end_session(secret)
