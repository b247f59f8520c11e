"""An RP's Playwright test on our authenticator through the page bridge (docs/page-bridge.md)."""
import runpy
from pathlib import Path

import pytest


@pytest.fixture
def rp_url():  # your RP's URL; here the repo's demo RP on a free port
    url, stop = runpy.run_path(str(Path(__file__).parents[1] / "rp-demo/server.py"))["start"]()
    yield url
    stop()


def test_sign_up_then_sign_in(fido_page, fido_bridge, rp_url):
    fido_page.goto(rp_url + "/register")
    fido_page.fill("#username", "alice")
    fido_page.click("#go")
    fido_page.locator("#result[data-state=ok]").wait_for()
    fido_page.goto(rp_url + "/signin")
    fido_page.click("#go")
    assert "alice" in fido_page.locator("#result[data-state=ok]").text_content()
    assert [e.kind for e in fido_bridge.events] == ["create", "get"]  # answered by our core
