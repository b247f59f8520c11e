"""The sync bridge through Selenium's ``execute_cdp_cmd`` (Debian's chromium-driver)."""

from __future__ import annotations

import os
import shutil

import pytest

from authenticator.rp_testing.pytest_plugin import (
    CHROMIUM_ARGS,
    attach_passkeys_selenium,
    browser_unavailable,
    chromium_executable,
)


@pytest.fixture(scope="module")
def selenium_driver():
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
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


@pytest.mark.fido_profile("platform")
def test_selenium_register_and_sign_in(selenium_driver, fido_authenticator, rp_url):
    driver = selenium_driver
    driver.get(rp_url + "/register")
    bridge = attach_passkeys_selenium(driver, fido_authenticator)
    try:
        reg = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "demo.register('judy').then(done, e => done({error: String(e)}));"
        )
        assert reg.get("ok"), reg
        driver.get(rp_url + "/signin")
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "demo.signIn('').then(done, e => done({error: String(e)}));"
        )
        assert got.get("username") == "judy", got
    finally:
        exported = bridge.detach()
    assert exported is not None and len(exported.added) == 1
    assert fido_authenticator.store.count_discoverable() == 1
