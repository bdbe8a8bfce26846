"""Limits and hardening on the real stack: the body guard under every content type, the
security headers and a policy the pages keep to, logout only with the session's CSRF
token, and logins throttled per user name and per client address, across API replicas.

Each test logs in from addresses of its own (``X-Forwarded-For``, which the API trusts
from 127.0.0.1 as uvicorn does by default), so no test's failures count against another.
"""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from devstack.stack import free_port
from devstack.system import FabuSystem, login, new_token
from shared.store.indexes import ensure_indexes
from shared.store.logins import LoginAttempts
from shared.store.mongo import Mongo
from tests.conftest import unique
from tests.support.stack import StackEnv
from tests.support.users import make_user
from tests.support.wait import eventually

LIMIT = 3
PASSWORD = "a password long enough"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)


def address() -> str:
    """A client address of the test's own (from the documentation range)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def sent_from(where: str) -> dict[str, str]:
    return {"X-Forwarded-For": where}


async def json_login(
    http: httpx.AsyncClient, user: str, password: str, where: str
) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/login",
        json={"username": user, "password": password},
        headers=sent_from(where),
    )


async def page_login(
    http: httpx.AsyncClient, user: str, password: str, where: str
) -> httpx.Response:
    """The login page's form, as a browser posts it (the login form's cookie by hand: it
    is Secure, which httpx keeps to HTTPS)."""
    form = await http.get("/login", headers=sent_from(where))
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token, form.text
    return await http.post(
        "/login",
        data={"username": user, "password": password, "login_csrf": token[1], "then": "/"},
        headers={**sent_from(where), "Cookie": f"fabu_login={form.cookies['fabu_login']}"},
    )


# Logins throttled


@pytest.fixture(scope="module")
async def guarded(
    stack_env: StackEnv, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FabuSystem]:
    """Two API replicas on a database of their own, refusing logins after LIMIT failures."""
    system = FabuSystem(
        stack_env.as_env(),
        tmp_path_factory.mktemp("guarded"),
        smtp_port=0,
        name=unique("g"),
        extra_env={"FABU_LOGIN_ATTEMPTS": str(LIMIT), "FABU_LOGIN_WINDOW_S": "300"},
    )
    system.start("api")
    system.start("api", {"FABU_HTTP_PORT": str(free_port())}, name="api-2")
    try:
        for replica in system.ports.values():
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{replica}") as http:

                async def healthy(http: httpx.AsyncClient = http) -> bool:
                    try:
                        return (await http.get("/healthz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(healthy, "the API replica to answer", within=60)
        yield system
    finally:
        system.stop()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack_env.mongo_url)
        await mongo.drop_database(system.env["FABU_MONGO_DB"])
        await mongo.close()


@pytest.fixture(scope="module")
async def guarded_admin(guarded: FabuSystem) -> AsyncIterator[httpx.AsyncClient]:
    token = await new_token(guarded.api_url, "admin", guarded.admin_password, "tests")
    async with httpx.AsyncClient(
        base_url=guarded.api_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as http:
        yield http


async def test_a_user_name_is_refused_after_its_failures_whatever_the_password(
    guarded: FabuSystem, guarded_admin: httpx.AsyncClient
) -> None:
    name = await make_user(guarded_admin, [{"role": "viewer"}], password=PASSWORD)
    other = await make_user(guarded_admin, [{"role": "viewer"}], password=PASSWORD)
    places = [address() for _ in range(LIMIT + 1)]
    async with httpx.AsyncClient(base_url=guarded.api_url, timeout=30) as http:
        # Each failure from another address: the user name's count alone reaches LIMIT.
        for where in places[:LIMIT]:
            assert (await json_login(http, name, "wrong", where)).status_code == 401
        refused = await json_login(http, name, PASSWORD, places[LIMIT])
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= 300
        assert "try again in" in refused.json()["detail"]
        assert "fabu_session" not in refused.cookies
        # The addresses are not throttled: another user logs in from them.
        for where in places:
            assert (await json_login(http, other, PASSWORD, where)).status_code == 200
    entries = (
        await guarded_admin.get(
            "/audit", params={"action": "session.throttled", "target": f"user/{name}"}
        )
    ).json()["items"]
    assert len(entries) == 1
    assert entries[0]["actor"] == name
    assert places[LIMIT] in entries[0]["note"]


async def test_an_address_is_refused_after_failures_at_any_names(
    guarded: FabuSystem, guarded_admin: httpx.AsyncClient
) -> None:
    name = await make_user(guarded_admin, [{"role": "viewer"}], password=PASSWORD)
    spraying, elsewhere = address(), address()
    async with httpx.AsyncClient(base_url=guarded.api_url, timeout=30) as http:
        for _ in range(LIMIT):
            guess = await json_login(http, f"nobody-{uuid.uuid4().hex[:6]}", PASSWORD, spraying)
            assert guess.status_code == 401
        refused = await json_login(http, name, PASSWORD, spraying)
        assert refused.status_code == 429, refused.text
        assert (await json_login(http, name, PASSWORD, elsewhere)).status_code == 200


async def test_a_success_clears_the_users_count(
    guarded: FabuSystem, guarded_admin: httpx.AsyncClient
) -> None:
    name = await make_user(guarded_admin, [{"role": "viewer"}], password=PASSWORD)
    async with httpx.AsyncClient(base_url=guarded.api_url, timeout=30) as http:
        for _ in range(2):
            for _ in range(LIMIT - 1):
                assert (await json_login(http, name, "wrong", address())).status_code == 401
            # Without the reset the second round's success would meet 2 * (LIMIT - 1) failures.
            assert (await json_login(http, name, PASSWORD, address())).status_code == 200


async def test_replicas_share_the_counts_and_attempts_at_once_get_no_more_tries(
    guarded: FabuSystem, guarded_admin: httpx.AsyncClient
) -> None:
    name = await make_user(guarded_admin, [{"role": "viewer"}], password=PASSWORD)
    urls = [f"http://127.0.0.1:{port}" for port in guarded.ports.values()]
    assert len(urls) == 2
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=60) as first,
        httpx.AsyncClient(base_url=urls[1], timeout=60) as second,
    ):
        # Twelve wrong passwords at once, half through each replica.
        answers = await asyncio.gather(
            *(
                json_login(http, name, "wrong", address())
                for http in (first, second)
                for _ in range(6)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        checked = statuses.count(401)
        assert checked <= LIMIT, statuses
        assert set(statuses) <= {401, 429}, statuses
        # The replicas share one count: what is left of the limit, through either, and no more.
        for attempt in range(LIMIT - checked):
            http = (first, second)[attempt % 2]
            assert (await json_login(http, name, "wrong", address())).status_code == 401
        for http in (first, second):
            refused = await json_login(http, name, PASSWORD, address())
            assert refused.status_code == 429, refused.text


async def test_the_login_page_says_how_long_to_wait(
    guarded: FabuSystem, guarded_admin: httpx.AsyncClient
) -> None:
    name = await make_user(guarded_admin, [{"role": "viewer"}], password=PASSWORD)
    where = address()
    async with httpx.AsyncClient(base_url=guarded.api_url, timeout=30) as http:
        for _ in range(LIMIT):
            assert (await page_login(http, name, "wrong", where)).status_code == 401
        page = await page_login(http, name, PASSWORD, where)
    assert page.status_code == 429
    wait = int(page.headers["Retry-After"])
    assert f"wait {wait} seconds" in page.text
    assert 'name="username"' in page.text  # the login form, to try again
    assert "fabu_session" not in page.cookies


async def test_the_window_passes_and_the_name_may_try_again(stack_env: StackEnv) -> None:
    mongo = Mongo(stack_env.mongo_url, unique("w").replace("-", "_"))
    try:
        await ensure_indexes(mongo)
        attempts = LoginAttempts(mongo, limit=2, window_s=5.0)
        for where in ("a", "b"):
            assert await attempts.begin("someone", where) == 0
        assert 0 < await attempts.begin("someone", "c") <= 5

        async def admitted() -> bool:
            return await attempts.begin("someone", "d") == 0

        await eventually(admitted, "the failures to leave the window", within=30)
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


# Logging out needs the CSRF token


async def test_logging_out_with_the_cookie_needs_the_csrf_token(
    fabu: FabuSystem, api: httpx.AsyncClient, admin_token: str
) -> None:
    name = await make_user(api, [{"role": "viewer"}], password=PASSWORD)
    async with httpx.AsyncClient(base_url=fabu.api_url, timeout=30) as http:
        session = await login(http, name, PASSWORD)
        cookie = {"Cookie": session["Cookie"]}
        for headers in (cookie, {**cookie, "X-CSRF-Token": "forged"}):
            refused = await http.post("/api/v1/auth/logout", headers=headers)
            assert refused.status_code == 403, refused.text
            assert "CSRF" in refused.json()["detail"]
        assert (await http.get("/api/v1/auth/me", headers=cookie)).status_code == 200
        assert (await http.post("/api/v1/auth/logout", headers=session)).status_code == 204
        assert (await http.get("/api/v1/auth/me", headers=cookie)).status_code == 401

        # With an API token no CSRF token is needed (no page elsewhere can send one).
        bearer = {"Authorization": f"Bearer {admin_token}"}
        assert (await http.post("/api/v1/auth/logout", headers=bearer)).status_code == 204
        session = await login(http, name, PASSWORD)
        cookie = {"Cookie": session["Cookie"]}
        out = await http.post("/api/v1/auth/logout", headers={**cookie, **bearer})
        assert out.status_code == 204
        assert (await http.get("/api/v1/auth/me", headers=cookie)).status_code == 401


async def test_the_logout_form_sends_the_csrf_token_and_a_post_without_it_is_refused(
    fabu: FabuSystem, api: httpx.AsyncClient
) -> None:
    name = await make_user(api, [{"role": "viewer"}], password=PASSWORD)
    async with httpx.AsyncClient(base_url=fabu.api_url, timeout=30) as http:
        session = await login(http, name, PASSWORD)
        cookie = {"Cookie": session["Cookie"]}
        dashboard = await http.get("/", headers=cookie)
        form = re.search(
            r'action="/logout".*?name="csrf_token" value="([^"]*)"', dashboard.text, re.S
        )
        assert form, dashboard.text
        assert form[1] == session["X-CSRF-Token"]
        refused = await http.post("/logout", headers=cookie, data={})
        assert refused.status_code == 403
        assert (await http.get("/api/v1/auth/me", headers=cookie)).status_code == 200
        out = await http.post("/logout", headers=cookie, data={"csrf_token": form[1]})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert (await http.get("/api/v1/auth/me", headers=cookie)).status_code == 401


# Security headers, and pages the policy does not break


async def test_every_answer_carries_the_security_headers(
    fabu: FabuSystem, admin_token: str
) -> None:
    bearer = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=fabu.api_url, timeout=30) as http:
        answers = [
            await http.get("/login"),
            await http.get("/", headers=bearer),
            await http.get("/no-such-page", headers=bearer),
            await http.get("/static/app.js"),
            await http.get("/api/v1/auth/me", headers=bearer),
            await http.get("/api/v1/auth/me"),
            await http.get("/healthz"),
        ]
    for answer in answers:
        where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
        assert answer.headers.get("Content-Security-Policy") == CSP, where
        assert answer.headers.get("X-Frame-Options") == "DENY", where
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", where
        assert answer.headers.get("Referrer-Policy") == "same-origin", where


# What the policy forbids: inline script (a <script> without src that is not a JSON data
# block), inline handlers, style attributes and javascript: URLs.
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>"
    r"|\son[a-z]+\s*=|\sstyle\s*=|javascript:",
    re.IGNORECASE,
)


async def test_no_page_holds_what_the_policy_forbids(fabu: FabuSystem, admin_token: str) -> None:
    bearer = {"Authorization": f"Bearer {admin_token}"}
    pages = (
        "/login",
        "/",
        "/services",
        "/releases",
        "/releases/new",
        "/templates",
        "/environments",
        "/users",
        "/audit",
        "/releases/no-such-release",
    )
    async with httpx.AsyncClient(base_url=fabu.api_url, timeout=30) as http:
        for path in pages:
            page = await http.get(path, headers=bearer)
            assert page.headers["content-type"].startswith("text/html"), path
            found = INLINE.findall(page.text)
            assert not found, f"{path} ({page.status_code}): {found}"


# The body guard


async def test_nul_characters_are_refused_under_every_content_type(
    fabu: FabuSystem, api: httpx.AsyncClient, admin_token: str
) -> None:
    name = unique("nul")
    # json.dumps writes the NUL as the escape \u0000, as any JSON client does.
    template = json.dumps({"name": name, "content": "kind: ConfigMap\n# a\x00b\n"})
    for content_type in (
        "application/json",
        "Application/JSON",
        "application/merge-patch+json",
        "application/vnd.fabu+json; charset=utf-8",
        "text/json",
    ):
        answer = await api.post(
            "/templates", content=template, headers={"Content-Type": content_type}
        )
        assert answer.status_code == 422, (content_type, answer.text)
        assert "NUL character" in answer.json()["detail"], (content_type, answer.text)
    # Without a content type, too (httpx sends none for raw content).
    answer = await api.post("/templates", content=template)
    assert "content-type" not in answer.request.headers
    assert answer.status_code == 422, answer.text
    assert "NUL character" in answer.json()["detail"]
    assert name not in [t["name"] for t in (await api.get("/templates")).json()]

    # Forms: the UI's (a bearer token needs no CSRF token), escaped and raw.
    service = unique("nul")
    bearer = {"Authorization": f"Bearer {admin_token}"}
    fields = {"name": service, "team": "a\x00b", "image_repository": "example.com/nul"}
    async with httpx.AsyncClient(base_url=fabu.api_url, headers=bearer, timeout=30) as http:
        escaped = await http.post("/services", data=fields)
        assert escaped.status_code == 422, escaped.text
        assert "holds a NUL character" in escaped.text
        raw = await http.post("/services", files={k: (None, v) for k, v in fields.items()})
        assert raw.status_code == 422, raw.text
        assert "holds a NUL character" in raw.text
    assert (await api.get(f"/services/{service}")).status_code == 404


async def test_json_nested_too_deeply_is_refused_under_every_json_type(
    api: httpx.AsyncClient,
) -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    body = httpx.Request("POST", "/", json={"name": unique("deep"), "content": deep}).content
    for content_type in ("application/merge-patch+json", "Application/Json", "text/json"):
        answer = await api.post("/templates", content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 422, (content_type, answer.text)
        assert "nested deeper than 32 levels" in answer.json()["detail"]


async def test_a_body_that_is_not_utf8_gets_400_saying_so(
    fabu: FabuSystem, api: httpx.AsyncClient, admin_token: str
) -> None:
    latin1 = '{"name": "caf\u00e9", "content": "kind: ConfigMap\\n"}'.encode("latin-1")
    for content_type in ("application/json", "text/plain", "application/merge-patch+json"):
        answer = await api.post(
            "/templates", content=latin1, headers={"Content-Type": content_type}
        )
        assert answer.status_code == 400, (content_type, answer.text)
        assert answer.json()["detail"] == "the body is not UTF-8 text"
    answer = await api.post("/templates", content=latin1)
    assert "content-type" not in answer.request.headers
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == "the body is not UTF-8 text"
    # A UTF-16 body is JSON to Python's reader, but not text Fabu takes.
    utf16 = '{"name": "x", "content": "kind: ConfigMap\\n"}'.encode("utf-16")
    answer = await api.post(
        "/templates", content=utf16, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    bearer = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=fabu.api_url, headers=bearer, timeout=30) as http:
        form = await http.post(
            "/services",
            content=b"name=caf\xe9&team=t",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert form.status_code == 400, form.text
    assert "the body is not UTF-8 text" in form.text
