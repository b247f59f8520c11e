"""The async bridge (Playwright async API): what an asyncio test suite would use."""

from __future__ import annotations

import json

from authenticator import Authenticator, Config
from authenticator.rp_testing.pytest_plugin import (
    CHROMIUM_ARGS,
    attach_passkeys_async,
    browser_unavailable,
    chromium_executable,
)
from storage.memory import MemoryStore


async def test_async_register_export_reimport(rp_url):
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        browser_unavailable("playwright is not installed (pip install playwright)")
    auth = Authenticator(Config.for_profile("synced-passkey"), MemoryStore())
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            bridge = await attach_passkeys_async(page, auth)
            await page.goto(rp_url + "/register")
            reg = await page.evaluate("demo.register('ivan')")
            assert reg["ok"] and reg["be"] and reg["bs"]
            exported = await bridge.detach()
            assert exported is not None and len(exported.added) == 1
            await page.close()

            # a fresh tab gets the exported credential back from our store
            page = await browser.new_page()
            await attach_passkeys_async(page, auth)
            await page.goto(rp_url + "/signin")
            got = await page.evaluate("demo.signIn('')")
            assert got["username"] == "ivan", json.dumps(got)
        finally:
            await browser.close()
