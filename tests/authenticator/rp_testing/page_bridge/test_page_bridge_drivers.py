"""The other channels on Chromium: Selenium over chromedriver's WebDriver BiDi, and
Playwright's async API."""

from __future__ import annotations

import os
import shutil

import pytest

from authenticator.rp_testing.page_bridge import attach_selenium
from authenticator.rp_testing.pytest_plugin import (
    CHROMIUM_ARGS,
    browser_unavailable,
    chromium_executable,
)


@pytest.fixture
def bidi_driver():
    executable = chromium_executable()
    driver_path = os.environ.get("FIDO_EMU_CHROMEDRIVER") or shutil.which("chromedriver")
    if not driver_path:
        browser_unavailable("no chromedriver (apt-get install chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        browser_unavailable("selenium is not installed (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = executable
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.enable_bidi = True
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def run_in_page(driver, expression: str, timeout: float = 30) -> dict:
    """Start a promise with a short command and wait for its value: chromedriver runs one
    command at a time, so a blocking execute_async_script would hold up the bridge's BiDi
    replies until it times out."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script(f"window.__out = undefined; ({expression}).then(v => window.__out = v)")
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return window.__out"))


def test_selenium_chromium_over_bidi(bidi_driver, fido_page_bridge, swa_server):
    bridge = fido_page_bridge(bidi_driver)  # the plugin's factory: attach_selenium here
    bidi_driver.get(swa_server.url + "/")
    reg = run_in_page(bidi_driver, "rp.register('sam')")
    assert reg.get("verified") and reg["fmt"] == "packed", reg
    got = run_in_page(bidi_driver, "rp.login('')")
    assert got.get("verified") and got["username"] == "sam", got
    assert [e.kind for e in bridge.events] == ["create", "get"]
    assert bridge.events[0].origin == swa_server.url


def test_selenium_direct_attach_and_detach(bidi_driver, fido_authenticator, swa_server):
    bridge = attach_selenium(bidi_driver, fido_authenticator)
    bridge.close()  # detached: later pages get the browser's own WebAuthn again
    bidi_driver.get(swa_server.url + "/")
    assert bidi_driver.execute_script(
        "return String(navigator.credentials.create).includes('[native code]')")


async def test_playwright_async_register_and_autofill(fido_page_bridge, swa_server):
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        browser_unavailable("playwright is not installed (pip install playwright)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            bridge = await fido_page_bridge(page)  # attach_playwright_async here
            await page.goto(swa_server.url + "/")
            reg = await page.evaluate("rp.register('tina')")
            assert reg.get("verified"), reg
            assert await page.evaluate("rp.autofill()") is True
            await bridge.choose_async(user_name="tina")
            got = await page.evaluate("rp.autofillResult()")
            assert got.get("verified") and got["username"] == "tina", got
        finally:
            await browser.close()
