"""Analysis templates in the browser: one made in the form (a refused row shown at its
row), listed with the configs naming it, named by a canary step on the config form, kept
from deletion while named, deleted after the confirmation; read-only to a releaser."""

import re

import httpx
from playwright.async_api import Browser, Dialog, expect

from devstack.system import FabuSystem
from tests.conftest import unique
from tests.integration.test_analysis import analysis_template, measured, traffic
from tests.integration.test_canary import paused_at, released
from tests.support.browser import PASSWORD, logged_in, shot
from tests.support.prometheus import Exporter
from tests.support.releases import finished, prepare
from tests.support.stack import StackEnv
from tests.support.users import make_user

ERRORS = 'sum(rate(http_requests_total{namespace="{{namespace}}",{{labels}},code=~"5.."}[1m]))'


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_a_template_made_in_the_form_is_listed_named_by_a_step_then_deleted(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient, stack_env: StackEnv, namespace: str
) -> None:
    service, environment = await prepare(api, stack_env, namespace, replicas=2)
    editor = await make_user(api, [{"role": "config_admin"}], password=PASSWORD)
    name = unique("errors")
    page = await logged_in(browser, fabu, editor, PASSWORD)
    page.on("dialog", _accept)

    await page.locator("nav").get_by_role("link", name="Analysis", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/analysis-templates$"))
    await page.locator("#new-analysis summary").click()
    form = page.locator("#new-analysis")
    await expect(form.locator("#placeholders-help")).to_contain_text("{{deployment}}")
    await form.get_by_label("Name", exact=True).fill(name)
    await form.get_by_label("Description", exact=True).fill("5xx share of the new pods")
    await form.get_by_label("Metric name 1", exact=True).fill("error-rate")
    await form.get_by_label("Query 1", exact=True).fill(ERRORS.replace("labels", "pods"))
    await form.get_by_label("Success 1", exact=True).fill("result < 0.05")
    await form.get_by_label("Metric name 2", exact=True).fill("availability")
    await form.get_by_label("Query 2", exact=True).fill('avg(up{namespace="{{namespace}}"})')
    await form.get_by_label("Success 2", exact=True).fill("result >= 0.99")
    await form.get_by_label("Failure 2", exact=True).fill("result < 0.5")
    await form.get_by_label("Count 2", exact=True).fill("0")
    await form.get_by_label("Count 2", exact=True).evaluate("e => e.removeAttribute('min')")
    await page.locator("#save-analysis").click()
    # Refused: each reason at its row, the form as it was filled in, nothing stored.
    await expect(page.locator("#error-row-0")).to_contain_text("unknown placeholder {{pods}}")
    await expect(page.locator("#error-row-1")).to_contain_text("count:")
    await expect(page.get_by_label("Failure 2", exact=True)).to_have_value("result < 0.5")
    await shot(page, "analysis-new-refused")
    assert (await api.get(f"/analysis-templates/{name}")).status_code == 404

    await page.get_by_label("Query 1", exact=True).fill(ERRORS)
    await page.get_by_label("Count 2", exact=True).fill("5")
    await page.locator("#save-analysis").click()
    await expect(page).to_have_url(re.compile(f"/analysis-templates/{name}$"))
    await expect(page.locator("#metrics tbody tr")).to_have_count(2)
    await expect(page.locator("#used-by")).to_contain_text("No release config names it.")
    stored = (await api.get(f"/analysis-templates/{name}")).json()
    assert [(m["name"], m["count"]) for m in stored["metrics"]] == [
        ("error-rate", 3),
        ("availability", 5),
    ]
    assert (stored["updated_by"], stored["metrics"][1]["failure"]) == (editor, "result < 0.5")

    # A canary step names it on the config form; an unknown name is refused at its row.
    await page.goto(f"/services/{service}/config/{environment}")
    await page.get_by_label("Weight 1", exact=True).fill("20")
    await page.get_by_label("Analysis templates 1", exact=True).fill(name)
    await page.get_by_label("Weight 2", exact=True).fill("50")
    await page.get_by_label("Pause (s) 2", exact=True).fill("30")
    await page.get_by_label("Analysis templates 2", exact=True).fill(f"{name}, no-such-one")
    await page.locator("#save-config").click()
    await expect(page.locator("#error-step-1")).to_contain_text("'no-such-one'")
    await expect(page.locator("#error-step-0")).to_have_count(0)
    await shot(page, "config-canary-analysis")
    await page.get_by_label("Analysis templates 2", exact=True).fill("")
    await page.locator("#save-config").click()
    await expect(page.locator("#config-versions")).to_contain_text("canary: [] →")
    await expect(page.get_by_label("Analysis templates 1", exact=True)).to_have_value(name)
    await expect(page.get_by_label("Pause (s) 2", exact=True)).to_have_value("30")
    config = (await api.get(f"/services/{service}/config/{environment}")).json()
    assert config["params"]["canary"] == [
        {"weight": 20, "pause_s": None, "analysis": [name]},
        {"weight": 50, "pause_s": 30, "analysis": []},
    ]

    await page.goto("/analysis-templates")
    row = page.locator(f"#analysis-{name}")
    await expect(row).to_contain_text("error-rate, availability")
    await expect(row.locator(".used-by")).to_have_text(f"{service}/{environment}")
    await shot(page, "analysis-templates")
    # Named by a config: deleting it is refused, naming the config.
    await row.get_by_role("link", name=name).click()
    await page.locator("#delete-analysis").click()
    await expect(page.locator("#error-delete")).to_contain_text(f"{service}/{environment}")
    assert (await api.get(f"/analysis-templates/{name}")).status_code == 200

    saved = await api.put(
        f"/services/{service}/config/{environment}",
        json={"template_id": config["template_id"], "params": {"replicas": 2}},
    )
    assert saved.status_code == 200, saved.text
    await page.goto(f"/analysis-templates/{name}")
    await page.locator("#delete-analysis").click()
    await expect(page).to_have_url(re.compile(r"/analysis-templates$"))
    await expect(page.locator(f"#analysis-{name}")).to_have_count(0)
    assert (await api.get(f"/analysis-templates/{name}")).status_code == 404
    await page.context.close()


async def test_a_releaser_reads_them_without_a_form(
    browser: Browser, fabu: FabuSystem, api: httpx.AsyncClient
) -> None:
    name = unique("up")
    metric = {"name": "up", "query": 'avg(up{job="{{service}}"})', "success": "result == 1"}
    made = await api.post("/analysis-templates", json={"name": name, "metrics": [metric]})
    assert made.status_code == 201, made.text
    releaser = await make_user(api, [{"role": "releaser"}], password=PASSWORD)
    page = await logged_in(browser, fabu, releaser, PASSWORD)
    await page.goto("/analysis-templates")
    await expect(page.locator(f"#analysis-{name}")).to_contain_text("up")
    await expect(page.locator("#read-only")).to_be_visible()
    await expect(page.locator("#new-analysis")).to_have_count(0)
    await page.goto(f"/analysis-templates/{name}")
    await expect(page.locator("#metrics")).to_contain_text("result == 1")
    await expect(page.locator("#analysis-form")).to_have_count(0)
    await expect(page.locator("#delete-analysis")).to_have_count(0)
    await page.context.close()


async def test_a_release_page_draws_its_analysis_live(
    browser: Browser,
    fabu: FabuSystem,
    api: httpx.AsyncClient,
    stack_env: StackEnv,
    namespace: str,
    exporter: Exporter,
) -> None:
    name = await analysis_template(api, exporter, count=4)
    canary = [{"weight": 20, "analysis": [name]}]
    service, environment = await prepare(api, stack_env, namespace, replicas=2, canary=canary)
    await finished(api, await released(api, service, environment, "1.0"))
    traffic(exporter, service, "2.0", errors=0)
    await measured(stack_env, exporter, service, "2.0")
    release_id = await released(api, service, environment, "2.0")
    await paused_at(api, release_id, 0)

    page = await logged_in(browser, fabu, "admin", fabu.admin_password)
    await page.goto(f"/releases/{release_id}")
    row = page.locator(f'#analysis tr[data-metric="{name}/error-ratio"]')
    await expect(row).to_be_visible()
    # Measurements come in, and the verdict with them, without a reload.
    await expect(row.locator("td").nth(2)).to_contain_text("4 / 4", timeout=30_000)
    await expect(row).to_have_attribute("data-verdict", "passed")
    await expect(row.locator("svg.measurements circle")).to_have_count(4)
    await expect(row).to_contain_text("result < 0.05")
    await shot(page, "release-analysis")
    assert (await finished(api, release_id))["state"] == "succeeded"
