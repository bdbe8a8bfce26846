"""Users and their grants, API tokens, and the audit log."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.api import user_service
from services.api.access import Admin, Principal, SignedIn
from services.api.deps import ApiDep, AuditDep, UsersDep
from services.api.passwords import hash_password, password_matches
from services.api.schemas import Password, UserIn, zoned
from services.api.user_service import AuditPage
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.models import ApiToken, Grant, Role, User

router = APIRouter()


class UserPatch(BaseModel):
    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    disabled: bool | None = None


class PasswordIn(BaseModel):
    # The caller's current password; an admin setting another's needs none.
    current_password: str = Field(default="", max_length=1000)
    new_password: Password


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: datetime | None = None
    # An admin may make a token for another user (a CI account); default: the caller.
    user: str | None = None


class TokenCreated(ApiToken):
    # Shown once: only its hash is kept.
    token: str


def _self_or_admin(principal: Principal, name: str) -> None:
    if principal.name != name and not principal.has(Role.ADMIN):
        raise Forbidden(f"{principal.name} may act only on their own account, not {name!r}")


@router.post("/users", status_code=201)
async def create_user(body: UserIn, api: ApiDep, admin: Admin) -> User:
    user = User(
        name=body.name, display_name=body.display_name, email=body.email, grants=body.grants
    )
    return await user_service.create_user(api, admin, user, body.password)


@router.get("/users")
async def list_users(users: UsersDep, _: Admin) -> list[User]:
    return await users.all()


@router.get("/users/{name}")
async def get_user(name: str, users: UsersDep, principal: SignedIn) -> User:
    _self_or_admin(principal, name)
    return await user_service.user(users, name)


@router.patch("/users/{name}")
async def update_user(
    name: str, body: UserPatch, users: UsersDep, audit: AuditDep, admin: Admin
) -> User:
    """Change a user's name fields, or disable them (their sessions end; tokens stop working)."""
    before = await user_service.user(users, name)
    fields = body.model_dump(exclude_none=True)
    if fields.get("disabled"):
        await user_service.keep_an_admin(users, name, before.grants, disabled=True)
    after = await users.update(name, **fields)
    if after is None:
        raise NotFound(f"user {name!r} not found")
    if after.disabled:
        await users.end_sessions(name)
    await audit.record(admin.name, "user.update", f"user/{name}", before=before, after=after)
    return after


@router.put("/users/{name}/grants")
async def set_grants(name: str, body: list[Grant], api: ApiDep, admin: Admin) -> User:
    """Replace the user's grants (their roles, and where a releaser holds)."""
    return await user_service.set_grants(api, admin, name, body)


@router.put("/users/{name}/password", status_code=204)
async def set_password(
    name: str, body: PasswordIn, users: UsersDep, audit: AuditDep, principal: SignedIn
) -> None:
    """Change a password: one's own with the current one, or anyone's as an admin.

    Every session of the user ends.
    """
    _self_or_admin(principal, name)
    user = await user_service.user(users, name)
    if user.source != "local":
        raise Invalid(f"user {name!r} signs in through the identity provider; it has no password")
    if principal.name == name and not await password_matches(
        await users.password_hash(name), body.current_password
    ):
        raise Invalid("current_password: it is not the current password", field="current_password")
    await users.update(name, password_hash=await hash_password(body.new_password))
    await users.end_sessions(name)
    await audit.record(principal.name, "user.password", f"user/{name}")


@router.post("/tokens", status_code=201)
async def create_token(
    body: TokenIn, users: UsersDep, audit: AuditDep, principal: SignedIn
) -> TokenCreated:
    """A token for ``Authorization: Bearer``; the answer is the only time it is shown."""
    owner = body.user or principal.name
    _self_or_admin(principal, owner)
    await user_service.user(users, owner)
    zoned(expires_at=body.expires_at)
    token, secret = await users.add_token(owner, body.name, body.expires_at)
    await audit.record(principal.name, "token.create", f"token/{token.id}", after=token)
    return TokenCreated(**token.model_dump(), token=secret)


@router.get("/tokens")
async def list_tokens(
    users: UsersDep, principal: SignedIn, user: str | None = None
) -> list[ApiToken]:
    """The caller's tokens; an admin may name another user, or leave it empty for all."""
    if user is not None:
        _self_or_admin(principal, user)
        return await users.tokens(user)
    return await users.tokens(None if principal.has(Role.ADMIN) else principal.name)


@router.delete("/tokens/{token_id}")
async def revoke_token(
    token_id: str, users: UsersDep, audit: AuditDep, principal: SignedIn
) -> ApiToken:
    """Revoke a token at once: the next request that sends it is refused."""
    token = await users.token(token_id)
    if token is None:
        raise NotFound(f"token {token_id!r} not found")
    _self_or_admin(principal, token.user)
    revoked = await users.revoke_token(token_id)
    if revoked is None:
        raise Conflict(f"token {token_id!r} was already revoked")
    await audit.record(
        principal.name, "token.revoke", f"token/{token_id}", before=token, after=revoked
    )
    return revoked


@router.get("/audit")
async def audit_log(
    api: ApiDep,
    admin: Admin,
    actor: str | None = None,
    action: str | None = None,
    target: Annotated[str | None, Query(description='e.g. "environment/production"')] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Every change, newest first: who, what, when, and the object before and after."""
    zoned(since=since, until=until)
    return await user_service.audit_log(
        api,
        admin,
        actor=actor,
        action=action,
        target=target,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
