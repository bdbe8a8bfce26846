"""Where a grant holds: environments, services, teams, and the roles above releaser."""

import pytest
from pydantic import ValidationError

from services.api.access import Permission, Principal
from shared.models.catalog import Service
from shared.models.users import Grant, Role, User

WEB = Service(name="web", image_repository="r/web", team="shop")
API = Service(name="api", image_repository="r/api", team="core")


def principal(*grants: Grant) -> Principal:
    return Principal(User(name="u", grants=list(grants)), "token")


@pytest.mark.parametrize(
    ("grant", "environment", "service", "allowed"),
    [
        (Grant(role=Role.RELEASER), "production", WEB, True),
        (Grant(role=Role.RELEASER, environment="test"), "production", WEB, False),
        (Grant(role=Role.RELEASER, environment="test"), "test", WEB, True),
        (Grant(role=Role.RELEASER, service="web"), "test", WEB, True),
        (Grant(role=Role.RELEASER, service="web"), "test", API, False),
        (Grant(role=Role.RELEASER, team="core"), "test", API, True),
        (Grant(role=Role.RELEASER, team="core"), "test", WEB, False),
        (Grant(role=Role.RELEASER, environment="test", team="core"), None, API, True),
        (Grant(role=Role.ADMIN), "production", WEB, True),
        (Grant(role=Role.CONFIG_ADMIN), "test", WEB, False),
        (Grant(role=Role.VIEWER), "test", WEB, False),
    ],
)
def test_release_scope(
    grant: Grant, environment: str | None, service: Service, allowed: bool
) -> None:
    assert principal(grant).can_release(environment, service) is allowed


def test_roles_hold_the_permissions_they_name() -> None:
    table = {
        Role.VIEWER: {Permission.SIGNED_IN, Permission.VIEW},
        Role.RELEASER: {
            Permission.SIGNED_IN,
            Permission.VIEW,
            Permission.RELEASE,
            Permission.REGISTER_IMAGE,
        },
        Role.CONFIG_ADMIN: {
            Permission.SIGNED_IN,
            Permission.VIEW,
            Permission.EDIT_CONFIG,
            Permission.REGISTER_IMAGE,
        },
        Role.ADMIN: set(Permission),
    }
    for role, expected in table.items():
        held = {p for p in Permission if principal(Grant(role=role)).holds(p)}
        assert held == expected, role
    assert {p for p in Permission if principal().holds(p)} == {Permission.SIGNED_IN}


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "viewer", "environment": "test"},
        {"role": "admin", "team": "core"},
        {"role": "releaser", "service": "web", "team": "core"},
        {"role": "owner"},
    ],
)
def test_grants_that_make_no_sense_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Grant.model_validate(fields)
