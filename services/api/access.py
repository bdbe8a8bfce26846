"""Who is acting, and whether they may.

Two permissions exist today: releasing, and editing what releases are made
of (templates and base parameters), which is the stronger one. Users and
roles are not there yet: every caller acts as ``anonymous`` and holds both.
The routes already name the permission they need, so the users-and-roles
work only has to change :func:`require`.
"""

from collections.abc import Awaitable, Callable
from enum import StrEnum

ANONYMOUS = "anonymous"


class Permission(StrEnum):
    RELEASE = "release"
    EDIT_CONFIG = "edit_config"


def require(permission: Permission) -> Callable[[], Awaitable[str]]:
    """A FastAPI dependency: the acting user's name when they hold ``permission``."""

    async def actor() -> str:
        return ANONYMOUS

    actor.__name__ = f"require_{permission.value}"
    return actor
