"""Setting Fabu up in the browser: from nothing to a first release, archiving, the release
list's filters and paging, the blast radius' one action, and the small things (who may
approve, the freeze override, the favicon, disabled controls)."""

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Browser, Dialog, Page, expect

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.support.browser import LIVE_S, PASSWORD, logged_in, shot
from tests.support.releases import DEMO, finished, prepare, push, release
from tests.support.stack import StackEnv
from tests.support.users import make_user


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()


async def confirming(page: Page) -> Page:
    """The page, answering yes to every confirmation it asks."""
    page.on("dialog", _accept)
    return page


async def test_from_an_empty_fabu_to_a_first_release_without_the_api(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    environment, service = unique("e"), unique("svc")
    registry = stack_env.registry_url.removeprefix("http://")
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)

    await page.goto("/environments")
    await page.locator("#new-environment summary").click()
    new_env = page.locator("#new-environment")
    await new_env.get_by_label("Name", exact=True).fill(environment)
    await new_env.get_by_label("Namespace", exact=True).fill(namespace)
    await new_env.get_by_label(re.compile("Kubeconfig")).fill(str(stack_env.kubeconfig))
    await new_env.get_by_role("button", name="Create environment").click()
    await expect(page.locator(f"#env-{environment}")).to_contain_text(namespace)

    await page.goto("/templates")
    await page.locator("#new-template summary").click()
    form = page.locator("#new-template")
    await form.get_by_label("Name", exact=True).fill("web")
    await expect(form.get_by_label("Path")).to_be_hidden()  # kept in Fabu: no place to read
    await form.get_by_label("Content").fill(DEMO)
    await form.get_by_label(re.compile("Parameters")).fill("not json")
    await form.get_by_role("button", name="Create template").click()
    await expect(page.locator("#error-template")).to_contain_text("parameters: not valid JSON")
    await page.locator("#new-template").get_by_label(re.compile("Parameters")).fill("")
    await page.locator("#new-template").get_by_role("button", name="Create template").click()
    await expect(page).to_have_url(re.compile(r"/templates/[0-9a-f]+$"))
    template_id = page.url.rsplit("/", 1)[-1]
    stored = (await api.get(f"/templates/{template_id}")).json()
    # A textarea is sent with CRLF line endings; Fabu keeps LF.
    assert "\r" not in stored["content"]
    assert stored["content"] == DEMO.rstrip("\n") or stored["content"] == DEMO
    assert stored["author"] == "admin"
    await shot(page, "template-new")

    await page.goto("/services")
    await page.locator("#new-service summary").click()
    form = page.locator("#new-service")
    await form.get_by_label("Name", exact=True).fill(service)
    await form.get_by_label("Team").fill("core")
    await form.get_by_label("Image repository").fill(f"{registry}/team/{service}")
    await form.get_by_role("button", name="Create service").click()
    await expect(page).to_have_url(re.compile(f"/services/{service}$"))
    await shot(page, "service-new")

    await page.locator(f"li:has-text('{environment}') a.create-config").click()
    await expect(page.locator("#no-config")).to_be_visible()
    await page.locator("#template-choice").select_option(template_id)
    await expect(page.locator("#schema-form")).to_contain_text("Replicas")
    await page.locator("#save-config").click()
    await expect(page.locator("h1")).to_contain_text("v1")
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert config["template_id"] == template_id

    await push(api, service, "1.0")  # CI's part: the image in the registry
    await page.goto(f"/releases/new?service={service}")
    await page.get_by_label("Environment").select_option(environment)
    await page.get_by_label("1.0").check()
    await page.get_by_role("button", name="Show the changes").click()
    await page.locator("#submit-release").click()
    await expect(page.locator("#release-state")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )
    await page.context.close()


