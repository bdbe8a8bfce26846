"""Who may do what: the permission matrix over every route, tokens, sessions and CSRF,
approvals, freeze windows, OpenID Connect login and the audit log, on the real stack."""

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from kubernetes_asyncio import client

from devstack.system import FabuSystem, login
from services.api.ui import routes as ui_routes
from tests.conftest import unique
from tests.support.oidc import FakeGitLabIdentity
from tests.support.releases import emailed, finished, prepare, push
from tests.support.smtp import Inbox
from tests.support.stack import StackEnv
from tests.support.users import acting_as, make_user, token_for, user_with
from tests.support.wait import eventually

ROLES = ("nobody", "viewer", "releaser", "config_admin", "admin")
GRANTS: dict[str, list[dict[str, str]]] = {
    "nobody": [],
    "viewer": [{"role": "viewer"}],
    # Scoped: it must still reach every release route's own check.
    "releaser": [{"role": "releaser", "environment": "somewhere"}],
    "config_admin": [{"role": "config_admin"}],
    "admin": [{"role": "admin"}],
}
# Who may call a route, by the kind of permission it needs.
ALLOWED = {
    "signed_in": set(ROLES),
    "view": {"viewer", "releaser", "config_admin", "admin"},
    "release": {"releaser", "admin"},
    "register": {"releaser", "config_admin", "admin"},
    "config": {"config_admin", "admin"},
    "admin": {"admin"},
}
# Every route of the OpenAPI description and what it needs; "open" routes answer
# the same whoever calls (webhooks check their own secrets).
MATRIX = {
    "GET /api/v1/environments": "view",
    "POST /api/v1/environments": "admin",
    "GET /api/v1/environments/{name}": "view",
    "PUT /api/v1/environments/{name}": "admin",
    "POST /api/v1/environments/{name}/archive": "admin",
    "POST /api/v1/environments/{name}/restore": "admin",
    "GET /api/v1/services": "view",
    "POST /api/v1/services": "config",
    "PUT /api/v1/services/{name}": "config",
    "POST /api/v1/services/{name}/archive": "config",
    "POST /api/v1/services/{name}/restore": "config",
    "DELETE /api/v1/services/{name}/notifications/{environment}": "config",
    "GET /api/v1/services/{name}": "view",
    "PUT /api/v1/services/{name}/config/{environment}": "config",
    "GET /api/v1/services/{name}/config/{environment}": "view",
    "GET /api/v1/services/{name}/config/{environment}/versions": "view",
    "GET /api/v1/services/{name}/config/{environment}/versions/{version}": "view",
    "GET /api/v1/services/{name}/preview": "view",
    "GET /api/v1/services/{name}/state": "view",
    "POST /api/v1/releases": "release",
    "GET /api/v1/releases": "view",
    "GET /api/v1/releases/{release_id}": "view",
    "GET /api/v1/releases/{release_id}/actions": "view",
    "GET /api/v1/releases/{release_id}/approvers": "view",
    "GET /api/v1/releases/{release_id}/events": "view",
    "POST /api/v1/releases/{release_id}/rollback": "release",
    "GET /api/v1/releases/{release_id}/rollback/preview": "view",
    "POST /api/v1/releases/{release_id}/redeploy": "release",
    "POST /api/v1/releases/{release_id}/cancel": "release",
    "GET /api/v1/releases/{release_id}/review": "view",
    "POST /api/v1/releases/{release_id}/approve": "release",
    "POST /api/v1/releases/{release_id}/reject": "release",
    "POST /api/v1/releases/{release_id}/promote": "release",
    "POST /api/v1/releases/{release_id}/abort": "release",
    "POST /api/v1/plans": "release",
    "GET /api/v1/plans": "view",
    "GET /api/v1/plans/{plan_id}": "view",
    "GET /api/v1/plans/{plan_id}/review": "view",
    "POST /api/v1/plans/{plan_id}/approve": "release",
    "POST /api/v1/plans/{plan_id}/reject": "release",
    "POST /api/v1/plans/{plan_id}/cancel": "release",
    "GET /api/v1/plans/{plan_id}/rollback/preview": "view",
    "POST /api/v1/plans/{plan_id}/rollback": "release",
    "POST /api/v1/plans/promotion": "view",
    "POST /api/v1/plans/promote": "release",
    "GET /api/v1/templates": "view",
    "POST /api/v1/templates": "config",
    "PUT /api/v1/templates/{template_id}": "config",
    "GET /api/v1/templates/{template_id}": "view",
    "GET /api/v1/templates/{template_id}/versions": "view",
    "GET /api/v1/templates/{template_id}/versions/{version}": "view",
    "POST /api/v1/templates/sync": "config",
    "GET /api/v1/templates/{template_id}/impact": "view",
    "POST /api/v1/templates/{template_id}/release": "release",
    "GET /api/v1/analysis-templates": "view",
    "POST /api/v1/analysis-templates": "config",
    "GET /api/v1/analysis-templates/{name}": "view",
    "PUT /api/v1/analysis-templates/{name}": "config",
    "DELETE /api/v1/analysis-templates/{name}": "config",
    "POST /api/v1/images": "register",
    "GET /api/v1/services/{name}/images": "view",
    "PUT /api/v1/services/{name}/notifications/{environment}": "config",
    "GET /api/v1/services/{name}/notifications/{environment}": "view",
    "PUT /api/v1/environments/{name}/notifications": "config",
    "GET /api/v1/environments/{name}/notifications": "view",
    "POST /api/v1/auth/login": "open",
    "POST /api/v1/auth/logout": "open",
    "GET /api/v1/auth/me": "signed_in",
    "GET /api/v1/auth/oidc/login": "open",
    "GET /api/v1/auth/oidc/callback": "open",
    "GET /api/v1/users": "admin",
    "POST /api/v1/users": "admin",
    # {name} is the caller's own name: anyone may read their account and set
    # their password; only an admin changes accounts and grants.
    "GET /api/v1/users/{name}": "signed_in",
    "PATCH /api/v1/users/{name}": "admin",
    "PUT /api/v1/users/{name}/grants": "admin",
    "PUT /api/v1/users/{name}/password": "signed_in",
    "POST /api/v1/tokens": "signed_in",
    "GET /api/v1/tokens": "signed_in",
    "DELETE /api/v1/tokens/{token_id}": "signed_in",
    "GET /api/v1/audit": "admin",
    "POST /api/v1/webhooks/gitlab": "open",
    "POST /api/v1/webhooks/harbor": "open",
}


