"""Cross-origin iframes get what browsers give them: refused without the permission policy,
``crossOrigin: true`` and ``topOrigin`` in clientDataJSON with it."""

from __future__ import annotations

import json

import pytest
from swa_rp import cross_origin_servers


@pytest.fixture
def origins(swa_bundle):
    top, frame = cross_origin_servers(swa_bundle)
    yield top, frame
    top.close()
    frame.close()


def click_in_frame(page, button: str) -> dict:
    frame = page.frame_locator("iframe")
    frame.locator(button).click()  # a real click: transient user activation in the frame
    frame.locator("body[data-result]").wait_for()
    return json.loads(frame.locator("body").get_attribute("data-result"))


def test_cross_origin_iframe_without_permission_policy_is_refused(fido_page, fido_bridge, origins):
    top, _ = origins
    fido_page.goto(top.url + "/deny")
    out = click_in_frame(fido_page, "#make")
    assert out["error"] == "NotAllowedError" and "publickey-credentials-create" in out["message"]
    assert fido_bridge.authenticator.store.count_discoverable() == 0


def test_cross_origin_iframe_with_permission_policy_says_so(fido_page, fido_bridge, origins):
    top, frame = origins
    fido_page.goto(top.url + "/allow")
    made = click_in_frame(fido_page, "#make")
    assert made.get("ok"), made
    assert made["clientData"]["origin"] == frame.url
    assert made["clientData"]["crossOrigin"] is True
    assert made["clientData"]["topOrigin"] == top.url
    event = fido_bridge.events[-1]
    assert (event.origin, event.top_origin) == (frame.url, top.url)


def test_same_origin_iframe_is_not_cross_origin(fido_page, fido_bridge, origins):
    top, _ = origins
    fido_page.goto(top.url + "/same")
    made = click_in_frame(fido_page, "#make")
    assert made.get("ok"), made
    assert made["clientData"]["crossOrigin"] is False
    assert "topOrigin" not in made["clientData"]
