"""The web UI in headless Chromium (Debian's, driven by Playwright) against the real stack.

Screenshots of the main pages are saved under ``.artifacts/screenshots/``.
"""

import re
from typing import Any

import httpx
from playwright.async_api import Browser, expect

from devstack.system import FabuSystem
from tests.support.browser import LIVE_S, PASSWORD, logged_in, shot
from tests.support.releases import finished, prepare, push, release
from tests.support.stack import StackEnv
from tests.support.users import make_user


async def test_release_watch_it_live_and_roll_it_back(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    first = await finished(api, await release(api, service, environment, "1.0"))
    assert first["state"] == "succeeded"
    await push(api, service, "2.0")
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await expect(page.locator("#whoami")).to_contain_text("admin")
    await shot(page, "dashboard")

    await page.goto(f"/releases/new?service={service}")
    await page.get_by_label("Environment").select_option(environment)
    await page.get_by_label("2.0").check()
    await page.get_by_label("Description").fill("from the browser")
    await page.get_by_role("button", name="Show the changes").click()
    await expect(page.locator("pre.diff").first).to_contain_text(":2.0")
    await shot(page, "release-new")
    await page.locator("#submit-release").click()
    await expect(page).to_have_url(re.compile(r"/releases/[0-9a-f]{24}$"))
    # Followed live: the page reloads itself when the release ends.
    await expect(page.locator("#release-state")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )
    await expect(page.locator("#transcript")).to_contain_text("successfully rolled out")
    await shot(page, "release-succeeded")

    await page.goto(f"/releases/{first['id']}")
    await page.locator("#action-rollback").click()
    await expect(page.locator("pre.diff").first).to_contain_text(":1.0")
    await shot(page, "rollback-diff")
    await page.locator("#confirm-rollback").click()
    await expect(page.locator("#release-state")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )
    # The page reloads itself at the end: wait for the finished page (no longer followed).
    await expect(page.locator("#transcript")).to_have_attribute("data-follow", "", timeout=LIVE_S)
    latest = (await api.get("/releases", params={"service": service, "limit": 1})).json()
    assert latest["items"][0]["kind"] == "rollback"
    assert latest["items"][0]["version"] == "1.0"
    assert latest["items"][0]["operator"] == "admin"

    await page.goto(f"/services/{service}")
    await expect(page.locator("svg.chart")).to_have_count(3)
    await shot(page, "service")
    await page.goto(f"/releases?service={service}")
    await expect(page.locator("tbody tr")).to_have_count(3)
    await shot(page, "releases")
    for name in ("templates", "environments", "users", "audit", "services"):
        await page.goto(f"/{name}")
        await shot(page, name)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"/releases/{first['id']}")
    await shot(page, "release-phone")
    await page.context.close()


async def test_a_failed_release_shows_the_crashing_containers_log(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=1, rollout_timeout_s=8)
    failed = await finished(api, await release(api, service, environment, "3.0-crash-loop"))
    assert failed["state"] == "failed"
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await page.goto(f"/releases/{failed['id']}")
    await expect(page.locator("#release-state")).to_have_attribute("data-state", "failed")
    await expect(page.locator("pre.previous-log").first).to_contain_text(
        "panic: simulated failure for tests"
    )
    await shot(page, "release-failed")
    await page.context.close()


async def test_base_parameters_are_edited_by_a_config_admin_and_refused_to_a_releaser(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=1)
    editor = await make_user(api, [{"role": "config_admin"}], password=PASSWORD)
    releaser = await make_user(
        api, [{"role": "releaser", "environment": environment}], password=PASSWORD
    )
    page = await logged_in(browser, fabu, editor, PASSWORD)
    await page.goto(f"/services/{service}/config/{environment}")
    await page.get_by_label("Replicas").fill("-3")
    await page.get_by_label("Replicas").evaluate("e => e.removeAttribute('min')")
    await page.locator("#save-config").click()
    await expect(page.locator('[data-path="params.replicas"] .error')).to_be_visible()
    await page.get_by_label("Replicas").fill("3")
    await page.get_by_label("Note").fill("more room")
    await page.locator("#save-config").click()
    await expect(page.locator("#config-versions")).to_contain_text("replicas: 1 → 3")
    await shot(page, "config")
    await page.context.close()

    page = await logged_in(browser, fabu, releaser, PASSWORD)
    await page.goto(f"/services/{service}/config/{environment}")
    await expect(page.locator("#read-only")).to_be_visible()
    await expect(page.get_by_label("Replicas")).to_be_disabled()
    # Even a form sent anyway is refused, and nothing changes.
    await page.locator("#config-form > fieldset").evaluate("e => e.removeAttribute('disabled')")
    await page.get_by_label("Replicas").fill("9")
    await page.locator("#save-config").click()
    await expect(page.locator("#problem")).to_contain_text("config-admin")
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert (config["version"], config["params"]["replicas"]) == (2, 3)
    await page.context.close()


