"""The browser every UI test drives."""

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from devstack.build import CHROMIUM
from tests.support.browser import FLAGS, SHOTS


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()