async def test_a_service_and_an_environment_archived_and_restored_in_the_browser(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    await push(api, service, "1.0")
    page = await confirming(await logged_in(browser, fabu, "admin", fabu.admin_password))
    await page.goto(f"/services/{service}")
    await page.locator("#edit-service summary").click()
    await page.locator("#edit-service").get_by_label("Team").fill("payments")
    await page.locator("#edit-service").get_by_role("button", name="Save").click()
    await expect(page.locator("h1")).to_contain_text("payments")
    # The service's own notification channel, then the environment's default again.
    channels = page.locator(f"#notifications-{environment}")
    await expect(channels).to_contain_text("the environment's default")
    await channels.get_by_text("Add a channel").click()
    await channels.get_by_label("Type").select_option("email")
    await channels.get_by_label(re.compile("Email recipients")).fill("svc@example.com")
    await channels.get_by_role("button", name="Add channel").click()
    await expect(channels).to_contain_text("this service's own")
    await expect(channels).to_contain_text("email: svc@example.com · Succeeded, Failed")
    mine = (await api.get(f"/services/{service}/notifications/{environment}")).json()
    assert mine[0]["recipients"] == ["svc@example.com"]
    await channels.get_by_role("button", name="Use the environment's default").click()
    await expect(channels).to_contain_text("the environment's default")
    await expect(channels).not_to_contain_text("svc@example.com")

    await page.locator("#edit-service summary").click()
    await page.locator("#archive-service").click()
    await expect(page.locator("#archived-badge")).to_be_visible()
    await page.goto("/services")
    await expect(page.locator("#services")).not_to_contain_text(service)
    await expect(page.locator("#archived-services")).to_contain_text(service)
    await page.goto("/releases/new")
    assert service not in await page.locator("main").inner_text()
    entries = (await api.get("/audit", params={"action": "service.archive"})).json()["items"]
    assert f"service/{service}" in [e["target"] for e in entries]
    await page.goto(f"/services/{service}")
    await page.locator("#edit-service summary").click()
    await page.locator("#restore-service").click()
    await expect(page.locator("#archived-badge")).to_have_count(0)

    await page.goto("/environments")
    await page.locator(f"#env-{environment}").get_by_role("button", name="Archive").click()
    await expect(page.locator(f"#env-{environment}")).to_have_count(0)
    await expect(page.locator("#archived-environments")).to_contain_text(environment)
    refused = await api.post(
        "/releases", json={"service": service, "environment": environment, "version": "1.0"}
    )
    assert refused.status_code == 409
    await page.locator("#archived-environments summary").click()
    await page.locator("#archived-environments").get_by_role("button", name="Restore").click()
    await expect(page.locator(f"#env-{environment}")).to_be_visible()
    await page.context.close()


async def test_the_release_list_filters_pages_and_says_when_nothing_matches(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    env = (await api.get(f"/environments/{environment}")).json()
    await api.put(f"/environments/{environment}", json={**env, "approval_required": True})
    for _ in range(27):
        waiting = await release(api, service, environment, "1.0", expect="awaiting_approval")
        assert (await api.post(f"/releases/{waiting}/cancel")).status_code == 200
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await page.goto("/releases")
    filters = page.locator("#release-filters")
    # Suggestions: the names there are, as you type.
    await expect(page.locator(f"#service-names option[value='{service}']")).to_have_count(1)
    await expect(page.locator("#operator-names option[value='admin']")).to_have_count(1)
    # Upper case, and only the beginning of the name.
    await filters.get_by_label("Service").fill(service[:-3].upper())
    await filters.get_by_label("Status").select_option(label="Cancelled")
    await filters.get_by_role("button", name="Filter").click()
    await expect(page.locator("#page-count")).to_have_text("1\u201325 of 27")
    await expect(page.locator("main tbody tr")).to_have_count(25)
    await expect(page.locator("main tbody").first).to_contain_text("Cancelled")
    await expect(page.locator("#previous-page")).to_have_count(0)
    await page.locator("#next-page").click()
    await expect(page.locator("#page-count")).to_have_text("26\u201327 of 27")
    await expect(page.locator("#next-page")).to_have_count(0)
    await page.locator("#previous-page").click()
    await expect(page.locator("#page-count")).to_have_text("1\u201325 of 27")
    await shot(page, "releases-filtered")
    await page.locator("#release-filters").get_by_label("Per page").select_option("50")
    await page.locator("#release-filters").get_by_role("button", name="Filter").click()
    await expect(page.locator("main tbody tr")).to_have_count(27)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    await page.locator("#release-filters").get_by_label("To", exact=True).fill(yesterday)
    await page.locator("#release-filters").get_by_role("button", name="Filter").click()
    await expect(page.locator("#no-match")).to_contain_text("No releases match these filters.")
    await page.locator("#no-match").get_by_role("link", name="Clear filters").click()
    await expect(page).to_have_url(re.compile(r"/releases$"))
    await expect(page.locator("#release-filters").get_by_label("Service")).to_have_value("")
    await page.context.close()


async def test_the_blast_radius_releases_every_affected_service_in_one_confirmed_action(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    assert (await finished(api, await release(api, service, environment, "1.0")))[
        "state"
    ] == "succeeded"
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    template_id = config["template_id"]
    changed = await api.put(f"/templates/{template_id}", json={"content": DEMO + "\n# a comment\n"})
    assert changed.status_code == 200, changed.text
    page = await confirming(await logged_in(browser, fabu, "admin", fabu.admin_password))
    await page.goto(f"/templates/{template_id}")
    await expect(page.locator("#release-all")).to_contain_text("Release all affected (1)")
    await page.locator("#release-all button").click()
    done = page.locator("#released-all")
    await expect(done).to_contain_text(f"{service} / {environment}")
    release_id = (await done.locator("a").first.inner_text()).strip()
    body = await finished(api, release_id)
    assert (body["state"], body["template_version"]) == ("succeeded", 2)
    await page.context.close()


async def test_who_may_approve_the_freeze_override_the_favicon_and_disabled_controls(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace)
    env = (await api.get(f"/environments/{environment}")).json()
    await api.put(f"/environments/{environment}", json={**env, "approval_required": True})
    approver = await make_user(
        api, [{"role": "releaser", "environment": environment}], password=PASSWORD
    )
    viewer = await make_user(api, [{"role": "viewer"}], password=PASSWORD)
    waiting = await release(api, service, environment, "1.0", expect="awaiting_approval")
    assert approver in (await api.get(f"/releases/{waiting}/approvers")).json()

    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await page.goto(f"/releases/{waiting}")
    await expect(page.locator("#approvers")).to_contain_text(approver)
    # The requester may not approve their own release.
    assert "admin" not in (await page.locator("#approvers").inner_text()).split(": ", 1)[1]
    deciding = await logged_in(browser, fabu, approver, PASSWORD)
    await deciding.goto(f"/releases/{waiting}")
    colour = "e => getComputedStyle(e).backgroundColor"
    approve = await deciding.locator("#action-approve").evaluate(colour)
    reject = await deciding.locator("#action-reject").evaluate(colour)
    assert approve != reject
    await deciding.context.close()
    await page.context.close()
    assert (await api.post(f"/releases/{waiting}/cancel")).status_code == 200

    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    # No freeze window in force: no override field.
    await page.goto(
        f"/releases/new?service={service}&environment={environment}&version=1.0&preview=1"
    )
    await expect(page.locator("#submit-release")).to_be_visible()
    await expect(page.locator("input[name=override_reason]")).to_have_count(0)
    now = datetime.now(UTC)
    window = {
        "name": "holiday",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    env = (await api.get(f"/environments/{environment}")).json()
    await api.put(f"/environments/{environment}", json={**env, "freeze_windows": [window]})
    await page.goto(
        f"/releases/new?service={service}&environment={environment}&version=1.0&preview=1"
    )
    await expect(page.locator("#frozen")).to_contain_text("holiday")
    await expect(page.locator("input[name=override_reason]")).to_have_count(1)
    await page.context.close()

    async with httpx.AsyncClient(base_url=fabu.api_url) as http:
        icon = await http.get("/favicon.ico", follow_redirects=True)
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")

    page = await logged_in(browser, fabu, viewer, PASSWORD)
    await page.goto(f"/services/{service}/config/{environment}")
    save = page.locator("#save-config")
    await expect(save).to_be_disabled()
    assert await save.evaluate("e => getComputedStyle(e).cursor") == "not-allowed"
    assert float(await save.evaluate("e => getComputedStyle(e).opacity")) < 1
    bad = await page.goto(f"/services/{service}/config/{environment}?from=x&to=1")
    assert bad is not None
    assert bad.status == 422
    await expect(page.locator("main")).to_contain_text("from, to: config versions are numbers")
    await page.context.close()