# Every page of the web UI and what it needs: the permission of the JSON route behind it.
UI_MATRIX = {
    "GET /login": "open",
    "GET /favicon.ico": "open",
    "POST /login": "open",
    "POST /logout": "signed_in",
    "POST /language": "signed_in",
    "GET /": "view",
    "GET /fragments/dashboard": "view",
    "GET /services": "view",
    "POST /services": "config",
    "POST /services/{name}": "config",
    "POST /services/{name}/notifications/{environment}": "config",
    "GET /services/{name}": "view",
    "GET /fragments/services": "view",
    "GET /fragments/services/{name}/state": "view",
    "GET /releases": "view",
    "GET /releases/new": "release",
    "POST /releases/new": "release",
    "GET /releases/{release_id}": "view",
    "GET /releases/{release_id}/rollback": "release",
    "GET /releases/{release_id}/redeploy": "release",
    "POST /releases/{release_id}/{action}": "release",
    "GET /plans": "view",
    "GET /plans/new": "release",
    "POST /plans/new": "release",
    "GET /plans/promote": "release",
    "POST /plans/promote": "release",
    "GET /plans/{plan_id}": "view",
    "GET /fragments/plans/{plan_id}": "view",
    "GET /fragments/releases/{release_id}/analysis": "view",
    "POST /plans/{plan_id}/decide": "release",
    "GET /plans/{plan_id}/rollback": "release",
    "POST /plans/{plan_id}/rollback": "release",
    "GET /templates": "view",
    "GET /templates/{template_id}": "view",
    "POST /templates": "config",
    "POST /templates/{template_id}": "config",
    "POST /templates/{template_id}/release": "release",
    "GET /analysis-templates": "view",
    "POST /analysis-templates": "config",
    "GET /analysis-templates/{name}": "view",
    "POST /analysis-templates/{name}": "config",
    "GET /services/{name}/config/{environment}": "view",
    "POST /services/{name}/config/{environment}": "config",
    "GET /users": "admin",
    "POST /users": "admin",
    "POST /users/{name}/grants": "admin",
    "GET /environments": "view",
    "POST /environments": "admin",
    "POST /environments/{name}": "admin",
    "GET /audit": "admin",
}


