"""People, their grants and API tokens, and the audit log of what they did."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from shared.models.base import Model, now
from shared.models.catalog import Service


class Role(StrEnum):
    # Reads everything but the audit log and the users.
    VIEWER = "viewer"
    # Releases (and rolls back, redeploys, cancels, approves) where granted.
    RELEASER = "releaser"
    # Templates, services, base parameters and notification channels.
    CONFIG_ADMIN = "config_admin"
    # Users, roles, environments (their clusters, approvals, freeze windows), audit.
    ADMIN = "admin"


ANY = "*"


UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")]


class Grant(Model):
    """A role, and for a releaser where it holds: an environment and a service or a team."""

    role: Role
    environment: str = Field(default=ANY, min_length=1, max_length=63)
    service: str = Field(default=ANY, min_length=1, max_length=53)
    team: str = Field(default=ANY, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _scope(self) -> "Grant":
        scoped = (self.environment, self.service, self.team) != (ANY, ANY, ANY)
        if scoped and self.role is not Role.RELEASER:
            raise ValueError(f"only a releaser grant has a scope; {self.role} holds everywhere")
        if ANY not in (self.service, self.team):
            raise ValueError("grant a service or a team, not both")
        return self

    def covers(self, environment: str | None, service: Service | None) -> bool:
        """Whether this grant reaches ``service`` in ``environment`` (None: any)."""
        if environment is not None and self.environment not in (ANY, environment):
            return False
        if service is None:
            return True
        if self.service != ANY:
            return self.service == service.name
        return self.team in (ANY, service.team)


class User(Model):
    name: UserName
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)
    grants: list[Grant] = Field(default_factory=list, max_length=200)
    disabled: bool = False
    # "local" (a password here) or "oidc" (signs in through the identity provider).
    source: Literal["local", "oidc"] = "local"
    # The UI's language: "en", "zh-CN", or "" for the browser's.
    language: Literal["", "en", "zh-CN"] = ""
    created_at: datetime = Field(default_factory=now)


class ApiToken(Model):
    """A token for CI and the command line; only its hash is stored."""

    id: str
    name: str = Field(min_length=1, max_length=100)
    user: str
    created_at: datetime = Field(default_factory=now)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class AuditEntry(Model):
    """One change: who made it, what it was, when, and the object before and after."""

    id: str
    at: datetime = Field(default_factory=now)
    actor: str
    action: str  # "environment.update", "release.approve", "token.create", ...
    target: str  # "environment/production", "release/6651…"
    before: Any = None
    after: Any = None
    note: str = ""
