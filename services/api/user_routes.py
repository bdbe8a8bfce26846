"""Users and their grants, API tokens, and the audit log."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.api import user_service
from services.api.access import Admin, SignedIn
from services.api.deps import ApiDep
from services.api.schemas import Password, UserIn, zoned
from services.api.user_service import AuditPage
from shared.models.users import ApiToken, Grant, User

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


@router.post("/users", status_code=201)
async def create_user(body: UserIn, api: ApiDep, admin: Admin) -> User:
    user = User(
        name=body.name, display_name=body.display_name, email=body.email, grants=body.grants
    )
    return await user_service.create_user(api, admin, user, body.password)


@router.get("/users")
async def list_users(api: ApiDep, admin: Admin) -> list[User]:
    return await user_service.users(api, admin)


@router.get("/users/{name}")
async def get_user(name: str, api: ApiDep, principal: SignedIn) -> User:
    return await user_service.account(api, principal, name)


@router.patch("/users/{name}")
async def update_user(name: str, body: UserPatch, api: ApiDep, admin: Admin) -> User:
    """Change a user's name fields, or disable them (their sessions end; tokens stop working)."""
    return await user_service.update_user(api, admin, name, body.model_dump(exclude_none=True))


@router.put("/users/{name}/grants")
async def set_grants(name: str, body: list[Grant], api: ApiDep, admin: Admin) -> User:
    """Replace the user's grants (their roles, and where a releaser holds)."""
    return await user_service.set_grants(api, admin, name, body)


@router.put("/users/{name}/password", status_code=204)
async def set_password(name: str, body: PasswordIn, api: ApiDep, principal: SignedIn) -> None:
    """Change a password: one's own with the current one, or anyone's as an admin.

    Every session of the user ends.
    """
    await user_service.set_password(api, principal, name, body.current_password, body.new_password)


@router.post("/tokens", status_code=201)
async def create_token(body: TokenIn, api: ApiDep, principal: SignedIn) -> TokenCreated:
    """A token for ``Authorization: Bearer``; the answer is the only time it is shown."""
    zoned(expires_at=body.expires_at)
    token, secret = await user_service.create_token(
        api, principal, body.user or principal.name, body.name, body.expires_at
    )
    return TokenCreated(**token.model_dump(), token=secret)


@router.get("/tokens")
async def list_tokens(api: ApiDep, principal: SignedIn, user: str | None = None) -> list[ApiToken]:
    """The caller's tokens; an admin may name another user, or leave it empty for all."""
    return await user_service.tokens(api, principal, user)


@router.delete("/tokens/{token_id}")
async def revoke_token(token_id: str, api: ApiDep, principal: SignedIn) -> ApiToken:
    """Revoke a token at once: the next request that sends it is refused."""
    return await user_service.revoke_token(api, principal, token_id)


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