async def _call(http: httpx.AsyncClient, method: str, path: str, me: str) -> int:
    url = path.removeprefix("/api/v1")
    if url.startswith("/users/{name}") and path.startswith("/api/"):
        url = url.replace("{name}", me)
    for param in (
        "{name}",
        "{environment}",
        "{release_id}",
        "{template_id}",
        "{token_id}",
        "{plan_id}",
    ):
        url = url.replace(param, "nothing-here")
    url = url.replace("{version}", "1").replace("{action}", "cancel")
    if not path.startswith("/api/"):
        # A page: a form post, and a browser's view of a redirect to the login page.
        data: dict[str, str] | None = {} if method == "POST" else None
        page = http.base_url.copy_with(path=url)
        answer = await http.request(method, page, data=data, follow_redirects=False)
        if answer.status_code == 303 and answer.headers["location"].startswith("/login?"):
            return 401  # sent to log in (a logout's own redirect names no page to return to)
        return answer.status_code
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    answer = await http.request(method, url, json=body)
    return answer.status_code


async def test_every_route_allows_exactly_the_roles_it_should(
    api: httpx.AsyncClient, fabu: FabuSystem, admin_token: str
) -> None:
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        spec = (
            await http.get("/openapi.json", headers={"Authorization": f"Bearer {admin_token}"})
        ).json()
    routes = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    assert routes == set(MATRIX), "routes added or removed: update MATRIX"

    callers = await _callers(api)
    wrong = await _check(fabu, callers, MATRIX)
    assert not wrong, "\n".join(wrong)


