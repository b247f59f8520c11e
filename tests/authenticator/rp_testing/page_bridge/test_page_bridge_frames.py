"""Cross-origin iframes get what browsers give them: refused without the permission policy,
``crossOrigin: true`` and ``topOrigin`` in clientDataJSON with it."""

from __future__ import annotations

import json

import pytest
from swa_rp import Server

FRAME = """<!doctype html><meta charset="utf-8"><body>
<button id="make">Create</button> <button id="use">Sign in</button>
<script>
const pk = {rp: {name: 'frames', id: 'localhost'}, user: {id: new Uint8Array([7]), name: 'f',
  displayName: 'F'}, challenge: new Uint8Array(16), pubKeyCredParams: [{type: 'public-key', alg: -7}],
  authenticatorSelection: {residentKey: 'required'}};
async function outcome(p) {
  try {
    const c = await p;
    return {ok: true, clientData: JSON.parse(new TextDecoder().decode(c.response.clientDataJSON))};
  } catch (e) { return {error: e.name, message: e.message}; }
}
const show = async (p) => { document.body.dataset.result = JSON.stringify(await outcome(p)); };
document.getElementById('make').onclick = () => show(navigator.credentials.create({publicKey: pk}));
document.getElementById('use').onclick = () => show(navigator.credentials.get(
  {publicKey: {challenge: new Uint8Array(16), rpId: 'localhost'}}));
</script></body>"""


@pytest.fixture
def origins(swa_bundle):
    """(top, frame): two origins on localhost; the top page embeds the frame twice."""
    frame = Server(None, swa_bundle, {"/frame": FRAME})
    src = frame.url + "/frame"
    top = Server(None, swa_bundle, {
        "/allow": f'<iframe src="{src}" allow="publickey-credentials-create; '
                  f'publickey-credentials-get"></iframe>',
        "/deny": f'<iframe src="{src}"></iframe>',
        "/same": '<iframe src="/frame"></iframe>',
        "/frame": FRAME,
    })
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
