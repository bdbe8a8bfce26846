"""The web UI in headless Chromium (Debian's, driven by Playwright): a signed-in page, and
screenshots of it under ``.artifacts/screenshots/``."""

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from devstack.system import FabuSystem

SHOTS = Path(__file__).parents[2] / ".artifacts" / "screenshots"
# Chromium's own network chatter is refused on a closed network; keep it quiet.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a password for the browser"
LIVE_S = 60_000  # ms: a release's whole rollout on the local stack


async def logged_in(browser: Browser, fabu: FabuSystem, user: str, password: str) -> Page:
    context = await browser.new_context(base_url=fabu.api_url)
    page = await context.new_page()
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login\?then="))
    await page.get_by_label(re.compile("User name|用户名")).fill(user)
    await page.get_by_label(re.compile("Password|密码")).fill(password)
    await page.keyboard.press("Enter")
    await expect(page.locator("#whoami")).to_contain_text(user)
    return page


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=SHOTS / f"{name}.png", full_page=True)