async def test_every_page_asks_for_the_permission_of_the_route_behind_it(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    """A user without grants is refused every page but their own session's; each page
    allows exactly the roles its JSON route does."""
    pages = {
        f"{method} {route.path}"
        for router in ui_routes.ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert pages == set(UI_MATRIX), "pages added or removed: update UI_MATRIX"
    wrong = await _check(fabu, await _callers(api), UI_MATRIX)
    assert not wrong, "\n".join(wrong)


async def test_a_user_without_grants_is_told_to_ask_an_admin(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    name = await make_user(api, [])
    token = (await token_for(api, name))["token"]
    async with acting_as(fabu, token) as http:
        page = await http.get(http.base_url.copy_with(path="/releases"))
    assert page.status_code == 403
    assert "ask an admin" in page.text
    assert "You have no access to Fabu yet" in page.text


async def _callers(api: httpx.AsyncClient) -> dict[str, tuple[str, str | None]]:
    callers: dict[str, tuple[str, str | None]] = {"anonymous": ("anonymous", None)}
    for role in ROLES:
        name = await make_user(api, GRANTS[role])
        callers[role] = (name, (await token_for(api, name))["token"])
    return callers


async def _check(
    fabu: FabuSystem, callers: dict[str, tuple[str, str | None]], matrix: dict[str, str]
) -> list[str]:
    """Each route called by each caller: what answered other than its permission says."""
    wrong: list[str] = []
    for route, needs in sorted(matrix.items()):
        method, path = route.split(" ", 1)
        answers = {}
        for who, (name, token) in callers.items():
            async with acting_as(fabu, token) as http:
                answers[who] = await _call(http, method, path, name)
        if needs == "open":
            if len(set(answers.values())) != 1:
                wrong.append(f"{route} is open but answered {answers}")
            continue
        if answers["anonymous"] != 401:
            wrong.append(f"{route} answered {answers['anonymous']} to an anonymous caller")
        for role in ROLES:
            allowed = role in ALLOWED[needs]
            status = answers[role]
            if allowed and status in (401, 403):
                wrong.append(f"{route} refused {role} ({status}); it needs {needs}")
            if not allowed and status != 403:
                wrong.append(f"{route} answered {status} to {role}; it needs {needs}")
    return wrong


# A form the page sends by POST, its action and what it holds.
POST_FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.DOTALL)


def _post_route(action: str) -> str:
    """The UI_MATRIX route a form's action posts to (the one with the fewest parameters)."""
    path = re.split(r"[?#]", action, maxsplit=1)[0]
    found = [
        route
        for route in UI_MATRIX
        if route.startswith("POST ")
        and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", route.removeprefix("POST ")), path)
    ]
    assert found, f"a form posts to {action}, which no page route takes"
    return min(found, key=lambda route: route.count("{"))


async def test_no_page_offers_a_form_its_reader_may_not_send(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    """Every page leading to an action: a form is offered (enabled) only to those whose
    role may send it; the pages that are nothing but a form refuse the others (403)."""
    service, environment = await prepare(api, stack_env, namespace)
    # Two releases: the first is one to roll back to.
    ids = []
    for version in ("1.0", "1.1"):
        await push(api, service, version)
        body = {"service": service, "environment": environment, "version": version}
        started = await api.post("/releases", json=body)
        assert started.status_code == 202, started.text
        ids.append(started.json()["id"])
        assert (await finished(api, ids[-1]))["state"] == "succeeded"
    release_id = ids[0]
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    template_id = config["template_id"]
    analysis = unique("an")
    metric = {"name": "up", "query": 'up{namespace="{{namespace}}"}', "success": "result == 1"}
    made = await api.post("/analysis-templates", json={"name": analysis, "metrics": [metric]})
    assert made.status_code == 201, made.text
    pages = {
        "/": "view",
        "/services": "view",
        f"/services/{service}": "view",
        f"/services/{service}/config/{environment}": "view",
        "/templates": "view",
        f"/templates/{template_id}": "view",
        "/analysis-templates": "view",
        f"/analysis-templates/{analysis}": "view",
        "/environments": "view",
        "/releases": "view",
        f"/releases/{release_id}": "view",
        f"/releases/new?service={service}&environment={environment}&version=1.0&preview=1": (
            "release"
        ),
        f"/releases/{release_id}/rollback": "release",
        "/users": "admin",
        "/audit": "admin",
    }
    callers = await _callers(api)
    wrong: list[str] = []
    offered: dict[str, set[str]] = {}
    for url, needs in pages.items():
        for role in ROLES:
            async with acting_as(fabu, callers[role][1]) as http:
                page = await http.get(http.base_url.copy_with(raw_path=url.encode()))
            if role not in ALLOWED[needs]:
                if page.status_code != 403:
                    wrong.append(f"GET {url} answered {page.status_code} to {role}")
                continue
            if page.status_code == 403 and role == "releaser":
                continue  # its grant is for another environment: refused there too
            assert page.status_code == 200, (url, role, page.text[:300])
            for action, body in POST_FORM.findall(page.text):
                route = _post_route(action)
                if role in ALLOWED[UI_MATRIX[route]]:
                    offered.setdefault(role, set()).add(route)
                elif "<fieldset disabled" not in body and "<button" in body:
                    wrong.append(f"GET {url} offers {role} a form to {route}")
    assert not wrong, "\n".join(wrong)
    # The test sees the forms: those who may are offered them.
    assert {
        "POST /environments",
        "POST /environments/{name}",
        "POST /services/{name}/config/{environment}",
        "POST /templates/{template_id}",
        "POST /users/{name}/grants",
        "POST /releases/{release_id}/{action}",
    } <= offered["admin"]
    assert {
        "POST /services/{name}/notifications/{environment}",
        "POST /analysis-templates",
        "POST /analysis-templates/{name}",
    } <= offered["config_admin"]
    assert "POST /releases/new" in offered["admin"]


async def test_webhooks_keep_their_own_secrets_whoever_calls(
    fabu: FabuSystem, admin_token: str
) -> None:
    async with acting_as(fabu, admin_token) as http:
        for hook in ("/webhooks/gitlab", "/webhooks/harbor"):
            answer = await http.post(hook, json={"object_kind": "push"})
            assert answer.status_code == 401, (hook, answer.text)


async def test_health_and_metrics_are_open(fabu: FabuSystem) -> None:
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics/")).status_code == 200
        refused = await http.get("/api/v1/releases")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_a_revoked_token_is_refused_at_once(api: httpx.AsyncClient, fabu: FabuSystem) -> None:
    name = await make_user(api, [{"role": "viewer"}])
    token = await token_for(api, name)
    assert "token" not in (await api.get("/tokens", params={"user": name})).json()[0]
    async with acting_as(fabu, token["token"]) as http:
        assert (await http.get("/releases")).status_code == 200
        revoked = await api.delete(f"/tokens/{token['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        refused = await http.get("/releases")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
    assert (await api.delete(f"/tokens/{token['id']}")).status_code == 409


async def test_an_expired_token_is_refused(api: httpx.AsyncClient, fabu: FabuSystem) -> None:
    name = await make_user(api, [{"role": "viewer"}])
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    token = await token_for(api, name, expires_at=past)
    async with acting_as(fabu, token["token"]) as http:
        refused = await http.get("/releases")
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


async def test_a_disabled_user_is_refused_and_the_last_admin_stays(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    async with user_with(api, fabu, [{"role": "viewer"}]) as (name, http):
        assert (await http.get("/releases")).status_code == 200
        assert (await api.patch(f"/users/{name}", json={"disabled": True})).status_code == 200
        assert (await http.get("/releases")).status_code == 401
    # Taking admin from the only admin is refused, with nothing changed (other
    # tests' admins are disabled first, which is allowed while ``admin`` stays).
    for user in (await api.get("/users")).json():
        admin = any(g["role"] == "admin" for g in user["grants"])
        if admin and user["name"] != "admin" and not user["disabled"]:
            disabled = await api.patch(f"/users/{user['name']}", json={"disabled": True})
            assert disabled.status_code == 200, disabled.text
    refused = await api.patch("/users/admin", json={"disabled": True})
    assert refused.status_code == 409, refused.text
    kept = await api.put("/users/admin/grants", json=[{"role": "viewer"}])
    assert kept.status_code == 409, kept.text
    assert (await api.get("/users/admin")).json()["grants"] == [{"role": "admin", **ANYWHERE}]


ANYWHERE = {"environment": "*", "service": "*", "team": "*"}


async def test_sessions_need_the_csrf_token_for_changes(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    password = "a long enough password"
    name = await make_user(api, [{"role": "config_admin"}], password=password)
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        answer = await http.post(
            "/api/v1/auth/login", json={"username": name, "password": password}
        )
        assert answer.status_code == 200, answer.text
        cookie = answer.headers["set-cookie"].lower()
        for attribute in ("httponly", "secure", "samesite=lax", "path=/"):
            assert attribute in cookie
        session = await login(http, name, password)
        with_cookie = {"Cookie": session["Cookie"]}
        template = {"name": f"csrf-{name}", "content": "kind: ConfigMap\n"}

        # Reading needs no CSRF token.
        me = await http.get("/api/v1/auth/me", headers=with_cookie)
        assert me.status_code == 200
        assert me.json()["csrf_token"] == session["X-CSRF-Token"]
        for headers in (with_cookie, {**with_cookie, "X-CSRF-Token": "forged"}):
            refused = await http.post("/api/v1/templates", json=template, headers=headers)
            assert refused.status_code == 403
            assert "CSRF" in refused.json()["detail"]
        # A form post without the field is refused too; with it, it passes the check.
        form = await http.post("/api/v1/templates", data={"name": "x"}, headers=with_cookie)
        assert form.status_code == 403
        form = await http.post(
            "/api/v1/templates",
            data={"name": "x", "csrf_token": session["X-CSRF-Token"]},
            headers=with_cookie,
        )
        assert form.status_code == 422
        names = [t["name"] for t in (await api.get("/templates")).json()]
        assert template["name"] not in names

        made = await http.post("/api/v1/templates", json=template, headers=session)
        assert made.status_code == 201, made.text

        out = await http.post("/api/v1/auth/logout", headers=session)
        assert out.status_code == 204
        after = await http.get("/api/v1/auth/me", headers=with_cookie)
        assert after.status_code == 401

        wrong = await http.post(
            "/api/v1/auth/login", json={"username": name, "password": "not the password"}
        )
        assert wrong.status_code == 401
        unknown = await http.post(
            "/api/v1/auth/login", json={"username": "nobody-at-all", "password": password}
        )
        assert unknown.status_code == 401
        assert wrong.json() == unknown.json()


async def test_changing_a_password_ends_sessions_and_needs_the_current_one(
    api: httpx.AsyncClient, fabu: FabuSystem
) -> None:
    password, new = "the first password", "the second password"
    name = await make_user(api, [{"role": "viewer"}], password=password)
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        session = await login(http, name, password)
        wrong = await http.put(
            f"/api/v1/users/{name}/password",
            json={"current_password": "guess work!", "new_password": new},
            headers=session,
        )
        assert wrong.status_code == 422
        changed = await http.put(
            f"/api/v1/users/{name}/password",
            json={"current_password": password, "new_password": new},
            headers=session,
        )
        assert changed.status_code == 204, changed.text
        assert (await http.get("/api/v1/auth/me", headers=session)).status_code == 401
        await login(http, name, new)


async def test_a_releaser_releases_only_where_granted_and_cannot_edit_base_parameters(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    other_service, _ = await prepare(api, stack_env, namespace)
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    configured = await api.put(
        f"/services/{other_service}/config/{environment}",
        json={"template_id": config["template_id"]},
    )
    assert configured.status_code == 200, configured.text
    await push(api, service, "1.0")
    await push(api, other_service, "1.0")
    team = (await api.get(f"/services/{service}")).json()["team"]
    grants = [{"role": "releaser", "environment": environment, "service": service}]
    async with user_with(api, fabu, grants) as (name, http):
        refused = await http.post(
            "/releases",
            json={"service": other_service, "environment": environment, "version": "1.0"},
        )
        assert refused.status_code == 403
        assert other_service in refused.json()["detail"]
        edit = await http.put(
            f"/services/{service}/config/{environment}",
            json={"template_id": "x", "params": {"replicas": 5}},
        )
        assert edit.status_code == 403
        accepted = await http.post(
            "/releases",
            json={"service": service, "environment": environment, "version": "1.0"},
        )
        assert accepted.status_code == 202, accepted.text
        body = await finished(api, accepted.json()["id"])
        assert body["state"] == "succeeded"
        assert body["operator"] == name
    # A team grant reaches every service of the team.
    async with user_with(
        api, fabu, [{"role": "releaser", "environment": environment, "team": team}]
    ) as (_, http):
        accepted = await http.post(
            "/releases",
            json={"service": other_service, "environment": environment, "version": "1.0"},
        )
        assert accepted.status_code == 202, accepted.text
        await finished(api, accepted.json()["id"])


def mailed(inbox: Inbox, release_id: str) -> Callable[[], Awaitable[list[Message] | None]]:
    async def probe() -> list[Message] | None:
        return inbox.about(release_id) or None

    return probe


async def _environment(api: httpx.AsyncClient, name: str, **changes: Any) -> None:
    env = (await api.get(f"/environments/{name}")).json()
    updated = await api.put(f"/environments/{name}", json={**env, **changes})
    assert updated.status_code == 200, updated.text


async def test_approval_by_someone_else_before_anything_reaches_the_cluster(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    stack_env: StackEnv,
    namespace: str,
    kube: client.ApiClient,
    inbox: Inbox,
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await _environment(api, environment, approval_required=True)
    channels = [
        {
            "type": "email",
            "recipients": ["approvers@example.com"],
            "events": ["approval_needed", "succeeded"],
        }
    ]
    assert (
        await api.put(f"/environments/{environment}/notifications", json=channels)
    ).status_code == 200
    await push(api, service, "1.0")
    grants = [{"role": "releaser", "environment": environment}]
    async with (
        user_with(api, fabu, grants) as (requester, as_requester),
        user_with(api, fabu, grants) as (approver, as_approver),
        user_with(api, fabu, [{"role": "viewer"}]) as (_, as_viewer),
    ):
        accepted = await as_requester.post(
            "/releases", json={"service": service, "environment": environment, "version": "1.0"}
        )
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["state"] == "awaiting_approval"
        release_id = accepted.json()["id"]
        # The approvers hear of it before anyone decides.
        await emailed(api, release_id, "approval_needed")
        assert "needs approval" in inbox.about(release_id)[0]["Subject"]
        deployments = await client.AppsV1Api(kube).list_namespaced_deployment(namespace)
        assert [d.metadata.name for d in deployments.items] == []

        own = await as_requester.post(f"/releases/{release_id}/approve", json={})
        assert own.status_code == 403
        assert "someone else" in own.json()["detail"]
        viewer = await as_viewer.post(f"/releases/{release_id}/approve", json={})
        assert viewer.status_code == 403
        assert (await api.get(f"/releases/{release_id}")).json()["state"] == "awaiting_approval"

        approved = await as_approver.post(
            f"/releases/{release_id}/approve", json={"comment": "checked the change log"}
        )
        assert approved.status_code == 200, approved.text
        body = await finished(api, release_id)
        assert body["state"] == "succeeded"
        assert body["operator"] == requester
        assert body["decision"]["by"] == approver
        assert body["decision"]["approved"] is True
        assert body["decision"]["comment"] == "checked the change log"
        states = [(e["state"], e["actor"]) for e in body["events"]]
        assert states[:2] == [("awaiting_approval", requester), ("requested", approver)]
        again = await as_approver.post(f"/releases/{release_id}/approve", json={})
        assert again.status_code == 409

        # A rejected release ends there, and frees the service for the next one.
        second = await as_requester.post(
            "/releases", json={"service": service, "environment": environment, "version": "1.0"}
        )
        await emailed(api, second.json()["id"], "approval_needed")
        rejected = await as_approver.post(
            f"/releases/{second.json()['id']}/reject", json={"comment": "not today"}
        )
        assert rejected.status_code == 200, rejected.text
        body = (await api.get(f"/releases/{second.json()['id']}")).json()
        assert body["state"] == "rejected"
        assert body["decision"] == {**body["decision"], "approved": False, "by": approver}
        assert body["transcript"][-1]["text"] == f"rejected by {approver}: not today"
        third = await as_requester.post(
            "/releases", json={"service": service, "environment": environment, "version": "1.0"}
        )
        assert third.status_code == 202, third.text
    audit = (await api.get("/audit", params={"target": f"release/{release_id}"})).json()["items"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("release.approve", approver),
        ("release.deploy", requester),
    ]


async def test_a_freeze_stops_a_releaser_and_records_an_admins_override(
    api: httpx.AsyncClient,
    fabu: FabuSystem,
    stack_env: StackEnv,
    namespace: str,
    inbox: Inbox,
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, notify_emails=["team@example.com"]
    )
    now = datetime.now(UTC)
    window = {
        "name": "year-end",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "reason": "year-end close",
    }
    await _environment(api, environment, freeze_windows=[window])
    await push(api, service, "1.0")
    release = {"service": service, "environment": environment, "version": "1.0"}
    async with user_with(api, fabu, [{"role": "releaser"}]) as (_, as_releaser):
        refused = await as_releaser.post("/releases", json=release)
        assert refused.status_code == 403
        assert "frozen" in refused.json()["detail"]
        assert "year-end" in refused.json()["detail"]
    no_reason = await api.post("/releases", json=release)
    assert no_reason.status_code == 422
    assert no_reason.json()["detail"].startswith("override_reason:")
    listed = (await api.get("/releases", params={"service": service})).json()["items"]
    assert listed == []

    accepted = await api.post(
        "/releases", json={**release, "override_reason": "the payment outage fix"}
    )
    assert accepted.status_code == 202, accepted.text
    release_id = accepted.json()["id"]
    body = await finished(api, release_id)
    assert body["state"] == "succeeded"
    assert body["freeze_override"]["window"] == "year-end"
    assert body["freeze_override"]["by"] == "admin"
    assert body["freeze_override"]["reason"] == "the payment outage fix"
    mail = await eventually(mailed(inbox, release_id), "the result email")
    payload = mail[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "year-end: admin: the payment outage fix" in text
    audit = (await api.get("/audit", params={"target": f"release/{release_id}"})).json()["items"]
    assert audit[0]["after"]["freeze_override"]["reason"] == "the payment outage fix"


async def test_every_kind_of_change_is_audited_without_secrets(
    api: httpx.AsyncClient, fabu: FabuSystem, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=1)
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    changed = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": config["template_id"], "params": {"replicas": 2}, "note": "more"},
    )
    assert changed.status_code == 200
    template = (await api.get(f"/templates/{config['template_id']}")).json()
    await api.put(
        f"/templates/{template['id']}", json={"content": template["content"] + "\n# v2\n"}
    )
    robot = "https://oapi.dingtalk.com/robot/send?access_token=very-secret-robot-token"
    # An event no release here sends: nothing goes out to the (unreachable) robot.
    channels = [
        {
            "type": "dingtalk",
            "url": robot,
            "secret": "SECsigning-secret",
            "events": ["canary_paused"],
        }
    ]
    assert (
        await api.put(f"/services/{service}/notifications/{environment}", json=channels)
    ).status_code == 200
    await _environment(api, environment, rollout_timeout_s=90)
    name = await make_user(api, [{"role": "viewer"}], password="a password of length")
    await api.put(f"/users/{name}/grants", json=[{"role": "releaser", "environment": environment}])
    token = await token_for(api, name)
    await api.delete(f"/tokens/{token['id']}")
    await push(api, service, "1.0")
    accepted = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.0"}
    )
    release_id = accepted.json()["id"]
    await finished(api, release_id)

    async def actions(target: str) -> list[str]:
        page = (await api.get("/audit", params={"target": target})).json()
        return [e["action"] for e in page["items"]]

    assert await actions(f"environment/{environment}") == [
        "environment.update",
        "environment.create",
    ]
    assert await actions(f"service/{service}") == ["service.create"]
    assert await actions(f"config/{service}/{environment}") == ["config.update", "config.update"]
    assert await actions(f"template/{template['id']}") == ["template.update", "template.create"]
    assert await actions(f"notifications/{service}/{environment}") == ["notifications.update"]
    assert await actions(f"user/{name}") == ["user.grants", "user.create"]
    assert await actions(f"token/{token['id']}") == ["token.revoke", "token.create"]
    assert await actions(f"release/{release_id}") == ["release.deploy"]

    entry = (await api.get("/audit", params={"target": f"config/{service}/{environment}"})).json()[
        "items"
    ][0]
    assert entry["actor"] == "admin"
    assert entry["before"]["params"]["replicas"] == 1
    assert entry["after"]["params"]["replicas"] == 2
    assert entry["note"] == "more"
    env_entry = (await api.get("/audit", params={"target": f"environment/{environment}"})).json()[
        "items"
    ][0]
    assert (env_entry["before"]["rollout_timeout_s"], env_entry["after"]["rollout_timeout_s"]) == (
        60,
        90,
    )

    everything = (await api.get("/audit", params={"actor": "admin", "limit": 200})).text
    for secret in (
        "very-secret-robot-token",
        "SECsigning-secret",
        "a password of length",
        token["token"],
    ):
        assert secret not in everything
    since = (await api.get("/audit", params={"since": "2020-01-01T00:00:00"})).status_code
    assert since == 422


async def test_oidc_login_through_gitlab_makes_a_viewer(
    api: httpx.AsyncClient, fabu: FabuSystem, identity: FakeGitLabIdentity
) -> None:
    nickname = f"oidc-{datetime.now(UTC).strftime('%H%M%S%f')}"
    identity.signed_in = {"nickname": nickname, "name": "Ada Lovelace", "email": "ada@example.com"}
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        start = await http.get("/api/v1/auth/oidc/login")
        assert start.status_code == 302
        assert start.headers["location"].startswith(f"{identity.url}/oauth/authorize?")
        state_cookie = start.cookies["fabu_oidc"]
        back = await http.get(start.headers["location"])
        assert back.status_code == 302
        callback = back.headers["location"].removeprefix(fabu.api_url)
        # Without the browser's state cookie the answer is refused (login CSRF).
        assert (await http.get(callback)).status_code == 401
        done = await http.get(callback, headers={"Cookie": f"fabu_oidc={state_cookie}"})
        assert done.status_code == 302, done.text
        session = done.cookies["fabu_session"]
        me = await http.get("/api/v1/auth/me", headers={"Cookie": f"fabu_session={session}"})
    assert me.status_code == 200, me.text
    user = me.json()["user"]
    assert (user["name"], user["source"], user["email"]) == (nickname, "oidc", "ada@example.com")
    assert user["grants"] == [{"role": "viewer", **ANYWHERE}]
    # Replaying the code is refused by the provider, and so by Fabu.
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        replay = await http.get(callback, headers={"Cookie": f"fabu_oidc={state_cookie}"})
    assert replay.status_code == 401


@pytest.mark.parametrize(
    "grant",
    [
        {"role": "viewer", "environment": "production"},
        {"role": "releaser", "service": "a", "team": "b"},
        {"role": "owner"},
    ],
)
async def test_bad_grants_are_refused_and_nothing_changes(
    api: httpx.AsyncClient, grant: dict[str, str]
) -> None:
    name = await make_user(api, [{"role": "viewer"}])
    refused = await api.put(f"/users/{name}/grants", json=[grant])
    assert refused.status_code == 422
    assert (await api.get(f"/users/{name}")).json()["grants"] == [{"role": "viewer", **ANYWHERE}]