NESTED = {
    "type": "object",
    "properties": {
        "owner": {
            "type": "string",
            "description": "The team that answers for it",
            "x-i18n": {"zh-CN": {"description": "负责的团队"}},
        },
        "tier": {"enum": ["gold", "silver"]},
        "ingress": {
            "type": "object",
            "properties": {
                "host": {"type": "string", "pattern": "^[a-z.]+$"},
                "tls": {"type": "boolean", "default": False},
            },
        },
        "args": {"type": "array", "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "db_password": {"type": "string", "writeOnly": True},
    },
    "required": ["owner"],
}


async def test_the_config_form_is_made_from_the_schema_and_edits_nested_values(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    created = await api.post(
        "/templates",
        json={
            "name": "nested",
            "content": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ service }}}\n"
            "data: {owner: {{ owner }}}\n",
            "parameters": NESTED,
        },
    )
    template_id = created.json()["id"]
    secret = "pw-initial-4711"
    saved = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": template_id, "params": {"owner": "core", "db_password": secret}},
    )
    assert saved.status_code == 200, saved.text
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await page.goto(f"/services/{service}/config/{environment}")

    def at(path: str, what: str = "input") -> Any:
        return page.locator(f'[data-path="{path}"] {what}').first

    await expect(page.locator('[data-path="params.owner"] .help')).to_have_text(
        "The team that answers for it"
    )
    await expect(at("params.owner")).to_have_value("core")
    await expect(at("params.db_password")).to_have_attribute("type", "password")
    await expect(at("params.db_password")).to_have_value("")
    assert secret not in await page.content()

    # A wrong nested value: the server's answer, next to its field.
    await at("params.ingress.host").fill("NOT A HOST")
    await page.locator("#save-config").click()
    await expect(at("params.ingress.host", ".error")).to_contain_text("does not match")
    await expect(at("params.ingress.host")).to_have_value("NOT A HOST")

    await at("params.ingress.host").fill("web.example.com")
    await at("params.ingress.tls").check()
    await page.locator('[data-path="params.tier"] select').select_option(label="gold")
    await page.locator('[data-path="params.args"] > fieldset > button').click()
    await at("params.args[0]").fill("--verbose")
    await page.locator('[data-path="params.labels"] > fieldset > button').click()
    await page.locator('[data-path="params.labels"] input.key').fill("team")
    await page.locator('[data-path="params.labels"] input.key').press("Tab")
    await at("params.labels.team").fill("payments")
    await shot(page, "config-form")
    await page.locator("#save-config").click()
    await expect(page.locator("#effective-values")).to_contain_text("web.example.com")

    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert config["version"] == 3, config["change"]  # prepare saved 1, the API 2
    values = {k: v for k, v in config["params"].items() if k in NESTED["properties"]}
    assert values == {
        "owner": "core",
        "tier": "gold",
        "ingress": {"host": "web.example.com", "tls": True},
        "args": ["--verbose"],
        "labels": {"team": "payments"},
        "db_password": "••••••",
    }
    # The secret was kept, not replaced by the mask.
    assert not any("db_password" in line for line in config["change"])
    # The raw JSON is the same values, for experts.
    await page.locator("#raw-values summary").click()
    assert '"web.example.com"' in await page.locator("#values-json").input_value()
    await page.context.close()


