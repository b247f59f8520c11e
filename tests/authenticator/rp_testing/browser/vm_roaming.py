"""In the guest: headless Chromium uses the emulator as a USB (UHID) security key against the
demo RP. Prints one "CHECK ok|FAIL|INFO <config> <step> ..." line per ceremony.

argv: CONFIG_NAME STRICT(0/1) STEP... where STEP is register-rk | register-nonrk | signin |
reauth. STRICT=1 makes a failed step fail the script; 0 only reports what happened.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from playwright.async_api import async_playwright

ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
BASE = "http://localhost:8080"


async def ceremony(page, path: str, js: str, limit: float) -> tuple[str, str]:
    await page.goto(BASE + path)
    # fire and forget: a stalled ceremony must not block evaluate() itself
    await page.evaluate(f"() => {{ demo.run(() => {js}); }}")
    try:
        await page.wait_for_selector("#result[data-state]", timeout=limit * 1000)
    except Exception:
        return "timeout", f"no answer within {limit:.0f} s (Chromium waits for UI it cannot show)"
    state = await page.get_attribute("#result", "data-state")
    text = await page.inner_text("#result")
    return state or "?", text.replace("\n", " ")[:300]


async def main() -> int:
    config, strict, steps = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
    failed = False
    async with async_playwright() as p:
        t = time.monotonic()
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = await browser.new_page()
        print(f"CHECK INFO {config} chromium started in {time.monotonic() - t:.1f} s", flush=True)
        for step in steps:
            path, js = {
                "register-rk": ("/register", "demo.register('alice')"),
                "register-nonrk": (
                    "/register?residentKey=discouraged&userVerification=discouraged",
                    "demo.register('bob')",
                ),
                "signin": ("/signin", "demo.signIn('')"),
                "reauth": ("/reauth", "demo.signIn('alice')"),
                "reauth-bob": ("/reauth", "demo.signIn('bob')"),
            }[step]
            t = time.monotonic()
            state, text = await ceremony(page, path, js, 60)
            took = time.monotonic() - t
            ok = state == "ok"
            failed |= strict and not ok
            tag = "ok" if ok else ("FAIL" if strict else "INFO")
            print(f"CHECK {tag} {config} {step} state={state} {took:.1f}s {json.dumps(text)[:200]}", flush=True)
        await browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
