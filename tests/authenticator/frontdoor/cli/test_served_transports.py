"""getInfo transports (0x09) list what `fido-emu run` really serves, and the JSON client's
getTransports() agrees (issue 12: a BLE-only run used to say usb)."""

from __future__ import annotations

import pytest
from fido2.ctap2 import Ctap2

from authenticator.frontdoor.cli import build_parser
from authenticator.frontdoor.cli.common import make_authenticator
from authenticator.frontdoor.cli.run import served_transports
from authenticator.rp_testing.webauthn import WebAuthnClient
from transports.inprocess import InProcessDevice

CREATE = {
    "rp": {"id": "example.com", "name": "Example"},
    "user": {"id": "dQ", "name": "alice", "displayName": "Alice"},
    "challenge": "AAAAAAAAAAAAAAAAAAAAAA",
    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
}


def _run_args(*argv: str):
    return build_parser().parse_args(
        ["run", *argv, "--store", ":memory:", "--presence", "auto"]
    )


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        (["ble"], ["ble"]),
        (["udp"], ["usb"]),
        (["uhid", "ble"], ["usb", "ble"]),
        (["uhid", "gadget", "udp"], ["usb"]),
    ],
)
def test_get_info_and_get_transports_list_the_served_links(served, expected) -> None:
    args = _run_args(*[x for t in served for x in ("--transport", t)])
    auth = make_authenticator(args, defaults=served_transports(args))
    dev = InProcessDevice(auth)
    try:
        assert Ctap2(dev).get_info().transports == expected
        registration = WebAuthnClient(dev, "https://example.com").create(CREATE)
        assert registration["response"]["transports"] == sorted(expected)  # L3: sorted
    finally:
        dev.close()
        auth.store.close()


def test_set_transports_still_wins() -> None:
    args = _run_args("--transport", "ble", "--set", "transports=usb,nfc")
    auth = make_authenticator(args, defaults=served_transports(args))
    try:
        assert auth.config.transports == ("usb", "nfc")
    finally:
        auth.store.close()


def test_hybrid_phone_role_reports_hybrid_even_for_a_security_key_profile() -> None:
    from authenticator.frontdoor.cli.hybrid import HYBRID_TRANSPORTS

    args = build_parser().parse_args(
        ["hybrid", "scan", "FIDO:/0", "--store", ":memory:", "--profile", "security-key"]
    )
    auth = make_authenticator(args, defaults=HYBRID_TRANSPORTS)
    dev = InProcessDevice(auth)
    try:
        assert Ctap2(dev).get_info().transports == ["hybrid", "internal"]
    finally:
        dev.close()
        auth.store.close()
