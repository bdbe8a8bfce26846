"""Release plans in the browser: a two-wave plan made in the form and followed live on its
waves, one approval by someone else, and a promotion between two environments."""

import re
from datetime import timedelta

import httpx
from playwright.async_api import Browser, Dialog, expect

from devstack.system import FabuSystem
from shared.models.base import now
from tests.support.browser import LIVE_S, PASSWORD, logged_in, shot
from tests.support.plans import environment, plan_done, services
from tests.support.stack import StackEnv
from tests.support.users import make_user


async def test_a_two_wave_plan_made_in_the_form_is_followed_live_then_promoted(
    browser: Browser,
    fabu: FabuSystem,
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    other_namespace: str,
) -> None:
    staging = await environment(api, stack_env, namespace)
    production = await environment(
        api, stack_env, other_namespace, approval_required=True, requires_success_in=staging
    )
    a, b = await services(api, stack_env, [staging, production], 2)
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)

    await page.goto("/plans")
    await page.locator("#new-plan").click()
    await page.get_by_label("Name", exact=True).fill("checkout")
    await page.get_by_label("Environment").select_option(staging)
    await page.get_by_label("Service 1", exact=True).select_option(a)
    await page.get_by_label("Version 1", exact=True).fill("1.0.0")
    # The version boxes suggest the tags of the service chosen beside them.
    await expect(page.locator("#versions-0 option[value='1.0.0']")).to_have_count(1)
    await page.get_by_label("Service 2", exact=True).select_option(b)
    await page.get_by_label("Version 2", exact=True).fill("9.9.9")
    await page.get_by_label("After 2", exact=True).fill(a)
    await page.get_by_label("Version 3", exact=True).fill("ignored: no service")
    await page.locator("#create-plan").click()
    # Refused: the reason at the row of the item, the form as it was filled in.
    await expect(page.locator("#error-row-1")).to_contain_text("9.9.9")
    await expect(page.locator("#error-row-0")).to_have_count(0)
    await expect(page.get_by_label("After 2", exact=True)).to_have_value(a)
    await shot(page, "plan-new-refused")
    await page.get_by_label("Version 2", exact=True).fill("1.0.0")
    await page.locator("#create-plan").click()
    await expect(page).to_have_url(re.compile(r"/plans/[0-9a-f]{24}$"))
    plan_id = page.url.rsplit("/", 1)[1]
    # Waves as columns, each item's state updated live without a reload.
    await expect(page.locator(".wave")).to_have_count(2)
    await expect(page.locator(".wave").nth(1).locator(f"#item-{b}")).to_be_visible()
    await expect(page.locator(f"#item-{b}")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )
    await expect(page.locator("#plan-state")).to_have_attribute("data-state", "succeeded")
    await expect(page.locator(f"#item-{a} .item-release")).to_have_attribute(
        "href", re.compile(r"/releases/[0-9a-f]{24}$")
    )
    # What may be done now follows the state too: no cancel, a rollback.
    await expect(page.locator("#plan-cancel")).to_have_count(0)
    await expect(page.locator("#plan-rollback")).to_be_visible()
    await shot(page, "plan-succeeded")

    # Promote staging → production: what changes, then the plan, which waits for approval.
    await page.goto("/environments")
    await page.locator(f"#env-{staging} .promote-from").click()
    await page.locator("select[name=environment]").select_option(production)
    await page.get_by_label(a, exact=True).check()
    await page.get_by_label(b, exact=True).check()
    await page.locator("#promotion-preview").click()
    await expect(page.locator("#promotion-items tbody tr")).to_have_count(2)
    await shot(page, "plan-promotion")
    await page.locator("#create-promotion").click()
    await expect(page).to_have_url(re.compile(r"/plans/[0-9a-f]{24}$"))
    promoted = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#plan-state")).to_have_attribute("data-state", "awaiting_approval")
    # Its operator is offered no approval; someone else sees every item's diff and approves.
    await expect(page.locator("#plan-approve")).to_have_count(0)
    await page.context.close()
    approver = await make_user(api, [{"role": "releaser"}], password=PASSWORD)
    page = await logged_in(browser, fabu, approver, PASSWORD)
    await page.goto(f"/plans/{promoted}")
    await expect(page.locator(".plan-review")).to_have_count(2)
    await expect(page.locator(f"#review-{a}")).to_contain_text(":1.0.0")
    # The link at the top leads down to the review, past the waves and the transcript.
    await page.locator("#plan-review-link").click()
    await expect(page.locator("#plan-actions h2")).to_be_in_viewport()
    await shot(page, "plan-approval")
    await page.locator("#plan-approve").click()
    await expect(page.locator("#plan-state")).to_have_attribute(
        "data-state", "succeeded", timeout=LIVE_S
    )
    body = await plan_done(api, promoted)
    assert body["state"] == "succeeded"
    assert body["decision"]["by"] == approver
    assert body["source_environment"] == staging
    first = (await api.get(f"/plans/{plan_id}")).json()
    assert [(i["service"], i["wave"]) for i in first["items"]] == [(a, 0), (b, 1)]
    await page.context.close()


async def test_a_release_given_a_time_is_a_scheduled_plan_of_one_item(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    staging = await environment(api, stack_env, namespace)
    (a,) = await services(api, stack_env, [staging], 1)
    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await page.goto(f"/releases/new?service={a}")
    await page.get_by_label("Environment").select_option(staging)
    await page.get_by_label("1.0.0").check()
    await page.get_by_role("button", name="Show the changes").click()
    # A time that has passed is refused at its field, the confirmation still there.
    await page.locator("#scheduled-at").fill("2020-01-01T08:00")
    await page.locator("#submit-release").click()
    await expect(page.locator("#error-scheduled_at")).to_contain_text("has passed")
    at = (now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    await page.locator("#scheduled-at").fill(at)
    await page.locator("#submit-release").click()
    await expect(page).to_have_url(re.compile(r"/plans/[0-9a-f]{24}$"))
    plan_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#plan-state")).to_have_attribute("data-state", "scheduled")
    await expect(page.locator("#plan-scheduled-note")).to_contain_text(
        f"This release is scheduled: it starts at {at.replace('T', ' ')}:00 UTC"
    )
    await expect(page.locator(f"#item-{a}")).to_have_attribute("data-state", "waiting")
    await shot(page, "plan-scheduled")
    body = (await api.get(f"/plans/{plan_id}")).json()
    assert [(i["service"], i["version"]) for i in body["items"]] == [(a, "1.0.0")]
    assert body["scheduled_at"].startswith(at)
    # Cancelled from its page once asked to confirm, with the button as the page's
    # refresh drew it again.
    async with page.expect_response(lambda r: f"/fragments/plans/{plan_id}" in r.url):
        pass
    asked: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", confirm)
    await page.locator("#plan-cancel").click()
    await expect(page.locator("#plan-state")).to_have_attribute("data-state", "cancelled")
    await expect(page.locator("#plan-scheduled-note")).to_have_count(0)
    assert (await api.get(f"/plans/{plan_id}")).json()["state"] == "cancelled"
    assert asked == ["Cancel?"]
    await page.context.close()
