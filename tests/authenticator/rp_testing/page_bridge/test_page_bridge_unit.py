"""The bridge's decisions without a browser: permissions policy, origins, bad requests."""

from __future__ import annotations

import pytest

from authenticator import Authenticator, Config
from authenticator.rp_testing.page_bridge import (
    CREATE_FEATURE,
    GET_FEATURE,
    Frame,
    FrameLink,
    PageBridge,
    allow_attribute,
    origin_of,
    policy_allows,
    remote_value,
)
from storage.memory import MemoryStore

TOP, OTHER = "https://rp.example", "https://widget.example"


@pytest.mark.parametrize(
    "url, origin",
    [
        ("https://rp.example/a?b#c", "https://rp.example"),
        ("https://rp.example:443/", "https://rp.example"),
        ("http://localhost:8080/x", "http://localhost:8080"),
        ("https://[::1]:9/", "https://[::1]:9"),
        ("about:blank", "null"),
        ("data:text/html,hi", "null"),
    ],
)
def test_origin_of(url, origin):
    assert origin_of(url) == origin


def test_allow_attribute_parsing():
    allow = "fullscreen; publickey-credentials-get 'self' https://a.example:8443/x; publickey-credentials-create"
    assert allow_attribute(allow, GET_FEATURE, OTHER) == ["'self'", "https://a.example:8443"]
    assert allow_attribute(allow, CREATE_FEATURE, OTHER) == [OTHER]  # default 'src'
    assert allow_attribute("camera", CREATE_FEATURE, OTHER) is None
    assert allow_attribute("publickey-credentials-create 'none'", CREATE_FEATURE, OTHER) == []


@pytest.mark.parametrize(
    "chain, allowed",
    [
        ([FrameLink(TOP)], True),
        ([FrameLink(TOP), FrameLink(TOP)], True),  # same-origin child: 'self'
        ([FrameLink(TOP), FrameLink(OTHER, allow="")], False),  # cross-origin, nothing allowed
        ([FrameLink(TOP), FrameLink(OTHER, allow=CREATE_FEATURE)], True),
        ([FrameLink(TOP), FrameLink(OTHER, allow=f"{CREATE_FEATURE} *")], True),
        ([FrameLink(TOP), FrameLink(OTHER, allow=f"{CREATE_FEATURE} 'self'")], False),
        ([FrameLink(TOP), FrameLink(OTHER, allow=f"{CREATE_FEATURE} https://x.example")], False),
        ([FrameLink(TOP), FrameLink(TOP, allow=f"{CREATE_FEATURE} 'none'")], False),
        # a grandchild needs every level to delegate
        ([FrameLink(TOP), FrameLink(OTHER), FrameLink(OTHER, allow=f"{CREATE_FEATURE} *")], False),
        ([FrameLink(TOP), FrameLink(OTHER, allow=CREATE_FEATURE), FrameLink(OTHER)], True),
        # 'src' is the <iframe src> origin, not where the frame navigated to
        ([FrameLink(TOP), FrameLink(OTHER, allow=CREATE_FEATURE, src="https://x.example/")], False),
    ],
)
def test_permissions_policy(chain, allowed):
    assert policy_allows(chain, CREATE_FEATURE) is allowed


@pytest.fixture
def bridge():
    b = PageBridge(Authenticator(Config.for_profile("security-key"), MemoryStore()))
    yield b
    b.close()


def frame(origin: str = TOP) -> Frame:
    return Frame(origin=origin, top_origin=origin)


@pytest.mark.parametrize(
    "request_, name",
    [
        ("not an object", "TypeError"),
        ({"op": "teleport"}, "NotSupportedError"),
        ({"op": "create", "options": "x"}, "TypeError"),
        ({"op": "create", "options": {"rp": {"name": "x"}}}, "TypeError"),
        ({"op": "get", "options": {"challenge": "AAAA", "rpId": "other.example"}}, "SecurityError"),
        ({"op": "signal", "kind": "unknownCredential",
          "options": {"rpId": "rp.example", "credentialId": "%%%"}}, "TypeError"),
        ({"op": "signal", "kind": "unknownCredential",
          "options": {"rpId": "evil.example", "credentialId": "AAAA"}}, "SecurityError"),
        ({"op": "signal", "kind": "rename", "options": {"rpId": "rp.example"}}, "TypeError"),
    ],
)
def test_bad_requests_get_one_dom_exception_and_change_nothing(bridge, request_, name):
    reply = bridge.handle(request_, frame())
    assert reply["error"]["name"] == name, reply
    assert "\n" not in reply["error"]["message"]
    assert bridge.authenticator.store.count_discoverable() == 0


def test_conditional_without_a_late_channel_is_refused(bridge):
    reply = bridge.handle({"op": "get", "id": "1", "mediation": "conditional",
                           "options": {"challenge": "AAAA"}}, frame())
    assert reply["error"]["name"] == "NotSupportedError"


def test_unknown_credential_action_is_checked():
    with pytest.raises(ValueError):
        PageBridge(Authenticator(Config(), MemoryStore()), unknown_credential="shred")


def test_remote_values():
    value = {"type": "array", "value": [
        {"type": "window", "value": {"context": "C1"}},
        {"type": "object", "value": [["a", {"type": "number", "value": "NaN"}]]},
        {"type": "null"}, {"type": "bigint", "value": "12"}, {"type": "string", "value": "s"},
    ]}
    out = remote_value(value)
    assert out[0] == {"context": "C1"} and out[1]["a"] != out[1]["a"]  # NaN
    assert out[2:] == [None, 12, "s"]