async def test_chinese_by_the_browser_or_by_choice(browser: Browser, fabu: FabuSystem) -> None:
    context = await browser.new_context(base_url=fabu.api_url, locale="zh-CN")
    page = await context.new_page()
    await page.goto("/login")
    await expect(page.locator("h1")).to_have_text("登录")
    await context.close()

    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await expect(page.locator("nav")).to_contain_text("Dashboard")
    await page.get_by_role("button", name="中文").click()
    await expect(page.locator("nav")).to_contain_text("概览")
    await shot(page, "dashboard-zh")
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("nav")).to_contain_text("Dashboard")
    await page.context.close()


async def test_pages_need_a_login_and_forms_need_the_csrf_token(
    fabu: FabuSystem, api: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        page = await http.get("/releases")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?then=%2Freleases"
        login_form = await http.get("/login")
        forged = await http.post(
            "/login",
            data={"username": "admin", "password": fabu.admin_password, "login_csrf": "x"},
            headers={"Cookie": f"fabu_login={login_form.cookies['fabu_login']}"},
        )
        assert "fabu_session" not in forged.cookies
        assert "expired" in forged.text


async def test_approve_and_promote_from_the_release_page(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=1, canary=[{"weight": 50}]
    )
    env = (await api.get(f"/environments/{environment}")).json()
    assert (
        await api.put(f"/environments/{environment}", json={**env, "approval_required": True})
    ).status_code == 200
    approver = await make_user(
        api, [{"role": "releaser", "environment": environment}], password=PASSWORD
    )
    first = await release(api, service, environment, "1.0", expect="awaiting_approval")

    page = await logged_in(browser, fabu, approver, PASSWORD)
    await expect(page.locator("main")).to_contain_text(service)  # awaiting approval, listed
    await page.goto(f"/releases/{first}")
    await page.get_by_label("Comment").fill("looks right")
    await page.locator("#action-approve").click()
    await expect(page.locator("#release-state")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )

    second = await release(api, service, environment, "2.0", expect="awaiting_approval")
    await page.goto(f"/releases/{second}")
    await page.locator("#action-approve").click()
    await expect(page.locator("#release-state")).to_have_attribute(
        "data-state", "paused", timeout=LIVE_S
    )
    await shot(page, "release-canary-paused")
    await page.locator("#action-promote").click()
    await expect(page.locator("#release-state")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )
    body = (await api.get(f"/releases/{second}")).json()
    assert body["decision"]["by"] == approver
    assert [e["by"] for e in body["canary"] if e["what"] == "promoted"] == [approver]
    await page.context.close()


async def test_a_running_release_shows_its_pods_change_live_and_the_service_its_health(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(
        api, stack_env, namespace, replicas=1, rollout_timeout_s=120
    )
    good = await finished(api, await release(api, service, environment, "1.0"))
    assert good["state"] == "succeeded"
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    running = await release(api, service, environment, "2.0-crash-loop")
    await page.goto(f"/releases/{running}")
    # Marks this page load: a reload would lose it.
    await page.evaluate("window.fabuLoaded = true")
    await expect(page.locator("#progress")).to_contain_text(
        "left before the timeout", timeout=LIVE_S
    )
    crashing = page.locator("#pods tbody tr.new")
    await expect(crashing.first).to_contain_text("CrashLoopBackOff", timeout=LIVE_S)
    await expect(page.locator("#transcript")).to_contain_text("cause: CrashLoopBackOff")
    assert await page.evaluate("window.fabuLoaded === true")
    await shot(page, "release-live-pods")

    await page.goto("/services")
    cell = page.locator(f'.live[data-service="{service}"][data-environment="{environment}"]')
    await expect(cell).to_contain_text("Degraded", timeout=LIVE_S)
    await expect(cell).to_contain_text("2.0-crash-loop")
    await shot(page, "services-live")
    await page.goto(f"/services/{service}")
    await expect(page.locator(f"#state-{environment}")).to_contain_text("CrashLoopBackOff")
    await expect(page.locator(f"#state-{environment}")).to_contain_text("Roll back to 1.0")
    await shot(page, "service-live")
    assert (await api.post(f"/releases/{running}/cancel")).status_code == 200
    await page.context.close()
